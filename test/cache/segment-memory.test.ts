/**
 * What the cache index keeps in memory per segment (issue 25 target 6: a 1 GiB v2 download has
 * about 14,400 segments, so every object per segment costs the daemon megabytes). A v2 segment
 * has no block hashes: its index entry must not carry a hash-list object of its own (it was a
 * Proxy with ten handler closures, about 1 KB per segment, bench/segment-heap.ts).
 */
import t from 'tap';
import { BlockStore } from '../../src/cache/store.js';
import { packedHashes } from '../../src/protocol/pccrc/types.js';
import { Bitmap } from '../../src/cache/bitmap.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

t.test('v2 index entries share one empty hash list; v1 entries keep their hashes', async (t) => {
  const dir = await tempDir(t);
  const v2 = Array.from({ length: 8 }, (_, k) => randomV2(1000 + k));
  const v1 = randomV1(3, 1000);
  let store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  await store.addSegments([...v2.map((s) => s.meta), v1.meta]);
  const check = (when: string) => {
    const lists = v2.map((s) => store.getSegment(s.meta.segmentId)!.blockHashes);
    t.equal(new Set(lists).size, 1, `${when}: one hash-list object for all 8 v2 segments`);
    const list = lists[0]!;
    t.equal(list.length, 0, `${when}: it is empty`);
    t.ok(Array.isArray(list) && Object.isFrozen(list), `${when}: a frozen array`);
    t.same([...list], [], `${when}: spreads to nothing`);
    t.equal(Buffer.concat(list).length, 0, `${when}: concatenates to no bytes`);
    t.throws(() => (list as Buffer[]).push(Buffer.alloc(32)), TypeError, `${when}: refuses writes`);
    const h1 = store.getSegment(v1.meta.segmentId)!.blockHashes;
    t.same(
      h1.map((h) => h.toString('hex')),
      v1.meta.blockHashes.map((h) => h.toString('hex')),
      `${when}: the v1 segment keeps its 3 block hashes`,
    );
  };
  check('after addSegments');
  await putAll(store, v2[0]!);
  await store.close();
  // Reopened: entries come back from the index records (fromRecord), with the same sharing.
  store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  check('after reopening');
  t.equal(store.isComplete(v2[0]!.meta.segmentId), true, 'the stored v2 block is still there');
});

t.test('packedHashes: an empty list is the shared one, a non-empty one reads its hashes', async (t) => {
  t.equal(packedHashes(Buffer.alloc(0), 32), packedHashes(Buffer.alloc(0), 64), 'same object');
  const packed = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const two = packedHashes(packed, 32);
  t.equal(two.length, 2);
  t.same(two[1], packed.subarray(32, 64));
});

t.test('Bitmap: up to 32 bits without a byte array, larger ones with one, the same answers', async (t) => {
  for (const size of [1, 2, 31, 32, 33, 512]) {
    const b = new Bitmap(size);
    t.equal(
      (b as unknown as { bits?: Uint8Array }).bits === undefined,
      size <= 32,
      `size ${size}: byte array only past 32`,
    );
    const picks = [...new Set([0, size - 1, Math.floor(size / 2)])];
    for (const i of picks) t.equal(b.set(i), true, `size ${size}: set ${i}`);
    t.equal(b.set(picks[0]!), false, `size ${size}: setting twice is refused`);
    t.equal(b.count, picks.length);
    t.same(
      b.list(),
      [...picks].sort((x, y) => x - y),
      `size ${size}: list`,
    );
    t.equal(b.has(size), false, `size ${size}: out of range is absent`);
    t.equal(b.set(size) || b.set(-1) || b.set(0.5), false, `size ${size}: out of range is refused`);
    t.equal(b.clear(size - 1), true);
    t.equal(b.has(size - 1), false);
    t.equal(b.clear(size - 1), false, 'clearing twice is refused');
    t.equal(b.count, picks.length - 1);
  }
});
