/**
 * v2 blocks in pack files (src/cache/packs.ts, issue 25): where the bytes are, what a restart makes
 * of every state a crash can leave (bytes without marks, marks without bytes, a block moved by
 * compaction), eviction and compaction keeping the disk bounded, and the old one-file-per-segment
 * layout still read.
 */
import t from 'tap';
import { mkdir, open, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { BlockStore } from '../../src/cache/store.js';
import { metaCost } from '../../src/cache/meta.js';
import { randomV2, tempDir, type TestSegment } from './make.js';

const packsOf = async (dir: string) => (await readdir(join(dir, 'packs'))).sort();
const sizeOf = async (p: string) => (await stat(p)).size;

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

async function indexValue(dir: string, key: string): Promise<unknown> {
  const db = new Level<string, unknown>(join(dir, 'index'), { valueEncoding: 'json' });
  try {
    return await db.get(key);
  } finally {
    await db.close();
  }
}
async function setIndex(dir: string, ops: { type: 'put' | 'del'; key: string; value?: unknown }[]): Promise<void> {
  const db = new Level<string, unknown>(join(dir, 'index'), { valueEncoding: 'json' });
  try {
    await db.batch(ops as never);
  } finally {
    await db.close();
  }
}
const pKey = (s: TestSegment) => `p!${s.meta.segmentId.toString('hex')}!0`;

t.test('v2 blocks are appended to one pack, marked with their place, and survive a restart', async (t) => {
  const dir = await tempDir(t);
  const segs = Array.from({ length: 20 }, (_, i) => randomV2(1000 + i * 37));
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegments(segs.map((s) => s.meta));
  // all at once: they share fdatasyncs and index batches
  await Promise.all(segs.map((s) => store.putBlock(s.meta.segmentId, 0, s.blocks[0]!)));
  t.same(await readdir(join(dir, 'blocks')), [], 'no segment file for v2 blocks');
  const packs = await packsOf(dir);
  t.equal(packs.length, 1, 'one pack');
  const total = segs.reduce((n, s) => n + s.data.length, 0);
  t.equal(await sizeOf(join(dir, 'packs', packs[0]!)), total, 'the pack is exactly the blocks');
  await store.close();
  for (const s of segs) {
    const v = (await indexValue(dir, pKey(s))) as { k: number; o: number };
    t.same(await readAt(join(dir, 'packs', packs[0]!), v.o, s.data.length), s.data, 'the mark says where the block is');
  }
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  for (const s of segs) t.same(await store.readBlock(s.meta.segmentId, 0), s.data);
  t.match(store.stats(), { blocks: 20, bytes: total, corruptBlocks: 0 });
  // after a restart writing goes to a new pack: nothing already in a pack is written again
  const more = randomV2(5000);
  await store.addSegment(more.meta);
  await store.putBlock(more.meta.segmentId, 0, more.blocks[0]!);
  const after = await packsOf(dir);
  t.equal(after.length, 2, 'a second pack');
  t.equal(await sizeOf(join(dir, 'packs', packs[0]!)), total, 'the first pack is unchanged');
  await store.close();
});

t.test('killed between the bytes and the mark: the bytes are never served and their pack goes', async (t) => {
  const dir = await tempDir(t);
  const a = randomV2(4000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(a.meta);
  await store.putBlock(a.meta.segmentId, 0, a.blocks[0]!);
  await store.close();
  const [first] = await packsOf(dir);
  // What a crash after the append and before the commit leaves: a pack (or bytes at a pack's end)
  // that no mark points at; here a whole pack of a segment that is registered but not present.
  const b = randomV2(3000);
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(b.meta);
  await store.close();
  const orphan = (Number.parseInt(first!, 16) + 1).toString(16).padStart(8, '0');
  await writeFile(join(dir, 'packs', orphan), b.data);
  await writeFile(join(dir, 'packs', 'stray.tmp'), 'x');
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.same(await packsOf(dir), [first], 'the unmarked pack and the stray are removed');
  t.equal(store.hasBlock(b.meta.segmentId, 0), false, 'the unmarked block is not present');
  t.equal(await store.readBlock(b.meta.segmentId, 0), undefined);
  t.same(await store.readBlock(a.meta.segmentId, 0), a.data);
  // and the next write neither reuses the removed pack's number nor the first pack
  await store.putBlock(b.meta.segmentId, 0, b.blocks[0]!);
  const now = await packsOf(dir);
  t.equal(now.length, 2);
  t.ok(now[1]! > orphan, `new pack ${now[1]} after ${orphan}`);
  await store.close();
});

t.test('marks whose bytes are not on disk (pack short or gone) are dropped on open', async (t) => {
  const dir = await tempDir(t);
  const segs = [randomV2(4000), randomV2(5000), randomV2(6000)];
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30, packBytes: 8000 });
  await store.addSegments(segs.map((s) => s.meta));
  for (const s of segs) await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  await store.close();
  const packs = await packsOf(dir);
  t.equal(packs.length, 3, 'one block per pack at this pack size');
  // (power lost before the pack's pages reached the disk: the pack is shorter than the mark says)
  await truncate(join(dir, 'packs', packs[0]!), 100);
  const { rm } = await import('node:fs/promises');
  await rm(join(dir, 'packs', packs[1]!));
  store = await BlockStore.open({ dir, limitBytes: 1 << 30, packBytes: 8000 });
  t.equal(store.hasBlock(segs[0]!.meta.segmentId, 0), false, 'short pack: not present');
  t.equal(store.hasBlock(segs[1]!.meta.segmentId, 0), false, 'missing pack: not present');
  t.same(await store.readBlock(segs[2]!.meta.segmentId, 0), segs[2]!.data);
  t.match(store.stats(), { blocks: 1, bytes: 6000, corruptBlocks: 0 });
  t.same(await packsOf(dir), [packs[2]], 'the pack without a present block is removed');
  await store.close();
  t.equal(await indexValue(dir, pKey(segs[0]!)).catch(() => undefined), undefined, 'stale mark deleted');
});

