/**
 * The scale model's CPU and start-up (issue 24 item 3, testkit/scale/sim.ts `cpu`, `startupMs`):
 * a client's work on the bytes it receives and serves takes its turn on a CPU, so a crowd on one
 * shared CPU cannot finish before that CPU has done all of it; a lone client's start-up adds to
 * its time exactly; without the options the run is what it was (same decisions, same result).
 * Times are simulated, not measured.
 */
import t from 'tap';
import { type ScaleConfig, runScale } from '../../testkit/scale/sim.js';
import { machineFor, modelOf, NAMESPACE_DOWNLOADS } from '../../testkit/scale/validate.js';

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

t.test('the CPU each daemon was given adds up to its bytes, its start and nothing else', async (t) => {
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12, cores: 2, receiveStartSec: 0.25 };
  const r = runScale({ ...base, cpu });
  t.equal(r.completed, base.clients, 'every client completed');
  const sum = r.cpu!.daemonSeconds.reduce((a, b) => a + b, 0);
  const expected =
    (base.clients * base.fileBytes * cpu.receiveSecPerGiB + r.bytesBySource.peer * cpu.serveSecPerGiB) / 2 ** 30 +
    base.clients * cpu.receiveStartSec;
  t.ok(Math.abs(sum - expected) < 0.01, `daemons' CPU ${sum.toFixed(3)} s, bytes and starts ${expected.toFixed(3)} s`);
  t.equal(r.cpu!.clientSeconds, 0, 'no client program CPU unless asked for');
});

t.test("a fresh download's fixed CPU comes before its blocks are through", async (t) => {
  const alone: ScaleConfig = { ...base, clients: 1 };
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12 };
  const a = runScale({ ...alone, cpu });
  const b = runScale({ ...alone, cpu: { ...cpu, receiveStartSec: 2 } });
  const recvMs = (base.fileBytes * cpu.receiveSecPerGiB * 1000) / 2 ** 30;
  // Its own core does 2 s of start, then every block's work: it cannot finish sooner.
  t.ok(
    b.completions[0]! >= 2000 + recvMs,
    `done ${b.completions[0]} ms after arrival, start + blocks ${2000 + recvMs} ms`,
  );
  t.ok(b.completions[0]! > a.completions[0]!, `later than without (${a.completions[0]} ms)`);
});

t.test("client programs take the shared cores first: a flash crowd's starts queue on them", async (t) => {
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12, cores: 1, clientSec: 1 };
  const r = runScale({ ...base, cpu });
  t.equal(r.completed, base.clients, 'every client completed');
  t.equal(r.cpu!.clientSeconds, base.clients * cpu.clientSec, 'one client program per download');
  // One core runs six 1 s client programs one after another: the last client starts after 6 s.
  t.ok(r.simulatedMs >= base.clients * 1000, `done at ${r.simulatedMs} ms`);
  const seq = runScale({ ...base, arrival: { kind: 'sequential' }, cpu, startupMs: 300 });
  const noClient = runScale({
    ...base,
    arrival: { kind: 'sequential' },
    cpu: { ...cpu, clientSec: 0 },
    startupMs: 300,
  });
  // One after another on an idle core: each start-up is max(300 ms, 1 s of client CPU), 700 ms more.
  for (let c = 0; c < base.clients; c++)
    t.ok(
      Math.abs(seq.completions[c]! - noClient.completions[c]! - 700) < 1,
      `client ${c}: ${seq.completions[c]} ms against ${noClient.completions[c]} ms`,
    );
});

t.test("with part of the work on helper threads, the daemon's own core is through sooner", async (t) => {
  const alone: ScaleConfig = { ...base, clients: 1 };
  // CPU far slower than the WAN, no shared cores: the own core bounds the download.
  const cpu = { receiveSecPerGiB: 200, serveSecPerGiB: 12 };
  const recvMs = (base.fileBytes * cpu.receiveSecPerGiB * 1000) / 2 ** 30;
  const whole = runScale({ ...alone, cpu });
  const half = runScale({ ...alone, cpu: { ...cpu, mainShare: 0.5 } });
  t.ok(whole.completions[0]! >= recvMs, `all on the event loop: ${whole.completions[0]} ms >= ${recvMs} ms`);
  t.ok(half.completions[0]! >= recvMs / 2, `half on it: ${half.completions[0]} ms >= ${recvMs / 2} ms`);
  t.ok(half.completions[0]! < recvMs, `and sooner than all of it (${recvMs} ms)`);
  t.same(half.cpu!.daemonSeconds, whole.cpu!.daemonSeconds, 'the same CPU spent either way');
});

t.test("a fresh download's ramp: its fixed part spread over its first bytes, all of it spent", async (t) => {
  const alone: ScaleConfig = { ...base, clients: 1 };
  const cpu = {
    receiveSecPerGiB: 18,
    serveSecPerGiB: 12,
    receiveStartSec: 0.1,
    receiveRamp: { sec: 1.5, bytes: 4 * MiB },
  };
  const r = runScale({ ...alone, cpu });
  const recvMs = (base.fileBytes * cpu.receiveSecPerGiB * 1000) / 2 ** 30;
  const sum = r.cpu!.daemonSeconds[0]!;
  // (The result rounds each daemon's seconds to 1 ms.)
  t.ok(Math.abs(sum - (0.1 + 1.5 + recvMs / 1000)) <= 0.0005, `CPU ${sum} s: start, ramp and bytes`);
  t.ok(
    r.completions[0]! >= 1600 + recvMs,
    `done ${r.completions[0]} ms after arrival, the core's work ${1600 + recvMs} ms`,
  );
  // A ramp longer than the file: only the share of the bytes received is spent.
  const long = runScale({ ...alone, cpu: { ...cpu, receiveRamp: { sec: 1.5, bytes: 4 * base.fileBytes } } });
  t.ok(Math.abs(long.cpu!.daemonSeconds[0]! - (0.1 + 1.5 / 4 + recvMs / 1000)) <= 0.0005, 'a quarter of the ramp');
});

