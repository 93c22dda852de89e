/** Fuzz targets: MS-PCCRD codec (parseDiscoveryMessage), the Responder and the Prober state machines. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { encodeProbe, encodeProbeMatches, parseDiscoveryMessage } from '../../src/protocol/pccrd/codec.js';
import { DiscoveryParseError } from '../../src/protocol/pccrd/errors.js';
import { DampingTable } from '../../src/discovery/damping.js';
import { Responder, MAX_REPLY_BYTES } from '../../src/discovery/probe-responder.js';
import { Prober, type SegmentWatch } from '../../src/discovery/prober.js';
import { parseXAddr } from '../../src/protocol/pccrd/values.js';
import { newStats, type Runtime, type Peer } from '../../src/discovery/runtime.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { nullLogger } from '../../src/util/log.js';
import { mutate, mutateText, Rng } from './lib.js';
import { fixturesDir, FuzzFailure, typed, type FuzzTarget } from './common.js';

function discoverySeeds(): string[] {
  const dir = fixturesDir('discovery');
  const seeds = readdirSync(dir)
    .filter((f) => f.endsWith('.xml'))
    .map((f) => readFileSync(join(dir, f), 'utf8'));
  const rng = new Rng(0xd1);
  const ids = [rng.bytes(32), rng.bytes(32), rng.bytes(48)];
  seeds.push(encodeProbe({ version: 1, messageId: 'urn:uuid:11111111-2222-4333-8444-555555555555', segmentIds: ids }));
  seeds.push(
    encodeProbe({
      version: 2,
      messageId: 'urn:uuid:11111111-2222-4333-8444-666666666666',
      segmentIds: ids.slice(0, 2),
    }),
  );
  const base = {
    messageId: 'urn:uuid:a',
    relatesTo: 'urn:uuid:b',
    instanceId: 7,
    messageNumber: 9,
    endpoint: 'urn:uuid:c',
    xaddrs: ['127.0.0.2:7170', '[::1]:80'],
  };
  seeds.push(
    encodeProbeMatches({
      ...base,
      version: 1,
      matches: [
        { segmentId: ids[0]!, blockCount: 3 },
        { segmentId: ids[2]!, blockCount: 512 },
      ],
    }),
  );
  seeds.push(
    encodeProbeMatches(
      {
        ...base,
        version: 2,
        matches: [{ segmentId: ids[1]!, partial: true, complete: true }],
        segmentAges: { units: 3, entries: [{ index: 0, age: 5 }] },
      },
      ids.slice(0, 2),
    ),
  );
  return seeds;
}

function xmlInput(rng: Rng, seeds: string[]): Buffer {
  const seed = rng.pick(seeds);
  if (rng.bool(0.3))
    return mutate(rng, Buffer.from(seed, 'utf8'), { corpus: seeds.map((s) => Buffer.from(s)), maxLength: 40_000 });
  return Buffer.from(mutateText(rng, seed, { maxLength: 40_000 }), 'utf8');
}

export function pccrdCodecTarget(): FuzzTarget {
  const seeds = discoverySeeds();
  const probed = [new Rng(1).bytes(32), new Rng(2).bytes(32)];
  return {
    name: 'pccrd-codec',
    generate: (rng) => xmlInput(rng, seeds),
    run(input) {
      try {
        parseDiscoveryMessage(input);
        // v2 ProbeMatches are also decoded against a probe's segment list.
        parseDiscoveryMessage(input, { probeSegments: () => probed });
        return 'accepted';
      } catch (e) {
        return typed(e, DiscoveryParseError);
      }
    },
  };
}

/** Runtime with a manual clock; timers run when `flush()` is called. */
function manualRuntime(): Runtime & { advance(ms: number): void; flush(): void } {
  let now = 1_000_000;
  let seq = 0;
  const timers = new Map<number, () => void>();
  return {
    now: () => now,
    random: () => 0.5,
    timers: {
      set: (fn) => {
        timers.set(++seq, fn);
        return seq;
      },
      clear: (h) => {
        timers.delete(h as number);
      },
    },
    newMessageId: () => `urn:uuid:00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
    logger: nullLogger,
    stats: newStats(),
    advance: (ms) => {
      now += ms;
    },
    flush: () => {
      for (const [k, fn] of [...timers]) {
        timers.delete(k);
        fn();
      }
    },
  };
}

export function pccrdResponderTarget(): FuzzTarget & { runtime: Runtime } {
  const seeds = discoverySeeds();
  // Hold every segment ID that appears in a seed probe, so mutated probes reach the reply path.
  const held = new Set<string>();
  for (const s of seeds) {
    try {
      const m = parseDiscoveryMessage(s);
      if (m.kind === 'Probe') for (const id of m.segmentIds) held.add(id.toString('hex'));
    } catch {
      /* a fixture that is not a probe */
    }
  }
  const rt = manualRuntime();
  const isLocal = localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]);
  const sent: Array<{ d: Buffer; to: Peer }> = [];
  const responder = new Responder(
    {
      lookup: (ids) =>
        ids.map((id) => (held.has(id.toString('hex')) ? { blockCount: 4, complete: true, ageMs: 1000 } : undefined)),
      xaddrs: () => ['127.0.0.9:7170'],
      endpoint: 'urn:uuid:fuzz',
      instanceId: 1,
      nextMessageNumber: (() => {
        let n = 0;
        return () => ++n;
      })(),
      isLocal,
      isOwnProbe: () => false,
      damping: new DampingTable(),
      send: (d, to) => sent.push({ d, to }),
    },
    rt,
  );
  const sources = [
    '127.0.0.1',
    '10.1.2.3',
    '10.1.200.7',
    '10.2.0.1',
    '192.168.1.5',
    '::1',
    'fe80::1',
    '::ffff:10.1.0.9',
  ];
  let n = 0;
  return {
    name: 'pccrd-responder',
    runtime: rt,
    generate: (rng) => xmlInput(rng, seeds),
    run(input) {
      const from = { address: sources[n++ % sources.length]!, port: 3702 };
      rt.advance(50); // keep under the per-source limit so most datagrams reach the parser
      const before = rt.stats.dropped.malformed ?? 0;
      responder.handle(input, from);
      rt.flush();
      for (const { d, to } of sent.splice(0)) {
        if (!isLocal(to.address)) throw new FuzzFailure(`ProbeMatch sent to non-local ${to.address}`);
        if (d.length > MAX_REPLY_BYTES) throw new FuzzFailure(`ProbeMatch of ${d.length} bytes`);
        const m = parseDiscoveryMessage(d);
        if (m.kind !== 'ProbeMatches') throw new FuzzFailure('reply is not a ProbeMatches');
      }
      return (rt.stats.dropped.malformed ?? 0) > before ? 'rejected' : 'accepted';
    },
  };
}

/**
 * The probing side: ProbeMatches from the network (answers to our own probes, mutated) into the
 * Prober. It must not throw, and may only record peers for segments it probed, at local host:port
 * addresses.
 */
export function pccrdProberTarget(): FuzzTarget & { runtime: Runtime } {
  const rt = manualRuntime();
  const isLocal = localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]);
  const probes: Buffer[] = [];
  const prober = new Prober(
    { send: (d) => probes.push(d), isLocal, ownEndpoint: 'urn:uuid:me', damping: new DampingTable() },
    rt,
  );
  const rng = new Rng(0xab);
  const ids = { 1: [rng.bytes(32), rng.bytes(32)], 2: [rng.bytes(32), rng.bytes(32), rng.bytes(32)] };
  const watches: SegmentWatch[] = [prober.watch(ids[1], 1), prober.watch(ids[2], 2)];
  rt.flush();
  const watched = new Set([...ids[1], ...ids[2]].map((b) => b.toString('hex')));
  const seeds: string[] = [];
  for (const p of probes) {
    const m = parseDiscoveryMessage(p);
    if (m.kind !== 'Probe') continue;
    const base = {
      messageId: `urn:uuid:reply-${seeds.length}`,
      relatesTo: m.messageId,
      instanceId: 3,
      messageNumber: 4,
      endpoint: 'urn:uuid:peer',
      xaddrs: ['127.0.0.5:7170', '10.1.3.4:80', '[::1]:7170'],
    };
    seeds.push(
      m.version === 1
        ? encodeProbeMatches({
            ...base,
            version: 1,
            matches: m.segmentIds.map((segmentId, k) => ({ segmentId, blockCount: k + 1 })),
          })
        : encodeProbeMatches(
            {
              ...base,
              version: 2,
              matches: m.segmentIds.map((segmentId, k) => ({ segmentId, partial: true, complete: k % 2 === 0 })),
            },
            m.segmentIds,
          ),
    );
  }
  if (seeds.length === 0) throw new Error('prober sent no probes');
  const sources = ['127.0.0.1', '10.1.2.3', '10.9.9.9', '::1'];
  let n = 0;
  return {
    name: 'pccrd-prober',
    runtime: rt,
    generate: (r) => (r.bool(0.1) ? Buffer.from(r.pick(seeds)) : xmlInput(r, seeds)),
    run(input) {
      rt.advance(20);
      const before = rt.stats.dropped.malformed ?? 0;
      prober.handle(input, { address: sources[n++ % sources.length]!, port: 3702 });
      for (const w of watches) {
        for (const hex of watched) {
          for (const p of w.peers(Buffer.from(hex, 'hex'))) {
            const a = parseXAddr(p.address);
            if (!a || !isLocal(a.host)) throw new FuzzFailure(`peer recorded at non-local address ${p.address}`);
            if (p.blockCount <= 0) throw new FuzzFailure('peer recorded with no blocks');
          }
        }
      }
      return (rt.stats.dropped.malformed ?? 0) > before ? 'rejected' : 'accepted';
    },
  };
}
