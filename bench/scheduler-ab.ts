/**
 * The Scheduler of a git revision against the one built here, on the same seeded scale runs
 * (testkit/scale/sim.ts): the decision hashes (every assignment of every client, in order) and
 * the results must be identical when a change means to keep the decisions (issue 24: incremental
 * indexes in src/engine/scheduler.ts); the CPU seconds, events per CPU second and peak RSS of each
 * side are printed beside each other.
 *   npm run build && node dist/bench/scheduler-ab.js [--rev main] [--only <scenario substring>]
 * The old side: src/engine/scheduler.ts of `--rev`, transpiled, in a copy of dist/ under the
 * temporary directory; each run is a child process of its own (its own CPU and RSS figures).
 * Exit status 1 when any decision hash or result differs.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const dist = resolve(here, '..');
const repo = resolve(dist, '..');
const MiB = 2 ** 20;
const flash = { kind: 'flash', jitterMs: 1000 };
const base = { fileBytes: 64 * MiB, wanBps: 100e6, lanBps: 1e9, arrival: flash, seed: 1 };
const scenarios: Record<string, object> = {
  '40 clients, 2 subnets, flash': { ...base, clients: 40, subnets: 2, hostedCaches: 0 },
  '16 clients, hosted cache': { ...base, clients: 16, subnets: 1, hostedCaches: 'per-subnet' },
  '100 clients, 1 subnet, view 32': { ...base, clients: 100, subnets: 1, hostedCaches: 0 },
  '100 clients, spread 10 min': {
    ...base,
    clients: 100,
    subnets: 1,
    hostedCaches: 0,
    arrival: { kind: 'spread', overMs: 600_000 },
  },
  '200 clients, 10 subnets, hosted caches': { ...base, clients: 200, subnets: 10, hostedCaches: 'per-subnet' },
  '16 clients x 1 GiB, seed 2': { ...base, fileBytes: 1024 * MiB, clients: 16, subnets: 1, hostedCaches: 0, seed: 2 },
  // The shape of issue 24's 10,000-client run, one subnet of it: whole-subnet views, crowd ownership.
  '100 clients x 1 GiB, view 100': {
    ...base,
    fileBytes: 1024 * MiB,
    clients: 100,
    subnets: 1,
    hostedCaches: 0,
    view: 100,
  },
  '200 clients x 1 GiB, hosted cache naming the crowd, view 200': {
    ...base,
    fileBytes: 1024 * MiB,
    clients: 200,
    subnets: 1,
    hostedCaches: 'per-subnet',
    cachesNameCrowd: true,
    view: 200,
  },
};

// Child mode: run one scenario with the dist/ this file belongs to and print its figures.
if (process.argv[2] === '--child') {
  const { measureScale } = await import(join(dist, 'testkit/scale/sim.js'));
  const run = measureScale(JSON.parse(process.argv[3]!));
  const digest = createHash('sha256').update(JSON.stringify(run.result)).digest('hex').slice(0, 16);
  process.stdout.write(
    `${JSON.stringify({
      decisionHash: run.result.decisionHash,
      digest,
      events: run.result.events,
      cpuS: run.cpuMs / 1000,
      rssMiB: Math.round(run.peakRssBytes / MiB),
    })}\n`,
  );
  process.exit(0);
}

const { values } = benchArgs(import.meta.url, {
  options: { rev: { type: 'string', default: 'main' }, only: { type: 'string' } },
});
const rev = values.rev!;
const source = execFileSync('git', ['show', `${rev}:src/engine/scheduler.ts`], { cwd: repo, encoding: 'utf8' });
const old = mkdtempSync(join(tmpdir(), 'scheduler-ab-'));
try {
  cpSync(dist, join(old, 'dist'), { recursive: true });
  symlinkSync(join(repo, 'node_modules'), join(old, 'node_modules'));
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.NodeNext, target: ts.ScriptTarget.ES2022 },
    fileName: 'scheduler.ts',
  }).outputText;
  writeFileSync(join(old, 'dist/src/engine/scheduler.js'), js);
  let differ = 0;
  console.log(`Scheduler of ${rev} (old) against this build (new), same seeded scale runs`);
  for (const [name, cfg] of Object.entries(scenarios)) {
    if (values.only && !name.includes(values.only)) continue;
    const side = (root: string) =>
      JSON.parse(
        execFileSync(process.execPath, [join(root, 'bench/scheduler-ab.js'), '--child', JSON.stringify(cfg)], {
          encoding: 'utf8',
        }),
      );
    const a = side(join(old, 'dist'));
    const b = side(dist);
    const same = a.decisionHash === b.decisionHash && a.digest === b.digest;
    if (!same) differ++;
    const rate = (r: { events: number; cpuS: number }) => Math.round(r.events / Math.max(r.cpuS, 1e-3));
    console.log(
      `${name}: ${same ? 'same decisions' : 'DIFFERENT'} (hash ${a.decisionHash.toString(16)} / ${b.decisionHash.toString(16)}), ` +
        `${b.events} events; CPU s ${a.cpuS} -> ${b.cpuS} (${(a.cpuS / Math.max(b.cpuS, 1e-3)).toFixed(1)} x), ` +
        `events per CPU s ${rate(a)} -> ${rate(b)}, peak RSS ${a.rssMiB} -> ${b.rssMiB} MiB`,
    );
  }
  process.exitCode = differ > 0 ? 1 : 0;
} finally {
  rmSync(old, { recursive: true, force: true });
}
