import t from 'tap';
import { CROWD_WINDOW_MS, CrowdTracker } from '../../src/hostedcache/crowd.js';

const id = (k: number) => Buffer.alloc(32, k);

t.test('clients asking for the same segments see each other, most recent first, never themselves', async (t) => {
  const c = new CrowdTracker();
  t.same(c.asked('10.0.1.11', [id(1), id(2)], 0), [], 'the first asker is alone');
  t.same(c.asked('10.0.2.11', [id(2), id(3)], 10), ['10.0.1.11'], 'an overlap on one segment is enough');
  t.same(c.asked('10.0.3.11', [id(3)], 20), ['10.0.2.11']);
  t.same(c.asked('10.0.1.11', [id(1), id(2), id(3)], 30), ['10.0.3.11', '10.0.2.11']);
  t.same(c.asked('10.0.9.9', [id(7)], 40), [], 'other content: nobody');
});

t.test('askers older than the window are forgotten', async (t) => {
  const c = new CrowdTracker();
  c.asked('10.0.1.11', [id(1)], 0);
  t.same(c.asked('10.0.2.11', [id(1)], CROWD_WINDOW_MS), ['10.0.1.11'], 'at the edge of the window');
  t.same(c.asked('10.0.3.11', [id(1)], CROWD_WINDOW_MS + 1), ['10.0.2.11'], 'one past it');
});

t.test('bounded: only the first 64 IDs of a request count, 4096 segments, 32 askers per segment', async (t) => {
  const c = new CrowdTracker();
  const ids = Array.from({ length: 100 }, (_, k) => Buffer.from(k.toString(16).padStart(64, '0'), 'hex'));
  c.asked('10.0.1.11', ids, 0);
  t.equal(c.size, 64);
  t.same(c.asked('10.0.2.11', [ids[80]!], 1), [], 'the 81st ID of a request was not recorded');
  for (let k = 0; k < 5000; k++) c.asked('10.0.3.3', [Buffer.from(k.toString(16).padStart(64, 'f'), 'hex')], 2);
  t.equal(c.size, 4096);
  t.same(c.asked('10.0.4.4', [ids[0]!], 3), [], 'the least recently named segments were forgotten');
  for (let k = 0; k < 40; k++) c.asked(`10.1.0.${k}`, [id(9)], 10 + k);
  const seen = c.asked('10.2.0.1', [id(9)], 100);
  t.equal(seen.length, 32);
  t.equal(seen[0], '10.1.0.39');
  t.notOk(seen.includes('10.1.0.7'), 'the oldest askers of a segment were dropped');
});