t.test(
  'the validation crowd degrades with the fixed part spread, where all of it at the first step falls off',
  async (t) => {
    // 16 x 16 MiB at 20 Mbit/s on the namespace machine (testkit/scale/validate.ts), the fixed part
    // moved: charged at the first step, 0.6 s sends the crowd to the origin several times over
    // (BENCHMARKS.md, h-model: the cliff between 0.35 and 0.4 s); spread as measured, it does not.
    const c = { clients: 16, size: 16 * MiB, wanRateBps: 20e6, wanDelayMs: 20, mode: 'flash' as const };
    for (const fixed of [0.4, 0.6]) {
      const costs = { ...NAMESPACE_DOWNLOADS, receive: { ...NAMESPACE_DOWNLOADS.receive, fixed } };
      const flat = modelOf(c, 1, machineFor({ ...costs, receiveRamp: undefined }, c)).side.originRatio;
      const ramp = modelOf(
        c,
        1,
        machineFor({ ...costs, receiveRamp: { startSec: 0.21 * fixed, rampSec: 0.79 * fixed, rampBytes: 5 * MiB } }, c),
      ).side.originRatio;
      t.ok(ramp < 1.3, `fixed ${fixed} s spread: ${ramp.toFixed(3)} copies`);
      t.ok(flat > ramp + 0.3, `all at the first step: ${flat.toFixed(3)} copies`);
    }
  },
);

t.test('a block that comes alone costs its extra; blocks that stream in share it', async (t) => {
  const alone: ScaleConfig = { ...base, clients: 1 };
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12, alone: { receiveMs: 1.5, serveMs: 0.7, windowMs: 2.4 } };
  const units = base.fileBytes / (64 * 1024);
  const bytesSec = (base.fileBytes * cpu.receiveSecPerGiB) / 2 ** 30;
  const all = (units * 1.5) / 1000;
  // 20 Mbit/s: a 64 KiB unit every 26 ms (a few origin requests share the WAN, so some finish
  // together): most units alone, none charged twice.
  const slow = runScale({ ...alone, wanBps: 20e6, cpu });
  const s = slow.cpu!.daemonSeconds[0]! - bytesSec;
  t.ok(
    s > all / 2 && s <= all + 0.0005,
    `slow WAN: ${s.toFixed(3)} s beyond the bytes, all ${units} units alone ${all} s`,
  );
  // 10 Gbit/s: units come much closer together than a commit takes; only a few pay.
  const fast = runScale({ ...alone, wanBps: 10e9, lanBps: 10e9, cpu });
  const f = fast.cpu!.daemonSeconds[0]! - bytesSec;
  t.ok(f < all / 4, `fast WAN: ${f.toFixed(4)} s beyond the bytes`);
  // Serving: a crowd's daemons pay the serving part on what they serve alone, never more.
  const crowd = runScale({ ...base, wanBps: 20e6, cpu });
  const none = runScale({ ...base, wanBps: 20e6, cpu: { receiveSecPerGiB: 18, serveSecPerGiB: 12 } });
  const extra =
    crowd.cpu!.daemonSeconds.reduce((a, b) => a + b, 0) - none.cpu!.daemonSeconds.reduce((a, b) => a + b, 0);
  const most = (base.clients * units * 1.5 + (crowd.bytesBySource.peer / (64 * 1024)) * 0.7) / 1000;
  t.ok(extra > 0 && extra <= most + 1e-6, `crowd: ${extra.toFixed(3)} s more, at most ${most.toFixed(3)} s`);
});

t.test('with the measured stream and trickle gaps, a unit pays its share of the extra by its gap', async (t) => {
  const one: ScaleConfig = { ...base, clients: 1, wanBps: 20e6 };
  const bytesOnly = { receiveSecPerGiB: 18, serveSecPerGiB: 12 };
  const extra = (gaps: { streamGapMs: number; trickleGapMs: number } | undefined) => {
    const cpu = { ...bytesOnly, alone: { receiveMs: 1.5, serveMs: 0.7, windowMs: 2.4, ...gaps } };
    return (
      runScale({ ...one, cpu }).cpu!.daemonSeconds[0]! - runScale({ ...one, cpu: bytesOnly }).cpu!.daemonSeconds[0]!
    );
  };
  const units = base.fileBytes / (64 * 1024);
  const all = (units * 1.5) / 1000;
  // 20 Mbit/s: a 64 KiB unit about every 26 ms.
  const window = extra(undefined);
  const trickle = extra({ streamGapMs: 1, trickleGapMs: 10 });
  t.ok(
    trickle > all / 2 && trickle <= window + 1e-9,
    `gaps mostly past the trickle's: most units pay all (${trickle.toFixed(4)} s; window ${window.toFixed(4)} s)`,
  );
  const stream = extra({ streamGapMs: 100, trickleGapMs: 200 });
  t.ok(stream < all / 20, `gaps within the stream's: next to nothing (${stream.toFixed(4)} s of ${all} s)`);
  const half = extra({ streamGapMs: 13, trickleGapMs: 39 });
  t.ok(
    half > window / 4 && half < (window * 3) / 4,
    `gaps half-way: a share (${half.toFixed(4)} s against ${window.toFixed(4)} s)`,
  );
});
