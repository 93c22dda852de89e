import t from 'tap';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { BlockStore } from '../../src/cache/store.js';
import { parseSize, formatBytes as formatSize } from '../../src/util/size.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

/** Bytes of present blocks, recomputed from presentBlocks() and the segment geometry. */
function presentBytes(store: BlockStore): number {
  let n = 0;
  for (const r of store.list()) {
    const m = store.getSegment(Buffer.from(r.segmentId, 'hex'))!;
    for (const i of store.presentBlocks(m.segmentId)) n += Math.min(m.length, (i + 1) * m.blockSize) - i * m.blockSize;
  }
  return n;
}

t.test('concurrent writes under size pressure keep the index, memory and disk consistent', async (t) => {
  const dir = await tempDir(t);
  const segs = Array.from({ length: 10 }, () => randomV1(4, 3000));
  const segBytes = 3 * 65536 + 3000;
  let store = await BlockStore.open({ dir, limitBytes: 4 * segBytes });
  // three downloads at a time, each pinning its segment and writing its blocks concurrently
  let next = 0;
  await Promise.all(
    [0, 1, 2].map(async () => {
      while (next < segs.length) {
        const s = segs[next++]!;
        const release = store.pin(s.meta.segmentId);
        try {
          await store.addSegment(s.meta);
          await Promise.all(s.blocks.map((b, i) => store.putBlock(s.meta.segmentId, i, b)));
        } finally {
          release();
        }
      }
    }),
  );
  const st = store.stats();
  t.ok(st.bytes <= 4 * segBytes, `within the limit once unpinned (${st.bytes})`);
  t.equal(st.bytes, presentBytes(store), 'accounted bytes = bytes of present blocks');
  t.equal(
    st.blocks,
    store.list().reduce((n, r) => n + r.blocksPresent, 0),
  );
  const files: string[] = [];
  for (const fan of await readdir(join(dir, 'blocks'))) files.push(...(await readdir(join(dir, 'blocks', fan))));
  t.same(
    files.sort(),
    store
      .list()
      .map((r) => r.segmentId)
      .sort(),
    'one file per cached segment, evicted ones removed',
  );
  t.equal(st.blocks, (st.bytes / segBytes) * 4);
  t.ok(st.evictions >= 1, `evicted ${st.evictions}`);
  const before = new Map(store.list().map((r) => [r.segmentId, r.blocksPresent]));
  for (const s of segs)
    for (const i of store.presentBlocks(s.meta.segmentId))
      t.same(await store.readBlock(s.meta.segmentId, i), s.blocks[i]);
  await store.close();
  store = await BlockStore.open({ dir });
  t.teardown(() => store.close());
  t.same(new Map(store.list().map((r) => [r.segmentId, r.blocksPresent])), before, 'same after reopen');
  t.equal(store.stats().limitBytes, 4 * segBytes, 'the explicit limit was remembered');
});

t.test('last use is batched in memory and persisted by flush/close', async (t) => {
  const dir = await tempDir(t);
  let clock = 5000;
  const a = randomV2(1000),
    b = randomV2(2000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 20, now: () => clock, flushIntervalMs: 60_000 });
  await store.addSegment(a.meta);
  await putAll(store, a);
  clock = 6000;
  await store.addSegment(b.meta);
  await putAll(store, b);
  clock = 9000;
  await store.readBlock(a.meta.segmentId, 0, 'peer');
  t.same(
    store.list().map((r) => [r.segmentId, r.lastUse]),
    [
      [a.meta.segmentId.toString('hex'), 9000],
      [b.meta.segmentId.toString('hex'), 6000],
    ],
  );
  await store.close();
  store = await BlockStore.open({ dir, now: () => clock });
  t.teardown(() => store.close());
  t.match(store.list(), [
    { segmentId: a.meta.segmentId.toString('hex'), lastUse: 9000, hitsPeer: 1 },
    { lastUse: 6000, hitsPeer: 0 },
  ]);
});

t.test('an unreadable segment record in the index is dropped with its files', async (t) => {
  const dir = await tempDir(t);
  const a = randomV1(2),
    b = randomV1(1);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 24 });
  await store.addSegment(a.meta);
  await putAll(store, a);
  await store.addSegment(b.meta);
  await putAll(store, b);
  await store.close();
  const db = new Level<string, unknown>(join(dir, 'index'), { valueEncoding: 'json' });
  await db.put(`m!${a.meta.segmentId.toString('hex')}`, {
    v: 1,
    alg: 'SHA-256',
    hod: '00',
    kp: '11',
    len: 5,
    bs: 65536,
    bh: '',
    added: 0,
  });
  await db.close();
  store = await BlockStore.open({ dir });
  t.teardown(() => store.close());
  t.equal(store.getSegment(a.meta.segmentId), undefined);
  t.same(store.presentBlocks(a.meta.segmentId), []);
  t.ok(store.isComplete(b.meta.segmentId));
  const ah = a.meta.segmentId.toString('hex');
  await t.rejects(stat(join(dir, 'blocks', ah.slice(0, 2), ah)), { code: 'ENOENT' });
});

t.test('parseSize / formatSize', async (t) => {
  t.equal(parseSize('1073741824'), 2 ** 30);
  t.equal(parseSize('10G'), 10 * 2 ** 30);
  t.equal(parseSize('500M'), 500 * 2 ** 20);
  t.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
  t.equal(parseSize('64k'), 65536);
  t.equal(parseSize('2T'), 2 * 2 ** 40);
  t.equal(parseSize('100b'), 100);
  for (const bad of ['', 'G', '-1', '10X', '1e9', '99999999999T'])
    t.throws(() => parseSize(bad), { code: 'BAD_SIZE' }, bad);
  t.equal(formatSize(1536), '1.5 KiB');
  t.equal(formatSize(10), '10 B');
});

