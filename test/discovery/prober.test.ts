/** Prober state machine with a fake transport and clock: retransmission, RelatesTo, peer table, adaptive wait. */
import t from 'tap';
import { Prober, type PeerSighting } from '../../src/discovery/prober.js';
import { DampingTable } from '../../src/discovery/damping.js';
import {
  encodeProbeMatches,
  parseDiscoveryMessage,
  type Probe,
  type ProbeMatches,
} from '../../src/protocol/pccrd/codec.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { FakeClock, fakeRuntime } from './fakes.js';

const seg = (n: number) => Buffer.alloc(32, n);
const hex = (b: Buffer) => b.toString('hex').toUpperCase();
const OWN = 'urn:uuid:00000000-1111-4000-8000-000000000000';
const PEER = { address: '10.0.0.7', port: 3702 };

function setup() {
  const clock = new FakeClock();
  const rt = fakeRuntime(clock, () => 0.5);
  const sent: Array<{ at: number; probe: Probe }> = [];
  const damping = new DampingTable();
  const prober = new Prober(
    {
      send: (d) => sent.push({ at: clock.t, probe: parseDiscoveryMessage(d) as Probe }),
      isLocal: localAddressFilter([{ address: '10.0.0.1', netmask: '255.255.255.0' }]),
      ownEndpoint: OWN,
      damping,
    },
    rt,
  );
  return { clock, rt, sent, prober, damping };
}

let n = 0;
function match(
  relatesTo: string,
  matches: Array<{ id: Buffer; count: number }>,
  o: Partial<Omit<ProbeMatches, 'kind'>> = {},
): Buffer {
  return Buffer.from(
    encodeProbeMatches({
      version: 1,
      messageId: `urn:uuid:99999999-0000-4000-8000-${String(++n).padStart(12, '0')}`,
      relatesTo,
      instanceId: 1,
      messageNumber: n,
      endpoint: 'urn:uuid:eeeeeeee-0000-4000-8000-000000000001',
      matches: matches.map((m) => ({ segmentId: m.id, blockCount: m.count })),
      xaddrs: ['10.0.0.7:80'],
      ...o,
    }),
  );
}

t.test('retransmits with the same MessageID, then keeps probing with new ones', async (t) => {
  const { clock, sent, prober } = setup();
  const start = clock.t;
  const w = prober.watch([seg(1), seg(2)], 1);
  clock.advance(350);
  t.same(
    sent.map((s) => s.at - start),
    [0, 100, 300],
  );
  t.equal(new Set(sent.map((s) => s.probe.messageId)).size, 1, 'one MessageID for the first probe and its repeats');
  t.same(sent[0]!.probe.segmentIds.map(hex), [hex(seg(1)), hex(seg(2))], 'several IDs in one probe');
  clock.advance(1500 - 50); // random 0.5 -> 1500 ms after the last repeat
  t.equal(sent.length, 4);
  t.equal(sent[3]!.at - start, 1800);
  t.not(sent[3]!.probe.messageId, sent[0]!.probe.messageId, 'later probes use a new MessageID');
  clock.advance(1500);
  t.equal(sent.length, 5);
  t.equal(new Set(sent.map((s) => s.probe.messageId)).size, 3);
  w.close();
  clock.advance(10_000);
  t.equal(sent.length, 5, 'no probes after close');
  t.equal(clock.pending, 0, 'no timers left');
});

t.test('watch refuses IDs of the wrong size for the version', async (t) => {
  const { prober, sent } = setup();
  t.throws(() => prober.watch([Buffer.alloc(64, 1)], 2), RangeError);
  t.throws(() => prober.watch([Buffer.alloc(20, 1)], 1), RangeError);
  t.equal(sent.length, 0);
  t.equal(prober.openWatches, 0);
  prober.watch([Buffer.alloc(64, 1)], 1).close();
  t.equal(sent.length, 1, 'a 64-byte v1 ID is fine');
});

