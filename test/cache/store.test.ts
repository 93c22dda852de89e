import t from 'tap';
import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockStore, BadBlockError } from '../../src/cache/store.js';
import { CacheError, CacheLockedError } from '../../src/cache/errors.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

const blockFile = (dir: string, idHex: string, i: number) => join(dir, 'blocks', idHex.slice(0, 2), idHex, String(i));

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
  t.same(events, [[s1.meta.segmentId.toString('hex'), 2], [s1.meta.segmentId.toString('hex'), 0], [s2.meta.segmentId.toString('hex'), 0]]);
  t.same(await store.readBlock(s1.meta.segmentId, 2), s1.blocks[2]);
  t.equal(await store.readBlock(s1.meta.segmentId, 1), undefined);
  t.same(await store.readBlock(s2.meta.segmentId, 0, 'peer'), s2.blocks[0]);
  // the file on disk is exactly the block
  t.same(await readFile(blockFile(dir, s1.meta.segmentId.toString('hex'), 0)), s1.blocks[0]);
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
  const bad = Buffer.from(s.blocks[0]!); bad[100]! ^= 1;
  await t.rejects(store.putBlock(s.meta.segmentId, 0, bad), BadBlockError);
  await t.rejects(store.putBlock(s.meta.segmentId, 1, s.blocks[0]!.subarray(0, 100)), BadBlockError, 'wrong length');
  await t.rejects(store.putBlock(s.meta.segmentId, 5, s.blocks[0]!), BadBlockError, 'out of range');
  await t.rejects(store.putBlock(Buffer.alloc(32), 0, s.blocks[0]!), CacheError, 'unknown segment');
  t.same(store.presentBlocks(s.meta.segmentId), []);
  t.equal(store.stats().bytes, 0);
  t.same(await readdir(join(dir, 'blocks')), []);
  t.same(await readdir(join(dir, 'tmp')), [], 'no temp files left');
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

t.test('LRU eviction of whole segments; pinned segments survive', async (t) => {
  const dir = await tempDir(t);
  let clock = 1000;
  const segs = [randomV1(2), randomV1(2), randomV1(2), randomV1(2)];
  const store = await BlockStore.open({ dir, limitBytes: 3 * 2 * 65536, now: () => clock });
  t.teardown(() => store.close());
  const evicted: string[] = [];
  store.on('evict', (id: string) => evicted.push(id));
  for (const s of segs.slice(0, 3)) { clock += 10; await store.addSegment(s.meta); await putAll(store, s); }
  // use segment 0 so segment 1 becomes least recently used
  clock += 10; await store.readBlock(segs[0]!.meta.segmentId, 0);
  clock += 10; await store.addSegment(segs[3]!.meta); await putAll(store, segs[3]!);
  t.same(evicted, [segs[1]!.meta.segmentId.toString('hex')], 'LRU segment evicted whole');
  t.equal(store.getSegment(segs[1]!.meta.segmentId), undefined);
  t.same(store.presentBlocks(segs[1]!.meta.segmentId), []);
  await t.rejects(stat(join(dir, 'blocks', segs[1]!.meta.segmentId.toString('hex').slice(0, 2), segs[1]!.meta.segmentId.toString('hex'))), { code: 'ENOENT' });
  t.equal(store.stats().bytes, 3 * 2 * 65536);

  // pin the LRU one (segment 2) — segment 0 is evicted instead
  const release = store.pin(segs[2]!.meta.segmentId);
  const s4 = randomV1(1);
  clock += 10; await store.addSegment(s4.meta); await putAll(store, s4);
  t.equal(evicted.at(-1), segs[0]!.meta.segmentId.toString('hex'));
  t.ok(store.isComplete(segs[2]!.meta.segmentId), 'pinned segment survived');

  // everything else pinned: the write succeeds over the limit and the overage is reported
  const r3 = store.pin(segs[3]!.meta.segmentId), r4 = store.pin(s4.meta.segmentId);
  const s5 = randomV1(2);
  await store.addSegment(s5.meta); await putAll(store, s5);
  t.ok(store.isComplete(s5.meta.segmentId));
  t.equal(store.stats().overLimitBytes, store.stats().bytes - 3 * 2 * 65536);
  t.ok(store.stats().overLimitBytes > 0);
  t.equal(store.stats().pinnedSegments, 3);
  release(); release(); r3(); r4();
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
  await store.addSegment(s.meta); await putAll(store, s);
  const idHex = s.meta.segmentId.toString('hex');
  const corrupt: [string, number][] = [];
  store.on('corrupt', (id: string, i: number) => corrupt.push([id, i]));
  const bad = Buffer.from(s.blocks[1]!); bad[0]! ^= 0xff;
  await writeFile(blockFile(dir, idHex, 1), bad);
  t.equal(await store.readBlock(s.meta.segmentId, 1), undefined, 'not served');
  t.same(corrupt, [[idHex, 1]]);
  t.same(store.presentBlocks(s.meta.segmentId), [0, 2], 'marked absent');
  await t.rejects(stat(blockFile(dir, idHex, 1)), { code: 'ENOENT' }, 'file removed');
  await writeFile(blockFile(dir, idHex, 2), Buffer.alloc(65536));
  const rep = await store.verifyAll();
  t.same(rep.bad, [{ segmentId: idHex, index: 2 }]);
  t.equal(rep.blocks, 1);
  t.same(store.presentBlocks(s.meta.segmentId), [0]);
  t.equal(store.stats().corruptBlocks, 2);
  // the block can be stored again
  await store.putBlock(s.meta.segmentId, 1, s.blocks[1]!);
  t.same(await store.readBlock(s.meta.segmentId, 1), s.blocks[1]);
});

