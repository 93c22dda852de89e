/**
 * Hashing throughput: `sha256sum` versus peerdist content information generation on the same file.
 *   npm run build && node dist/bench/hash.js [--size MiB] [--runs N]
 * Generates a pseudo-random file in os.tmpdir() (deleted afterwards), then times, best of N runs:
 * sha256sum, peerdist v1, v2 with content-defined chunking, v2 with fixed 64 KiB segments.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashFile } from '../src/origin/hash-file.js';
import type { HashOptions } from '../src/protocol/pccrc/hash.js';
import { writePseudoRandomFile } from './contentinfo-data.js';
import { exitOnHelp } from './args.js';

exitOnHelp(import.meta.url, { size: { type: 'string', default: '512' }, runs: { type: 'string', default: '2' } });

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

async function best(runs: number, fn: () => Promise<void> | void): Promise<number> {
  let min = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return min;
}

async function main(): Promise<void> {
  const sizeMiB = arg('--size', 512);
  const runs = arg('--runs', 2);
  const bytes = Math.round(sizeMiB * 1024 * 1024);
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-bench-hash-'));
  try {
    const file = join(dir, 'content.bin');
    await writePseudoRandomFile(file, bytes, 'bench hash');
    console.log(
      `file: ${sizeMiB} MiB pseudo-random in ${dir}; ${cpus().length} CPUs, ${cpus()[0]?.model ?? '?'}; node ${process.version}; best of ${runs}`,
    );
    const rows: Array<[string, number]> = [];
    const sha = await best(runs, () => {
      const r = spawnSync('sha256sum', [file], { stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error('sha256sum failed');
    });
    rows.push(['sha256sum', sha]);
    const secret = Buffer.from('bench secret');
    const cases: Array<[string, HashOptions]> = [
      ['peerdist v1', { secret, version: 1 }],
      ['peerdist v2 cdc', { secret, version: 2, chunking: 'cdc' }],
      ['peerdist v2 fixed', { secret, version: 2, chunking: 'fixed' }],
    ];
    for (const [name, opts] of cases)
      rows.push([
        name,
        await best(runs, async () => {
          await hashFile(file, opts);
        }),
      ]);
    const mbps = (s: number) => bytes / 1e6 / s;
    console.log('| tool | seconds | MB/s | ratio to sha256sum |');
    console.log('|---|---:|---:|---:|');
    for (const [name, s] of rows)
      console.log(`| ${name} | ${s.toFixed(3)} | ${mbps(s).toFixed(0)} | ${(mbps(s) / mbps(sha)).toFixed(2)} |`);
    console.log(`peak RSS of this process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