t.test('large watches are split: v1 32 IDs per probe, v2 up to 255', async (t) => {
  const { clock, sent, prober } = setup();
  const ids = Array.from({ length: 70 }, (_, k) => seg(k));
  const w1 = prober.watch(ids, 1);
  const w2 = prober.watch(
    Array.from({ length: 300 }, (_, k) => {
      const b = Buffer.alloc(32, 1);
      b.writeUInt16BE(k);
      return b;
    }),
    2,
  );
  clock.advance(0);
  t.same(
    sent.filter((s) => s.probe.version === 1).map((s) => s.probe.segmentIds.length),
    [32, 32, 6],
  );
  t.same(
    sent.filter((s) => s.probe.version === 2).map((s) => s.probe.segmentIds.length),
    [255, 45],
  );
  w1.close();
  w2.close();
});

t.test('accepts only ProbeMatches relating to an outstanding probe, from local senders', async (t) => {
  const { clock, sent, prober, rt, damping } = setup();
  const w = prober.watch([seg(1), seg(2)], 1);
  const id = sent[0]!.probe.messageId;
  prober.handle(match('urn:uuid:12345678-0000-4000-8000-000000000000', [{ id: seg(1), count: 4 }]), PEER);
  t.equal(rt.stats.dropped.unsolicited, 1);
  prober.handle(match(id, [{ id: seg(1), count: 4 }]), { address: '10.0.1.7', port: 3702 });
  t.equal(rt.stats.dropped.notLocal, 1);
  prober.handle(match(id, [{ id: seg(1), count: 4 }], { xaddrs: ['8.8.8.8:80', 'evil.example:80'] }), PEER);
  t.equal(rt.stats.dropped.nonLocalXAddrs, 1, 'XAddrs outside the subnet are not used');
  prober.handle(match(id, [{ id: seg(1), count: 4 }], { xaddrs: ['127.0.0.1:80', '[::1]:80'] }), PEER);
  t.equal(rt.stats.dropped.nonLocalXAddrs, 2, 'a remote sender cannot point us at our own loopback');
  prober.handle(match(id, [{ id: seg(1), count: 4 }], { endpoint: OWN }), PEER);
  t.equal(rt.stats.dropped.self, 1);
  prober.handle(Buffer.from('garbage'), PEER);
  t.equal(rt.stats.dropped.malformed, 1);
  t.same(w.peers(seg(1)), []);

  clock.advance(5);
  prober.handle(
    match(
      id,
      [
        { id: seg(1), count: 4 },
        { id: seg(9), count: 8 },
      ],
      { xaddrs: ['10.0.0.7:80', '8.8.8.8:80'] },
    ),
    PEER,
  );
  t.same(
    w.peers(seg(1)).map((p) => [p.segmentId, p.address, p.blockCount, p.complete, p.failures]),
    [[hex(seg(1)), '10.0.0.7:80', 4, false, 0]],
  );
  t.same(w.peers(seg(9)), [], 'segments we did not probe are ignored');
  t.equal(rt.stats.matchesReceived, 1);
  t.equal(damping.seenCount(hex(seg(1))), 1, 'observations feed the damping table');
  w.close();
  prober.handle(match(id, [{ id: seg(1), count: 4 }]), PEER);
  t.equal(rt.stats.dropped.unsolicited, 2, 'a closed watch accepts nothing');
});

t.test('a ProbeMatch listing many XAddrs: only the first 4 are used (issue 16.5)', async (t) => {
  const { sent, prober, rt } = setup();
  const w = prober.watch([seg(1)], 1);
  const id = sent[0]!.probe.messageId;
  const many = Array.from({ length: 16 }, (_, i) => `10.0.0.7:${8000 + i}`);
  prober.handle(match(id, [{ id: seg(1), count: 4 }], { xaddrs: many }), PEER);
  t.same(
    w
      .peers(seg(1))
      .map((p) => p.address)
      .sort(),
    many.slice(0, 4).sort(),
    'four addresses kept',
  );
  t.equal(rt.stats.dropped.extraXAddrs, 1, 'counted');
  w.close();
});

