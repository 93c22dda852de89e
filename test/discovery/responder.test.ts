/** Responder state machine with a fake clock, fake randomness and a capturing send (no sockets). */
import t from 'tap';
import { Responder, type ResponderConfig, type SegmentLookup } from '../../src/discovery/probe-responder.js';
import { DampingTable } from '../../src/discovery/damping.js';
import { encodeProbe, parseDiscoveryMessage, type ProbeMatches } from '../../src/protocol/pccrd/codec.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import type { Peer } from '../../src/discovery/runtime.js';
import { FakeClock, fakeRuntime, sequence } from './fakes.js';

const seg = (n: number) => Buffer.alloc(32, n);
const hex = (b: Buffer) => b.toString('hex').toUpperCase();
const EP = 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001';
let probeNo = 0;
const probe = (
  ids: Buffer[],
  version: 1 | 2 = 1,
  messageId = `urn:uuid:bbbbbbbb-0000-4000-8000-${String(++probeNo).padStart(12, '0')}`,
) => Buffer.from(encodeProbe({ version, messageId, segmentIds: ids }));
const SRC: Peer = { address: '192.168.1.20', port: 50000 };

function setup(
  opts: {
    held?: Map<string, { blockCount: number; complete: boolean; ageMs?: number }>;
    random?: () => number;
    cfg?: Partial<ResponderConfig>;
  } = {},
) {
  const clock = new FakeClock();
  const rt = fakeRuntime(clock, opts.random ?? (() => 0.5));
  const sent: Array<{ at: number; to: Peer; msg: ProbeMatches; bytes: number; raw: Buffer }> = [];
  const held = opts.held ?? new Map([[hex(seg(1)), { blockCount: 5, complete: true }]]);
  const lookup: SegmentLookup = (ids) => ids.map((id) => held.get(hex(id)));
  let n = 0;
  const damping = new DampingTable();
  const r = new Responder(
    {
      lookup,
      xaddrs: () => ['192.168.1.10:80'],
      endpoint: EP,
      instanceId: 1700000000,
      nextMessageNumber: () => ++n,
      isLocal: localAddressFilter([{ address: '192.168.1.10', netmask: '255.255.255.0' }]),
      isOwnProbe: () => false,
      damping,
      send: (d, to) =>
        sent.push({ at: clock.t, to, msg: parseDiscoveryMessage(d) as ProbeMatches, bytes: d.length, raw: d }),
      ...opts.cfg,
    },
    rt,
  );
  return { clock, rt, sent, r, damping, held };
}

t.test('replies after a random 1..65 ms delay, unicast to the source, only held segments', async (t) => {
  for (const [rnd, expected] of [
    [0, 1],
    [0.5, 33],
    [0.99999, 65],
  ] as const) {
    const { clock, sent, r } = setup({ random: () => rnd });
    const p = probe([seg(9), seg(1)]);
    const start = clock.t;
    r.handle(p, SRC);
    clock.advance(expected - 1);
    t.equal(sent.length, 0, `nothing before ${expected} ms`);
    clock.advance(1);
    t.equal(sent.length, 1, `reply at ${expected} ms`);
    t.equal(sent[0]!.at - start, expected);
    t.same(sent[0]!.to, SRC);
    const m = sent[0]!.msg;
    t.equal(m.relatesTo, (parseDiscoveryMessage(p) as { messageId: string }).messageId);
    t.same(
      m.matches.map((x) => [hex(x.segmentId), x.blockCount]),
      [[hex(seg(1)), 5]],
    );
    t.same(m.xaddrs, ['192.168.1.10:80']);
    t.equal(m.endpoint, EP);
    t.equal(m.instanceId, 1700000000);
  }
});

t.test('partial counts are sent, zero counts and unknown segments are not; silence when nothing held', async (t) => {
  const held = new Map([
    [hex(seg(1)), { blockCount: 3, complete: false }],
    [hex(seg(2)), { blockCount: 0, complete: false }],
  ]);
  const { clock, sent, r, rt } = setup({ held });
  r.handle(probe([seg(2), seg(1), seg(3)]), SRC);
  clock.advance(100);
  t.same(
    sent[0]!.msg.matches.map((x) => [hex(x.segmentId), x.blockCount]),
    [[hex(seg(1)), 3]],
  );
  r.handle(probe([seg(2), seg(3)]), SRC);
  clock.advance(100);
  t.equal(sent.length, 1, 'no reply for a zero count / unknown segment');
  t.equal(rt.stats.dropped.notHeld, 1);
  t.equal(rt.stats.matchesSent, 1);
  t.equal(rt.stats.probesReceived, 2);
});

