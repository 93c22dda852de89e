/**
 * Bounded fuzz run for CI (the 100,000-case run is testkit/fuzz/main.ts): every target gets a few thousand
 * seeded cases plus a replay of its kept crashers (fixtures/fuzz/<target>/). Each case must end in
 * a parse or a typed ParseError rejection, within HANG_MS, with bounded heap growth.
 */
import t from 'tap';
import { allTargets } from '../../testkit/fuzz/targets.js';
import { HANG_MS, loadCrashers, runTarget } from '../../testkit/fuzz/run.js';

const CASES: Record<string, number> = { 'pccrr-server': 600, 'pccrr-framing': 300 };
const DEFAULT_CASES = 2500;
const SEED = Number(process.env.PEERDIST_FUZZ_SEED ?? 20261125);

for (const target of allTargets()) {
  t.test(`fuzz ${target.name}`, async (t) => {
    const crashers = loadCrashers(target.name);
    await target.setup?.();
    try {
      for (const c of crashers) {
        let outcome: string;
        try {
          outcome = await target.run(c.input);
        } catch (e) {
          outcome = `failure: ${(e as Error).message}`;
        }
        t.match(outcome, /^(accepted|rejected)$/, `kept crasher ${c.file} replays cleanly`);
      }
    } finally {
      await target.teardown?.();
    }
    const cases = CASES[target.name] ?? DEFAULT_CASES;
    const r = await runTarget(target, { cases, seed: SEED });
    t.equal(r.stats.cases, cases);
    t.same(
      r.findings.map((f) => `case ${f.caseNo}: ${f.error.split('\n')[0]}`),
      [],
      `no crash, untyped rejection or hang (seed ${SEED})`,
    );
    t.ok(
      r.stats.accepted > 0 && r.stats.rejected > 0,
      `mutations reach both outcomes (${r.stats.accepted} accepted, ${r.stats.rejected} rejected)`,
    );
    t.ok(r.stats.maxMs < HANG_MS, `max time per case ${r.stats.maxMs.toFixed(1)} ms`);
    t.ok(
      r.heapAfterMiB - r.heapBeforeMiB < 32,
      `heap ${r.heapBeforeMiB.toFixed(1)} → ${r.heapAfterMiB.toFixed(1)} MiB`,
    );
  });
}
