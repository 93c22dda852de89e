/**
 * Fuzz runner: drives one target for N cases from a seed, times every case, watches the heap, and
 * keeps every failing input as a crasher (fixtures/fuzz/<target>/<sha1>.bin). Shared by the bench
 * (testkit/fuzz/main.ts) and the CI test (test/hostile/fuzz.test.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { caseSeed, FuzzStats, Rng } from './lib.js';
import type { FuzzTarget } from './targets.js';

/** A case slower than this counts as a hang. */
export const HANG_MS = 1000;

export interface Finding {
  caseNo: number;
  error: string;
  input: Buffer;
  file?: string;
}

export interface RunResult {
  target: string;
  stats: FuzzStats;
  findings: Finding[];
  heapBeforeMiB: number;
  heapAfterMiB: number;
  wallMs: number;
  /** The slowest case run again on its own (best of 3), in ms: tells a slow input from a GC pause. */
  slowestAloneMs: number;
}

export const crasherDir = (target: string) => join(process.cwd(), 'fixtures', 'fuzz', target);

let gcFn: (() => void) | undefined;
/** A full GC (exposed at runtime, so `node dist/testkit/fuzz/main.js` needs no flag). */
export function fullGc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

const heapMiB = () => process.memoryUsage().heapUsed / (1024 * 1024);

/** Runs `cases` cases of `target` starting at case `first` (cases are independent given the seed). */
export async function runTarget(
  target: FuzzTarget,
  opts: { cases: number; seed: number; first?: number; saveCrashers?: boolean; maxFindings?: number },
): Promise<RunResult> {
  const stats = new FuzzStats();
  const findings: Finding[] = [];
  await target.setup?.();
  fullGc();
  const heapBefore = heapMiB();
  const t0 = Date.now();
  let slowest: Buffer | undefined;
  let slowestAloneMs = 0;
  try {
    const first = opts.first ?? 0;
    for (let n = first; n < first + opts.cases; n++) {
      const input = target.generate(new Rng(caseSeed(opts.seed, n)));
      const start = process.hrtime.bigint();
      let error: string | undefined;
      let outcome: 'accepted' | 'rejected' = 'rejected';
      try {
        const r = target.run(input);
        outcome = r instanceof Promise ? await r : r;
      } catch (e) {
        error = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
      }
      const ns = process.hrtime.bigint() - start;
      if (!error && Number(ns) / 1e6 > HANG_MS) error = `hang: case took ${(Number(ns) / 1e6).toFixed(0)} ms`;
      if (ns > stats.maxNs) slowest = input;
      stats.record(n, ns, error ? 'failure' : outcome);
      if (error && findings.length < (opts.maxFindings ?? 20)) {
        const f: Finding = { caseNo: n, error, input };
        if (opts.saveCrashers) f.file = saveCrasher(target.name, input);
        findings.push(f);
      }
    }
    if (slowest) slowestAloneMs = await bestOf3(target, slowest);
  } finally {
    await target.teardown?.();
  }
  const wallMs = Date.now() - t0;
  fullGc();
  return {
    target: target.name,
    stats,
    findings,
    heapBeforeMiB: heapBefore,
    heapAfterMiB: heapMiB(),
    wallMs,
    slowestAloneMs,
  };
}

async function bestOf3(target: FuzzTarget, input: Buffer): Promise<number> {
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const start = process.hrtime.bigint();
    try {
      await target.run(input);
    } catch {
      /* already reported */
    }
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
  }
  return best;
}

export function saveCrasher(target: string, input: Buffer): string {
  const dir = crasherDir(target);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${createHash('sha1').update(input).digest('hex')}.bin`);
  writeFileSync(file, input);
  return file;
}

/** The kept crashers of a target (empty when none were ever found). */
export function loadCrashers(target: string): Array<{ file: string; input: Buffer }> {
  const dir = crasherDir(target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .sort()
    .map((f) => ({ file: join(dir, f), input: readFileSync(join(dir, f)) }));
}
