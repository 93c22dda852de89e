/**
 * Replays a scripted sequence of probes and ProbeMatches (v1 and v2, duplicates, malformed and
 * hostile datagrams, damping, follow-ups, truncation, rate limits) through the Responder and
 * Prober state machines and compares every datagram they send, every sighting they report and
 * their counters with fixtures/discovery/replay.txt, recorded from the state machines of base
 * 0b6233e (before the per-segment-ID cost work of issue 24 item 3): the wire and the behaviour
 * must not change with the bookkeeping. Re-record (only for an intended change of behaviour)
 * with PEERDIST_RECORD_REPLAY=1.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { DampingTable } from '../../src/discovery/damping.js';
import { Responder, type SegmentLookup } from '../../src/discovery/probe-responder.js';
import { Prober, type PeerSighting } from '../../src/discovery/prober.js';
import type { Peer } from '../../src/discovery/runtime.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { encodeProbe, encodeProbeMatches, parseDiscoveryMessage, type Probe } from '../../src/protocol/pccrd/codec.js';
import { fixture } from '../helpers/paths.js';
import { FakeClock, fakeRuntime } from './fakes.js';

const FIXTURE = fixture('discovery', 'replay.txt');

/** A deterministic random sequence (LCG), so delays and damping coin flips repeat exactly. */
function lcg(seed: number): () => number {
  let r = seed;
  return () => {
    r = (r * 1103515245 + 12345) % 2147483648;
    return r / 2147483648;
  };
}

const seg = (i: number, len = 32) => {
  const b = Buffer.alloc(len);
  b.writeUInt32BE((i * 2654435761) >>> 0, 0);
  b.writeUInt32BE(0x5eed + i, len - 4);
  b[7] = i & 0xff;
  return b;
};
const hexU = (b: Buffer) => b.toString('hex').toUpperCase();
const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 32);
const isLocal = localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]);