t.test('MessageNumber increments per message; de-duplication by MessageID with expiry', async (t) => {
  const { clock, sent, r, rt } = setup();
  const id = 'urn:uuid:cccccccc-0000-4000-8000-000000000001';
  r.handle(probe([seg(1)], 1, id), SRC);
  r.handle(probe([seg(1)], 1, id), SRC);
  r.handle(probe([seg(1)], 1, id), { address: '192.168.1.21', port: 1 });
  clock.advance(100);
  t.equal(sent.length, 1, 'retransmissions answered once');
  t.equal(rt.stats.dropped.duplicate, 2);
  r.handle(probe([seg(1)]), SRC);
  clock.advance(100);
  t.same(
    sent.map((s) => s.msg.messageNumber),
    [1, 2],
  );
  t.not(sent[0]!.msg.messageId, sent[1]!.msg.messageId);
  clock.advance(11_000);
  r.handle(probe([seg(1)], 1, id), SRC);
  clock.advance(100);
  t.equal(sent.length, 3, 'an expired MessageID is answered again');
});

t.test('damping (protocol/pccrd.md, Windows 7 behaviour)', async (t) => {
  const s = seg(1);
  // fewer than 10 responders seen: answer
  {
    const { clock, sent, r, damping } = setup({ random: () => 0.9 });
    for (let k = 0; k < 9; k++) damping.observe(hex(s), `urn:uuid:peer-${k}`, 5, false);
    r.handle(probe([s]), SRC);
    clock.advance(100);
    t.equal(sent.length, 1, '9 replies seen: answer');
  }
  // at least 10 full-segment replies: silent, whatever the dice say
  {
    const { clock, sent, r, damping, rt } = setup({ random: () => 0 });
    for (let k = 0; k < 10; k++) damping.observe(hex(s), `urn:uuid:peer-${k}`, 5, false);
    // the same responders again do not inflate the count, nor do partial ones change "full"
    for (let k = 0; k < 10; k++) damping.observe(hex(s), `urn:uuid:peer-${k}`, 5, false);
    t.equal(damping.seenCount(hex(s)), 10);
    r.handle(probe([s]), SRC);
    clock.advance(100);
    t.equal(sent.length, 0, '10 full replies: silent');
    t.equal(rt.stats.dropped.damped, 1);
  }
  // 10+ replies but fewer than 10 full: answer with probability 0.33
  for (const [rnd, answers] of [
    [0.32, true],
    [0.34, false],
  ] as const) {
    const { clock, sent, r, damping } = setup({
      random: sequence([rnd, 0.5]) /* damping draw first, then the delay */,
    });
    for (let k = 0; k < 12; k++) damping.observe(hex(s), `urn:uuid:peer-${k}`, k < 9 ? 5 : 2, false);
    r.handle(probe([s]), SRC);
    clock.advance(100);
    t.equal(sent.length, answers ? 1 : 0, `random ${rnd}: ${answers ? 'answer' : 'silent'}`);
  }
  // damping applies per segment: a damped segment is left out, others still answered
  {
    const held = new Map([
      [hex(seg(1)), { blockCount: 5, complete: true }],
      [hex(seg(2)), { blockCount: 4, complete: true }],
    ]);
    const { clock, sent, r, damping } = setup({ held });
    for (let k = 0; k < 10; k++) damping.observe(hex(seg(1)), `urn:uuid:peer-${k}`, 5, false);
    r.handle(probe([seg(1), seg(2)]), SRC);
    clock.advance(100);
    t.same(
      sent[0]!.msg.matches.map((m) => hex(m.segmentId)),
      [hex(seg(2))],
    );
  }
  // a partial holder (still downloading) is never damped
  {
    const { clock, sent, r, damping } = setup({ held: new Map([[hex(s), { blockCount: 2, complete: false }]]) });
    for (let k = 0; k < 10; k++) damping.observe(hex(s), `urn:uuid:peer-${k}`, 5, false);
    r.handle(probe([s]), SRC);
    clock.advance(100);
    t.equal(sent.length, 1);
  }
});

