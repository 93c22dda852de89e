/**
 * CPU per discovery datagram (issue 24 item 3: the scale model's DaemonDiscovery.messageCpuMs):
 * the Responder and Prober state machines of src/discovery, no sockets, on a 16 MiB v2 download's
 * traffic in a flash crowd: probes of 255 segment IDs, ProbeMatches naming half of them (a
 * responder half-way through), follow-ups naming a few. Each figure is process CPU time (user +
 * system, garbage collection included) over many datagrams, divided by their number.
 *   npm run build && node dist/bench/discovery-cost.js [--rounds 3] [--json]
 */
import { benchArgs } from './args.js';
import { DampingTable } from '../src/discovery/damping.js';
import { Responder, type SegmentLookup } from '../src/discovery/probe-responder.js';
import { Prober } from '../src/discovery/prober.js';
import { newStats, type Peer, type Runtime, type Timers } from '../src/discovery/runtime.js';
import { localAddressFilter } from '../src/discovery/subnet.js';
import { encodeProbe, type Probe, parseDiscoveryMessage } from '../src/protocol/pccrd/codec.js';
import { nullLogger } from '../src/util/log.js';

const { values } = benchArgs(import.meta.url, { options: { rounds: { type: 'string' }, json: { type: 'boolean' } } });
const rounds = Number(values.rounds ?? 3);

/** Timers that run only when asked (run()), on a clock moved by hand. */
class HandClock implements Timers {
  t = 1_000_000;
  private seq = 0;
  readonly due = new Map<number, { at: number; fn: () => void }>();
  set(fn: () => void, ms: number): unknown {
    this.due.set(++this.seq, { at: this.t + ms, fn });
    return this.seq;
  }
  clear(h: unknown): void {
    this.due.delete(h as number);
  }
  /** Moves the clock by `ms` and runs every timer due by then. */
  run(ms: number): void {
    this.t += ms;
    for (const [id, e] of [...this.due]) {
      if (e.at > this.t) continue;
      this.due.delete(id);
      e.fn();
    }
  }
}

function runtime(clock: HandClock, tag: number): Runtime {
  let n = 0;
  let r = tag * 7919 + 1;
  return {
    now: () => clock.t,
    random: () => {
      r = (r * 1103515245 + 12345) % 2147483648;
      return r / 2147483648;
    },
    timers: clock,
    newMessageId: () => `urn:uuid:${String(tag).padStart(8, '0')}-0000-4000-8000-${String(++n).padStart(12, '0')}`,
    logger: nullLogger,
    stats: newStats(),
  };
}

const SEGMENTS = 256;
const seg = (i: number) => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(0x5eed, 28);
  return b;
};
const ids = Array.from({ length: SEGMENTS }, (_, i) => seg(i));
const hexOf = (b: Buffer) => b.toString('hex').toUpperCase();
const isLocal = localAddressFilter([{ address: '10.0.0.1', netmask: '255.255.0.0' }]);

