/**
 * The machine measurement's fit (testkit/scale/machine.ts, issue 24 item 3): a cost per download
 * as a fixed part plus a part per GiB, through the medians of each size; noise that would make a
 * part negative puts the whole cost per GiB. Pure arithmetic, no I/O.
 */
import t from 'tap';
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
