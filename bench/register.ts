/**
 * Segment registration at the start of a download, side by side in one run: the BlockStore's
 * addSegment once per segment (what a job did before) against addSegments for all of them, for the
 * v2 segments of a file (64 KiB each; 16,384 = a 1 GiB file). Each side gets a fresh store.
 *   npm run build && node dist/bench/register.js [--segments 16384] [--rounds 3]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { BlockStore } from '../src/cache/store.js';
import type { SegmentMeta } from '../src/cache/meta.js';
import { segmentIdOf, segmentSecret } from '../src/protocol/pccrc/keys.js';

const { values } = benchArgs(import.meta.url, {
  options: { segments: { type: 'string', default: '16384' }, rounds: { type: 'string', default: '3' } },
});
const N = Number(values.segments);
const ks = randomBytes(32);

function metas(): SegmentMeta[] {
  return Array.from({ length: N }, () => {
    const hod = createHash('sha512').update(randomBytes(16)).digest().subarray(0, 32);
    const kp = segmentSecret(2, ks, hod);
    return {
      segmentId: segmentIdOf(2, kp, hod),
      version: 2,
      hashAlgorithm: 'SHA-512/256t',
      hod,
      kp,
      length: 65536,
      blockSize: 65536,
      blockHashes: [],
    } as SegmentMeta;
  });
}

async function run(batch: boolean): Promise<{ ms: number; cpuMs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-register-'));
  const store = await BlockStore.open({ dir, fsync: false, limitBytes: 2 ** 40 });
  const m = metas();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  if (batch) await store.addSegments(m);
  else for (const x of m) await store.addSegment(x);
  const c = process.cpuUsage(c0);
  const ms = performance.now() - t0;
  await store.close();
  await rm(dir, { recursive: true, force: true });
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

process.stdout.write(`registering ${N} v2 segments (64 KiB each: ${(N * 65536) / 2 ** 30} GiB of content)\n`);
for (let r = 1; r <= Number(values.rounds); r++) {
  const one = await run(false);
  const all = await run(true);
  process.stdout.write(
    `  round ${r}: one by one ${one.ms.toFixed(0)} ms (${one.cpuMs.toFixed(0)} ms CPU), addSegments ${all.ms.toFixed(0)} ms (${all.cpuMs.toFixed(0)} ms CPU): ${(one.ms / all.ms).toFixed(1)} x faster\n`,
  );
}
