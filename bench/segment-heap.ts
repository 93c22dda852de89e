/**
 * Memory a daemon holds per v2 segment of a download it has in hand: the parsed content
 * information (as the engine keeps it) plus the cache's index entry for every segment (as
 * BlockStore.addSegments registers them). A 1 GiB file cut by the v2 chunker has about 14,400
 * segments (bench/rss.ts), so every KB per segment is about 14 MB of the daemon's peak RSS
 * (issue 25 target 6). Prints V8 heap, ArrayBuffers and process RSS added per segment, after a
 * full GC. Run with --expose-gc:
 *   npm run build && node --expose-gc dist/bench/segment-heap.js [--segments 14436] [--json]
 */
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { encodeContentInfo, parseContentInfo } from '../src/protocol/pccrc/codec.js';
import { segmentIdOf } from '../src/protocol/pccrc/keys.js';
import type { ContentInfo, SegmentInfo } from '../src/protocol/pccrc/types.js';
import { BlockStore } from '../src/cache/store.js';
import { segmentMetaFrom } from '../src/cache/meta.js';

const { values } = parseArgs({
  options: { segments: { type: 'string', default: '14436' }, json: { type: 'boolean' } },
});
const n = Number(values.segments);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function mem() {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, ab: m.arrayBuffers, rss: m.rss };
}

// A v2 content information of n segments of 74 KiB (hashes made up: the parser does not check
// them against data, only derives the segment IDs from them as for a real one).
const segs: SegmentInfo[] = [];
const len = 74 * 1024;
for (let k = 0; k < n; k++) {
  const hod = createHash('sha512').update(`hod ${k}`).digest().subarray(0, 32);
  const kp = createHash('sha512').update(`kp ${k}`).digest().subarray(0, 32);
  segs.push({
    index: k,
    offset: k * len,
    length: len,
    blockSize: len,
    hod,
    kp,
    segmentId: segmentIdOf(2, kp, hod),
    blockHashes: [],
  });
}
const wire = encodeContentInfo({
  version: 2,
  hashAlgorithm: 'SHA-512/256t',
  rangeStart: 0,
  rangeEnd: n * len,
  contentLength: n * len,
  segments: segs,
} as ContentInfo);
segs.length = 0;

const dir = await mkdtemp(join(tmpdir(), 'segheap-'));
const store = await BlockStore.open({ dir, limitBytes: 64 * 2 ** 30, fsync: false, flushIntervalMs: 3_600_000 });
try {
  const m0 = mem();
  const ci = parseContentInfo(wire);
  const m1 = mem();
  await store.addSegments(ci.segments.map((s) => segmentMetaFrom(2, ci.hashAlgorithm, s)));
  const m2 = mem();
  const per = (a: number, b: number) => (b - a) / n;
  const r = {
    segments: n,
    parsedBytesPerSegment: { heap: per(m0.heap, m1.heap), arrayBuffers: per(m0.ab, m1.ab), rss: per(m0.rss, m1.rss) },
    indexBytesPerSegment: { heap: per(m1.heap, m2.heap), arrayBuffers: per(m1.ab, m2.ab), rss: per(m1.rss, m2.rss) },
    totalMB: { heap: (m2.heap - m0.heap) / 1e6, arrayBuffers: (m2.ab - m0.ab) / 1e6, rss: (m2.rss - m0.rss) / 1e6 },
  };
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    const f = (x: { heap: number; arrayBuffers: number; rss: number }) =>
      `heap ${x.heap.toFixed(0)} B, ArrayBuffers ${x.arrayBuffers.toFixed(0)} B, RSS ${x.rss.toFixed(0)} B`;
    process.stdout.write(`${n} v2 segments\n`);
    process.stdout.write(`parsed content information, per segment: ${f(r.parsedBytesPerSegment)}\n`);
    process.stdout.write(`cache index entry, per segment: ${f(r.indexBytesPerSegment)}\n`);
    process.stdout.write(
      `all ${n}: heap ${r.totalMB.heap.toFixed(1)} MB, ArrayBuffers ${r.totalMB.arrayBuffers.toFixed(1)} MB, RSS ${r.totalMB.rss.toFixed(1)} MB\n`,
    );
  }
  // Both stay referenced until here, as in a daemon with the download in hand.
  if (ci.segments.length !== n) process.exitCode = 1;
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