/** A responder holding `held` of the segments (partial: no damping), its replies captured. */
function responder(k: number, clock: HandClock, held: Set<number>, out: Buffer[]): Responder {
  const table = new Map<string, { blockCount: number; complete: boolean; ageMs: number }>();
  for (const i of held) table.set(hexOf(ids[i]!), { blockCount: 1, complete: false, ageMs: 500 });
  const lookup: SegmentLookup = (list) => list.map((id) => table.get(hexOf(id)));
  let m = 0;
  return new Responder(
    {
      lookup,
      xaddrs: () => [`10.0.1.${k}:80`],
      endpoint: `urn:uuid:eeeeeeee-0000-4000-8000-${String(k).padStart(12, '0')}`,
      instanceId: 1_700_000_000,
      nextMessageNumber: () => ++m,
      isLocal,
      isOwnProbe: () => false,
      damping: new DampingTable(),
      send: (d) => out.push(d),
      perSourceRate: { rate: 1e9, burst: 1e9 },
      globalRate: { rate: 1e9, burst: 1e9 },
    },
    runtime(clock, 100 + k),
  );
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

interface Row {
  round: number;
  probeHandledMs: number;
  matchHandledMs: number;
  followUpHandledMs: number;
  probeSentMs: number;
  matchEntries: number;
}

function round(r: number): Row {
  const N = 3000;
  const clock = new HandClock();
  // (1) A responder handling probes of 255 IDs from many probers (new MessageID each), answering.
  const replies: Buffer[] = [];
  const half = new Set(Array.from({ length: SEGMENTS / 2 }, (_, i) => 2 * i));
  const resp = responder(1, clock, half, replies);
  const probes = Array.from({ length: N }, (_, i) =>
    Buffer.from(
      encodeProbe({
        version: 2,
        messageId: `urn:uuid:bbbbbbbb-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
        segmentIds: ids.slice(0, 255),
      }),
    ),
  );
  const from = (i: number): Peer => ({ address: `10.0.2.${(i % 200) + 1}`, port: 50000 });
  let t0 = cpuMs();
  for (let i = 0; i < N; i++) {
    resp.handle(probes[i]!, from(i));
    clock.run(70); // its reply goes out (1..65 ms)
  }
  const probeHandledMs = (cpuMs() - t0) / N;
  if (replies.length !== N) throw new Error(`expected ${N} replies, got ${replies.length}`);
  const entries = (
    parseDiscoveryMessage(replies[0]!, { probeSegments: () => ids.slice(0, 255) }) as { matches: unknown[] }
  ).matches.length;

  // (2) A prober sending probes (a watch of 255 IDs; each repeat a new MessageID) and handling
  // the ProbeMatches of 16 responders to each, full (half the IDs) or follow-up sized (4 IDs).
  const sent: Buffer[] = [];
  const pclock = new HandClock();
  const prt = runtime(pclock, 7);
  const prober = new Prober(
    {
      send: (d) => sent.push(d),
      isLocal,
      ownEndpoint: 'urn:uuid:00000000-1111-4000-8000-000000000000',
      damping: new DampingTable(),
      timing: { maxProbesPerSecond: 1e9, probeBurst: 1e9 },
    },
    prt,
  );
  prober.watch(ids.slice(0, 255), 2);
  const full: Responder[] = [];
  const small: Responder[] = [];
  const fullOut: Buffer[] = [];
  const smallOut: Buffer[] = [];
  for (let k = 0; k < 16; k++) {
    full.push(responder(10 + k, pclock, new Set(Array.from({ length: 128 }, (_, i) => (2 * i + k) % 255)), fullOut));
    small.push(responder(40 + k, pclock, new Set([k, k + 20, k + 40, k + 60]), smallOut));
  }
  let fullMs = 0;
  let smallMs = 0;
  let fullN = 0;
  let smallN = 0;
  let probeSentMs = 0;
  let probesSent = 0;
  const cycles = Math.ceil(N / 16);
  for (let c = 0; c < cycles; c++) {
    // The next probe of the watch (the prober's timer, up to 6 s with the crowd factor).
    const before = sent.length;
    t0 = cpuMs();
    pclock.run(6000);
    probeSentMs += cpuMs() - t0;
    probesSent += sent.length - before;
    const probe = sent[sent.length - 1]!;
    const p = parseDiscoveryMessage(probe) as Probe;
    if (p.kind !== 'Probe') throw new Error('not a probe');
    fullOut.length = 0;
    smallOut.length = 0;
    for (const x of full) x.handle(probe, { address: '10.0.0.9', port: 3702 });
    for (const x of small) x.handle(probe, { address: '10.0.0.9', port: 3702 });
    // Replies go out on the responders' timers, which share the prober's clock: run them without
    // running the prober's next probe (its repeat is later than 65 ms).
    pclock.run(70);
    t0 = cpuMs();
    for (let k = 0; k < fullOut.length; k++) prober.handle(fullOut[k]!, { address: `10.0.1.${10 + k}`, port: 3702 });
    fullMs += cpuMs() - t0;
    fullN += fullOut.length;
    t0 = cpuMs();
    for (let k = 0; k < smallOut.length; k++) prober.handle(smallOut[k]!, { address: `10.0.1.${40 + k}`, port: 3702 });
    smallMs += cpuMs() - t0;
    smallN += smallOut.length;
  }
  if (fullN === 0 || smallN === 0 || probesSent === 0) throw new Error('no traffic measured');
  if (prt.stats.matchesReceived !== fullN + smallN)
    throw new Error(`the prober took ${prt.stats.matchesReceived} of ${fullN + smallN} ProbeMatches`);
  return {
    round: r,
    probeHandledMs,
    matchHandledMs: fullMs / fullN,
    followUpHandledMs: smallMs / smallN,
    probeSentMs: probeSentMs / probesSent,
    matchEntries: entries,
  };
}

const rows: Row[] = [];
for (let r = 1; r <= rounds; r++) rows.push(round(r));
if (values.json) process.stdout.write(`${JSON.stringify({ rows }, null, 2)}\n`);
else
  for (const x of rows)
    process.stdout.write(
      `round ${x.round}: probe (255 IDs) handled and answered ${x.probeHandledMs.toFixed(3)} ms; ` +
        `ProbeMatch (${x.matchEntries} entries) handled ${x.matchHandledMs.toFixed(3)} ms; ` +
        `follow-up-sized ProbeMatch (4 entries) handled ${x.followUpHandledMs.toFixed(3)} ms; ` +
        `probe sent ${x.probeSentMs.toFixed(3)} ms (CPU per datagram)\n`,
    );