t.test('rate limits: per source token bucket and global', async (t) => {
  const { clock, sent, r, rt } = setup();
  for (let k = 0; k < 60; k++) r.handle(probe([seg(1)]), SRC);
  r.handle(probe([seg(1)]), { address: '192.168.1.99', port: 1 });
  clock.advance(100);
  t.equal(sent.filter((s) => s.to.address === SRC.address).length, 40, 'burst of 40 from one source');
  t.equal(sent.filter((s) => s.to.address === '192.168.1.99').length, 1, 'another source is unaffected');
  t.equal(rt.stats.dropped.rateSource, 20);
  clock.advance(900); // one second after the burst: 20 more tokens
  for (let k = 0; k < 30; k++) r.handle(probe([seg(1)]), SRC);
  clock.advance(100);
  t.equal(sent.filter((s) => s.to.address === SRC.address).length, 60);

  const g = setup({ cfg: { globalRate: { rate: 5, burst: 5 } } });
  for (let k = 0; k < 10; k++) g.r.handle(probe([seg(1)]), { address: `192.168.1.${100 + k}`, port: 1 });
  g.clock.advance(100);
  t.equal(g.sent.length, 5);
  t.equal(g.rt.stats.dropped.rateGlobal, 5);

  const h = setup({ cfg: { globalRate: { rate: 5, burst: 5 } } });
  for (let k = 0; k < 50; k++) h.r.handle(probe([seg(1)]), { address: '203.0.113.9', port: 1 });
  h.r.handle(probe([seg(1)]), SRC);
  h.clock.advance(100);
  t.equal(h.sent.length, 1, 'an off-subnet flood does not use up the global budget');
  t.equal(h.rt.stats.dropped.notLocal, 50);
});

t.test('subnet filter: only local-subnet and loopback sources', async (t) => {
  const { clock, sent, r, rt } = setup();
  r.handle(probe([seg(1)]), { address: '10.9.9.9', port: 1 });
  r.handle(probe([seg(1)]), { address: '192.168.2.20', port: 1 });
  r.handle(probe([seg(1)]), { address: '192.168.1.200', port: 1 });
  r.handle(probe([seg(1)]), { address: '127.0.0.1', port: 1 });
  r.handle(probe([seg(1)]), { address: '::ffff:192.168.1.201', port: 1 });
  clock.advance(100);
  t.same(sent.map((s) => s.to.address).sort(), ['127.0.0.1', '192.168.1.200', '::ffff:192.168.1.201']);
  t.equal(rt.stats.dropped.notLocal, 2);
});

t.test('own probes, malformed input and ProbeMatches are ignored without throwing', async (t) => {
  const own = 'urn:uuid:dddddddd-0000-4000-8000-000000000001';
  const { clock, sent, r, rt } = setup({ cfg: { isOwnProbe: (id) => id === own } });
  r.handle(probe([seg(1)], 1, own), SRC);
  r.handle(Buffer.from('<not xml'), SRC);
  r.handle(Buffer.from('<!DOCTYPE x [<!ENTITY a "b">]><x/>'), SRC);
  clock.advance(100);
  t.equal(sent.length, 0);
  t.equal(rt.stats.dropped.own, 1);
  t.equal(rt.stats.dropped.malformed, 2);
});

t.test('a reply stays within one datagram: the scope list is truncated', async (t) => {
  const ids = Array.from({ length: 255 }, (_, k) => {
    const b = Buffer.alloc(32, k);
    b[0] = 0xee;
    return b;
  });
  const held = new Map(ids.map((id, k) => [hex(id), { blockCount: k + 1, complete: true }]));
  const { clock, sent, r, rt } = setup({ held });
  r.handle(probe(ids), SRC);
  clock.advance(100);
  t.equal(sent.length, 1);
  t.ok(sent[0]!.bytes <= 8192, `${sent[0]!.bytes} bytes`);
  const m = sent[0]!.msg;
  t.ok(m.matches.length > 50 && m.matches.length < 255, `${m.matches.length} segments kept`);
  m.matches.forEach((x, k) => {
    t.equal(hex(x.segmentId), hex(ids[k]!));
    t.equal(x.blockCount, k + 1);
  });
  t.equal(rt.stats.dropped.truncated, 1);
});

