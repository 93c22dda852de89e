/**
 * The engine's state budget (src/engine/budget.ts) against the heap a v2 download's per-segment
 * state really takes (RELIABILITY.md "Found 2026-12-07"): the parsed content information, the
 * cache index entries, the job's segment pins, the Transfer and discovery's watches with a peer
 * sighted for every segment, built from the real modules (testkit/segment-state.ts) and measured
 * after full GCs in this process. The budget assumed 700 bytes per v2 segment where about 1.9 KB
 * was held, so under the unit's 64 MiB heap it admitted downloads whose state did not fit.
 */
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { BYTES_PER_V2_SEGMENT, MemoryBudget, stateBytes } from '../../src/engine/budget.js';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { buildSegmentState, syntheticV2ContentInfo } from '../../testkit/segment-state.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapNow(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

t.test('the v2 estimate covers the per-segment state a download holds', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-budget-'));
  const store = await BlockStore.open({ dir, limitBytes: 2 ** 34, fsync: false, flushIntervalMs: 3_600_000 });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  // Once small first: the code of every stage is compiled then, not counted as segment state.
  await buildSegmentState(syntheticV2ContentInfo(50, undefined, 'warm'), store, heapNow);
  const n = 2000;
  const wire = syntheticV2ContentInfo(n);
  const s = await buildSegmentState(wire, store, heapNow);
  const per = (s.discovery - s.start) / n;
  const stages = (['parsed', 'index', 'pins', 'transfer', 'discovery'] as const).map((k, i, all) => {
    const prev = i === 0 ? s.start : s[all[i - 1]!];
    return `${k} ${((s[k] - prev) / n).toFixed(0)}`;
  });
  t.comment(`heap + ArrayBuffers per v2 segment: ${per.toFixed(0)} B (${stages.join(', ')})`);
  t.ok(per > 0, 'the state was measured');
  t.ok(
    per <= BYTES_PER_V2_SEGMENT,
    `the budget's ${BYTES_PER_V2_SEGMENT} B per v2 segment covers the ${per.toFixed(0)} B measured`,
  );
  const ci = parseContentInfo(wire);
  t.equal(stateBytes(ci), n * BYTES_PER_V2_SEGMENT, 'the estimate counts every segment');
});

t.test('a budget refuses what does not fit and takes it back on release', async (t) => {
  const b = new MemoryBudget(10 * BYTES_PER_V2_SEGMENT);
  const ci = parseContentInfo(syntheticV2ContentInfo(6, 4096, 'b'));
  const r1 = b.reserve(stateBytes(ci));
  t.ok(r1, 'six segments fit in ten');
  t.equal(b.reserve(stateBytes(ci)), undefined, 'six more do not');
  r1!();
  r1!();
  t.equal(b.inUse, 0, 'released once');
  t.ok(b.reserve(stateBytes(ci)), 'fit again');
});
