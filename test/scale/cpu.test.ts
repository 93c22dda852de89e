/**
 * The scale model's CPU and start-up (issue 24 item 3, testkit/scale/sim.ts `cpu`, `startupMs`):
 * a client's work on the bytes it receives and serves takes its turn on a CPU, so a crowd on one
 * shared CPU cannot finish before that CPU has done all of it; a lone client's start-up adds to
 * its time exactly; without the options the run is what it was (same decisions, same result).
 * Times are simulated, not measured.
 */
import t from 'tap';
import { type ScaleConfig, runScale } from '../../testkit/scale/sim.js';

const MiB = 2 ** 20;
const base: ScaleConfig = {
  clients: 6,
  subnets: 1,
  hostedCaches: 0,
  fileBytes: 16 * MiB,
  wanBps: 200e6,
  lanBps: 1e9,
  arrival: { kind: 'flash', jitterMs: 100 },
  seed: 3,
};

t.test('a crowd on one shared core finishes no sooner than the core can do its work', async (t) => {
  const plain = runScale(base);
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12, cores: 1 };
  const r = runScale({ ...base, cpu });
  t.equal(r.completed, base.clients, 'every client completed');
  // Every client receives the whole file; peers serve what did not come from the origin.
  const received = base.clients * base.fileBytes;
  const served = r.bytesBySource.peer;
  const workMs = ((received * cpu.receiveSecPerGiB + served * cpu.serveSecPerGiB) * 1000) / 2 ** 30;
  t.ok(r.simulatedMs >= workMs, `done at ${r.simulatedMs} ms, the core's work ${workMs.toFixed(0)} ms`);
  t.ok(
    r.simulatedMs > plain.simulatedMs,
    `slower than without a CPU model (${r.simulatedMs} ms against ${plain.simulatedMs} ms)`,
  );
  // A core per client does the same work side by side: sooner than one core for all.
  const own = runScale({ ...base, cpu: { receiveSecPerGiB: 18, serveSecPerGiB: 12 } });
  t.ok(own.simulatedMs < r.simulatedMs, `a core each: ${own.simulatedMs} ms, one shared: ${r.simulatedMs} ms`);
});

t.test("a lone client's start-up adds to its time, and the options absent change nothing", async (t) => {
  const alone: ScaleConfig = { ...base, clients: 1 };
  const a = runScale(alone);
  const b = runScale({ ...alone, startupMs: 800 });
  const later = b.completions[0]! - a.completions[0]!;
  // (Up to rounding: every simulated time is 800 ms later.)
  t.ok(Math.abs(later - 800) < 1e-6, `completion ${later} ms later, counted from its arrival`);
  const again = runScale({ ...base, startupMs: 0 });
  const first = runScale(base);
  t.equal(again.decisionHash, first.decisionHash, 'start-up 0: the same decisions');
  t.same(again.completions, first.completions, 'start-up 0: the same completions');
});