t.test('v2: availability pairs in probe order and segment ages', async (t) => {
  const ids = [seg(1), seg(2), seg(3), seg(4), seg(5)];
  const held = new Map([
    [hex(seg(2)), { blockCount: 1, complete: false }],
    [hex(seg(4)), { blockCount: 0, complete: false }],
    [hex(seg(5)), { blockCount: 1, complete: true, ageMs: 60_000 }],
  ]);
  const { clock, sent, r } = setup({ held });
  r.handle(probe(ids, 2), SRC);
  clock.advance(100);
  t.equal(sent.length, 1);
  const raw = sent.map((x) => x.raw);
  const text = raw[0]!.toString();
  t.ok(text.includes('<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>'));
  // pairs 00 10 00 00 | 11 -> 0x20 0xC0
  t.ok(text.includes(`<wsd:Scopes>${Buffer.from([0x20, 0xc0]).toString('base64')}</wsd:Scopes>`));
  const m = parseDiscoveryMessage(raw[0]!, { probeSegments: () => ids }) as ProbeMatches;
  t.same(
    m.matches.map((x) => [x.segmentId[0], x.partial, x.complete]),
    [
      [2, true, false],
      [5, true, true],
    ],
  );
  t.same(m.segmentAges, { units: 3, entries: [{ index: 4, age: 6000 }] });
});

t.test('invalid XAddrs from the daemon are left out; none valid means silence', async (t) => {
  const a = setup({ cfg: { xaddrs: () => ['bad address', '192.168.1.10:80', 'http://x/'] } });
  a.r.handle(probe([seg(1)]), SRC);
  a.clock.advance(100);
  t.same(a.sent[0]!.msg.xaddrs, ['192.168.1.10:80']);
  const b = setup({ cfg: { xaddrs: () => ['nope'] } });
  b.r.handle(probe([seg(1)]), SRC);
  b.clock.advance(100);
  t.equal(b.sent.length, 0);
  t.equal(b.rt.stats.dropped.noXAddrs, 1);
});

t.test('close cancels pending replies', async (t) => {
  const { clock, sent, r } = setup();
  r.handle(probe([seg(1)]), SRC);
  r.close();
  clock.advance(100);
  t.equal(sent.length, 0);
  t.equal(clock.pending, 0);
  r.handle(probe([seg(1)]), SRC);
  clock.advance(100);
  t.equal(sent.length, 0);
});

// ------------------------------------------------------------------ follow-up ProbeMatches

const idOf = (raw: Buffer) => (parseDiscoveryMessage(raw) as { messageId: string }).messageId;
/** Segment IDs a reply names (v2 replies refer to the probe's list by position). */
const named = (raw: Buffer, probed: Buffer[]) =>
  (parseDiscoveryMessage(raw, { probeSegments: () => probed }) as ProbeMatches).matches.map((x) => hex(x.segmentId));

t.test('follow-up: a probe for a segment we lack is answered when the segment arrives (v1 and v2)', async (t) => {
  for (const version of [1, 2] as const) {
    const held = new Map<string, { blockCount: number; complete: boolean }>();
    const { clock, sent, r, rt } = setup({ held });
    const p = probe([seg(1), seg(2), seg(3)], version);
    r.handle(p, SRC);
    clock.advance(100);
    t.equal(sent.length, 0, `v${version}: nothing held, no reply`);
    held.set(hex(seg(2)), { blockCount: 1, complete: version === 2 });
    r.announce(hex(seg(2)).toLowerCase());
    clock.advance(65);
    t.equal(sent.length, 1, `v${version}: one follow-up after the arrival`);
    const m = sent[0]!.msg;
    t.equal(m.relatesTo, idOf(p), 'related to the probe that asked');
    t.same(sent[0]!.to, SRC, 'sent to the prober');
    t.same(named(sent[0]!.raw, [seg(1), seg(2), seg(3)]), [hex(seg(2))], 'names only the segment that arrived');
    t.equal(rt.stats.followUpsSent, 1);
    t.equal(rt.stats.matchesSent, 1);
    r.announce(hex(seg(2)));
    clock.advance(100);
    t.equal(sent.length, 1, 'a segment is followed up once per probe');
  }
});