t.test('reconcile on open: orphans removed, missing files not served, temp files removed', async (t) => {
  const dir = await tempDir(t);
  const s = randomV1(3);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(s.meta);
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  await store.putBlock(s.meta.segmentId, 1, s.blocks[1]!);
  await store.close();
  const idHex = s.meta.segmentId.toString('hex');
  // crash between data write and index update: the block file exists, the index does not know it
  await writeFile(blockFile(dir, idHex, 2), s.blocks[2]!);
  // an index entry whose file vanished
  const { rm } = await import('node:fs/promises');
  await rm(blockFile(dir, idHex, 1));
  // a segment directory nobody knows and a temp file
  await mkdir(join(dir, 'blocks', 'ab', 'ab' + '0'.repeat(62)), { recursive: true });
  await writeFile(join(dir, 'blocks', 'ab', 'ab' + '0'.repeat(62), '0'), 'x');
  await writeFile(join(dir, 'tmp', 'leftover'), 'x');
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  t.same(store.presentBlocks(s.meta.segmentId), [0]);
  t.equal(store.hasBlock(s.meta.segmentId, 2), false, 'unindexed file not served');
  t.equal(await store.readBlock(s.meta.segmentId, 2), undefined);
  t.same(await readdir(join(dir, 'blocks', idHex.slice(0, 2), idHex)), ['0'], 'orphan file removed');
  t.same(await readdir(join(dir, 'blocks', 'ab')).catch(() => []), idHex.startsWith('ab') ? [idHex] : [], 'orphan segment removed');
  t.same(await readdir(join(dir, 'tmp')), []);
  t.equal(store.stats().bytes, 65536);
  await store.putBlock(s.meta.segmentId, 2, s.blocks[2]!);
  t.same(await store.readBlock(s.meta.segmentId, 2), s.blocks[2]);
});

t.test('modes: dirs 0700, block files 0600', { skip: process.platform === 'win32' }, async (t) => {
  const dir = join(await tempDir(t), 'cache');
  const s = randomV1(1);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta); await putAll(store, s);
  const idHex = s.meta.segmentId.toString('hex');
  for (const d of [dir, join(dir, 'index'), join(dir, 'blocks'), join(dir, 'tmp'), join(dir, 'blocks', idHex.slice(0, 2)), join(dir, 'blocks', idHex.slice(0, 2), idHex)]) {
    t.equal((await stat(d)).mode & 0o777, 0o700, d);
  }
  t.equal((await stat(blockFile(dir, idHex, 0))).mode & 0o777, 0o600);
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
  const a = randomV1(1), b = randomV2(1000);
  await store.addSegment(a.meta); await putAll(store, a);
  await store.addSegment(b.meta); await putAll(store, b);
  const release = store.pin(b.meta.segmentId);
  await store.clear();
  t.equal(store.getSegment(a.meta.segmentId), undefined);
  t.ok(store.isComplete(b.meta.segmentId));
  release();
  await store.clear();
  t.match(store.stats(), { segments: 0, blocks: 0, bytes: 0 });
});
