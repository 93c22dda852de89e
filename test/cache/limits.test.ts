/** Issue 27: the block store's limit (pins released mid-shrink, metadata, segment count, imports). */
import t from 'tap';
import { once } from 'node:events';
import { BlockStore } from '../../src/cache/store.js';
import { randomV1, tempDir, putAll } from './make.js';

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