t.test('a block whose bytes in a pack are bad is dropped when read, not served', async (t) => {
  const dir = await tempDir(t);
  const s = randomV2(8000);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(s.meta);
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  const [p] = await packsOf(dir);
  const fh = await open(join(dir, 'packs', p!), 'r+');
  await fh.write(Buffer.from([s.data[100]! ^ 0xff]), 0, 1, 100);
  await fh.close();
  const corrupt: string[] = [];
  store.on('corrupt', (id: string) => corrupt.push(id));
  t.equal(await store.readBlock(s.meta.segmentId, 0), undefined);
  t.equal(store.hasBlock(s.meta.segmentId, 0), false);
  t.same(corrupt, [s.meta.segmentId.toString('hex')]);
  t.equal(store.stats().bytes, 0);
  // stored again: it is good again (in a new place)
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  t.same(await store.readBlock(s.meta.segmentId, 0), s.data);
  await store.close();
});

t.test('eviction removes a pack with its last block; compaction bounds the dead bytes', async (t) => {
  const dir = await tempDir(t);
  const size = 10_000;
  const segs = Array.from({ length: 40 }, () => randomV2(size));
  // 2 blocks per pack; room for 20 blocks (their metadata counts too)
  const limit = 20 * (size + metaCost(segs[0]!.meta));
  let now = 1_000_000;
  let store = await BlockStore.open({ dir, limitBytes: limit, packBytes: 2 * size, now: () => now });
  const put = async (s: TestSegment) => {
    now += 10;
    await store.addSegment(s.meta);
    await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  };
  for (const s of segs.slice(0, 20)) await put(s);
  t.equal((await packsOf(dir)).length, 10);
  const marks0 = segs.slice(0, 20).map(pKey);
  // Read every other block (recently used: kept), then write 10 more: the 10 unread go (LRU),
  // leaving each of the first 10 packs half dead: 100,000 dead bytes, over the bound of
  // max(4 packs, limit / 8) = 80,000, so blocks are moved until the dead bytes are under it.
  for (let i = 0; i < 20; i += 2) {
    now += 10;
    await store.readBlock(segs[i]!.meta.segmentId, 0);
  }
  await store.close();
  const before = new Map<string, unknown>();
  for (const k of marks0) before.set(k, await indexValue(dir, k));
  const reopened = await BlockStore.open({ dir, limitBytes: limit, packBytes: 2 * size, now: () => now });
  store = reopened;
  for (const s of segs.slice(20, 30)) await put(s);
  for (let i = 1; i < 20; i += 2) t.equal(store.hasBlock(segs[i]!.meta.segmentId, 0), false, `block ${i} evicted`);
  for (let i = 0; i < 20; i += 2) t.equal(store.hasBlock(segs[i]!.meta.segmentId, 0), true, `block ${i} kept`);
  let onDisk = 0;
  for (const p of await packsOf(dir)) onDisk += await sizeOf(join(dir, 'packs', p));
  const live = store.stats().bytes;
  t.ok(onDisk - live <= 4 * 2 * size, `${onDisk - live} dead bytes on disk`);
  await store.flush();
  await store.close();
  let moved = 0;
  for (const k of marks0) {
    const v = await indexValue(dir, k).catch(() => undefined);
    if (v !== undefined && JSON.stringify(v) !== JSON.stringify(before.get(k))) moved++;
  }
  t.ok(moved > 0, `${moved} blocks moved by compaction`);
  store = await BlockStore.open({ dir, limitBytes: limit, packBytes: 2 * size, now: () => now });
  // Reads during a compaction get the right bytes; after it every block is where its mark says.
  for (const s of segs.slice(30, 40)) await put(s);
  const reads = segs.map(async (s) => {
    const got = await store.readBlock(s.meta.segmentId, 0);
    if (got) t.same(got, s.data);
  });
  await Promise.all([...reads, store.flush()]);
  onDisk = 0;
  for (const p of await packsOf(dir)) onDisk += await sizeOf(join(dir, 'packs', p));
  t.ok(onDisk - store.stats().bytes <= 4 * 4 * size, `${onDisk - store.stats().bytes} dead bytes after more writes`);
  t.same((await store.verifyAll()).bad, []);
  const stillHeld = segs.filter((s) => store.hasBlock(s.meta.segmentId, 0));
  await store.close();
  const again = await BlockStore.open({ dir, limitBytes: limit, packBytes: 2 * size });
  for (const s of stillHeld) t.same(await again.readBlock(s.meta.segmentId, 0), s.data, 'held after a restart');
  t.equal(again.stats().corruptBlocks, 0);
  await again.close();
  // clear() empties the cache and removes every pack
  const c = await BlockStore.open({ dir, limitBytes: limit, packBytes: 2 * size });
  await c.clear();
  await c.close();
  t.same(await packsOf(dir), []);
});

