/**
 * Fuzz bench: every parser and server that takes untrusted bytes, N generated/mutated cases each.
 *
 *   npm run build && node dist/testkit/fuzz/main.js [--cases N] [--seed S] [--target NAME ...] [--json]
 *
 * Defaults: 100,000 cases per target, seed 1, all targets. Prints per target: cases, accepted /
 * rejected (typed ParseError) / failures, mean, 99.9th percentile and max time per case, the
 * slowest case timed again alone (a GC pause or a busy machine vs a slow input), heap before/after. Failing
 * inputs are written to fixtures/fuzz/<target>/ (replayed by test/hostile/fuzz.test.ts).
 * Exit status 1 if any target had a failure or its heap grew by more than 64 MiB.
 */
import { allTargets } from './targets.js';
import { runTarget, type RunResult } from './run.js';

const HEAP_GROWTH_LIMIT_MIB = 64;

function parseArgs(argv: string[]): { cases: number; seed: number; targets: string[]; json: boolean } {
  const out = { cases: 100_000, seed: 1, targets: [] as string[], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--cases') out.cases = Number(val());
    else if (a === '--seed') out.seed = Number(val());
    else if (a === '--target') out.targets.push(val());
    else if (a === '--json') out.json = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isSafeInteger(out.cases) || out.cases < 1) throw new Error('--cases must be a positive integer');
  if (!Number.isSafeInteger(out.seed)) throw new Error('--seed must be an integer');
  return out;
}

function row(r: RunResult): string {
  const s = r.stats;
  return [
    r.target.padEnd(16),
    String(s.cases).padStart(8),
    String(s.accepted).padStart(8),
    String(s.rejected).padStart(8),
    String(s.failures).padStart(5),
    s.meanUs.toFixed(1).padStart(9),
    s.quantileMs(0.999).toFixed(2).padStart(9),
    s.maxMs.toFixed(2).padStart(9),
    r.slowestAloneMs.toFixed(2).padStart(9),
    `${r.heapBeforeMiB.toFixed(1)}→${r.heapAfterMiB.toFixed(1)}`.padStart(13),
    (r.wallMs / 1000).toFixed(1).padStart(7),
  ].join(' ');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const targets = allTargets().filter((t) => args.targets.length === 0 || args.targets.includes(t.name));
  if (targets.length === 0) throw new Error(`no target among ${args.targets.join(', ')}`);
  if (!args.json) {
    console.log(`fuzz: ${args.cases} cases per target, seed ${args.seed}, node ${process.version}`);
    console.log(
      'target              cases accepted rejected fails  mean µs p99.9 ms   max ms  alone ms      heap MiB  wall s',
    );
  }
  const results: RunResult[] = [];
  let bad = false;
  for (const t of targets) {
    const r = await runTarget(t, { cases: args.cases, seed: args.seed, saveCrashers: true });
    results.push(r);
    const grew = r.heapAfterMiB - r.heapBeforeMiB;
    if (r.stats.failures > 0 || grew > HEAP_GROWTH_LIMIT_MIB) bad = true;
    if (!args.json) {
      console.log(row(r));
      for (const f of r.findings)
        console.log(`  case ${f.caseNo}: ${f.error.split('\n')[0]}${f.file ? ` (kept as ${f.file})` : ''}`);
    }
  }
  if (args.json) {
    console.log(
      JSON.stringify(
        results.map((r) => ({
          target: r.target,
          cases: r.stats.cases,
          accepted: r.stats.accepted,
          rejected: r.stats.rejected,
          failures: r.stats.failures,
          meanUs: r.stats.meanUs,
          p999Ms: r.stats.quantileMs(0.999),
          maxMs: r.stats.maxMs,
          slowestCase: r.stats.slowestCase,
          slowestAloneMs: r.slowestAloneMs,
          heapBeforeMiB: r.heapBeforeMiB,
          heapAfterMiB: r.heapAfterMiB,
          wallMs: r.wallMs,
          findings: r.findings.map((f) => ({ caseNo: f.caseNo, error: f.error.split('\n')[0], file: f.file })),
        })),
        null,
        2,
      ),
    );
  }
  process.exitCode = bad ? 1 : 0;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 2;
});
