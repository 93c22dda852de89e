/** The scale simulation's event queue (issue 24): time order, insertion order on ties, growth. */
import t from 'tap';
import { EventQueue } from '../../testkit/scale/queue.js';
import { rng } from '../helpers/rng.js';

t.test('pops in time order, ties in insertion order, through growth', async (t) => {
  const q = new EventQueue(2);
  const r = rng(5);
  const pushed: Array<{ time: number; id: number }> = [];
  for (let id = 0; id < 5000; id++) {
    const time = Math.floor(r() * 100); // many ties
    pushed.push({ time, id });
    q.push(time, id % 7, id, id * 0.5);
  }
  t.equal(q.size, 5000);
  const expected = [...pushed].sort((a, b) => a.time - b.time || a.id - b.id);
  const got: Array<{ time: number; id: number }> = [];
  let kindsOk = true;
  while (q.pop()) {
    got.push({ time: q.t, id: q.x });
    if (q.k !== q.x % 7 || q.y !== q.x * 0.5) kindsOk = false;
  }
  t.same(got, expected, 'every event once, by time then by push order');
  t.ok(kindsOk, 'kind and payload travel with their event');
  t.equal(q.size, 0);
  t.equal(q.pop(), false, 'empty');
  t.equal(q.peekTime(), Infinity);
});

t.test('interleaved pushes and pops (a simulation pushes while it runs)', async (t) => {
  const q = new EventQueue();
  const r = rng(9);
  let now = 0;
  let order = 0;
  q.push(0, 1, order++);
  let popped = 0;
  let monotone = true;
  while (q.pop() && popped < 20000) {
    if (q.t < now) monotone = false;
    now = q.t;
    popped++;
    const more = r() < 0.5 ? 2 : r() < 0.5 ? 1 : 0;
    for (let k = 0; k < more && order < 20000; k++) q.push(now + Math.floor(r() * 10), 1, order++);
  }
  t.ok(monotone, 'time never goes back');
  t.equal(popped, order, 'every pushed event came out');
});

t.test('refuses times that would corrupt the order', async (t) => {
  const q = new EventQueue();
  t.throws(() => q.push(Number.NaN, 1), RangeError);
  t.throws(() => q.push(Infinity, 1), RangeError);
  t.throws(() => q.push(-1, 1), RangeError);
});
