import t from 'tap';
import { open, readdir, stat, truncate, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockStore, BadBlockError } from '../../src/cache/store.js';
import { CacheError, CacheLockedError } from '../../src/cache/errors.js';
import { metaCost } from '../../src/cache/meta.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

const segFile = (dir: string, idHex: string) => join(dir, 'blocks', idHex.slice(0, 2), idHex);

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

t.test('put/read/has/present, and restart persistence', async (t) => {
  const dir = await tempDir(t);
  const s1 = randomV1(3, 1000);
  const s2 = randomV2(70000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  const events: [string, number][] = [];
  store.on('block', (id: string, i: number) => events.push([id, i]));
  await store.addSegment(s1.meta);
  await store.addSegment(s1.meta); // idempotent
  await store.addSegment(s2.meta);
  t.equal(store.hasBlock(s1.meta.segmentId, 0), false);
  t.same(store.presentBlocks(s1.meta.segmentId), []);
  await store.putBlock(s1.meta.segmentId, 2, s1.blocks[2]!);
  await store.putBlock(s1.meta.segmentId, 0, s1.blocks[0]!);
  await store.putBlock(s2.meta.segmentId, 0, s2.blocks[0]!);
  t.same(store.presentBlocks(s1.meta.segmentId), [0, 2]);
  t.equal(store.isComplete(s1.meta.segmentId), false);
  t.equal(store.isComplete(s2.meta.segmentId), true);
  t.same(events, [
    [s1.meta.segmentId.toString('hex'), 2],
    [s1.meta.segmentId.toString('hex'), 0],
    [s2.meta.segmentId.toString('hex'), 0],
  ]);
  t.same(await store.readBlock(s1.meta.segmentId, 2), s1.blocks[2]);
  t.equal(await store.readBlock(s1.meta.segmentId, 1), undefined);
  t.same(await store.readBlock(s2.meta.segmentId, 0, 'peer'), s2.blocks[0]);
  // the file on disk is exactly the block
  t.same(await readAt(segFile(dir, s1.meta.segmentId.toString('hex')), 0, 65536), s1.blocks[0]);
  t.same(await readAt(segFile(dir, s1.meta.segmentId.toString('hex')), 2 * 65536, 5000), s1.blocks[2]);
  const st = store.stats();
  t.match(st, { segments: 2, blocks: 3, bytes: 65536 + 1000 + 70000, hitsLocal: 1, hitsPeer: 1, misses: 1 });
  await store.close();

  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  t.same(store.presentBlocks(s1.meta.segmentId), [0, 2]);
  t.same(store.getSegment(s1.meta.segmentId)?.kp, s1.meta.kp, 'Kp persisted');
  t.same(store.getSegment(s1.meta.segmentId)?.blockHashes, s1.meta.blockHashes);
  t.same(await store.readBlock(s1.meta.segmentId, 0), s1.blocks[0]);
  t.same(await store.readBlock(s2.meta.segmentId, 0), s2.blocks[0]);
  t.match(store.stats(), { segments: 2, blocks: 3, hitsLocal: 3, hitsPeer: 1, misses: 1 }, 'counters persisted');
  await putAll(store, s1);
  t.equal(store.isComplete(s1.meta.segmentId), true);
});

t.test('putBlock with wrong data: BadBlockError and nothing stored', async (t) => {
  const dir = await tempDir(t);
  const s = randomV1(2);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  const bad = Buffer.from(s.blocks[0]!);
  bad[100]! ^= 1;
  await t.rejects(store.putBlock(s.meta.segmentId, 0, bad), BadBlockError);
  await t.rejects(store.putBlock(s.meta.segmentId, 1, s.blocks[0]!.subarray(0, 100)), BadBlockError, 'wrong length');
  await t.rejects(store.putBlock(s.meta.segmentId, 5, s.blocks[0]!), BadBlockError, 'out of range');
  await t.rejects(store.putBlock(Buffer.alloc(32), 0, s.blocks[0]!), CacheError, 'unknown segment');
  t.same(store.presentBlocks(s.meta.segmentId), []);
  t.equal(store.stats().bytes, 0);
  t.same(await readdir(join(dir, 'blocks')), [], 'nothing written');
});

t.test('addSegment rejects a v1 segment whose HoD does not match its block hashes', async (t) => {
  const dir = await tempDir(t);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  const s = randomV1(2);
  await t.rejects(store.addSegment({ ...s.meta, hod: Buffer.alloc(32, 7) }), { code: 'BAD_SEGMENT' });
  await t.rejects(store.addSegment({ ...s.meta, blockHashes: s.meta.blockHashes.slice(1) }), { code: 'BAD_SEGMENT' });
  t.equal(store.getSegment(s.meta.segmentId), undefined);
  await store.addSegment(s.meta);
  await t.rejects(store.addSegment({ ...s.meta, kp: Buffer.alloc(32, 1) }), { code: 'SEGMENT_CONFLICT' });
});

t.test(
  'addSegments: many segments in few index writes, persisted; repeats allowed; a conflict registers none of its batch',
  async (t) => {
    const dir = await tempDir(t);
    let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
    const segs = Array.from({ length: 2500 }, () => randomV2(100));
    const metas = segs.map((s) => s.meta);
    await store.addSegments([...metas, metas[7]!]); // a segment named twice (content with a repeated segment)
    t.ok(
      metas.every((m) => store.getSegment(m.segmentId) !== undefined),
      'every segment registered (2,500: three batches)',
    );
    await store.addSegments(metas.slice(0, 10)); // already known, same metadata: nothing to do
    await putAll(store, segs[2400]!);
    t.same(
      await store.readBlock(metas[2400]!.segmentId, 0),
      segs[2400]!.blocks[0],
      'a block of the last batch stored and read back',
    );
    await store.close();
    store = await BlockStore.open({ dir });
    t.teardown(() => store.close());
    t.ok(
      metas.every((m) => store.getSegment(m.segmentId) !== undefined),
      'all of them in the index after reopening',
    );
    const more = Array.from({ length: 3 }, () => randomV2(100).meta);
    await t.rejects(store.addSegments([more[0]!, { ...metas[0]!, kp: Buffer.alloc(32, 1) }, more[1]!]), {
      code: 'SEGMENT_CONFLICT',
    });
    t.equal(store.getSegment(more[0]!.segmentId), undefined, 'nothing of the failing batch registered');
    await t.rejects(
      store.addSegments([more[2]!, { ...more[2]!, kp: Buffer.alloc(32, 2) }]),
      { code: 'SEGMENT_CONFLICT' },
      'a conflict within one call',
    );
    t.equal(store.getSegment(more[2]!.segmentId), undefined);
  },
);

t.test('LRU eviction of whole segments; pinned segments survive', async (t) => {
  const dir = await tempDir(t);
  let clock = 1000;
  const segs = [randomV1(2), randomV1(2), randomV1(2), randomV1(2)];
  // Metadata counts too (issue 27.5): room for 6 blocks, three 2-block segments and a 1-block one.
  const limit = 6 * 65536 + 3 * metaCost(segs[0]!.meta) + metaCost(randomV1(1).meta);
  const store = await BlockStore.open({ dir, limitBytes: limit, now: () => clock });
  t.teardown(() => store.close());
  const evicted: string[] = [];
  store.on('evict', (id: string) => evicted.push(id));
  for (const s of segs.slice(0, 3)) {
    clock += 10;
    await store.addSegment(s.meta);
    await putAll(store, s);
  }
  // use segment 0 so segment 1 becomes least recently used
  clock += 10;
  await store.readBlock(segs[0]!.meta.segmentId, 0);
  clock += 10;
  await store.addSegment(segs[3]!.meta);
  await putAll(store, segs[3]!);
  t.same(evicted, [segs[1]!.meta.segmentId.toString('hex')], 'LRU segment evicted whole');
  t.equal(store.getSegment(segs[1]!.meta.segmentId), undefined);
  t.same(store.presentBlocks(segs[1]!.meta.segmentId), []);
  await t.rejects(
    stat(segFile(dir, segs[1]!.meta.segmentId.toString('hex'))),
    { code: 'ENOENT' },
    'segment file removed',
  );
  t.equal(store.stats().bytes, 3 * 2 * 65536);

  // pin the LRU one (segment 2) — segment 0 is evicted instead
  const release = store.pin(segs[2]!.meta.segmentId);
  const s4 = randomV1(1);
  clock += 10;
  await store.addSegment(s4.meta);
  await putAll(store, s4);
  t.equal(evicted.at(-1), segs[0]!.meta.segmentId.toString('hex'));
  t.ok(store.isComplete(segs[2]!.meta.segmentId), 'pinned segment survived');

  // everything else pinned: a write that would go over the limit is refused (issue 16.4: pinned
  // downloads used to grow the cache until the disk was full); the engine delivers such blocks
  // without caching them
  const r3 = store.pin(segs[3]!.meta.segmentId),
    r4 = store.pin(s4.meta.segmentId);
  const s5 = randomV1(2);
  await store.addSegment(s5.meta);
  await store.putBlock(s5.meta.segmentId, 0, s5.blocks[0]!); // the 6th block: exactly at the limit
  const before = store.stats().bytes;
  await t.rejects(
    store.putBlock(s5.meta.segmentId, 1, s5.blocks[1]!),
    { code: 'CACHE_FULL' },
    'over-limit write refused',
  );
  t.equal(store.stats().bytes, before, 'nothing stored');
  t.equal(store.stats().overLimitBytes, 0);
  t.equal(store.stats().pinnedSegments, 3);
  release();
  release();
  r3();
  r4();
  await putAll(store, s5);
  t.ok(store.isComplete(s5.meta.segmentId), 'once unpinned, older segments make room');
  t.ok(store.stats().bytes <= 3 * 2 * 65536);
  await store.resize(2 * 2 * 65536);
  t.equal(store.stats().overLimitBytes, 0);
  t.ok(store.stats().bytes <= 2 * 2 * 65536);
  t.ok(store.isComplete(s5.meta.segmentId), 'most recently used kept');
});

t.test('corrupted block file: detected on read, dropped, corrupt event; verifyAll reports', async (t) => {
  const dir = await tempDir(t);
  const s = randomV1(3);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  await putAll(store, s);
  const idHex = s.meta.segmentId.toString('hex');
  const corrupt: [string, number][] = [];
  store.on('corrupt', (id: string, i: number) => corrupt.push([id, i]));
  const bad = Buffer.from(s.blocks[1]!);
  bad[0]! ^= 0xff;
  await writeAt(segFile(dir, idHex), 65536, bad);
  t.equal(await store.readBlock(s.meta.segmentId, 1), undefined, 'not served');
  t.same(corrupt, [[idHex, 1]]);
  t.same(store.presentBlocks(s.meta.segmentId), [0, 2], 'marked absent');
  t.equal(store.hasBlock(s.meta.segmentId, 1), false);
  t.equal(await store.readBlock(s.meta.segmentId, 1), undefined, 'a plain miss now');
  t.equal(corrupt.length, 1);
  await writeAt(segFile(dir, idHex), 2 * 65536, Buffer.alloc(65536));
  const rep = await store.verifyAll();
  t.same(rep.bad, [{ segmentId: idHex, index: 2 }]);
  t.equal(rep.blocks, 1);
  t.same(store.presentBlocks(s.meta.segmentId), [0]);
  t.equal(store.stats().corruptBlocks, 2);
  t.equal(store.stats().bytes, 65536);
  // the block can be stored again
  await store.putBlock(s.meta.segmentId, 1, s.blocks[1]!);
  t.same(await store.readBlock(s.meta.segmentId, 1), s.blocks[1]);
});

t.test(
  'readBlockInto: verified bytes into the caller buffer; a bad or short file is not served and is dropped',
  async (t) => {
    const dir = await tempDir(t);
    const s = randomV1(3, 1000);
    const v2 = randomV2(70000);
    const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
    t.teardown(() => store.close());
    await store.addSegment(s.meta);
    await store.addSegment(v2.meta);
    await putAll(store, s);
    await putAll(store, v2);
    const dest = Buffer.alloc(70016, 0x77);
    t.equal(await store.readBlockInto(s.meta.segmentId, 2, dest, 'peer'), 1000, 'the short last block');
    t.same(dest.subarray(0, 1000), s.blocks[2]);
    t.equal(dest[1000], 0x77, 'nothing written past the block');
    t.equal(await store.readBlockInto(v2.meta.segmentId, 0, dest), 70000);
    t.same(dest.subarray(0, 70000), v2.blocks[0]);
    t.equal(await store.readBlockInto(s.meta.segmentId, 7, dest), undefined, 'not held');
    await t.rejects(store.readBlockInto(s.meta.segmentId, 0, Buffer.alloc(100)), RangeError, 'a buffer too small');
    t.match(store.stats(), { hitsLocal: 1, hitsPeer: 1, misses: 1 });
    const idHex = s.meta.segmentId.toString('hex');
    const corrupt: number[] = [];
    store.on('corrupt', (_id: string, i: number) => corrupt.push(i));
    const bad = Buffer.from(s.blocks[1]!);
    bad[100]! ^= 1;
    await writeAt(segFile(dir, idHex), 65536, bad);
    t.equal(await store.readBlockInto(s.meta.segmentId, 1, dest), undefined, 'a bad block is not served');
    await truncate(segFile(dir, idHex), 2 * 65536 + 10);
    t.equal(await store.readBlockInto(s.meta.segmentId, 2, dest), undefined, 'a short file is not served');
    t.same(corrupt, [1, 2], 'both dropped and reported');
    t.same(store.presentBlocks(s.meta.segmentId), [0]);
  },
);

t.test('reconcile on open: unindexed bytes not served, missing/short files unmarked, orphans removed', async (t) => {
  const dir = await tempDir(t);
  const a = randomV1(3),
    b = randomV1(2),
    c = randomV1(2);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(a.meta);
  await store.putBlock(a.meta.segmentId, 0, a.blocks[0]!);
  await store.putBlock(a.meta.segmentId, 1, a.blocks[1]!);
  for (const s of [b, c]) {
    await store.addSegment(s.meta);
    await putAll(store, s);
  }
  await store.close();
  const [ah, bh, ch] = [a, b, c].map((s) => s.meta.segmentId.toString('hex')) as [string, string, string];
  // crash between data write and index update: block 2's bytes are on disk, the index does not know
  await writeAt(segFile(dir, ah), 2 * 65536, a.blocks[2]!);
  // a segment file that vanished, and one cut short inside block 1
  await rm(segFile(dir, bh));
  await truncate(segFile(dir, ch), 65536 + 10);
  // an unknown segment file and a stray directory
  const orphan = 'ab' + '0'.repeat(62);
  await mkdir(join(dir, 'blocks', 'ab'), { recursive: true });
  await writeFile(join(dir, 'blocks', 'ab', orphan), 'x');
  await mkdir(join(dir, 'blocks', 'zz'));
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  t.same(store.presentBlocks(a.meta.segmentId), [0, 1]);
  t.equal(store.hasBlock(a.meta.segmentId, 2), false, 'unindexed block not served');
  t.equal(await store.readBlock(a.meta.segmentId, 2), undefined);
  t.same(store.presentBlocks(b.meta.segmentId), [], 'missing file: nothing present');
  t.same(store.presentBlocks(c.meta.segmentId), [0], 'short file: only the complete block');
  t.ok(store.getSegment(b.meta.segmentId), 'segment metadata kept');
  await t.rejects(stat(join(dir, 'blocks', 'ab', orphan)), { code: 'ENOENT' }, 'orphan segment file removed');
  await t.rejects(stat(join(dir, 'blocks', 'zz')), { code: 'ENOENT' }, 'stray removed');
  t.equal(store.stats().bytes, 3 * 65536);
  t.equal(store.stats().corruptBlocks, 0);
  await store.putBlock(a.meta.segmentId, 2, a.blocks[2]!);
  t.same(await store.readBlock(a.meta.segmentId, 2), a.blocks[2]);
  await putAll(store, b);
  t.ok(store.isComplete(b.meta.segmentId));
  await store.close();
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.ok(store.isComplete(a.meta.segmentId) && store.isComplete(b.meta.segmentId));
});

t.test('modes: dirs 0700, segment files 0600', { skip: process.platform === 'win32' }, async (t) => {
  const dir = join(await tempDir(t), 'cache');
  const s = randomV1(1);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  await putAll(store, s);
  const idHex = s.meta.segmentId.toString('hex');
  for (const d of [dir, join(dir, 'index'), join(dir, 'blocks'), join(dir, 'blocks', idHex.slice(0, 2))]) {
    t.equal((await stat(d)).mode & 0o777, 0o700, d);
  }
  t.equal((await stat(segFile(dir, idHex))).mode & 0o777, 0o600);
});

t.test('a second opener gets CacheLockedError with a clear message', async (t) => {
  const dir = await tempDir(t);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await t.rejects(BlockStore.open({ dir }), CacheLockedError);
  await t.rejects(BlockStore.open({ dir }), { message: /in use by a running daemon/ });
});

t.test('default limit is 5% of the filesystem; resize persists; clear keeps pinned', async (t) => {
  const dir = await tempDir(t);
  const { statfs } = await import('node:fs/promises');
  const fs = await statfs(dir);
  let store = await BlockStore.open({ dir });
  t.equal(store.stats().limitBytes, Math.floor(fs.bsize * fs.blocks * 0.05));
  await store.resize(123456789);
  await store.close();
  store = await BlockStore.open({ dir });
  t.teardown(() => store.close());
  t.equal(store.stats().limitBytes, 123456789);
  const a = randomV1(1),
    b = randomV2(1000);
  await store.addSegment(a.meta);
  await putAll(store, a);
  await store.addSegment(b.meta);
  await putAll(store, b);
  const release = store.pin(b.meta.segmentId);
  await store.clear();
  t.equal(store.getSegment(a.meta.segmentId), undefined);
  t.ok(store.isComplete(b.meta.segmentId));
  release();
  await store.clear();
  t.match(store.stats(), { segments: 0, blocks: 0, bytes: 0 });
});

t.test('over the limit while pinned: shrinks back as soon as the pins are released (issue 16.4)', async (t) => {
  const dir = await tempDir(t);
  let clock = 1000;
  const segs = [randomV1(2), randomV1(2), randomV1(2)];
  const store = await BlockStore.open({ dir, limitBytes: 1 << 24, now: () => clock });
  t.teardown(() => store.close());
  for (const s of segs) {
    clock += 10;
    await store.addSegment(s.meta);
    await putAll(store, s);
  }
  const pins = segs.map((s) => store.pin(s.meta.segmentId));
  const limit = 2 * 65536 + metaCost(segs[0]!.meta); // one segment and its metadata (issue 27.5)
  await store.resize(limit);
  t.equal(store.stats().bytes, 3 * 2 * 65536, 'pinned segments stay');
  for (const release of pins) release();
  // No further write or resize: releasing the pins alone brings the cache back under its limit.
  for (let i = 0; i < 100 && store.stats().overLimitBytes > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(store.stats().bytes <= 2 * 65536, `back under the limit (${store.stats().bytes} bytes)`);
  t.equal(store.stats().overLimitBytes, 0, 'metadata included');
  t.ok(store.isComplete(segs[2]!.meta.segmentId), 'most recently used kept');
});

t.test(
  'disk full while evicting to stay under the limit: the block is stored, the data file is freed first (issue 16.4)',
  async (t) => {
    const dir = await tempDir(t);
    let clock = 1000;
    const segs = [randomV1(2), randomV1(2)];
    // Two blocks, and the metadata of both segments (issue 27.5).
    const limit = 2 * 65536 + 2 * metaCost(segs[0]!.meta);
    const store = await BlockStore.open({ dir, limitBytes: limit, now: () => clock });
    t.teardown(() => store.close());
    clock += 10;
    await store.addSegment(segs[0]!.meta);
    await putAll(store, segs[0]!);
    clock += 10;
    await store.addSegment(segs[1]!.meta);
    // From now on the index's log cannot grow until a data file is removed (LevelDB's own error,
    // as classic-level reports it: code LEVEL_IO_ERROR, message naming ENOSPC).
    const db = (store as unknown as { db: { batch: (ops: unknown[]) => Promise<void> } }).db;
    const realBatch = db.batch.bind(db);
    const victim = segFile(dir, segs[0]!.meta.segmentId.toString('hex'));
    let refused = 0;
    db.batch = async (ops: unknown[]) => {
      const fileGone = await stat(victim).then(
        () => false,
        () => true,
      );
      if (!fileGone) {
        refused++;
        throw Object.assign(new Error(`IO error: ${dir}/index/000003.log: No space left on device`), {
          code: 'LEVEL_IO_ERROR',
        });
      }
      return realBatch(ops);
    };
    await putAll(store, segs[1]!);
    t.ok(store.isComplete(segs[1]!.meta.segmentId), 'the new segment is stored');
    t.equal(store.getSegment(segs[0]!.meta.segmentId), undefined, 'the LRU segment was evicted');
    await t.rejects(stat(victim), { code: 'ENOENT' }, 'its data file is gone');
    t.equal(refused, 0, 'no index write was attempted while the data file still held the space');
    t.ok(store.stats().bytes <= 2 * 65536);
  },
);