function run(): string[] {
  const log: string[] = [];
  const clock = new FakeClock();
  const ids2 = Array.from({ length: 300 }, (_, i) => seg(i));
  const ids1 = Array.from({ length: 40 }, (_, i) => seg(1000 + i, 48));

  // Node A: a responder and a prober sharing one damping table, as in Discovery.
  const rtA = fakeRuntime(clock, lcg(7));
  const damping = new DampingTable();
  const held = new Map<string, { blockCount: number; complete: boolean; ageMs?: number }>();
  for (let i = 0; i < 100; i++) held.set(hexU(ids2[i]!), { blockCount: 1, complete: true, ageMs: 1000 * i });
  for (let i = 100; i < 150; i++) held.set(hexU(ids2[i]!), { blockCount: 1, complete: false });
  for (let i = 0; i < 20; i++) held.set(hexU(ids1[i]!), { blockCount: 16, complete: true, ageMs: 500 });
  for (let i = 20; i < 30; i++) held.set(hexU(ids1[i]!), { blockCount: i - 18, complete: false });
  const lookup: SegmentLookup = (list) => list.map((id) => held.get(hexU(id)));
  let mn = 0;
  const sent = (who: string) => (d: Buffer, to?: Peer) =>
    log.push(`${clock.t} ${who} ${to ? `${to.address}:${to.port}` : 'multicast'} ${d.length} ${digest(d)}`);
  const responder = (who: string, maxReplyBytes?: number) =>
    new Responder(
      {
        lookup,
        xaddrs: () => ['10.1.0.1:80', 'bad addr', '[fe80::1]:80'],
        endpoint: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001',
        instanceId: 1_700_000_000,
        nextMessageNumber: () => ++mn,
        isLocal,
        isOwnProbe: (id) => prober.isOwnProbe(id),
        damping,
        send: sent(who),
        maxReplyBytes,
        perSourceRate: { rate: 20, burst: 40 },
      },
      rtA,
    );
  const probesOut: Probe[] = [];
  const prober = new Prober(
    {
      send: (d) => {
        sent('probe')(d);
        probesOut.push(parseDiscoveryMessage(d) as Probe);
      },
      isLocal,
      ownEndpoint: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001',
      damping,
      timing: { maxProbesPerSecond: 1000, probeBurst: 1000 },
    },
    rtA,
  );
  const r = responder('reply');
  const small = responder('small', 1400);

  let pn = 0;
  const probe = (
    ids: Buffer[],
    version: 1 | 2,
    messageId = `urn:uuid:bbbbbbbb-0000-4000-8000-${String(++pn).padStart(12, '0')}`,
  ) => Buffer.from(encodeProbe({ version, messageId, segmentIds: ids }));
  const src = (k: number): Peer => ({ address: `10.1.2.${k}`, port: 40000 + (k % 3) });

  // 1. v2 probes of 255 IDs (held complete, partial, missing) from 12 sources, some repeated.
  for (let k = 0; k < 12; k++) {
    const p = probe(ids2.slice(k, k + 255), 2);
    r.handle(p, src(k));
    if (k % 4 === 0) r.handle(p, src(k)); // duplicate MessageID
    clock.advance(7);
  }
  clock.advance(100);
  // 2. v1 probes (48-byte IDs), some held in part.
  for (let k = 0; k < 4; k++) r.handle(probe(ids1.slice(k * 8, k * 8 + 24), 1), src(20 + k));
  clock.advance(100);
  // 3. Malformed, hostile and unexpected datagrams.
  const good = probe(ids2.slice(0, 10), 2).toString('utf8');
  for (const bad of [
    'garbage',
    good.slice(0, 300),
    good.replace('<wsd:Probe>', '<wsd:Probe><x:y/>'),
    good.replace(/(MatchBy="[^"]*">)[A-Za-z0-9+/]{4}/, '$1AAAA'),
    good.replace('PeerDistDataV2', 'Other'),
  ])
    r.handle(Buffer.from(bad), src(30));
  r.handle(probe(ids2.slice(0, 3), 2), { address: '192.168.9.9', port: 1 }); // not local
  // 4. Truncation: a small reply limit.
  small.handle(probe(ids2.slice(0, 255), 2), src(31));
  small.handle(probe(ids1.slice(0, 20), 1), src(32));
  clock.advance(100);

  // 5. Our prober watches segments; ProbeMatches from other endpoints fill the peer table and
  // the damping table, which then silences (or thins) our answers for segments 0..99.
  const w2 = prober.watch(ids2.slice(0, 255), 2);
  const w1 = prober.watch(ids1, 1);
  // Sightings are many (a line each would make a large fixture): each handled datagram's are
  // logged as their count and a digest of their fields in order.
  let seen: string[] = [];
  const sightings = (name: string) => (p: PeerSighting) =>
    seen.push(`${name} ${p.segmentId} ${p.address} ${p.blockCount} ${p.complete} ${p.firstSeen} ${p.lastSeen}`);
  const flushSightings = () => {
    log.push(`${clock.t} peers ${seen.length} ${digest(Buffer.from(seen.join('\n')))}`);
    seen = [];
  };
  w2.on('peer', sightings('w2'));
  w1.on('peer', sightings('w1'));
  clock.advance(1);
  const ownProbes = log.filter((l) => l.includes(' probe ')).length;
  if (ownProbes === 0) throw new Error('the prober sent nothing');
  // The latest probe it sent of each version, to answer.
  const lastProbe = (version: 1 | 2): Probe => {
    const p = probesOut.filter((x) => x.version === version);
    return p[p.length - 1]!;
  };
  for (let e = 0; e < 14; e++) {
    const p2 = lastProbe(2);
    const held2 = p2.segmentIds.filter((_, i) => i < 100 || (i + e) % 5 === 0);
    const pm2 = encodeProbeMatches(
      {
        version: 2,
        messageId: `urn:uuid:cccccccc-0000-4000-8000-${String(e).padStart(12, '0')}`,
        relatesTo: p2.messageId,
        instanceId: 1,
        messageNumber: e,
        endpoint: `urn:uuid:dddddddd-0000-4000-8000-${String(e).padStart(12, '0')}`,
        xaddrs:
          e === 3
            ? ['8.8.8.8:80']
            : e === 4
              ? Array.from({ length: 8 }, (_, k) => `10.1.3.${k}:80`)
              : [`10.1.3.${e}:80`],
        matches: held2.map((segmentId, k) => ({ segmentId, partial: true, complete: k % 3 !== 1 })),
      },
      p2.segmentIds,
    );
    prober.handle(Buffer.from(pm2), { address: `10.1.3.${e}`, port: 3702 });
    flushSightings();
    const p1 = lastProbe(1);
    const pm1 = encodeProbeMatches({
      version: 1,
      messageId: `urn:uuid:eeeeeeee-0000-4000-8000-${String(e).padStart(12, '0')}`,
      relatesTo: p1.messageId,
      instanceId: 1,
      messageNumber: e,
      endpoint: `urn:uuid:dddddddd-0000-4000-8000-${String(e).padStart(12, '0')}`,
      xaddrs: [`10.1.3.${e}:80`],
      matches: p1.segmentIds.slice(0, 5 + e).map((segmentId, k) => ({ segmentId, blockCount: 1 + ((k + e) % 4) })),
    });
    prober.handle(Buffer.from(pm1), { address: `10.1.3.${e}`, port: 3702 });
    flushSightings();
    clock.advance(20);
  }
  // Own endpoint, unsolicited, not local, and a v1 answer to a v2 probe.
  const p2 = lastProbe(2);
  const pmOf = (over: Record<string, unknown>) =>
    Buffer.from(
      encodeProbeMatches(
        {
          version: 2,
          messageId: 'urn:uuid:ffffffff-0000-4000-8000-000000000001',
          relatesTo: p2.messageId,
          instanceId: 1,
          messageNumber: 1,
          endpoint: 'urn:uuid:ffffffff-0000-4000-8000-000000000002',
          xaddrs: ['10.1.3.99:80'],
          matches: [{ segmentId: p2.segmentIds[5]!, partial: true, complete: true }],
          ...over,
        },
        p2.segmentIds,
      ),
    );
  prober.handle(pmOf({ endpoint: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001' }), { address: '10.1.3.99', port: 1 });
  prober.handle(pmOf({ relatesTo: 'urn:uuid:ffffffff-0000-4000-8000-000000000009' }), {
    address: '10.1.3.99',
    port: 1,
  });
  prober.handle(pmOf({}), { address: '172.16.0.1', port: 1 });
  prober.handle(Buffer.from('<soap:Envelope'), { address: '10.1.3.99', port: 1 });
  flushSightings();
  for (const id of [0, 5, 100, 200, 254]) log.push(`peers ${JSON.stringify(w2.peers(ids2[id]!))}`);
  for (const id of [0, 7, 39]) log.push(`peers ${JSON.stringify(w1.peers(ids1[id]!))}`);
  for (const id of [0, 50, 99, 120]) log.push(`seen ${id} ${damping.seenCount(hexU(ids2[id]!))}`);

  // 6. Probes for segments 0..99 again: damped now (silent, or answered with p = 0.33).
  for (let k = 0; k < 8; k++) {
    r.handle(probe(ids2.slice(k * 10, k * 10 + 255), 2), src(40 + k));
    clock.advance(5);
  }
  clock.advance(100);
  // 7. Follow-ups: probes for missing segments, then some of them arrive.
  for (let k = 0; k < 10; k++) r.handle(probe(ids2.slice(150 + k, 160 + k * 12), 2), src(50 + (k % 4)));
  clock.advance(100);
  for (const i of [155, 160, 161, 170, 299]) {
    held.set(hexU(ids2[i]!), { blockCount: 1, complete: true, ageMs: 10 });
    r.announce(i % 2 ? hexU(ids2[i]!) : ids2[i]!.toString('hex'));
    clock.advance(i === 160 ? 0 : 30);
  }
  clock.advance(100);
  // Too late: the remembered probes expired.
  clock.advance(10_000);
  held.set(hexU(ids2[180]!), { blockCount: 1, complete: true });
  r.announce(hexU(ids2[180]!));
  clock.advance(100);
  // 8. A flood from one source: its own limit, not the others'.
  for (let k = 0; k < 60; k++) r.handle(probe(ids2.slice(0, 4), 2), src(60));
  r.handle(probe(ids2.slice(0, 4), 2), src(61));
  clock.advance(100);
  // 9. The watch keeps probing (its repeats with new MessageIDs, the crowd factor).
  clock.advance(8000);
  w2.close();
  w1.close();
  clock.advance(8000);
  log.push(`stats ${JSON.stringify(rtA.stats)}`);
  log.push(`wait ${prober.initialWaitMs} crowd ${prober.crowdFactor()} ttl ${prober.followUpTtlMs}`);
  r.close();
  small.close();
  return log;
}

t.test('the state machines send the recorded datagrams and report the recorded sightings', async (t) => {
  const lines = run();
  t.ok(lines.length > 150, `${lines.length} events`);
  if (process.env.PEERDIST_RECORD_REPLAY === '1') {
    writeFileSync(FIXTURE, `${lines.join('\n')}\n`);
    t.pass('recorded');
    return;
  }
  const want = readFileSync(FIXTURE, 'utf8').replace(/\n$/, '').split('\n');
  t.equal(lines.length, want.length, 'as many events as recorded');
  let diffs = 0;
  for (let k = 0; k < Math.max(lines.length, want.length) && diffs < 10; k++)
    if (lines[k] !== want[k]) {
      diffs++;
      t.equal(lines[k], want[k], `event ${k}`);
    }
  t.equal(diffs, 0, 'every event as recorded');
});
