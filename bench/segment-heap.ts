/**
 * Memory a daemon holds per v2 segment of a download it has in hand (testkit/segment-state.ts):
 * the parsed content information, the cache's index entries, the job's segment pins, the Transfer
 * (layout, segment lookup, Scheduler) and discovery's watches with one peer sighted per segment.
 * A 1 GiB file cut by the v2 chunker has about 14,400 segments (bench/rss.ts), so every KB per
 * segment is about 14 MB of the daemon's heap (issue 25 target 6); the engine's state budget
 * (src/engine/budget.ts BYTES_PER_V2_SEGMENT) must cover the total. Prints V8 heap, ArrayBuffers
 * and process RSS added per segment by each stage, after full GCs. Run with --expose-gc:
 *   npm run build && node --expose-gc dist/bench/segment-heap.js [--segments 14436] [--json]
 */
import { benchArgs } from './args.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockStore } from '../src/cache/store.js';
import { BYTES_PER_V2_SEGMENT } from '../src/engine/budget.js';
import { buildSegmentState, syntheticV2ContentInfo } from '../testkit/segment-state.js';

const { values } = benchArgs(import.meta.url, {
  options: { segments: { type: 'string', default: '14436' }, json: { type: 'boolean' } },
});
const n = Number(values.segments);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

interface M {
  heap: number;
  ab: number;
  rss: number;
}
function mem(): M {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, ab: m.arrayBuffers, rss: m.rss };
}

const wire = syntheticV2ContentInfo(n);
const dir = await mkdtemp(join(tmpdir(), 'segheap-'));
const store = await BlockStore.open({ dir, limitBytes: 64 * 2 ** 30, fsync: false, flushIntervalMs: 3_600_000 });
try {
  const s = await buildSegmentState(wire, store, mem);
  const stages = ['parsed', 'index', 'pins', 'transfer', 'discovery'] as const;
  const per = (a: M, b: M) => ({
    heap: (b.heap - a.heap) / n,
    arrayBuffers: (b.ab - a.ab) / n,
    rss: (b.rss - a.rss) / n,
  });
  let prev = s.start;
  const perStage: Record<string, { heap: number; arrayBuffers: number; rss: number }> = {};
  for (const k of stages) {
    perStage[k] = per(prev, s[k]);
    prev = s[k];
  }
  const total = per(s.start, s.discovery);
  const r = {
    segments: n,
    perSegment: perStage,
    totalPerSegment: total,
    totalMB: { heap: (total.heap * n) / 1e6, arrayBuffers: (total.arrayBuffers * n) / 1e6, rss: (total.rss * n) / 1e6 },
    budgetBytesPerSegment: BYTES_PER_V2_SEGMENT,
  };
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    const f = (x: { heap: number; arrayBuffers: number; rss: number }) =>
      `heap ${x.heap.toFixed(0).padStart(5)} B, ArrayBuffers ${x.arrayBuffers.toFixed(0).padStart(4)} B, RSS ${x.rss.toFixed(0).padStart(5)} B`;
    process.stdout.write(`${n} v2 segments, per segment:\n`);
    for (const k of stages) process.stdout.write(`  ${k.padEnd(10)} ${f(perStage[k]!)}\n`);
    process.stdout.write(`  ${'all'.padEnd(10)} ${f(total)}  (budget assumes ${BYTES_PER_V2_SEGMENT} B)\n`);
    process.stdout.write(
      `all ${n}: heap ${r.totalMB.heap.toFixed(1)} MB, ArrayBuffers ${r.totalMB.arrayBuffers.toFixed(1)} MB, RSS ${r.totalMB.rss.toFixed(1)} MB\n`,
    );
  }
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