t.test('replies to older MessageIDs of the same watch are still accepted (bounded)', async (t) => {
  const { clock, sent, prober, rt } = setup();
  const w = prober.watch([seg(1)], 1);
  clock.advance(300 + 1500 + 1500 + 1500); // ids: #1, #2, #3, #4
  const ids = [...new Set(sent.map((s) => s.probe.messageId))];
  t.equal(ids.length, 4);
  prober.handle(match(ids[1]!, [{ id: seg(1), count: 1 }]), PEER);
  t.equal(w.peers(seg(1)).length, 1);
  prober.handle(match(ids[0]!, [{ id: seg(1), count: 1 }]), PEER);
  t.equal(rt.stats.dropped.unsolicited, 1, 'only the last three MessageIDs are outstanding');
  w.close();
});

t.test('peer table updates, events, failures and ordering', async (t) => {
  const { clock, sent, prober } = setup();
  const w = prober.watch([seg(1)], 1);
  const id = sent[0]!.probe.messageId;
  const events: PeerSighting[] = [];
  w.on('peer', (p: PeerSighting) => events.push(p));
  const t0 = clock.t;
  prober.handle(match(id, [{ id: seg(1), count: 2 }], { xaddrs: ['10.0.0.7:80'] }), PEER);
  clock.advance(50);
  prober.handle(match(id, [{ id: seg(1), count: 2 }], { xaddrs: ['10.0.0.7:80'] }), PEER);
  t.equal(events.length, 1, 'unchanged sighting: no event');
  t.equal(w.peers(seg(1))[0]!.lastSeen, t0 + 50);
  t.equal(w.peers(seg(1))[0]!.firstSeen, t0);
  prober.handle(match(id, [{ id: seg(1), count: 6 }], { xaddrs: ['10.0.0.7:80'] }), PEER);
  t.equal(events.length, 2, 'count changed: event');
  t.equal(events[1]!.blockCount, 6);
  prober.handle(
    match(id, [{ id: seg(1), count: 3 }], {
      xaddrs: ['10.0.0.8:80'],
      endpoint: 'urn:uuid:eeeeeeee-0000-4000-8000-000000000002',
    }),
    { address: '10.0.0.8', port: 3702 },
  );
  t.same(
    w.peers(seg(1)).map((p) => p.address),
    ['10.0.0.7:80', '10.0.0.8:80'],
    'more blocks first',
  );
  w.reportFailure('10.0.0.7:80');
  t.same(
    w.peers(seg(1)).map((p) => [p.address, p.failures]),
    [
      ['10.0.0.8:80', 0],
      ['10.0.0.7:80', 1],
    ],
    'failures sort last',
  );
  // returned sightings are copies
  w.peers(seg(1))[0]!.failures = 99;
  t.equal(w.peers(seg(1))[0]!.failures, 0);
  t.equal(prober.peersKnown, 2);
  w.close();
});

t.test('waitForPeers resolves early on a peer, otherwise at the timeout', async (t) => {
  const { clock, sent, prober } = setup();
  const w = prober.watch([seg(1)], 1);
  let done = false;
  const p = w.waitForPeers(1000).then(() => {
    done = true;
  });
  clock.advance(40);
  await Promise.resolve();
  t.notOk(done);
  prober.handle(match(sent[0]!.probe.messageId, [{ id: seg(1), count: 1 }]), PEER);
  await p;
  t.ok(done, 'resolved by the peer at 40 ms');
  await w.waitForPeers(1000); // already has a peer: immediate
  const w2 = prober.watch([seg(2)], 1);
  let done2 = false;
  const p2 = w2.waitForPeers(200).then(() => {
    done2 = true;
  });
  clock.advance(199);
  await Promise.resolve();
  t.notOk(done2);
  clock.advance(1);
  await p2;
  t.ok(done2, 'resolved at the timeout');
  const w3 = prober.watch([seg(3)], 1);
  const p3 = w3.waitForPeers(5000);
  w3.close();
  await p3; // close releases waiters
  w.close();
  w2.close();
  t.equal(clock.pending, 0);
});