t.test('group commit: concurrent writes to one segment share fdatasync calls; each write is synced', async (t) => {
  const dir = await tempDir(t);
  const probe = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as {
    datasync: () => Promise<void>;
    write: (...a: unknown[]) => Promise<unknown>;
  };
  await probe.close();
  const origSync = proto.datasync,
    origWrite = proto.write;
  // Each completed write gets a sequence number; a datasync covers every write completed before it
  // started. A putBlock may resolve only once a covering datasync has finished.
  let writes = 0,
    syncs = 0,
    syncedUpTo = 0,
    unsyncedAtResolve = 0;
  const seqOf = new Map<unknown, number>();
  proto.write = async function (this: unknown, ...a: unknown[]) {
    const r = await origWrite.apply(this, a);
    seqOf.set(a[0], ++writes);
    return r;
  };
  // a slow disk (20 ms per sync) makes the sharing deterministic whatever the filesystem
  proto.datasync = async function (this: unknown) {
    syncs++;
    const covered = writes;
    await new Promise((r) => setTimeout(r, 20));
    await origSync.call(this);
    syncedUpTo = Math.max(syncedUpTo, covered);
  };
  t.teardown(() => {
    proto.datasync = origSync;
    proto.write = origWrite;
  });
  const s = randomV1(16);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  await Promise.all(
    s.blocks.map(async (b, i) => {
      await store.putBlock(s.meta.segmentId, i, b);
      const seq = seqOf.get(b);
      if (seq === undefined || syncedUpTo < seq) unsyncedAtResolve++;
    }),
  );
  t.ok(store.isComplete(s.meta.segmentId));
  t.equal(unsyncedAtResolve, 0, 'no putBlock resolved before its data was synced');
  t.equal(writes, 16);
  t.ok(syncs >= 1 && syncs <= 4, `${syncs} fdatasync calls for 16 concurrent block writes`);
});

t.test('segments that never got a block are forgotten after the TTL unless pinned', async (t) => {
  const dir = await tempDir(t);
  let clock = 1_000_000;
  const store = await BlockStore.open({
    dir,
    limitBytes: 1 << 24,
    now: () => clock,
    flushIntervalMs: 60_000,
    emptySegmentTtlMs: 1000,
  });
  t.teardown(() => store.close());
  const empty = randomV1(2),
    pinned = randomV1(2),
    full = randomV1(1);
  for (const s of [empty, pinned, full]) await store.addSegment(s.meta);
  await putAll(store, full);
  const release = store.pin(pinned.meta.segmentId);
  clock += 500;
  await store.flush();
  t.equal(store.stats().segments, 3, 'not yet');
  clock += 1000;
  await store.flush();
  t.equal(store.getSegment(empty.meta.segmentId), undefined, 'empty and stale: forgotten');
  t.ok(store.getSegment(pinned.meta.segmentId), 'pinned: kept');
  t.ok(store.isComplete(full.meta.segmentId), 'has blocks: kept');
  release();
});

t.test('close waits for writes in flight; afterwards writes fail clearly and reads miss', async (t) => {
  const dir = await tempDir(t);
  const s = randomV1(8);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 24 });
  await store.addSegment(s.meta);
  const writes = s.blocks.map((b, i) => store.putBlock(s.meta.segmentId, i, b));
  await store.close();
  await Promise.all(writes);
  await t.rejects(store.putBlock(s.meta.segmentId, 0, s.blocks[0]!), { code: 'CACHE_CLOSED' });
  t.equal(await store.readBlock(s.meta.segmentId, 0), undefined);
  store = await BlockStore.open({ dir });
  t.teardown(() => store.close());
  t.ok(store.isComplete(s.meta.segmentId), 'every write that was in flight at close landed');
});

t.test(
  'checkBlock: a verified buffer is stored without a second hash, but only for the block it was checked for',
  async (t) => {
    const dir = await tempDir(t);
    const s = randomV1(3);
    const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
    t.teardown(() => store.close());
    t.equal(store.checkBlock(s.meta.segmentId, 0, s.blocks[0]!), false, 'unknown segment');
    await store.addSegment(s.meta);
    const bad = Buffer.from(s.blocks[1]!);
    bad[5]! ^= 1;
    t.equal(store.checkBlock(s.meta.segmentId, 1, bad), false, 'wrong bytes');
    t.equal(store.checkBlock(s.meta.segmentId, 9, s.blocks[0]!), false, 'index out of range');
    t.equal(store.checkBlock(s.meta.segmentId, 0, s.blocks[0]!), true);
    // checked as block 0, offered as block 2: hashed again and refused
    await t.rejects(store.putBlock(s.meta.segmentId, 2, s.blocks[0]!), { code: 'BAD_BLOCK' });
    t.equal(store.hasBlock(s.meta.segmentId, 2), false);
    await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
    await Promise.all(
      [1, 2].map(async (i) => {
        t.ok(store.checkBlock(s.meta.segmentId, i, s.blocks[i]!));
        await store.putBlock(s.meta.segmentId, i, s.blocks[i]!);
      }),
    );
    t.ok(store.isComplete(s.meta.segmentId));
    for (let i = 0; i < 3; i++) t.same(await store.readBlock(s.meta.segmentId, i), s.blocks[i]);
    await store.close();
    const again = await BlockStore.open({ dir, limitBytes: 1 << 30 });
    t.teardown(() => again.close());
    t.same(again.presentBlocks(s.meta.segmentId), [0, 1, 2], 'batched present marks reached the index');
  },
);