t.test('follow-up: arrivals close together go out in one datagram after the random delay', async (t) => {
  const held = new Map<string, { blockCount: number; complete: boolean }>();
  const { clock, sent, r } = setup({ held, random: () => 0.5 });
  r.handle(probe([seg(1), seg(2), seg(3)], 2), SRC);
  held.set(hex(seg(1)), { blockCount: 1, complete: true });
  r.announce(hex(seg(1)));
  clock.advance(10);
  held.set(hex(seg(3)), { blockCount: 1, complete: true });
  r.announce(hex(seg(3)));
  clock.advance(23);
  t.equal(sent.length, 1, 'one datagram 33 ms after the first arrival');
  t.same(named(sent[0]!.raw, [seg(1), seg(2), seg(3)]), [hex(seg(1)), hex(seg(3))]);
});

t.test('follow-up: only the newest probe of a prober socket is answered, and only within the TTL', async (t) => {
  const held = new Map<string, { blockCount: number; complete: boolean }>();
  const { clock, sent, r } = setup({ held });
  const old = probe([seg(1), seg(2)], 2);
  const newer = probe([seg(1)], 2);
  r.handle(old, SRC);
  clock.advance(500);
  r.handle(newer, SRC);
  held.set(hex(seg(1)), { blockCount: 1, complete: true });
  r.announce(hex(seg(1)));
  clock.advance(100);
  t.equal(sent.length, 1, 'one follow-up for segment 1');
  t.equal(sent[0]!.msg.relatesTo, idOf(newer), 'to the newest probe that asked for it');
  // Segment 2 was asked for only by the older probe: still answered, within its TTL.
  held.set(hex(seg(2)), { blockCount: 1, complete: true });
  r.announce(hex(seg(2)));
  clock.advance(100);
  t.equal(sent.length, 2);
  t.equal(sent[1]!.msg.relatesTo, idOf(old));
  // A probe older than the TTL (3 s) is forgotten.
  r.handle(probe([seg(3)], 2), SRC);
  clock.advance(3001);
  held.set(hex(seg(3)), { blockCount: 1, complete: true });
  r.announce(hex(seg(3)));
  clock.advance(100);
  t.equal(sent.length, 2, 'no follow-up after the TTL');
});

t.test('follow-up: bounded per source address, in all, and by rate; off when configured off', async (t) => {
  const held = new Map<string, { blockCount: number; complete: boolean }>();
  const { clock, sent, r, rt } = setup({
    held,
    cfg: { perSourceRate: { rate: 1000, burst: 1000 }, followUpRate: { rate: 1, burst: 5 } },
  });
  // 20 probe sockets of one host: only the newest 8 are kept.
  for (let port = 1; port <= 20; port++) r.handle(probe([seg(7)], 2), { address: SRC.address, port });
  held.set(hex(seg(7)), { blockCount: 1, complete: true });
  r.announce(hex(seg(7)));
  clock.advance(100);
  t.same(
    sent.map((s) => s.to.port),
    [13, 14, 15, 16, 17],
    '8 kept per source address, and the follow-up bucket (burst 5) lets 5 go',
  );
  t.equal(rt.stats.dropped.rateFollowUp, 3, 'the other 3 counted as rate-limited');

  const off = setup({ held: new Map(), cfg: { followUps: false } });
  off.r.handle(probe([seg(8)], 2), SRC);
  off.held.set(hex(seg(8)), { blockCount: 1, complete: true });
  off.r.announce(hex(seg(8)));
  off.clock.advance(100);
  t.equal(off.sent.length, 0, 'followUps: false sends none');
});

t.test('follow-up: a segment that is no longer held when the timer fires is not announced', async (t) => {
  const held = new Map<string, { blockCount: number; complete: boolean }>();
  const { clock, sent, r } = setup({ held });
  r.handle(probe([seg(4)], 2), SRC);
  r.announce(hex(seg(4))); // arrived and dropped again before the send (lookup says not held)
  clock.advance(100);
  t.equal(sent.length, 0);
});

t.test('onProbe sees every new foreign probe with its source, answered or not', async (t) => {
  const seen: Array<{ ids: string[]; from: string }> = [];
  const { clock, r } = setup({
    held: new Map(),
    cfg: { onProbe: (ids, from) => seen.push({ ids: ids.map(hex), from: from.address }) },
  });
  const p = probe([seg(5), seg(6)], 2);
  r.handle(p, SRC);
  r.handle(p, SRC); // a retransmission (same MessageID)
  clock.advance(100);
  t.same(seen, [{ ids: [hex(seg(5)), hex(seg(6))], from: SRC.address }]);
});
