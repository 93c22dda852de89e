/**
 * The Scheduler of a git revision against the one built here, on seeded scale runs where the
 * crowd decisions matter (issue 24, "origin copies grow with the crowd"): origin copies per
 * subnet, p99 completion / plain download and CPU seconds of each side, beside each other. The
 * small crowds (8-32 clients) are there to show a change adds no origin copies where the engine
 * already did well; the crowds of 100 and more per subnet are where copies grew with the crowd.
 * Unlike bench/scheduler-ab.ts the decisions are expected to differ.
 *   npm run build && node dist/bench/scale-decisions.js [--rev main] [--only <scenario substring>]
 * Each run is a child process of its own (the simulator of this build, the Scheduler of `--rev`
 * transpiled into a copy of dist/ on the old side). Run it with `nice -n 10` on a shared machine.
 */
import { execFileSync } from 'node:child_process';
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
const base = { wanBps: 100e6, lanBps: 1e9, arrival: flash, seed: 1, hostedCaches: 0 };
const scenarios: Record<string, object> = {};
for (const clients of [8, 16, 32])
  for (const [label, fileBytes] of [
    ['64 MiB', 64 * MiB],
    ['1 GiB', 1024 * MiB],
  ] as const)
    scenarios[`${clients} clients x ${label}, 1 subnet`] = { ...base, fileBytes, clients, subnets: 1, view: clients };
scenarios['16 clients x 1 GiB, 1 subnet, seed 2'] = {
  ...base,
  fileBytes: 1024 * MiB,
  clients: 16,
  subnets: 1,
  seed: 2,
};
scenarios['50 clients x 64 MiB, 1 subnet'] = { ...base, fileBytes: 64 * MiB, clients: 50, subnets: 1, view: 50 };
scenarios['100 clients x 64 MiB, 1 subnet'] = { ...base, fileBytes: 64 * MiB, clients: 100, subnets: 1, view: 100 };
scenarios['100 clients x 1 GiB, 1 subnet'] = { ...base, fileBytes: 1024 * MiB, clients: 100, subnets: 1, view: 100 };
scenarios['100 clients x 1 GiB, spread over 10 min'] = {
  ...base,
  fileBytes: 1024 * MiB,
  clients: 100,
  subnets: 1,
  view: 100,
  arrival: { kind: 'spread', overMs: 600_000 },
};
scenarios['200 clients x 1 GiB, 1 subnet'] = { ...base, fileBytes: 1024 * MiB, clients: 200, subnets: 1, view: 200 };

// Child mode: run one scenario with the dist/ this file belongs to and print its figures.
if (process.argv[2] === '--child') {
  const { measureScale } = await import(join(dist, 'testkit/scale/sim.js'));
  const run = measureScale(JSON.parse(process.argv[3]!));
  const r = run.result;
  process.stdout.write(
    `${JSON.stringify({
      copies: r.originCopies,
      perSubnetMax: Math.max(...r.originCopiesPerSubnet),
      p99: r.vsPlain.p99,
      max: r.vsPlain.max,
      completed: r.completed,
      cpuS: run.cpuMs / 1000,
    })}\n`,
  );
  process.exit(0);
}

const { values } = benchArgs(import.meta.url, {
  options: { rev: { type: 'string', default: 'main' }, only: { type: 'string' } },
});
const rev = values.rev!;
const source = execFileSync('git', ['show', `${rev}:src/engine/scheduler.ts`], { cwd: repo, encoding: 'utf8' });
const old = mkdtempSync(join(tmpdir(), 'scale-decisions-'));
try {
  cpSync(dist, join(old, 'dist'), { recursive: true });
  symlinkSync(join(repo, 'node_modules'), join(old, 'node_modules'));
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.NodeNext, target: ts.ScriptTarget.ES2022 },
    fileName: 'scheduler.ts',
  }).outputText;
  writeFileSync(join(old, 'dist/src/engine/scheduler.js'), js);
  console.log(`Scheduler of ${rev} (old) -> this build (new); WAN 100 Mbit/s + 20 ms, LAN 1 Gbit/s, flash unless said`);
  console.log('| run | origin copies (max per subnet) | p99 / plain | CPU s |');
  console.log('|---|---|---|---|');
  for (const [name, cfg] of Object.entries(scenarios)) {
    if (values.only && !name.includes(values.only)) continue;
    const side = (root: string) =>
      JSON.parse(
        execFileSync(process.execPath, [join(root, 'bench/scale-decisions.js'), '--child', JSON.stringify(cfg)], {
          encoding: 'utf8',
        }),
      );
    const a = side(join(old, 'dist'));
    const b = side(dist);
    const done = a.completed === b.completed ? '' : ` (completed ${a.completed} -> ${b.completed})`;
    console.log(
      `| ${name} | ${a.perSubnetMax} -> ${b.perSubnetMax} | ${a.p99} -> ${b.p99} | ${a.cpuS} -> ${b.cpuS} |${done}`,
    );
  }
} finally {
  rmSync(old, { recursive: true, force: true });
}
