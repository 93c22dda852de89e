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

t.test(
  'bounded: only the first 64 IDs of a request count, 4096 segments not held, 32 askers per segment',
  async (t) => {
    const c = new CrowdTracker();
    const ids = Array.from({ length: 100 }, (_, k) => Buffer.from(k.toString(16).padStart(64, '0'), 'hex'));
    c.asked('10.0.1.11', ids, 0);
    t.equal(c.size, 64);
    t.same(c.asked('10.0.2.11', [ids[80]!], 1), [], 'the 81st ID of a request was not recorded');
    for (let k = 0; k < 5000; k++)
      c.asked(`10.3.${k >> 8}.${k & 255}`, [Buffer.from(k.toString(16).padStart(64, 'f'), 'hex')], 2);
    t.equal(c.size, 4096);
    t.same(c.asked('10.0.4.4', [ids[0]!], 3), [], 'the least recently named segments were forgotten');
    for (let k = 0; k < 40; k++) c.asked(`10.1.0.${k}`, [id(9)], 10 + k);
    const seen = c.asked('10.2.0.1', [id(9)], 100);
    t.equal(seen.length, 32);
    t.equal(seen[0], '10.1.0.39');
    t.notOk(seen.includes('10.1.0.7'), 'the oldest askers of a segment were dropped');
  },
);

// Issue 27.6: the PeerDist-Crowd table can be neither wiped nor packed by one host.
const held = new Set([id(1).toString('hex')]);
const randomId = () => Buffer.from(Array.from({ length: 32 }, () => Math.floor(Math.random() * 256)));

t.test('27.6: 65 GETSEGLISTs of random IDs from one host do not wipe the crowds', async (t) => {
  const c = new CrowdTracker({ known: (s) => held.has(s.toString('hex')) });
  // Two clients downloading the same content: a segment the hosted cache holds (1) and one it does not (2).
  c.asked('10.0.1.11', [id(1), id(2)], 0);
  c.asked('10.0.2.11', [id(1), id(2)], 1);
  for (let k = 0; k < 65; k++)
    c.asked(
      '10.9.9.9',
      Array.from({ length: 64 }, () => randomId()),
      2 + k,
    );
  t.same(c.asked('10.0.3.11', [id(1)], 100), ['10.0.2.11', '10.0.1.11'], 'a held segment keeps its crowd');
  t.same(c.asked('10.0.4.11', [id(2)], 101), ['10.0.2.11', '10.0.1.11'], 'so does a segment not held yet');
  t.ok(c.size <= 2 + 256, `${c.size} segments recorded: one host adds at most 256 per window`);
});

t.test('27.6: one host cannot replace a crowd: one asker per /64, members that fetched blocks kept', async (t) => {
  const c = new CrowdTracker({ known: (s) => held.has(s.toString('hex')) });
  c.asked('fd00:1::11', [id(1)], 0);
  c.asked('fd00:2::11', [id(1)], 1);
  // 32 addresses of one /64 (a host on IPv6 owns all of them).
  for (let k = 1; k <= 32; k++) c.asked(`fd00:9:9:9::${k.toString(16)}`, [id(1)], 1 + k);
  const seen = c.asked('fd00:3::11', [id(1)], 50);
  t.same(seen, ['fd00:9:9:9::20', 'fd00:2::11', 'fd00:1::11'], 'the /64 counts once (its latest address)');

  // IPv4: 40 distinct addresses that only list the segment do not push out the members that fetched it.
  const d = new CrowdTracker({ known: (s) => held.has(s.toString('hex')) });
  d.asked('10.0.1.11', [id(1)], 0, { fetched: true });
  d.asked('10.0.2.11', [id(1)], 1, { fetched: true });
  for (let k = 0; k < 40; k++) d.asked(`10.9.0.${k}`, [id(1)], 2 + k);
  const crowd = d.asked('10.0.3.11', [id(1)], 60);
  t.equal(crowd.length, 32);
  t.same(crowd.slice(0, 2), ['10.0.2.11', '10.0.1.11'], 'members that fetched blocks come first and stay');
});

t.test('client keys: an IPv4 address, or the /64 of an IPv6 address', async (t) => {
  const { clientKey, clientKeyOfPeer } = await import('../../src/hostedcache/client-key.js');
  t.equal(clientKey('10.1.2.3'), '10.1.2.3');
  t.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3', 'IPv4-mapped');
  t.equal(clientKey('fd00:1:2:3:4:5:6:7'), 'fd00:1:2:3::/64');
  t.equal(clientKey('FD00:1:2:3::99%eth0'), 'fd00:1:2:3::/64', 'case and zone ignored');
  t.equal(clientKey('fd00::1'), 'fd00:0:0:0::/64');
  t.equal(clientKey('::1'), '0:0:0:0::/64');
  t.equal(clientKey('64:ff9b::10.0.0.1'), '64:ff9b:0:0::/64', 'embedded IPv4 tail');
  t.equal(clientKeyOfPeer('[fd00:1:2:3::10]:80'), 'fd00:1:2:3::/64');
  t.equal(clientKeyOfPeer('10.0.0.1:8080'), '10.0.0.1');
});
