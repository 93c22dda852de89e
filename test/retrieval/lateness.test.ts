/** The retrieval client's own-lateness window and stretched idle limits (src/retrieval/lateness.ts). */
import t from 'tap';
import { IDLE_LAG_FACTOR, RecentLateness, stretchedIdleMs } from '../../src/retrieval/lateness.js';

t.test('RecentLateness: the largest lateness of the timers that ran within the window', async (t) => {
  const w = new RecentLateness(3000);
  t.equal(w.max(0), 0, 'nothing recorded');
  w.record(1000, 120);
  w.record(1250, 40);
  w.record(1500, 80);
  t.equal(w.max(1500), 120, 'the largest of three');
  t.equal(w.max(3999), 120, 'still within 3 s of the 120 ms one');
  t.equal(w.max(4000), 80, 'the 120 ms one left the window, the 80 ms one (not the 40) is next');
  t.equal(w.max(4500), 0, 'all left the window');
  w.record(5000, -30);
  w.record(5001, Number.NaN);
  t.equal(w.max(5001), 0, 'early or unknown counts as on time');
});

t.test('RecentLateness: bounded memory over a long run', async (t) => {
  const w = new RecentLateness(1000);
  let max = 0;
  for (let i = 0; i < 100_000; i++) {
    const late = (i * 7919) % 301;
    w.record(i * 25, late);
    if (i >= 40) {
      // The brute-force maximum over the last 1000 ms (40 records at 25 ms).
      max = 0;
      for (let j = i - 39; j <= i; j++) max = Math.max(max, (j * 7919) % 301);
      if (w.max(i * 25) !== max) {
        t.fail(`at record ${i}: ${w.max(i * 25)} != ${max}`);
        return;
      }
    }
  }
  t.pass('matches the brute-force window maximum at every one of 100,000 records');
  t.ok((w as unknown as { at: number[] }).at.length <= 80, 'at most twice a window of records kept');
});

t.test('stretchedIdleMs: base + 8 x lateness, at most twice the base', async (t) => {
  t.equal(IDLE_LAG_FACTOR, 8);
  t.equal(stretchedIdleMs(2000, 0), 2000, 'timers on time: the limit itself');
  t.equal(stretchedIdleMs(2000, 5), 2040, 'a quiet machine: a few ms');
  t.equal(stretchedIdleMs(2000, 100), 2800);
  t.equal(stretchedIdleMs(2000, 250), 4000);
  t.equal(stretchedIdleMs(2000, 60_000), 4000, 'a stall of a minute: still at most twice');
  t.equal(stretchedIdleMs(2000, -50), 2000, 'early timers do not shorten it');
});
