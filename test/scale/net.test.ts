/**
 * The scale simulation's link models (issue 24): WAN links share by flow counting (processor
 * sharing with a virtual clock, one queued event per link) below a shared origin uplink; LAN NICs
 * serve in order at full rate and are never over-committed.
 */
import t from 'tap';
import { FifoLink, lanTransfer, SharedLinks } from '../../testkit/scale/net.js';
import { EventQueue } from '../../testkit/scale/queue.js';

const BEGIN = 1,
  FINISH = 2;

function setup(uplink = Infinity) {
  const q = new EventQueue();
  const moved = new Map<number, number>();
  const net = new SharedLinks<string>(q, { begin: BEGIN, finish: FINISH }, uplink, (link, from, to, bytes) => {
    if (to < from) throw new Error('time went back');
    moved.set(link, (moved.get(link) ?? 0) + bytes);
  });
  return { q, net, moved };
}

/** Runs the queue to the end (calling `after` on each ended flow); returns each tag's end time. */
function drain(q: EventQueue, net: SharedLinks<string>, after?: (tag: string, now: number) => void) {
  const done = new Map<string, number>();
  let stale = 0;
  let events = 0;
  while (q.pop()) {
    events++;
    if (q.k === BEGIN) net.begin(q.x, q.t);
    else {
      const ended = net.finish(q.x, q.y, q.t);
      if (ended.length === 0) stale++;
      for (const r of ended) {
        done.set(r.tag, q.t);
        after?.(r.tag, q.t);
      }
    }
  }
  return { done, stale, events };
}

t.test('one flow: the latency, then bytes at the link rate', async (t) => {
  const { q, net, moved } = setup();
  const l = net.addLink(100); // bytes per ms
  net.start(l, 10_000, 20, 0, 'a');
  const { done } = drain(q, net);
  t.equal(done.get('a'), 120, '20 ms latency + 10,000 B at 100 B/ms');
  t.equal(moved.get(l), 10_000, 'every byte reported moved');
});

t.test('two flows share a link; when one ends the other gets it all', async (t) => {
  const { q, net, moved } = setup();
  const l = net.addLink(100);
  net.start(l, 1000, 0, 0, 'small');
  net.start(l, 3000, 0, 0, 'big');
  const { done } = drain(q, net);
  // Both at 50 B/ms until small ends at 20 ms (big has moved 1000), then big at 100 B/ms for 2000 B.
  t.equal(done.get('small'), 20);
  t.equal(done.get('big'), 40);
  t.equal(moved.get(l), 4000);
});

t.test('a flow joining later: the earlier event goes stale, the totals hold', async (t) => {
  const { q, net } = setup();
  const l = net.addLink(10);
  net.start(l, 1000, 0, 0, 'a'); // alone it would end at 100
  net.start(l, 100, 0, 50, 'b'); // from 50 both at 5 B/ms: b ends at 70, a has 400 B left then
  const { done, stale } = drain(q, net);
  t.equal(done.get('b'), 70);
  t.equal(done.get('a'), 110, 'a: 500 B by 50, 100 more by 70, 400 at 10 B/ms');
  t.ok(stale >= 1, 'the event for 100 was dropped as stale');
});

t.test('a thousand flows on one link: events grow with flows, not flows squared; all end together', async (t) => {
  const { q, net } = setup();
  const l = net.addLink(1000);
  for (let k = 0; k < 1000; k++) net.start(l, 500, 5, 0, `f${k}`);
  const { done, events } = drain(q, net);
  // Per flow: its begin and one (later stale) link event; ending is one event for all of them.
  // Rescheduling every flow at every change would have taken about 1000 x 1000.
  t.ok(events <= 2001, `events handled: ${events}`);
  t.equal(done.size, 1000);
  t.ok(
    [...done.values()].every((at) => Math.abs(at - 505) < 1e-6),
    '1000 x 500 B at 1000 B/ms: all at 5 + 500 ms',
  );
});

t.test('the origin uplink is shared among the busy links by counting', async (t) => {
  const { q, net, moved } = setup(100);
  const a = net.addLink(80);
  const b = net.addLink(80);
  net.start(a, 1000, 0, 0, 'a');
  net.start(b, 3000, 0, 0, 'b');
  t.equal(net.capacity(a), 80, 'alone a link is limited by itself');
  const { done } = drain(q, net);
  // Both busy: 50 B/ms each (uplink 100 / 2) until a ends at 20; then b alone at its own 80 B/ms.
  t.equal(done.get('a'), 20);
  t.equal(done.get('b'), 20 + 2000 / 80);
  t.equal((moved.get(a) ?? 0) + (moved.get(b) ?? 0), 4000);
});

t.test('LAN: transfers take their turn on both NICs; neither is over-committed', async (t) => {
  const up1 = new FifoLink(100);
  const up2 = new FifoLink(100);
  const down = new FifoLink(100);
  // Two senders to one receiver at once: the receiver's downlink serves them one after the other.
  const e1 = lanTransfer(up1, down, 1000, 1, 0);
  const e2 = lanTransfer(up2, down, 1000, 1, 0);
  t.equal(e1, 11, '1 ms latency + 10 ms');
  t.equal(e2, 21, 'behind the first on the downlink');
  // A third transfer from a busy uplink to an idle downlink waits for the uplink.
  const other = new FifoLink(100);
  t.equal(lanTransfer(up1, other, 500, 1, 2), 16, 'up1 busy until 11, then 5 ms');
  // Later, an idle link starts at once.
  t.equal(lanTransfer(up2, new FifoLink(100), 100, 1, 100), 102);
  t.throws(() => new FifoLink(0), RangeError);
});
