/**
 * The machine measurement's fit (testkit/scale/machine.ts, issue 24 item 3): a cost per download
 * as a fixed part plus a part per GiB, through the medians of each size; noise that would make a
 * part negative puts the whole cost per GiB. Pure arithmetic, no I/O.
 */
import t from 'tap';
import { fitLine } from '../../testkit/scale/machine.js';

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