t.test('adaptive initial wait: drops while nobody answers, back to max on a reply', async (t) => {
  const { clock, sent, prober } = setup();
  t.equal(prober.initialWaitMs, 300);
  const w = prober.watch([seg(1)], 1);
  clock.advance(500);
  t.equal(prober.initialWaitMs, 200, 'first probe unanswered by its request timer');
  clock.advance(1300 + 500);
  t.equal(prober.initialWaitMs, 100);
  clock.advance(1500);
  t.equal(prober.initialWaitMs, 0);
  clock.advance(3000);
  t.equal(prober.initialWaitMs, 0, 'never below 0');
  const last = sent[sent.length - 1]!.probe.messageId;
  prober.handle(match(last, [{ id: seg(1), count: 1 }]), PEER);
  t.equal(prober.initialWaitMs, 300, 'any reply restores the maximum');
  w.close();
});

t.test('v2 ProbeMatches are bound to the probe order', async (t) => {
  const { sent, prober } = setup();
  const ids = [seg(1), seg(2), seg(3)];
  const w = prober.watch(ids, 2);
  const id = sent[0]!.probe.messageId;
  const reply = Buffer.from(
    encodeProbeMatches(
      {
        version: 2,
        messageId: 'urn:uuid:99999999-0000-4000-8000-00000000ffff',
        relatesTo: id,
        instanceId: 1,
        messageNumber: 1,
        endpoint: 'urn:uuid:eeeeeeee-0000-4000-8000-000000000001',
        xaddrs: ['10.0.0.7:80'],
        matches: [
          { segmentId: seg(2), partial: true, complete: true },
          { segmentId: seg(3), partial: true, complete: false },
        ],
      },
      ids,
    ),
  );
  prober.handle(reply, PEER);
  t.same(w.peers(seg(1)), []);
  t.same(
    w.peers(seg(2)).map((p) => [p.blockCount, p.complete]),
    [[1, true]],
  );
  t.same(
    w.peers(seg(3)).map((p) => [p.blockCount, p.complete]),
    [[1, false]],
  );
  // a v1 reply to a v2 probe is refused
  prober.handle(match(id, [{ id: seg(1), count: 1 }]), PEER);
  t.same(w.peers(seg(1)), []);
  t.ok(prober.isOwnProbe(id), 'our own MessageIDs are recognised (the responder ignores them)');
  w.close();
});

t.test('all transmissions are paced (15/s, burst 30) however many segments are watched', async (t) => {
  const { clock, sent, prober } = setup();
  const ids = Array.from({ length: 40 * 32 }, (_, k) => {
    const b = Buffer.alloc(32, 7);
    b.writeUInt16BE(k);
    return b;
  });
  const w = prober.watch(ids, 1);
  clock.advance(0);
  t.equal(sent.length, 30, 'burst at start');
  clock.advance(10_000);
  t.ok(sent.length <= 30 + 15 * 10 + 1, `${sent.length} probes in 10 s`);
  t.ok(sent.length >= 30 + 15 * 10 - 15, `${sent.length} probes in 10 s (pacer keeps sending)`);
  const chunksProbed = new Set(sent.map((s) => hex(s.probe.segmentIds[0]!)));
  t.equal(chunksProbed.size, 40, 'every chunk got probed');
  const gaps = sent.slice(31).map((s, k) => s.at - sent[30 + k]!.at);
  t.ok(Math.min(...gaps) >= 60, `after the burst probes are at least ${Math.min(...gaps)} ms apart`);
  w.close();
  t.equal(clock.pending, 0, 'closing the watch cancels the pacer too');
});
