/**
 * Issue 24 item 3: the scale model (testkit/scale/sim.ts) against the namespace simulation (real
 * daemons in network namespaces; the model on the namespace machine, with daemon discovery and peer
 * timeouts) on the same case, 8 clients one after another: the origin ratio
 * (bytes the origin's own counters say it sent, over the file size) must agree within 15% (it
 * counts bytes and holds by design). The time ratio is printed, not asserted: on the namespace side
 * it depends on how much CPU the shared machine leaves the daemons. The flash crowd is compared by
 * `node dist/bench/scale-validate.js` (BENCHMARKS.md, "Scale simulation", has the runs and which
 * are NOT within 15%), not here: its namespace side asserted no more than test/sim/scenarios does
 * and cost about 30 s of the suite's 15 minutes. Asserting the flash crowd and the time ratios here
 * (tried on h-model, 2026-12-07) fails on every run so far, quiet or busy: that is item 3 NOT met,
 * which BENCHMARKS.md states, not a test to keep failing in the suite.
 * Skips unless root with iproute2, like the other namespace tests.
 */
import t from 'tap';
import { netnsSupport } from '../../testkit/sim/netns.js';
import { formatValidation, validate } from '../../testkit/scale/validate.js';

const MiB = 2 ** 20;
const support = await netnsSupport();

if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  const base = { clients: 8, size: 8 * MiB, wanRateBps: 20e6, wanDelayMs: 20 };
  t.test('8 clients x 8 MiB over 20 Mbit/s + 20 ms, sequential: origin ratios within 15%', async (t) => {
    const v = await validate({ ...base, mode: 'sequential' });
    t.comment(formatValidation(v));
    t.ok(v.namespace.allCorrect, 'every namespace client got the file intact');
    t.ok(v.namespace.originRatio >= 0.999 && v.model.originRatio >= 0.999, 'each side sent at least one copy');
    t.ok(
      Math.abs(v.originDiff) <= 0.15,
      `origin ratio: model ${v.model.originRatio.toFixed(3)} vs namespace ${v.namespace.originRatio.toFixed(3)} (${(100 * v.originDiff).toFixed(1)}%)`,
    );
  });
}
