/**
 * Follow-ups when a prober repeats its chunks' probes in turn (new MessageIDs, the same IDs):
 * each segment's follow-up relates to the newest probe asking for it, from each socket, and goes
 * to every socket that asked.
 */
import t from 'tap';
import { DampingTable } from '../../src/discovery/damping.js';
import { Responder, type SegmentLookup } from '../../src/discovery/probe-responder.js';
import type { Peer } from '../../src/discovery/runtime.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { encodeProbe, parseDiscoveryMessage, type ProbeMatches } from '../../src/protocol/pccrd/codec.js';
import { FakeClock, fakeRuntime } from './fakes.js';

const seg = (i: number) => {
  const b = Buffer.alloc(32, 0x11);
  b.writeUInt32BE(i, 0);
  return b;
};
const hexU = (b: Buffer) => b.toString('hex').toUpperCase();

t.test('repeated probes of two chunks from one socket, and another socket', async (t) => {
  const clock = new FakeClock();
  const rt = fakeRuntime(clock, () => 0.5);
  const held = new Set<string>();
  const lookup: SegmentLookup = (ids) =>
    ids.map((id) => (held.has(hexU(id)) ? { blockCount: 1, complete: true } : undefined));
  const sent: Array<{ to: Peer; msg: ProbeMatches }> = [];
  const r = new Responder(
    {
      lookup,
      xaddrs: () => ['10.1.0.1:80'],
      endpoint: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001',
      instanceId: 1,
      nextMessageNumber: () => 1,
      isLocal: localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]),
      isOwnProbe: () => false,
      damping: new DampingTable(),
      send: (d, to) =>
        sent.push({ to, msg: parseDiscoveryMessage(d, { probeSegments: (rel) => asked.get(rel) }) as ProbeMatches }),
    },
    rt,
  );
  const ids = Array.from({ length: 20 }, (_, i) => seg(i));
  const asked = new Map<string, Buffer[]>();
  const chunkA = ids.slice(0, 10);
  const chunkB = ids.slice(10, 20);
  let n = 0;
  const probe = (list: Buffer[]) => {
    const messageId = `urn:uuid:bbbbbbbb-0000-4000-8000-${String(++n).padStart(12, '0')}`;
    asked.set(messageId, list);
    return { messageId, bytes: Buffer.from(encodeProbe({ version: 2, messageId, segmentIds: list })) };
  };
  const s1: Peer = { address: '10.1.2.1', port: 5000 };
  const s2: Peer = { address: '10.1.2.2', port: 5000 };
  const a1 = probe(chunkA);
  const b1 = probe(chunkB);
  const a2 = probe(chunkA);
  const b2 = probe(chunkB);
  const a3 = probe(chunkA);
  r.handle(a1.bytes, s1);
  r.handle(b1.bytes, s1);
  r.handle(a2.bytes, s1); // repeats a1, with b1 in between
  r.handle(a3.bytes, s2);
  held.add(hexU(ids[3]!));
  r.handle(b2.bytes, s1); // repeats b1 (after segment 3 arrived: a missing list that is not a1's)
  t.equal(sent.length, 0, 'nothing held yet that they asked for');
  r.announce(hexU(ids[3]!));
  held.add(hexU(ids[12]!));
  r.announce(hexU(ids[12]!));
  clock.advance(100);
  const got = sent.map((x) => `${x.to.address} ${x.msg.relatesTo}`).sort();
  t.same(
    got,
    [`10.1.2.1 ${a2.messageId}`, `10.1.2.1 ${b2.messageId}`, `10.1.2.2 ${a3.messageId}`].sort(),
    'one follow-up per socket and segment, each to the newest probe asking',
  );
  t.equal(rt.stats.followUpsSent, 3);
  // Later arrivals still reach the newest probes; the older ones were let go.
  sent.length = 0;
  held.add(hexU(ids[5]!));
  r.announce(hexU(ids[5]!));
  clock.advance(100);
  t.same(
    sent.map((x) => `${x.to.address} ${x.msg.relatesTo}`).sort(),
    [`10.1.2.1 ${a2.messageId}`, `10.1.2.2 ${a3.messageId}`].sort(),
  );
  t.same(
    sent.map((x) => x.msg.matches.map((m) => hexU(m.segmentId))),
    [[hexU(ids[5]!)], [hexU(ids[5]!)]],
    'each names the segment that arrived',
  );
});
