/** Issue 27: the block store's limit (pins released mid-shrink, metadata, segment count, imports). */
import t from 'tap';
import { once } from 'node:events';
import { BlockStore } from '../../src/cache/store.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

t.test('pins released while the cache is shrinking are honoured by that shrink (issue 27.1)', async (t) => {
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
  await store.resize(0);
  t.equal(store.stats().bytes, 3 * 2 * 65536, 'pinned segments stay');
  // The first release starts a shrink; the others come while it evicts (two readers finishing
  // one after the other).
  const first = once(store, 'evict');
  pins[0]!();
  await first;
  pins[1]!();
  pins[2]!();
  await store.flush(); // queued behind the shrink under way
  t.equal(store.stats().bytes, 0, 'every released segment went');
  t.equal(store.stats().segments, 0);
});

t.test(
  'segment metadata counts against the limit; empty segments go least recently used first (issue 27.5)',
  async (t) => {
    const dir = await tempDir(t);
    let clock = 1000;
    const LIMIT = 256 * 1024;
    const store = await BlockStore.open({ dir, limitBytes: LIMIT, now: () => clock });
    t.teardown(() => store.close());
    // A block-holding segment, used last, and then 2,000 segments nobody ever filled (offers whose
    // pulls failed, downloads abandoned): before, all of them stayed (0 bytes each as counted).
    const full = randomV1(2);
    await store.addSegment(full.meta);
    await putAll(store, full);
    const empties = Array.from({ length: 2000 }, () => randomV2(1000).meta);
    const pinned = store.pin(empties[0]!.segmentId);
    for (let i = 0; i < empties.length; i += 100) {
      clock += 10;
      await store.readBlock(full.meta.segmentId, 0); // the segment with data is in use all along
      clock += 10;
      await store.addSegments(empties.slice(i, i + 100));
    }
    const st = store.stats() as ReturnType<BlockStore['stats']> & { metaBytes?: number };
    t.ok((st.metaBytes ?? 0) > 0, `metadata is counted (${st.metaBytes} bytes)`);
    t.ok(st.bytes + (st.metaBytes ?? 0) <= LIMIT, `blocks + metadata within the limit (${st.bytes} + ${st.metaBytes})`);
    t.ok(st.segments < 2000, `empty segments were evicted (${st.segments} left)`);
    t.ok(store.isComplete(full.meta.segmentId), 'the recently used segment with data stays');
    t.ok(store.getSegment(empties[0]!.segmentId), 'a pinned empty segment stays');
    t.equal(store.getSegment(empties[1]!.segmentId), undefined, 'the oldest unpinned empty one went');
    t.ok(store.getSegment(empties[1999]!.segmentId), 'the newest empty one stays');
    pinned();
  },
);

t.test('the number of segments is capped (issue 27.5)', async (t) => {
  const dir = await tempDir(t);
  let clock = 1000;
  // Not an object literal: the option did not exist before (the test compiles on the old code).
  const opts = { dir, limitBytes: 1 << 30, now: () => clock, maxSegments: 100 };
  const store = await BlockStore.open(opts);
  t.teardown(() => store.close());
  const metas = Array.from({ length: 300 }, () => randomV2(1000).meta);
  const pinned = store.pin(metas[0]!.segmentId);
  for (const m of metas) {
    clock += 10;
    await store.addSegment(m);
  }
  t.equal(store.stats().segments, 100, 'no more than the cap');
  t.ok(store.getSegment(metas[0]!.segmentId), 'a pinned segment is kept');
  t.ok(store.getSegment(metas[299]!.segmentId), 'the newest is kept');
  t.equal(store.getSegment(metas[1]!.segmentId), undefined, 'the least recently used went');
  pinned();
  // The cap survives a restart (it follows the options, not the index).
  await store.close();
  const again = await BlockStore.open(opts);
  t.teardown(() => again.close());
  t.equal(again.stats().segments, 100);
});
