/**
 * The machine measurement's fit (testkit/scale/machine.ts, issue 24 item 3): a cost per download
 * as a fixed part plus a part per GiB, through the medians of each size; noise that would make a
 * part negative puts the whole cost per GiB; the ramp of the fixed part over the first bytes; a
 * crowd daemon's counts priced at the model's figures. Pure arithmetic, no I/O.
 */
import t from 'tap';
import { charge } from '../../testkit/scale/flash.js';
import { fitLine, fitRamp } from '../../testkit/scale/machine.js';

const MiB = 2 ** 20;

t.test('points on a line give back its parts; the median of each size counts', async (t) => {
  // 0.25 s + 16 s/GiB: 16 MiB -> 0.5 s, 64 MiB -> 1.25 s; one outlier per size.
  const l = fitLine([
    { size: 16 * MiB, value: 0.5 },
    { size: 16 * MiB, value: 0.5 },
    { size: 16 * MiB, value: 3 },
    { size: 64 * MiB, value: 1.25 },
    { size: 64 * MiB, value: 0.1 },
    { size: 64 * MiB, value: 1.25 },
  ]);
  t.ok(Math.abs(l.fixed - 0.25) < 1e-9, `fixed ${l.fixed}`);
  t.ok(Math.abs(l.perGiB - 16) < 1e-9, `per GiB ${l.perGiB}`);
});

t.test('a negative fixed part is noise: the cost is then all per GiB', async (t) => {
  const l = fitLine([
    { size: 16 * MiB, value: 0.1 },
    { size: 64 * MiB, value: 1 },
  ]);
  t.equal(l.fixed, 0);
  // The mean of 0.1 / (1/64) = 6.4 and 1 / (1/16) = 16.
  t.ok(Math.abs(l.perGiB - 11.2) < 1e-9, `per GiB ${l.perGiB}`);
});

t.test('one size: all per GiB', async (t) => {
  const l = fitLine([{ size: 128 * MiB, value: 2 }]);
  t.same(l, { fixed: 0, perGiB: 16 });
});

t.test('fitRamp gives back where a fresh download spends its fixed part', async (t) => {
  // 17 s/GiB, a fixed part of 0.35 s: 0.07 s before the first block, 0.28 s over the first 5 MiB.
  const line = { fixed: 0.35, perGiB: 17 };
  const cost = (size: number) => 0.07 + 0.28 * Math.min(1, size / (5 * MiB)) + (17 * size) / 2 ** 30;
  const points = [1, 2, 4, 8, 16, 64].flatMap((m) => [
    { size: m * MiB, value: cost(m * MiB) },
    { size: m * MiB, value: cost(m * MiB) },
  ]);
  const r = fitRamp(points, line);
  t.ok(Math.abs(r.startSec - 0.07) < 0.01, `before the first block ${r.startSec}`);
  t.ok(Math.abs(r.startSec + r.rampSec - 0.35) < 1e-9, 'the two parts make the fixed part');
  // The grid steps by 5%.
  t.ok(Math.abs(r.rampBytes / (5 * MiB) - 1) <= 0.05, `over ${r.rampBytes} bytes`);
  // All of it at the start: the smallest sizes cost the whole fixed part.
  const flat = fitRamp(
    [1, 4, 16, 64].map((m) => ({ size: m * MiB, value: 0.35 + (17 * m * MiB) / 2 ** 30 })),
    line,
  );
  t.ok(Math.abs(flat.startSec - 0.35) < 1e-9, `flat: ${flat.startSec} s before the first block`);
});

t.test("charge prices a crowd daemon's counts at the model's figures", async (t) => {
  const d = {
    client: 2,
    downloading: true,
    cpu: 3,
    fromPeers: 48 * MiB,
    fromOrigin: 16 * MiB,
    served: 32 * MiB,
    blocksServed: 512,
    serverRequests: 512,
    probesSent: 10,
    probesReceived: 100,
    matchesReceived: 50,
    followUpsSent: 20,
    seconds: 12,
  };
  const costs = { receive: { fixed: 0.25, perGiB: 16 }, serve: { fixed: 0, perGiB: 12 } };
  const disc = { probeSentMs: 0.2, probeHandledMs: 1, matchHandledMs: 0.5, followUpMs: 0.25 };
  const c = charge(d, costs, disc);
  // 64 MiB at 16 s/GiB = 1 s, plus the fixed part; 32 MiB served at 12 s/GiB.
  t.ok(Math.abs(c.receive - 1.25) < 1e-9, `receive ${c.receive}`);
  t.ok(Math.abs(c.serve - 0.375) < 1e-9, `serve ${c.serve}`);
  t.ok(Math.abs(c.discovery - (10 * 0.2 + 100 + 25 + 5) / 1000) < 1e-9, `discovery ${c.discovery}`);
  // The seed only serves: no receiving cost.
  t.equal(charge({ ...d, downloading: false, fromPeers: 0, fromOrigin: 0 }, costs, disc).receive, 0);
});