t.test('compaction killed after the move: the old pack goes on open, the block is read from the new', async (t) => {
  const dir = await tempDir(t);
  const s = randomV2(7000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(s.meta);
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  await store.close();
  const [oldPack] = await packsOf(dir);
  // The state after a compaction committed the new place and died before removing the old pack.
  const next = (Number.parseInt(oldPack!, 16) + 1).toString(16).padStart(8, '0');
  await writeFile(join(dir, 'packs', next), Buffer.concat([Buffer.alloc(123), s.data]));
  await setIndex(dir, [{ type: 'put', key: pKey(s), value: { k: Number.parseInt(next, 16), o: 123 } }]);
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.same(await packsOf(dir), [next]);
  t.same(await store.readBlock(s.meta.segmentId, 0), s.data);
  await store.close();
});

t.test('a store written with one file per v2 segment is still read', async (t) => {
  const dir = await tempDir(t);
  const s = randomV2(9000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegment(s.meta);
  await store.close();
  // The layout before issue 25: blocks/<2 hex>/<id> holds the block, the mark is 1.
  const idHex = s.meta.segmentId.toString('hex');
  await mkdir(join(dir, 'blocks', idHex.slice(0, 2)), { recursive: true });
  await writeFile(join(dir, 'blocks', idHex.slice(0, 2), idHex), s.data);
  await setIndex(dir, [{ type: 'put', key: pKey(s), value: 1 }]);
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.equal(store.hasBlock(s.meta.segmentId, 0), true);
  t.same(await store.readBlock(s.meta.segmentId, 0), s.data);
  t.same(await packsOf(dir), []);
  await store.evictSegment(s.meta.segmentId);
  t.same(await readdir(join(dir, 'blocks', idHex.slice(0, 2))), [], 'its file goes with it');
  await store.close();
});
