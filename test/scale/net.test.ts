/**
 * The scale simulation's link model (issue 24): a flow takes its latency and then bytes / its fair
 * share; flows share a link by count; an ending flow speeds up the others; a reused flow id is not
 * finished by a stale event of the flow that had it before.
 */
import t from 'tap';
import { Network } from '../../testkit/scale/net.js';
import { EventQueue } from '../../testkit/scale/queue.js';

const BEGIN = 1,
  FINISH = 2;

/** Runs the queue to the end; returns each tag's finish time and the bytes reported moved. */
function drain(q: EventQueue, net: Network<string>, moved: Map<string, number>) {
  const done = new Map<string, number>();
  while (q.pop()) {
    if (q.k === BEGIN) net.begin(q.x, q.t);
    else {
      const r = net.finish(q.x, q.y, q.t);
      if (r) done.set(r.tag, q.t);
    }
  }
  void moved;
  return done;
}

function setup() {
  const q = new EventQueue();
  const moved = new Map<string, number>();
  const net = new Network<string>(q, { begin: BEGIN, finish: FINISH }, (tag, from, to, bytes) => {
    t.ok(to >= from);
    moved.set(tag, (moved.get(tag) ?? 0) + bytes);
  });
  return { q, net, moved };
}

t.test('one flow: latency, then bytes at the slowest link', async (t) => {
  const { q, net, moved } = setup();
  const fast = net.addLink(1000); // bytes per ms
  const slow = net.addLink(100);
  net.start([fast, slow], 10_000, 20, 0, 'a');
  const done = drain(q, net, moved);
  t.equal(done.get('a'), 20 + 100, '20 ms latency + 10,000 B at 100 B/ms');
  t.equal(moved.get('a'), 10_000, 'every byte reported moved');
});

t.test('two flows share a link; when one ends the other gets it all', async (t) => {
  const { q, net, moved } = setup();
  const l = net.addLink(100);
  net.start([l], 1000, 0, 0, 'small');
  net.start([l], 3000, 0, 0, 'big');
  const done = drain(q, net, moved);
  // Both at 50 B/ms until small ends at 20 ms (big has moved 1000), then big at 100 B/ms: 2000 B in 20 ms.
  t.equal(done.get('small'), 20);
  t.equal(done.get('big'), 40);
  t.equal(moved.get('big'), 3000);
});

t.test('flow counting per link: the bottleneck decides, other links are not over-committed', async (t) => {
  const { q, net, moved } = setup();
  const wan = net.addLink(100);
  const down1 = net.addLink(1000);
  const down2 = net.addLink(30);
  // Two flows over the WAN: one to a fast client, one to a client on a 30 B/ms link.
  net.start([wan, down1], 1000, 0, 0, 'fast');
  net.start([wan, down2], 300, 0, 0, 'slow');
  t.equal(net.flowsOn(wan), 0, 'latency holds no bandwidth');
  q.pop();
  net.begin(q.x, q.t);
  q.pop();
  net.begin(q.x, q.t);
  t.equal(net.flowsOn(wan), 2);
  // Each gets min over its links of capacity / flows: fast 50, slow 30 (the WAN is not over-committed).
  const done = drain(q, net, moved);
  t.equal(done.get('slow'), 10);
  // fast: 50 B/ms for 10 ms (500 B), then 100 B/ms for the other 500 B.
  t.equal(done.get('fast'), 15);
});

t.test('a reused flow id is not finished by the stale event of its previous flow', async (t) => {
  const { q, net, moved } = setup();
  const l = net.addLink(10);
  // Three flows share 10 B/ms: 'a' is due at 300; 'x' ends at 3 and moves 'a' to 201, leaving
  // its event at 300 stale. 'c' starts when 'a' ends and gets a's id back.
  net.start([l], 5000, 0, 0, 'big');
  net.start([l], 10, 0, 0, 'x');
  const aId = net.start([l], 1000, 0, 0, 'a');
  const done = new Map<string, number>();
  let cId = -1;
  while (q.pop()) {
    if (q.k === BEGIN) net.begin(q.x, q.t);
    else {
      const r = net.finish(q.x, q.y, q.t);
      if (!r) continue;
      done.set(r.tag, q.t);
      if (r.tag === 'a') cId = net.start([l], 2000, 0, q.t, 'c');
    }
  }
  t.equal(cId, aId, 'c reuses the id of a');
  t.equal(done.get('x'), 3);
  t.equal(done.get('a'), 201);
  // c shares with 'big' at 5 B/ms from 201: its 2000 B take until 601; big then has the link.
  t.equal(done.get('c'), 601, 'c runs its full course (the stale event at 300 does not end it)');
  t.equal(moved.get('c'), 2000);
  t.equal(done.get('big'), 601 + (5000 - 10 - 990 - 2000) / 10);
});
