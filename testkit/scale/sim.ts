/**
 * Scale simulation (issue 24): thousands of clients downloading one file in simulated time, each
 * with the project's real block Scheduler (src/engine/scheduler.ts) deciding what to fetch from
 * whom. Everything around the schedulers is a model, and deliberately a coarse one:
 *
 * - Blocks are tokens: a unit of `unitBytes` (a v2 segment, or a run of them for large files)
 *   stands for its bytes; nothing is hashed or copied, so a run costs memory and CPU per event.
 * - Network (net.ts): every client has a LAN NIC (up and down, `lanBps` each); each subnet is a
 *   site with its own WAN downlink (`wanBps`, at most `lanBps`); the origin has an uplink
 *   (`originUpBps`, default unlimited). Origin flows share their site's WAN by flow counting, and
 *   the WAN links share the origin uplink the same way; they do not load the client's NIC. Peer
 *   and hosted cache transfers take their turn on the sender's uplink and the receiver's downlink.
 * - Discovery (multicast, TTL 1: inside a subnet only): every `tickMs` a client hears the probes
 *   of the members of its view that are downloading (Scheduler.crowdSeen), and learns from
 *   ProbeMatches which blocks they hold: each block it still misses, at most `holdersPerBlock`
 *   holders (responders stay silent once enough have answered), v2 style (a sighting is a whole
 *   segment, with the time the holder got it as its growth while the holder is still downloading).
 *   The view is `view` random members of its subnet (default 32), not the whole subnet: the real
 *   Scheduler's peer assignment costs (missing blocks x known peers) per call and its crowd
 *   ownership (members) per call, which a whole 200-client subnet makes unaffordable here (see
 *   BENCHMARKS.md, "Scale simulation"). A subnet no larger than the view is seen whole. With
   `discovery` (DaemonDiscovery) the tick gives way to discovery as the daemon does it: probes on
   their repeat period, ProbeMatches and follow-ups after their delays, each on the daemons' CPUs.
 * - Hosted caches: a cache serves its subnets like a LAN peer (peerIsRelay); it pulls each block a
 *   client of its subnets fetched from the origin (the client's offer) over the LAN, once; clients
 *   learn its holdings at their ticks (GETSEGLIST polls). With hosted caches the clients do not use
 *   crowd ownership (crowdVisible false, as the real engine does when a hosted cache bridges),
 *   unless `cachesNameCrowd` (a peerdist cache per subnet names its crowd: ownership as without).
 * - The origin gate: a client starts the origin after the adaptive initial wait (300 ms with no
 *   peer known, 60 ms with one), as transfer.ts does.
 * - CPU (optional, `cpu`; issue 24 item 3): a client spends `receiveSecPerGiB` of CPU on every
 *   byte it receives (origin, peers, hosted cache: hashing, decryption, the cache write) and a
 *   serving client `serveSecPerGiB` on every byte it serves (encryption); the work takes its turn
 *   on a CPU in order (a FifoLink of CPU time): a core of the client's own (a daemon's event loop)
 *   and, with `cores`, also the cores all clients share (the namespace simulation's daemons on
 *   one machine). A block counts as arrived when both its
 *   bytes and the receiver's work on it are through; a peer's bytes leave once the sender's work
 *   on them is done. Hosted caches and their pulls cost no CPU. A download may also cost a fixed
 *   part at its start (`receiveStartSec`), its client program's CPU on the shared cores
 *   (`clientSec`), and a daemon's own core may carry only its event loop's share (`mainShare`).
 *   `startupMs`: from a client's
 *   arrival to its first step (content information, segment registration), counted in its time.
 * - Peer timeouts (optional, `peerTimeouts`): a served block's first byte later than the retrieval
 *   client's first-byte timeout fails the request ('timeout', the Scheduler's backoff).
 * Not modelled: loss, TCP slow start, the cache's disk, readers (no setReaderAt/setLimit), and
 * CPU unless `cpu` is given.
 */
import { CROWD_MAX_FACTOR, CROWD_REPEAT_CAP_MS, CROWD_UNIT, DEFAULT_TIMING } from '../../src/discovery/prober.js';
import { APP_MAX_DELAY_MS } from '../../src/discovery/probe-responder.js';
import { DEFAULT_FOLLOW_UP_LIMITS } from '../../src/discovery/follow-ups.js';
import { type Assignment, BlockTable, Scheduler } from '../../src/engine/scheduler.js';
import { PROBATION_SILENCE_MS } from '../../src/retrieval/client.js';
import { rng } from '../../test/helpers/rng.js';
import { crowdFactorOf, type LimitsReport, probeRate, type RealLimits } from './limits.js';
import { FifoLink, lanTransfer, SharedLinks } from './net.js';
import { EventQueue } from './queue.js';

/**
 * flash: every client within `jitterMs`; spread: uniformly over `overMs`; sequential: one after
 * another, each as the previous one completes (bench/sim.ts --mode sequential).
 */
export type Arrival = { kind: 'flash'; jitterMs: number } | { kind: 'spread'; overMs: number } | { kind: 'sequential' };

export interface ScaleConfig {
  clients: number;
  subnets: number;
  /** 'per-subnet', a number of caches (subnet s is served by cache s % N), or 0 for none. */
  hostedCaches: 'per-subnet' | number;
  fileBytes: number;
  /** Bytes per token (default: 64 KiB up to 64 MiB files, then file / 1024 rounded up to a power of two). */
  unitBytes?: number;
  wanBps: number;
  lanBps: number;
  originUpBps?: number;
  wanRttMs?: number;
  lanRttMs?: number;
  arrival: Arrival;
  seed: number;
  holdersPerBlock?: number;
  /** Members of its subnet a client hears and learns holdings from (default 32). */
  view?: number;
  tickMs?: number;
  /** Origin-rate series bucket (ms). */
  bucketMs?: number;
  /** Classify every origin fetch of a block its subnet already fetched (ScaleResult.duplicates). */
  diagnose?: boolean;
  /**
   * With a hosted cache per subnet: the caches name the clients that ask them for the same
   * segments (a peerdist hosted cache, protocol/pchc.md "Crowds across subnets"), so the engine
   * shares the crowd out by ownership (DiscoveryLike.bridged false); a cache's crowd is then its
   * subnet, which multicast already shows. Default false: caches that do not (Windows), no
   * ownership. (Caches serving several subnets are always modelled as not naming the crowd.)
   */
  cachesNameCrowd?: boolean;
  /** Per-client CPU cost of receiving and serving (see the module comment); absent: none. */
  cpu?: CpuModel;
  /** From a client's arrival to its first step (default 0). */
  startupMs?: number;
  /**
   * Discovery as the daemon does it (see DaemonDiscovery) instead of the tick's instant view;
   * absent: every `tickMs` a client hears its view's probes and learns their new blocks at once.
   */
  discovery?: DaemonDiscovery;
  /**
   * Peer requests with the retrieval client's first-byte timeouts (src/retrieval/client.ts): a
   * served block whose first byte comes later than 2 s (1.5 s from a peer not yet proven) fails
   * as 'timeout' with the Scheduler's own backoff; the Scheduler gets `proven`, as transfer.ts
   * passes it (an answer up to PROBATION_SILENCE_MS late still proves the peer). Default false:
   * peers never time out.
   */
  peerTimeouts?: boolean;
  /**
   * Discovery over the whole subnet through the daemon's real limits (testkit/scale/limits.ts;
   * `view` is ignored): every second each downloading member sends its probes (one per 255
   * segments, paced, repeated as the crowd factor says); every daemon of the subnet accepts at most
   * the responder's global rate of them (a random share when more come), and only an accepted probe
   * names its prober a crowd member (Scheduler.crowdSeen), is remembered for follow-ups (at most
   * followUpProbes, followUpPerSource a source) and is answered: the holders of the probe's
   * segments answer with what their damping lets through (silent for a segment after
   * dampingThreshold replies seen, while it is among the last dampingSegments they observed),
   * up to the prober's inbound rate; a holder's holdings reach the prober's Scheduler only if
   * DiscoveryFeed admits it (peerCap, crowdPeerCap for hosts seen probing, MAX_PROBERS of them).
   * Answers and crowd sightings count at the second's start; follow-ups when a block arrives.
   * Not modelled: the first probe's retransmits as distinct datagrams (a prober's first cycle is
   * paced like the rest), re-probes while no peer is known, bursts, datagram loss.
   */
  limits?: RealLimits;
}

/**
 * MS-PCCRD as src/discovery does it (protocol/pccrd.md), on the clients' CPUs:
 * - A downloading client multicasts a probe for its missing segments at its start and then every
 *   DEFAULT_TIMING.repeatMinMs-repeatMaxMs, times its crowd factor (prober.ts: the distinct
 *   responders of the last 5 s / CROWD_UNIT, 1..CROWD_MAX_FACTOR, capped at CROWD_REPEAT_CAP_MS).
 *   The first probe's retransmits (same MessageID) are left out: the model loses no datagram.
 * - Every member of its view handles the probe (the crowd member is seen then:
 *   Scheduler.crowdSeen; a daemon not downloading yet keeps it for RECENT_PROBES_MS, discovery.ts)
 *   and, if it holds something the prober has not heard of, answers after 1..APP_MAX_DELAY_MS
 *   (probe-responder.ts). It remembers the probe (follow-ups.ts: DEFAULT_FOLLOW_UP_LIMITS.ttlMs,
 *   longer in a crowd, Prober.followUpTtlMs) and sends a follow-up ProbeMatch 1..APP_MAX_DELAY_MS
 *   after a block arrives, at most FOLLOW_UP_RATE per second (burst FOLLOW_UP_BURST).
 * - Holdings are learnt only from those ProbeMatches (at most `holdersPerBlock` holders a block,
 *   standing in for damping); a sent probe, a handled probe and a handled ProbeMatch each cost
 *   its DaemonDiscovery cost on the daemon's CPU (the CPU model's FIFO), so a busy daemon probes, hears and
 *   learns late. Hosted caches keep the tick (GETSEGLIST polls).
 * Views are symmetric here: a client's probes reach the members of its own view.
 */
export interface DaemonDiscovery {
  /** CPU ms per datagram (bench/discovery-cost.ts measures them): a probe sent. */
  probeSentMs: number;
  /** A probe handled (and answered). */
  probeHandledMs: number;
  /** A ProbeMatch answering a probe handled. */
  matchHandledMs: number;
  /** A follow-up ProbeMatch (a few segments) sent, and handled. */
  followUpMs: number;
}

export interface CpuModel {
  /** CPU seconds per GiB received (bench/loopback.ts measures the daemon's). */
  receiveSecPerGiB: number;
  /** CPU seconds per GiB served to peers. */
  serveSecPerGiB: number;
  /** Cores all clients share (one machine) besides each one's own; absent: only its own. */
  cores?: number;
  /**
   * CPU seconds a download costs its receiving daemon besides the per-GiB cost (a fresh daemon's
   * compilation and set-up: bench/scale-machine.ts fits both), spent at the download's first step
   * on the daemon's own core and the shared cores. Default 0.
   */
  receiveStartSec?: number;
  /**
   * CPU seconds of the program that asks for the download (`peerdist get`: its start, its copy of
   * the bytes, its exit), on the shared cores only, from the client's arrival: its start-up ends
   * no earlier than the shared cores are through with it. Needs `cores` (ignored without). Default 0.
   */
  clientSec?: number;
  /**
   * CPU seconds a fresh download costs its receiving daemon over its first `bytes` received (the
   * code its blocks run compiled as they first come: bench/scale-machine.ts measures it from
   * downloads of 1-64 MiB, testkit/scale/machine.ts fitRamp), spread evenly over those bytes on top
   * of their per-GiB cost; `receiveStartSec` is then the part spent before the first block. Absent:
   * none (the whole fixed part at the first step).
   */
  receiveRamp?: { sec: number; bytes: number };
  /**
   * Blocks that come alone (issue 24 item 3): a unit whose bytes reach its daemon `aloneWindowMs` or
   * more after the daemon's previous one costs `aloneReceiveMs` of CPU more, and a unit a daemon
   * serves that long after the previous one it served `aloneServeMs` more. Work on a stream of
   * blocks is shared (the cache's group commit, src/cache/packs.ts: one fdatasync and one index
   * batch for every block that arrived meanwhile; one wake-up of the event loop for several
   * completions), as in the loopback downloads the per-GiB costs are measured from; a block that
   * trickles in over a WAN-bound or CPU-starved link pays all of it. testkit/scale/flash.ts
   * measureTrickle measures the two costs, testkit/scale/commit.ts the window (a commit's time).
   * Absent: none beyond the per-GiB costs.
   *
   * With `streamGapMs` and `trickleGapMs` the window gives way to a line measured at two points:
   * a unit that comes `streamGapMs` or less after the previous one (the gap between blocks in the
   * downloads the per-GiB costs are measured from, which already contain whatever those cost) costs
   * nothing more, one `trickleGapMs` or more after it (the trickled download the extra costs are
   * measured from) all of it, and one in between its share by the gap. Without them a sequential
   * peer download whose blocks come a little more than a commit apart was charged twice.
   */
  alone?: { receiveMs: number; serveMs: number; windowMs: number; streamGapMs?: number; trickleGapMs?: number };
  /**
   * The share of a daemon's CPU on its event loop (its own core); the rest runs on V8's and
   * libuv's helper threads, in parallel, on the shared cores only (bench/scale-machine.ts
   * measures it from the main thread's CPU). Default 1: all of it on the event loop.
   */
  mainShare?: number;
}

/**
 * CPU per discovery datagram of a 16 MiB v2 flash crowd, `nice -n 10 node
 * dist/bench/discovery-cost.js --rounds 4` (2026-12-07 17:25 UTC, load 46; rounds 2-4, the first
 * warms up): a probe of 255 IDs handled and answered 0.44-0.53 ms, a ProbeMatch of 128 entries
 * handled 0.34-0.40, a follow-up-sized one 0.21-0.24, a probe sent 0.15-0.23. Measured on a busy
 * machine, as the namespace runs are; a check against the daemons' own profile: the 32-client
 * crowd (BENCHMARKS.md "Issue 25 target 4", main 8e0b9e9) spent about 3.95 of 9.4 CPU s per
 * daemon on about 8,500 datagrams, 0.46 ms each.
 */
export const DAEMON_DISCOVERY: DaemonDiscovery = {
  probeSentMs: 0.17,
  probeHandledMs: 0.47,
  matchHandledMs: 0.36,
  followUpMs: 0.23,
};

/**
 * Why the origin sent a block a second time into the same subnet (diagnose): counted per block
 * fetch, by what the subnet's earlier copy was doing when the fetch was assigned, and by how the
 * fetching client chose it (its crowd rank for the block: owner, k-th stand-in, or no ownership).
 */
export interface DuplicateReport {
  /** Block fetches from the origin, and how many of them were the subnet's first. */
  fetches: number;
  first: number;
  /** Another client of the subnet was fetching it from the origin at that moment. */
  whileInFlight: number;
  /** Some client of the subnet held it already (the fetcher had not heard yet). */
  whileHeld: number;
  /** By the fetcher's role: rank 0 (owner), 1, 2, 3+ (stand-ins), none (no crowd ownership). */
  byRole: Record<string, number>;
  /** Of whileInFlight: the earlier copy's fetcher was the owner (rank 0) / a stand-in / without ownership. */
  earlierBy: Record<string, number>;
  /**
   * Of whileInFlight with crowd ownership on both sides: the two fetchers named different owners
   * for the block (their crowds differed: `views differ`), or the same one (`views agree`: a
   * stand-in stepped in while the owner's copy, or the owner while a stand-in's, was in flight).
   */
  owners: Record<string, number>;
  /** Duplicate fetches by the time since the fetcher's arrival (s): <2, 2-10, 10-60, >=60. */
  bySinceArrival: Record<string, number>;
  /** Duplicate fetches by how long the earlier copy had been in flight (s): <1, 1-3, 3-10, 10-30, >=30. */
  byInFlightAge: Record<string, number>;
}

export interface ScaleResult {
  config: Required<Omit<ScaleConfig, 'originUpBps' | 'diagnose' | 'cpu' | 'discovery' | 'limits'>> & {
    originUpBps: number | null;
    cpu: CpuModel | null;
    discovery: DaemonDiscovery | null;
    limits?: RealLimits;
  };
  tokens: number;
  completed: number;
  /** One client alone, plain HTTP download over the same path (ms). */
  plainMs: number;
  completionMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  /** completionMs / plainMs. */
  vsPlain: { p50: number; p95: number; p99: number; max: number };
  originCopies: number;
  originCopiesPerSubnet: number[];
  bytesBySource: { origin: number; peer: number; hostedCache: number };
  /** Bytes hosted caches pulled from clients (offers), not part of any client's download. */
  hostedCachePullBytes: number;
  peakOriginBps: number;
  simulatedMs: number;
  events: number;
  originFlows: number;
  lanTransfers: number;
  schedulerCalls: number;
  /** Peer requests that hit the first-byte timeout (peerTimeouts). */
  peerTimeouts: number;
  /** Discovery datagrams sent or handled by the clients (daemon discovery). */
  discoveryDatagrams: number;
  /**
   * 32-bit FNV-1a over every assignment the schedulers made, in order (client, kind, block, count,
   * peer): two runs with the same value made the same decisions (bench/scheduler-ab.ts).
   */
  decisionHash: number;
  originSeries: { bucketMs: number; bytes: number[] };
  /** Per client, completion time after its arrival (ms), in client order. */
  completions: number[];
  /**
   * With `cpu`: CPU seconds each daemon was given (bytes received and served, its start,
   * discovery datagrams), in client order, and the client programs' (cpu.clientSec) together.
   */
  cpu?: { daemonSeconds: number[]; clientSeconds: number };
  duplicates?: DuplicateReport;
  /** With `limits`: what the limits did. */
  limits?: LimitsReport;
}

export interface ScaleRun {
  result: ScaleResult;
  wallMs: number;
  cpuMs: number;
  eventsPerSec: number;
  peakRssBytes: number;
}

// Event kinds.
const ARRIVE = 1,
  TICK = 2,
  WAKE = 3,
  BEGIN = 4,
  FINISH = 5,
  LAN_DONE = 6,
  /** An origin block's bytes arrived earlier; the receiver's CPU is through with it now. */
  ORIGIN_DONE = 7,
  /** Client x's probe timer fired (daemon discovery). */
  PROBE = 8,
  /** A member handled a probe (slot: prober, view index). */
  HEARD = 9,
  /** The prober handled a ProbeMatch (slot: prober, view index, send time). */
  MATCH = 10,
  /** A responder's follow-up timer fired (slot: prober, view index). */
  FOLLOW = 11,
  /** A peer request's first-byte timer fired before its first byte (lan slot). */
  PEER_TIMEOUT = 12,
  /** A discovery datagram reached a daemon: its CPU takes it in turn (slot: then HEARD or MATCH). */
  DELIVER = 13,
  /** Client x arrived; its client program's CPU takes its turn on the shared cores (cpu.clientSec). */
  START = 14,
  /** A second of subnet x's discovery through the real limits (`limits`). */
  LIMITS = 15;
/** Follow-up ProbeMatches per second and burst over all probers (probe-responder.ts defaults). */
const FOLLOW_UP_RATE = 100,
  FOLLOW_UP_BURST = 200;
/** Responders counted for the crowd factor over this window (prober.ts CROWD_WINDOW_MS). */
const CROWD_WINDOW_MS = 5000;
/** Probes heard before a download began still name crowd members (discovery.ts RECENT_PROBES_MS). */
const RECENT_PROBES_MS = 3000;
/** First-byte timeouts of the retrieval client (client.ts defaults: proven peer; on probation). */
const FIRST_BYTE_MS = 2000,
  PROBATION_FIRST_BYTE_MS = 1500;
// Sources.
const ORIGIN = 0,
  PEER = 1,
  HC = 2,
  PULL = 3;

interface Tag {
  src: number;
  /** Client that receives (for PULL: the serving client). */
  c: number;
  block: number;
  count: number;
  /** Peer client index or hosted cache index (PULL: the cache). */
  from: number;
}

/** One 32-bit word into an FNV-1a hash, byte by byte. */
function mix(h: number, v: number): number {
  for (let k = 0; k < 4; k++) h = Math.imul(h ^ ((v >>> (8 * k)) & 255), 0x01000193);
  return h;
}

const ipOf = (c: number) => `10.${(c >> 16) & 255}.${(c >> 8) & 255}.${c & 255}`;
const hcAddrOf = (h: number) => `172.16.${(h >> 8) & 255}.${h & 255}:443`;

/** A growable log of (block, holder, time): who got what when, per subnet or per cache. */
class GainLog {
  block = new Int32Array(1024);
  who = new Int32Array(1024);
  at = new Float64Array(1024);
  n = 0;
  add(block: number, who: number, at: number): void {
    if (this.n === this.block.length) {
      const cap = this.n * 2;
      const b = new Int32Array(cap);
      b.set(this.block);
      this.block = b;
      const w = new Int32Array(cap);
      w.set(this.who);
      this.who = w;
      const a = new Float64Array(cap);
      a.set(this.at);
      this.at = a;
    }
    this.block[this.n] = block;
    this.who[this.n] = who;
    this.at[this.n] = at;
    this.n++;
  }
}

export function defaultUnit(fileBytes: number): number {
  if (fileBytes <= 64 * 1024 * 1024) return 64 * 1024;
  let u = 64 * 1024;
  while (u * 1024 < fileBytes) u *= 2;
  return u;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** `observe` is called every 65,536 events (the caller samples memory there). */
export function runScale(cfg: ScaleConfig, observe?: () => void): ScaleResult {
  const C = cfg.clients;
  const S = cfg.subnets;
  if (!(C >= 1 && S >= 1 && S <= C)) throw new RangeError('need 1 <= subnets <= clients');
  const unit = cfg.unitBytes ?? defaultUnit(cfg.fileBytes);
  const n = Math.ceil(cfg.fileBytes / unit);
  const sizeOf = (g: number) => (g === n - 1 ? cfg.fileBytes - unit * (n - 1) : unit);
  const wanRtt = cfg.wanRttMs ?? 20;
  const lanRtt = cfg.lanRttMs ?? 1;
  const M = cfg.holdersPerBlock ?? 8;
  const tickMs = cfg.tickMs ?? 1000;
  const bucketMs = cfg.bucketMs ?? 1000;
  const H = cfg.hostedCaches === 'per-subnet' ? S : cfg.hostedCaches;
  const bytesPerMs = (bps: number) => bps / 8 / 1000;
  const random = rng(cfg.seed);

  const queue = new EventQueue(4096);
  const series: number[] = [];
  if (cfg.wanBps > cfg.lanBps) throw new RangeError('the model needs wan <= lan');
  const net = new SharedLinks<Tag>(
    queue,
    { begin: BEGIN, finish: FINISH },
    cfg.originUpBps ? bytesPerMs(cfg.originUpBps) : Infinity,
    (_link, from, to, bytes) => addSeries(bytes, from, to),
  );
  const wan = Array.from({ length: S }, () => net.addLink(bytesPerMs(cfg.wanBps)));
  const lan = bytesPerMs(cfg.lanBps);
  const up = Array.from({ length: C }, () => new FifoLink(lan));
  const down = Array.from({ length: C }, () => new FifoLink(lan));
  // CPU as links of CPU time: `work` bytes of "CPU ms per byte" each (see CpuModel).
  const cpuCfg = cfg.cpu;
  const recvMsPerByte = cpuCfg ? (cpuCfg.receiveSecPerGiB * 1000) / 2 ** 30 : 0;
  const serveMsPerByte = cpuCfg ? (cpuCfg.serveSecPerGiB * 1000) / 2 ** 30 : 0;
  // A daemon's work goes through one core of its own (its event loop) and, on one machine, through
  // the machine's cores shared by all.
  const sharedCpu = cpuCfg?.cores ? new FifoLink(cpuCfg.cores) : undefined;
  const ownCpu = cpuCfg ? Array.from({ length: C }, () => new FifoLink(1)) : undefined;
  /** When client c's CPU is through with `ms` of work handed to it at `at`. */
  const mainShare = cpuCfg?.mainShare ?? 1;
  /** CPU ms each daemon was given (ScaleResult.cpu), and the client programs' together. */
  const cpuSpent = new Float64Array(cpuCfg ? C : 0);
  let clientCpuMs = 0;
  const cpuWork = (c: number, at: number, ms: number) => {
    if (ms <= 0) return at;
    cpuSpent[c]! += ms;
    return Math.max(ownCpu![c]!.reserve(at, ms * mainShare), sharedCpu?.reserve(at, ms) ?? 0);
  };
  // A fresh download's compilation over its first bytes, and the cache's commits (CpuModel).
  const rampMsPerByte = cpuCfg?.receiveRamp ? (cpuCfg.receiveRamp.sec * 1000) / cpuCfg.receiveRamp.bytes : 0;
  const rampLeft = new Float64Array(rampMsPerByte > 0 ? C : 0);
  const alone = cpuCfg?.alone;
  const lastArrival = new Float64Array(alone ? C : 0).fill(-Infinity);
  const lastServed = new Float64Array(alone ? C : 0).fill(-Infinity);
  /** The share of a unit's extra cost (CpuModel.alone) for a unit `gap` ms after the previous one. */
  const aloneShare = (gap: number) => {
    const { windowMs, streamGapMs: lo, trickleGapMs: hi } = alone!;
    if (lo === undefined || hi === undefined || !(hi > lo)) return gap >= windowMs ? 1 : 0;
    return gap <= lo ? 0 : gap >= hi ? 1 : (gap - lo) / (hi - lo);
  };
  /** The receiver's CPU on `bytes` whose last byte reached daemon c at `at`: when it is through. */
  const receiveWork = (c: number, at: number, bytes: number) => {
    let ms = bytes * recvMsPerByte;
    if (rampMsPerByte > 0 && rampLeft[c]! > 0) {
      const take = Math.min(bytes, rampLeft[c]!);
      rampLeft[c]! -= take;
      ms += take * rampMsPerByte;
    }
    if (alone) {
      ms += aloneShare(at - lastArrival[c]!) * alone.receiveMs;
      lastArrival[c] = at;
    }
    return cpuWork(c, at, ms);
  };
  /** The server's CPU on `bytes` daemon c is asked for at `at`: when they can leave. */
  const serveWork = (c: number, at: number, bytes: number) => {
    let ms = bytes * serveMsPerByte;
    if (alone) {
      ms += aloneShare(at - lastServed[c]!) * alone.serveMs;
      lastServed[c] = at;
    }
    return cpuWork(c, at, ms);
  };
  const startupMs = cfg.startupMs ?? 0;
  const receiveStartMs = (cpuCfg?.receiveStartSec ?? 0) * 1000;
  const clientMs = (cpuCfg?.clientSec ?? 0) * 1000;
  /**
   * Client c arrives at `at` (now or later): its first step comes after its start-up and, with a
   * client program's CPU, no earlier than the shared cores are through with that (START reserves
   * it when the client arrives, so reservations go in time order).
   */
  const arriveAt = (at: number, c: number) => {
    if (clientMs > 0 && sharedCpu) queue.push(at, START, c);
    else queue.push(at + startupMs, ARRIVE, c);
  };
  // Daemon discovery (DaemonDiscovery) and peer timeouts: state only when asked for.
  const disc = cfg.discovery;
  const drand = rng(cfg.seed * 7919 + 17);
  /** When daemon c has handled one discovery datagram that reached it (or was due) at `at`. */
  let datagrams = 0;
  const msgWork = (c: number, at: number, ms: number) => {
    datagrams++;
    return cpuCfg ? cpuWork(c, at, ms) : at;
  };
  // Per prober, by view index: until when that member remembers its latest probe (follow-ups),
  // whether a follow-up is on its way, when that member last answered (the crowd factor).
  const followUntil: Array<Float64Array | undefined> = new Array(C);
  const followPending: Array<Uint8Array | undefined> = new Array(C);
  const lastMatch: Array<Float64Array | undefined> = new Array(C);
  /** Per member: (prober, view index) pairs, flat: the probers whose view holds it. */
  const watchers: number[][] = disc ? Array.from({ length: C }, () => []) : [];
  /** Per daemon: the probers it heard, and when. */
  const heard: Array<Map<number, number> | undefined> = new Array(C);
  const fuTokens = new Float64Array(disc ? C : 0).fill(FOLLOW_UP_BURST);
  const fuAt = new Float64Array(disc ? C : 0);
  /** Discovery datagrams on their way: prober, view index, the time the answer left. */
  const mC: number[] = [];
  const mK: number[] = [];
  const mT: number[] = [];
  /** For DELIVER: the daemon the datagram reached, the event once it has handled it, its CPU ms. */
  const mTo: number[] = [];
  const mKind: number[] = [];
  const mCost: number[] = [];
  const mFree: number[] = [];
  const msg = (c: number, k: number, t: number) => {
    const slot = mFree.pop() ?? mC.length;
    mC[slot] = c;
    mK[slot] = k;
    mT[slot] = t;
    return slot;
  };
  /**
   * A datagram reaching daemon `to` at `at`: handled (`kind`) once its CPU gets to it. Its CPU is
   * reserved at the arrival, not ahead of it (a reservation ahead would idle the FIFO meanwhile).
   */
  const deliver = (at: number, to: number, kind: number, slot: number, ms: number) => {
    mTo[slot] = to;
    mKind[slot] = kind;
    mCost[slot] = ms;
    queue.push(at, DELIVER, slot);
  };
  /** Prober.crowdFactor: distinct responders of the last CROWD_WINDOW_MS over CROWD_UNIT. */
  const crowdFactor = (c: number, at: number) => {
    const lm = lastMatch[c];
    if (!lm) return 1;
    let r = 0;
    for (let k = 0; k < lm.length; k++) if (lm[k]! >= at - CROWD_WINDOW_MS) r++;
    return Math.min(CROWD_MAX_FACTOR, Math.max(1, r / CROWD_UNIT));
  };
  /** Prober.followUpTtlMs of daemon x. */
  const followTtl = (x: number, at: number) => {
    const f = crowdFactor(x, at);
    const ttl = DEFAULT_FOLLOW_UP_LIMITS.ttlMs;
    return f <= 1 ? ttl : Math.max(ttl, Math.min(DEFAULT_TIMING.repeatMaxMs * f, CROWD_REPEAT_CAP_MS) + 1000);
  };
  /** Per receiving client: when each peer became proven to its retrieval client (peerTimeouts). */
  const provenAt: Array<Map<number, number> | undefined> = new Array(C);
  const isProven = (c: number, x: number) => {
    const t = provenAt[c]?.get(x);
    return t !== undefined && t <= now;
  };
  const prove = (c: number, x: number, at: number) => {
    let m = provenAt[c];
    if (!m) provenAt[c] = m = new Map();
    if (!(m.get(x)! <= at)) m.set(x, at);
  };
  const hcUp = Array.from({ length: H }, () => new FifoLink(lan));
  const hcDown = Array.from({ length: H }, () => new FifoLink(lan));
  /** LAN transfers under way: tag and request time, by slot. */
  const lanTags: Array<Tag | undefined> = [];
  const lanAt: number[] = [];
  const lanFree: number[] = [];
  const lanStart = (from: FifoLink, to: FifoLink, bytes: number, tag: Tag) => {
    const slot = lanFree.pop() ?? lanTags.length;
    lanTags[slot] = tag;
    lanAt[slot] = now;
    // The sender encrypts the block (a client; a hosted cache costs nothing here), then its
    // bytes go; the receiver's work on them follows their arrival.
    const sent = cpuCfg && tag.src === PEER ? serveWork(tag.from, now + lanRtt, bytes) : now;
    if (cfg.peerTimeouts && tag.src === PEER) {
      // The retrieval client's first-byte timer (client.ts): 2 s for a proven peer, 1.5 s on
      // probation, whose answer still proves the peer up to PROBATION_SILENCE_MS. The sender
      // has done its work; the bytes are not sent.
      const first = Math.max(now + lanRtt, sent, from.free) + lanRtt / 2 - now;
      const proven = isProven(tag.c, tag.from);
      const limit = proven ? FIRST_BYTE_MS : PROBATION_FIRST_BYTE_MS;
      if (first > limit) {
        if (!proven && first <= PROBATION_SILENCE_MS) prove(tag.c, tag.from, now + first);
        queue.push(now + limit, PEER_TIMEOUT, slot, bytes);
        return;
      }
    }
    let at = lanTransfer(from, to, bytes, lanRtt, now);
    if (cpuCfg && tag.src !== PULL) at = receiveWork(tag.c, Math.max(at, sent + bytes / lan), bytes);
    queue.push(at, LAN_DONE, slot, bytes);
  };
  const hcOf = (s: number) => (H === 0 ? -1 : s % H);
  const hcHas = Array.from({ length: H }, () => new Uint8Array(n));
  const hcPulling = Array.from({ length: H }, () => new Uint8Array(n));
  const hcLog = Array.from({ length: H }, () => new GainLog());
  const addrIndex = new Map<string, number>();
  for (let h = 0; h < H; h++) addrIndex.set(hcAddrOf(h), -1 - h);

  const subnet = new Int32Array(C);
  const arrive = new Float64Array(C);
  const finish = new Float64Array(C).fill(Infinity);
  const gateAt = new Float64Array(C);
  const pendingWake = new Float64Array(C).fill(Infinity);
  const hcCursor = new Int32Array(C);
  const sched: Array<Scheduler | undefined> = new Array(C);
  const known: Array<Uint8Array | undefined> = new Array(C);
  const addr: string[] = new Array(C);
  const ip: string[] = new Array(C);
  /** Per client, the blocks it got in order and when (what its neighbours learn at their ticks). */
  const gotBlock: Array<Int32Array | undefined> = new Array(C);
  const gotAt: Array<Float64Array | undefined> = new Array(C);
  const gotN = new Int32Array(C);
  /** Per client, its view (members of its subnet it hears) and how far it has read each one's gains. */
  const viewOf: Array<Int32Array | undefined> = new Array(C);
  const viewCursor: Array<Int32Array | undefined> = new Array(C);
  const membersOf = Array.from({ length: S }, () => [] as number[]);
  const V = cfg.limits ? 0 : (cfg.view ?? 32);
  const table = new BlockTable(n);
  for (let g = 0; g < n; g++) table.set(g, g, 0, sizeOf(g));

  for (let c = 0; c < C; c++) {
    subnet[c] = c % S;
    ip[c] = ipOf(c);
    addr[c] = `${ip[c]}:80`;
    membersOf[c % S]!.push(c);
    addrIndex.set(addr[c]!, c);
    const at =
      cfg.arrival.kind === 'flash'
        ? Math.floor(random() * cfg.arrival.jitterMs)
        : cfg.arrival.kind === 'spread'
          ? Math.floor(random() * cfg.arrival.overMs)
          : 0;
    arrive[c] = at;
    if (cfg.arrival.kind !== 'sequential' || c === 0) arriveAt(at, c);
  }

  const bytesBy = new Float64Array(4);
  if (cfg.limits) for (let s = 0; s < S; s++) queue.push(0, LIMITS, s);
  const originBySubnet = new Float64Array(S);
  let events = 0;
  let schedulerCalls = 0;
  let decisionHash = 0x811c9dc5;
  let now = 0;
  let completed = 0;
  let lastFinish = 0;
  let lanTransfers = 0;
  let timeouts = 0;
  // Duplicate analysis (diagnose): per subnet x block, origin fetches in flight, when the oldest
  // started and its fetcher's role, and when a client of the subnet first held it.
  const diag = cfg.diagnose
    ? {
        inflight: new Uint16Array(S * n),
        since: new Float64Array(S * n),
        role: new Int8Array(S * n),
        fetched: new Uint8Array(S * n),
        /** The client whose copy is the oldest in flight. */
        who: new Int32Array(S * n),
        heldAt: new Float64Array(S * n).fill(Infinity),
      }
    : undefined;
  const dup: DuplicateReport = {
    fetches: 0,
    first: 0,
    whileInFlight: 0,
    whileHeld: 0,
    byRole: {},
    earlierBy: {},
    owners: {},
    bySinceArrival: {},
    byInFlightAge: {},
  };
  const bump = (rec: Record<string, number>, key: string) => {
    rec[key] = (rec[key] ?? 0) + 1;
  };
  const noteOriginFetch = (c: number, g: number, rank: number | undefined) => {
    const d = diag!;
    const i = subnet[c]! * n + g;
    const role = rank === undefined ? 'none' : rank >= 3 ? '3+' : String(rank);
    dup.fetches++;
    if (!d.fetched[i]) {
      dup.first++;
      d.fetched[i] = 1;
    } else {
      bump(dup.byRole, role);
      const t = (now - arrive[c]!) / 1000;
      bump(dup.bySinceArrival, t < 2 ? '<2' : t < 10 ? '2-10' : t < 60 ? '10-60' : '>=60');
      if (d.heldAt[i]! <= now) dup.whileHeld++;
      else if (d.inflight[i]! > 0) {
        dup.whileInFlight++;
        const r = d.role[i]!;
        bump(dup.earlierBy, r < 0 ? 'none' : r === 0 ? 'owner' : 'stand-in');
        const e = sched[d.who[i]!];
        if (r >= 0 && rank !== undefined && e)
          bump(dup.owners, e.crowdOwner(g) === sched[c]!.crowdOwner(g) ? 'views agree' : 'views differ');
        const age = (now - d.since[i]!) / 1000;
        bump(dup.byInFlightAge, age < 1 ? '<1' : age < 3 ? '1-3' : age < 10 ? '3-10' : age < 30 ? '10-30' : '>=30');
      }
    }
    if (d.inflight[i] === 0) {
      d.since[i] = now;
      d.role[i] = rank === undefined ? -1 : Math.min(rank, 100);
      d.who[i] = c;
    }
    d.inflight[i]!++;
  };

  function addSeries(bytes: number, from: number, to: number): void {
    if (to <= from) {
      const b = Math.floor(to / bucketMs);
      series[b] = (series[b] ?? 0) + bytes;
      return;
    }
    const rate = bytes / (to - from);
    for (let b = Math.floor(from / bucketMs); b * bucketMs < to; b++) {
      const lo = Math.max(from, b * bucketMs);
      const hi = Math.min(to, (b + 1) * bucketMs);
      if (hi > lo) series[b] = (series[b] ?? 0) + rate * (hi - lo);
    }
  }

  // Discovery through the daemon's real limits (`limits`, testkit/scale/limits.ts): state only
  // when asked for; its own PRNG, so runs without it draw the same numbers as before.
  const lim = cfg.limits;
  if (lim && disc) throw new RangeError('limits and discovery are two discovery models: one at a time');
  const lrand = rng(cfg.seed * 104_729 + 29);
  /** Tokens one probe asks for (idsPerProbe segments of 64 KiB), and probes per file. */
  const perProbe = Math.max(1, Math.round(((lim?.idsPerProbe ?? 255) * 65536) / unit));
  const chunks = Math.ceil(n / perProbe);
  /** Probes a damping table covers (the last ones a daemon sent: their answers are what it observed). */
  const dampChunks = lim ? Math.max(1, Math.floor(lim.dampingSegments / lim.idsPerProbe)) : 0;
  const L = lim ? C : 0;
  /** Per client: token -> when it got it (-1 not yet); tokens held per probe's chunk. */
  const haveAt: Array<Float64Array | undefined> = new Array(L);
  const heldIn: Array<Uint16Array | undefined> = new Array(L);
  /** Per client (as a prober): full-segment replies seen per token, its probes sent, per chunk its last probe. */
  const dampN: Array<Uint8Array | undefined> = new Array(L);
  const probeSeq = new Float64Array(L);
  const chunkSeq: Array<Float64Array | undefined> = new Array(L);
  /** Per download: addresses admitted (DiscoveryFeed.admitted), hosts seen probing (DiscoveryFeed.probers). */
  const admitted: Array<Set<number> | undefined> = new Array(L);
  const probersOf: Array<Set<number> | undefined> = new Array(L);
  /** Per client: ProbeMatches handled in each of the last 5 seconds (crowd factor), inbound bucket. */
  const ans5 = new Uint16Array(L * 5);
  const ansSec = new Float64Array(L * 5).fill(-1);
  const inTok = new Float64Array(L).fill(lim?.inboundBurst ?? 0);
  const inAt = new Float64Array(L);
  /** Per client (as a responder): probes remembered for follow-ups, a ring (prober, chunk, until). */
  const FU = lim?.followUpProbes ?? 0;
  const fuP: Array<Int32Array | undefined> = new Array(L);
  const fuQ: Array<Int32Array | undefined> = new Array(L);
  const fuUntil: Array<Float64Array | undefined> = new Array(L);
  const fuHead = new Int32Array(L);
  const fuBySource: Array<Map<number, number[]> | undefined> = new Array(L);
  const fuTok = new Float64Array(L).fill(lim?.followUpBurst ?? 0);
  const fuLast = new Float64Array(L);
  /** Per subnet: the clients whose download is over (they hold every token and answer). */
  const doneOf: number[][] = lim ? Array.from({ length: S }, () => []) : [];
  /** Per subnet: the total probe rate of its members in the last second (for a download that starts). */
  const lastRate = new Float64Array(lim ? S : 0);
  const lr: LimitsReport = {
    probesSent: 0,
    probesDropped: 0,
    probesAccepted: 0,
    minAcceptedShare: 1,
    matchesSent: 0,
    matchesDropped: 0,
    damped: 0,
    capped: 0,
    followUps: 0,
    followUpsDropped: 0,
    followUpsEvicted: 0,
    admittedMean: 0,
    admittedMax: 0,
  };
  const cost = (c: number, ms: number) => {
    if (cpuCfg && lim?.costs && ms > 0) cpuWork(c, now, ms);
  };
  const answersLast5 = (c: number) => {
    const sec = Math.floor(now / 1000);
    let sum = 0;
    for (let k = 0; k < 5; k++) if (ansSec[c * 5 + k]! >= sec - 4) sum += ans5[c * 5 + k]!;
    return sum;
  };
  /** Prober p handles one ProbeMatch (inbound limit first, prober.ts handle); false if dropped. */
  const refill = (p: number, at: number) => {
    if (!(at > inAt[p]!)) return;
    inTok[p] = Math.min(lim!.inboundBurst, inTok[p]! + ((at - inAt[p]!) * lim!.inboundRate) / 1000);
    inAt[p] = at;
  };
  const inbound = (p: number, at = now) => {
    refill(p, at);
    if (inTok[p]! < 1) {
      lr.matchesDropped++;
      return false;
    }
    inTok[p]!--;
    const sec = Math.floor(now / 1000);
    const i = p * 5 + (sec % 5);
    if (ansSec[i] !== sec) {
      ansSec[i] = sec;
      ans5[i] = 0;
    }
    if (ans5[i]! < 65535) ans5[i]!++;
    return true;
  };
  /** DiscoveryFeed.admit: may download p use holder m? */
  const admit = (p: number, m: number) => {
    const a = admitted[p]!;
    if (a.has(m)) return true;
    if (a.size >= (probersOf[p]!.has(m) ? lim!.crowdPeerCap : lim!.peerCap)) {
      lr.capped++;
      return false;
    }
    a.add(m);
    return true;
  };
  const damped = (m: number, g: number) =>
    dampN[m] !== undefined &&
    dampN[m][g]! >= lim!.dampingThreshold &&
    probeSeq[m]! - chunkSeq[m]![Math.floor(g / perProbe)]! < dampChunks;
  /** Responder m answers p's probe for chunk q (what it holds there that its damping lets through). */
  const answer = (p: number, m: number, q: number, at: number) => {
    const hm = haveAt[m]!;
    const lo = q * perProbe;
    const hi = Math.min(n, lo + perProbe);
    let any = false;
    for (let g = lo; g < hi && !any; g++) if (hm[g]! >= 0 && !damped(m, g)) any = true;
    if (!any) {
      lr.damped++;
      return;
    }
    lr.matchesSent++;
    if (!inbound(p, at)) return;
    cost(p, lim!.costs?.matchHandledMs ?? 0);
    const dn = dampN[p]!;
    const ok = admit(p, m);
    const sc = sched[p]!;
    for (let g = lo; g < hi; g++) {
      if (!(hm[g]! >= 0) || damped(m, g)) continue;
      if (dn[g]! < 255) dn[g]!++;
      if (ok && !sc.hasBlock(g)) sc.peerHasSegment(addr[m]!, g, sched[m] ? hm[g] : undefined);
    }
  };
  const proberSeen = (p: number, m: number) => {
    sched[p]!.crowdSeen(ip[m]!, now);
    const ps = probersOf[p]!;
    if (ps.has(m)) return;
    if (ps.size >= lim!.maxProbers) ps.delete(ps.values().next().value!);
    ps.add(m);
  };
  /** Responder m remembers p's probe for chunk q (follow-ups.ts remember). */
  const remember = (m: number, p: number, q: number) => {
    if (heldIn[m]![q]! >= Math.min(perProbe, n - q * perProbe)) return;
    const P = fuP[m]!;
    const Q = fuQ[m]!;
    const U = fuUntil[m]!;
    const bySrc = fuBySource[m]!;
    // The oldest probe makes room (its ring slot).
    const slot = fuHead[m]!;
    fuHead[m] = (slot + 1) % FU;
    const old = P[slot]!;
    if (old >= 0) {
      if (U[slot]! >= now) lr.followUpsEvicted++;
      const os = bySrc.get(old)!;
      os.splice(os.indexOf(slot), 1);
      if (os.length === 0) bySrc.delete(old);
      P[slot] = -1;
    }
    let slots = bySrc.get(p);
    if (!slots) {
      slots = [];
      bySrc.set(p, slots);
    }
    // The newest probe per (segment, prober) only; at most followUpPerSource a source, oldest out.
    for (let k = 0; k < slots.length; k++)
      if (Q[slots[k]!] === q) {
        U[slots[k]!] = -Infinity;
        P[slots[k]!] = -1;
        slots.splice(k, 1);
        break;
      }
    if (slots.length >= lim!.followUpPerSource) {
      const s0 = slots.shift()!;
      U[s0] = -Infinity;
      P[s0] = -1;
    }
    const f = crowdFactorOf(Math.min(96, answersLast5(m)));
    const ttl = DEFAULT_FOLLOW_UP_LIMITS.ttlMs;
    P[slot] = p;
    Q[slot] = q;
    U[slot] =
      now + (f <= 1 ? ttl : Math.max(ttl, Math.min(DEFAULT_TIMING.repeatMaxMs * f, CROWD_REPEAT_CAP_MS) + 1000));
    slots.push(slot);
  };
  /** Client c got token g: follow-ups to the probes it remembers for g's chunk (probe-responder.ts announce). */
  const followUp = (c: number, g: number) => {
    const q = Math.floor(g / perProbe);
    const P = fuP[c]!;
    const Q = fuQ[c]!;
    const U = fuUntil[c]!;
    for (let i = 0; i < FU; i++) {
      const p = P[i]!;
      if (p < 0 || Q[i] !== q || U[i]! < now || !sched[p] || sched[p].hasBlock(g)) continue;
      fuTok[c] = Math.min(lim!.followUpBurst, fuTok[c]! + ((now - fuLast[c]!) * lim!.followUpRate) / 1000);
      fuLast[c] = now;
      if (fuTok[c]! < 1) {
        lr.followUpsDropped++;
        continue;
      }
      fuTok[c]!--;
      lr.followUps++;
      lr.matchesSent++;
      cost(c, lim!.costs?.followUpMs ?? 0);
      if (!inbound(p)) continue;
      cost(p, lim!.costs?.followUpMs ?? 0);
      if (dampN[p]![g]! < 255) dampN[p]![g]!++;
      if (!admit(p, c)) continue;
      sched[p].peerHasSegment(addr[c]!, g, now);
      wakeAt(p, now + 1 + Math.floor(lrand() * APP_MAX_DELAY_MS));
    }
  };
  /** A download starts under the limits: its state, and the probes of the last moments (discovery.ts recentProbes). */
  const limitsArrive = (c: number) => {
    const h = new Float64Array(n).fill(-1);
    haveAt[c] = h;
    heldIn[c] = new Uint16Array(chunks);
    dampN[c] = new Uint8Array(n);
    chunkSeq[c] = new Float64Array(chunks).fill(-Infinity);
    admitted[c] = new Set();
    probersOf[c] = new Set();
    fuP[c] = new Int32Array(FU).fill(-1);
    fuQ[c] = new Int32Array(FU);
    fuUntil[c] = new Float64Array(FU).fill(-Infinity);
    fuBySource[c] = new Map();
    const s = subnet[c]!;
    const ps = membersOf[s]!.filter((p) => sched[p] !== undefined && p !== c);
    if (ps.length === 0) return;
    // Probes of the members downloading now, the last 3 s of them its responder took (at most
    // recentProbes): members picked at random.
    const rate = lastRate[s]! > 0 ? lastRate[s]! : ps.length * probeRate(lim!, chunks, 1);
    const take = Math.min(lim!.recentProbes, Math.round(3 * Math.min(rate, lim!.globalRate)));
    for (let k = 0; k < take; k++) proberSeen(c, ps[Math.floor(lrand() * ps.length)]!);
    // Its first probes (a burst of up to probeBurst) reach the members at once, each with the share
    // their responders take (the first second: their burst over the probes of the crowd so far).
    const first = Math.min(lim!.probeBurst, chunks);
    const share =
      lastRate[s]! > 0
        ? Math.min(1, lim!.globalRate / lastRate[s]!)
        : Math.min(1, (lim!.globalBurst + lim!.globalRate) / ((ps.length + 1) * first));
    const heardBy = 1 - (1 - share) ** first;
    for (const m of ps) if (lrand() < heardBy) proberSeen(m, c);
  };
  /** One second of subnet s's discovery (see ScaleConfig.limits). */
  const limitsSecond = (s: number) => {
    const D = membersOf[s]!.filter((c) => sched[c] !== undefined);
    const rates = D.map((p) => probeRate(lim!, chunks, crowdFactorOf(Math.min(96, answersLast5(p)))));
    let R = 0;
    for (const r of rates) R += r;
    lastRate[s] = R;
    if (D.length === 0) return;
    // A responder takes at most globalRate probes a second: each probe reaches it with this chance.
    const a = Math.min(1, lim!.globalRate / R);
    lr.minAcceptedShare = Math.min(lr.minAcceptedShare, a);
    const done = doneOf[s]!;
    const others = membersOf[s]!.length - 1;
    const skip = a < 1 ? Math.log(1 - a) : 0;
    /** The next index after i taken with chance a (geometric skipping). */
    const next = (i: number) => (a >= 1 ? i + 1 : i + 1 + Math.floor(Math.log(1 - lrand()) / skip));
    for (let j = 0; j < D.length; j++) {
      const p = D[j]!;
      const r = rates[j]!;
      const k = Math.floor(r) + (lrand() < r - Math.floor(r) ? 1 : 0);
      lr.probesSent += k;
      cost(p, k * (lim!.costs?.probeSentMs ?? 0));
      for (let t = 0; t < k; t++) {
        // The second's probes go out spread over it: the prober's inbound limit refills between them.
        const at = now + (t * 1000) / k;
        const q = probeSeq[p]! % chunks;
        probeSeq[p]!++;
        chunkSeq[p]![q] = probeSeq[p]!;
        let got = 0;
        for (let i = next(-1); i < D.length; i = next(i)) {
          const m = D[i]!;
          if (m === p) continue;
          got++;
          proberSeen(m, p);
          remember(m, p, q);
          if (heldIn[m]![q]! > 0) answer(p, m, q, at);
        }
        // Holders done with their download: as many as take the probe, up to the prober's inbound.
        const want = done.length * a;
        const cnt = Math.floor(want) + (lrand() < want - Math.floor(want) ? 1 : 0);
        got += cnt;
        // Distinct holders in random order (their answers come 1-65 ms after the probe, each at a
        // random delay: the prober's inbound limit takes whichever come first).
        refill(p, at);
        for (let i = 0; i < cnt && inTok[p]! >= 1; i++) {
          const j = i + Math.floor(lrand() * (done.length - i));
          const m = done[j]!;
          done[j] = done[i]!;
          done[i] = m;
          answer(p, m, q, at);
        }
        lr.probesAccepted += got;
        lr.probesDropped += Math.max(0, others - got);
      }
    }
    // Every daemon of the subnet that holds or downloads handled what it accepted.
    const per = Math.min(R, lim!.globalRate) * (lim!.costs?.probeHandledMs ?? 0);
    if (per > 0) {
      for (const c of D) cost(c, per);
      for (const c of done) cost(c, per);
    }
  };
  const wakeAt = (c: number, w: number) => {
    if (w < pendingWake[c]! || pendingWake[c]! <= now) {
      pendingWake[c] = w;
      queue.push(w, WAKE, c);
    }
  };

  const gain = (c: number, g: number, src: number) => {
    const s = subnet[c]!;
    gotBlock[c]![gotN[c]!] = g;
    gotAt[c]![gotN[c]!] = now;
    gotN[c]!++;
    if (lim) {
      haveAt[c]![g] = now;
      heldIn[c]![Math.floor(g / perProbe)]!++;
      followUp(c, g);
    }
    if (disc) {
      // Follow-ups (probe-responder.ts announce): to every prober whose probe c still remembers.
      const w = watchers[c]!;
      for (let i = 0; i < w.length; i += 2) {
        const p = w[i]!;
        const k = w[i + 1]!;
        if (followUntil[p]![k]! < now || followPending[p]![k] || !sched[p] || sched[p].hasBlock(g)) continue;
        followPending[p]![k] = 1;
        queue.push(now + 1 + Math.floor(drand() * APP_MAX_DELAY_MS), FOLLOW, msg(p, k, 0));
      }
    }
    const h = hcOf(s);
    if (src === ORIGIN && h >= 0 && !hcHas[h]![g] && !hcPulling[h]![g]) {
      // The client offers the block; its hosted cache pulls it over the LAN.
      hcPulling[h]![g] = 1;
      lanStart(up[c]!, hcDown[h]!, sizeOf(g), { src: PULL, c, block: g, count: 1, from: h });
    }
  };

  const done = (c: number) => {
    finish[c] = now;
    lastFinish = now;
    completed++;
    sched[c] = undefined;
    known[c] = undefined;
    if (lim) {
      doneOf[subnet[c]!]!.push(c);
      const a = admitted[c]!.size;
      lr.admittedMean += a / C;
      lr.admittedMax = Math.max(lr.admittedMax, a);
      admitted[c] = undefined;
      probersOf[c] = undefined;
    }
    if (cfg.arrival.kind === 'sequential' && c + 1 < C) {
      arrive[c + 1] = now;
      arriveAt(now, c + 1);
    }
  };

  const pump = (c: number) => {
    const sc = sched[c];
    if (!sc || sc.isDone()) return;
    schedulerCalls++;
    const as: Assignment[] = sc.next(now, now >= gateAt[c]!);
    for (const a of as) {
      decisionHash = mix(
        mix(mix(mix(decisionHash, c), a.kind === 'origin' ? -1 : addrIndex.get(a.peer)!), a.block),
        a.kind === 'origin' ? (a.count ?? 1) : 0,
      );
      if (a.kind === 'origin') {
        const count = a.count ?? 1;
        if (diag) for (let k = 0; k < count; k++) noteOriginFetch(c, a.block + k, sc.crowdRank(a.block + k));
        // The request's first block; the rest follow one by one (FINISH).
        net.start(wan[subnet[c]!]!, sizeOf(a.block), wanRtt, now, {
          src: ORIGIN,
          c,
          block: a.block,
          count,
          from: -1,
        });
      } else {
        const x = addrIndex.get(a.peer)!;
        if (x >= 0) lanStart(up[x]!, down[c]!, sizeOf(a.block), { src: PEER, c, block: a.block, count: 1, from: x });
        else {
          const h = -1 - x;
          lanStart(hcUp[h]!, down[c]!, sizeOf(a.block), { src: HC, c, block: a.block, count: 1, from: h });
        }
      }
    }
    let w = sc.nextWakeAt() ?? Infinity;
    if (now < gateAt[c]!) w = Math.min(w, gateAt[c]!);
    if (Number.isFinite(w)) {
      w = Math.max(w, now + 1);
      if (w < pendingWake[c]! || pendingWake[c]! <= now) {
        pendingWake[c] = w;
        queue.push(w, WAKE, c);
      }
    }
  };

  /** Discovery round of client c: crowd probes heard, ProbeMatches, hosted cache polls. */
  const tick = (c: number) => {
    const sc = sched[c]!;
    const s = subnet[c]!;
    const kn = known[c]!;
    const view = viewOf[c]!;
    const cursor = viewCursor[c]!;
    for (let k = 0; k < view.length && !disc; k++) {
      const x = view[k]!;
      const xn = gotN[x]!;
      const downloadingNow = sched[x] !== undefined;
      if (downloadingNow) sc.crowdSeen(ip[x]!, now);
      const gb = gotBlock[x];
      if (!gb) continue;
      const ga = gotAt[x]!;
      for (let i = cursor[k]!; i < xn; i++) {
        const g = gb[i]!;
        if (kn[g]! >= M || sc.hasBlock(g)) continue;
        kn[g]!++;
        // A holder still downloading shows growth (v2: a new sighting is its progress).
        sc.peerHasSegment(addr[x]!, g, downloadingNow ? ga[i] : undefined);
      }
      cursor[k] = xn;
    }
    const h = hcOf(s);
    if (h >= 0) {
      const hl = hcLog[h]!;
      for (let i = hcCursor[c]!; i < hl.n; i++) {
        const g = hl.block[i]!;
        if (!sc.hasBlock(g)) sc.peerHasSegment(hcAddrOf(h), g);
      }
      hcCursor[c] = hl.n;
    }
  };

  /** A ProbeMatch from member k of c's view, sent at `sentAt`: what that member held then. */
  const learn = (c: number, k: number, sentAt: number) => {
    const sc = sched[c]!;
    const kn = known[c]!;
    const x = viewOf[c]![k]!;
    const cursor = viewCursor[c]!;
    const gb = gotBlock[x];
    if (!gb) return;
    const ga = gotAt[x]!;
    const downloadingNow = sched[x] !== undefined;
    let i = cursor[k]!;
    for (; i < gotN[x]! && ga[i]! <= sentAt; i++) {
      const g = gb[i]!;
      if (kn[g]! >= M || sc.hasBlock(g)) continue;
      kn[g]!++;
      sc.peerHasSegment(addr[x]!, g, downloadingNow ? ga[i] : undefined);
    }
    cursor[k] = i;
  };

  while (queue.pop()) {
    now = queue.t;
    events++;
    if ((events & 0xffff) === 0) observe?.();
    const kind = queue.k;
    const x = queue.x;
    if (kind === ARRIVE) {
      const c = x;
      const s = subnet[c]!;
      const h = hcOf(s);
      const sc = new Scheduler({
        blocks: table,
        random: rng(cfg.seed * 1_000_003 + c + 1),
        visibilityLagMs: tickMs,
        // As transfer.ts: ranges of 16 segments (1 MiB of v2) once a client fetches alone.
        originRunBlocks: Math.max(1, Math.round((16 * 65536) / unit)),
        originBlockMsPrior: (250 * unit) / 65536,
        self: ip[c],
        crowdVisible: h >= 0 && !(cfg.cachesNameCrowd && H === S) ? () => false : undefined,
        proven: cfg.peerTimeouts
          ? (a: string) => {
              const x = addrIndex.get(a)!;
              return x < 0 || isProven(c, x);
            }
          : undefined,
      });
      sched[c] = sc;
      if (lim) limitsArrive(c);
      // A fresh download's fixed CPU: the blocks it receives are worked through after it.
      if (receiveStartMs > 0) cpuWork(c, now, receiveStartMs);
      if (rampMsPerByte > 0) rampLeft[c] = cpuCfg!.receiveRamp!.bytes;
      known[c] = new Uint8Array(n);
      if (h >= 0) {
        sc.addPeer(hcAddrOf(h));
        sc.peerIsRelay(hcAddrOf(h));
      }
      gotBlock[c] = new Int32Array(n);
      gotAt[c] = new Float64Array(n);
      // The view: every other member of a small subnet, else V of them drawn with the run's PRNG.
      const members = membersOf[s]!;
      const others = members.filter((m) => m !== c);
      if (others.length > V)
        for (let k = 0; k < V; k++) {
          const j = k + Math.floor(random() * (others.length - k));
          const tmp = others[k]!;
          others[k] = others[j]!;
          others[j] = tmp;
        }
      viewOf[c] = Int32Array.from(others.slice(0, V));
      viewCursor[c] = new Int32Array(Math.min(V, others.length));
      tick(c);
      let peersKnown = h >= 0 && hcCursor[c]! > 0;
      if (disc) {
        const len = viewOf[c]!.length;
        followUntil[c] = new Float64Array(len).fill(-Infinity);
        followPending[c] = new Uint8Array(len);
        lastMatch[c] = new Float64Array(len).fill(-Infinity);
        for (let k = 0; k < len; k++) watchers[viewOf[c]![k]!]!.push(c, k);
        // Probes heard lately name crowd members at once (discovery.ts recentProbes).
        for (const [p, at] of heard[c] ?? []) if (at >= now - RECENT_PROBES_MS && sched[p]) sc.crowdSeen(ip[p]!, at);
        queue.push(now, PROBE, c);
      } else for (const x of viewOf[c]!) if (gotN[x]! > 0) peersKnown = true;
      gateAt[c] = now + (peersKnown ? 60 : 300);
      pump(c);
      queue.push(now + tickMs, TICK, c);
    } else if (kind === LIMITS) {
      limitsSecond(x);
      if (completed < C) queue.push(now + 1000, LIMITS, x);
    } else if (kind === START) {
      clientCpuMs += clientMs;
      queue.push(Math.max(now + startupMs, sharedCpu!.reserve(now, clientMs)), ARRIVE, x);
    } else if (kind === TICK) {
      if (!sched[x]) continue;
      tick(x);
      pump(x);
      queue.push(now + tickMs, TICK, x);
    } else if (kind === WAKE) {
      if (pendingWake[x] !== now) continue;
      pendingWake[x] = Infinity;
      pump(x);
    } else if (kind === PROBE) {
      // Probe timer of client x (prober.ts due): the probe leaves once x's CPU gets to it.
      const c = x;
      if (!sched[c]) continue;
      const sentAt = msgWork(c, now, disc!.probeSentMs);
      const view = viewOf[c]!;
      for (let k = 0; k < view.length; k++)
        deliver(sentAt + lanRtt / 2, view[k]!, HEARD, msg(c, k, sentAt), disc!.probeHandledMs);
      let delay = DEFAULT_TIMING.repeatMinMs + drand() * (DEFAULT_TIMING.repeatMaxMs - DEFAULT_TIMING.repeatMinMs);
      const f = crowdFactor(c, sentAt);
      if (f > 1) delay = Math.min(delay * f, Math.max(delay, CROWD_REPEAT_CAP_MS));
      queue.push(sentAt + delay, PROBE, c);
    } else if (kind === DELIVER) {
      queue.push(msgWork(mTo[x]!, now, mCost[x]!), mKind[x]!, x);
    } else if (kind === HEARD) {
      // Member m handled c's probe: c is in its crowd; it remembers the probe for follow-ups and
      // answers with what it holds that c has not heard of (probe-responder.ts).
      const c = mC[x]!;
      const k = mK[x]!;
      mFree.push(x);
      const m = viewOf[c]![k]!;
      if (!heard[m]) heard[m] = new Map();
      heard[m].set(c, now);
      sched[m]?.crowdSeen(ip[c]!, now);
      if (!sched[c]) continue;
      followUntil[c]![k] = now + followTtl(m, now);
      if (gotN[m]! > viewCursor[c]![k]!) {
        const d = 1 + Math.floor(drand() * APP_MAX_DELAY_MS);
        deliver(now + d + lanRtt / 2, c, MATCH, msg(c, k, now + d), disc!.matchHandledMs);
      }
    } else if (kind === MATCH) {
      const c = mC[x]!;
      const k = mK[x]!;
      const sentAt = mT[x]!;
      mFree.push(x);
      if (!sched[c]) continue;
      lastMatch[c]![k] = now;
      learn(c, k, sentAt);
      pump(c);
    } else if (kind === FOLLOW) {
      const c = mC[x]!;
      const k = mK[x]!;
      mFree.push(x);
      followPending[c]![k] = 0;
      if (!sched[c]) continue;
      const m = viewOf[c]![k]!;
      fuTokens[m] = Math.min(FOLLOW_UP_BURST, fuTokens[m]! + ((now - fuAt[m]!) * FOLLOW_UP_RATE) / 1000);
      fuAt[m] = now;
      if (fuTokens[m]! < 1) continue;
      fuTokens[m]!--;
      const sentAt = msgWork(m, now, disc!.followUpMs);
      deliver(sentAt + lanRtt / 2, c, MATCH, msg(c, k, sentAt), disc!.followUpMs);
    } else if (kind === PEER_TIMEOUT) {
      const tag = lanTags[x]!;
      lanTags[x] = undefined;
      lanFree.push(x);
      const sc = sched[tag.c];
      if (!sc) continue;
      timeouts++;
      sc.peerFailed(addr[tag.from]!, tag.block, 'timeout', now);
      pump(tag.c);
    } else if (kind === BEGIN) {
      net.begin(x, now);
    } else if (kind === FINISH) {
      for (const r of net.finish(x, queue.y, now)) {
        const tag = r.tag;
        const c = tag.c;
        const sc = sched[c]!;
        const ms = now - r.requestedAt;
        bytesBy[ORIGIN]! += r.bytes;
        originBySubnet[subnet[c]!]! += r.bytes;
        // One block of a range request landed (`count`: the blocks of the request from this one
        // on); the next one follows on the same connection, as an HTTP range response delivers
        // its blocks in order and transfer.ts reports each as it arrives.
        const g = tag.block;
        if (diag) {
          const i = subnet[c]! * n + g;
          diag.inflight[i]!--;
          diag.heldAt[i] = Math.min(diag.heldAt[i]!, now);
        }
        if (tag.count > 1)
          net.start(wan[subnet[c]!]!, sizeOf(g + 1), 0, now, {
            src: ORIGIN,
            c,
            block: g + 1,
            count: tag.count - 1,
            from: -1,
          });
        if (cpuCfg) {
          // The receiver's CPU works through the block after its bytes; it is reported then.
          const slot = lanFree.pop() ?? lanTags.length;
          lanTags[slot] = tag;
          lanAt[slot] = r.requestedAt;
          queue.push(receiveWork(c, now, r.bytes), ORIGIN_DONE, slot, r.bytes);
          continue;
        }
        sc.originSucceeded(g, ms, tag.count === 1);
        gain(c, g, ORIGIN);
        if (sc.isDone()) done(c);
        else pump(c);
      }
    } else if (kind === ORIGIN_DONE) {
      const tag = lanTags[x]!;
      const ms = now - lanAt[x]!;
      lanTags[x] = undefined;
      lanFree.push(x);
      const c = tag.c;
      const sc = sched[c]!;
      sc.originSucceeded(tag.block, ms, tag.count === 1);
      gain(c, tag.block, ORIGIN);
      if (sc.isDone()) done(c);
      else pump(c);
    } else {
      const tag = lanTags[x]!;
      const bytes = queue.y;
      const ms = now - lanAt[x]!;
      lanTags[x] = undefined;
      lanFree.push(x);
      lanTransfers++;
      if (tag.src === PULL) {
        bytesBy[PULL]! += bytes;
        hcHas[tag.from]![tag.block] = 1;
        hcLog[tag.from]!.add(tag.block, -1, now);
        continue;
      }
      const c = tag.c;
      const sc = sched[c]!;
      bytesBy[tag.src]! += bytes;
      if (cfg.peerTimeouts && tag.src === PEER) prove(c, tag.from, now);
      sc.peerSucceeded(tag.src === PEER ? addr[tag.from]! : hcAddrOf(tag.from), tag.block, bytes, ms);
      gain(c, tag.block, tag.src);
      if (sc.isDone()) done(c);
      else pump(c);
    }
  }

  const completions = Array.from({ length: C }, (_, c) => finish[c]! - arrive[c]!);
  const sorted = completions.filter(Number.isFinite).sort((a, b) => a - b);
  const plainMs =
    wanRtt +
    cfg.fileBytes /
      Math.min(
        bytesPerMs(cfg.wanBps),
        bytesPerMs(cfg.lanBps),
        cfg.originUpBps ? bytesPerMs(cfg.originUpBps) : Infinity,
      );
  const cm = {
    p50: pct(sorted, 50),
    p95: pct(sorted, 95),
    p99: pct(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
  };
  let peak = 0;
  for (const b of series) if ((b ?? 0) > peak) peak = b!;
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  return {
    config: {
      clients: C,
      subnets: S,
      hostedCaches: cfg.hostedCaches,
      cachesNameCrowd: cfg.cachesNameCrowd ?? false,
      fileBytes: cfg.fileBytes,
      unitBytes: unit,
      wanBps: cfg.wanBps,
      lanBps: cfg.lanBps,
      originUpBps: cfg.originUpBps ?? null,
      wanRttMs: wanRtt,
      lanRttMs: lanRtt,
      arrival: cfg.arrival,
      seed: cfg.seed,
      holdersPerBlock: M,
      view: V,
      tickMs,
      bucketMs,
      cpu: cfg.cpu ?? null,
      startupMs,
      discovery: disc ?? null,
      peerTimeouts: cfg.peerTimeouts ?? false,
      ...(lim ? { limits: lim } : {}),
    },
    tokens: n,
    completed,
    plainMs: r3(plainMs),
    completionMs: { p50: r3(cm.p50), p95: r3(cm.p95), p99: r3(cm.p99), max: r3(cm.max), mean: r3(cm.mean) },
    vsPlain: {
      p50: r3(cm.p50 / plainMs),
      p95: r3(cm.p95 / plainMs),
      p99: r3(cm.p99 / plainMs),
      max: r3(cm.max / plainMs),
    },
    originCopies: r3(bytesBy[ORIGIN]! / cfg.fileBytes),
    originCopiesPerSubnet: Array.from(originBySubnet, (b) => r3(b / cfg.fileBytes)),
    bytesBySource: { origin: bytesBy[ORIGIN]!, peer: bytesBy[PEER]!, hostedCache: bytesBy[HC]! },
    hostedCachePullBytes: bytesBy[PULL]!,
    peakOriginBps: Math.round((peak * 8 * 1000) / bucketMs),
    simulatedMs: r3(lastFinish),
    events,
    originFlows: net.starts,
    lanTransfers,
    schedulerCalls,
    peerTimeouts: timeouts,
    discoveryDatagrams: datagrams,
    decisionHash: decisionHash >>> 0,
    originSeries: { bucketMs, bytes: Array.from(series, (b) => Math.round(b ?? 0)) },
    completions,
    ...(cpuCfg
      ? { cpu: { daemonSeconds: Array.from(cpuSpent, (ms) => r3(ms / 1000)), clientSeconds: r3(clientCpuMs / 1000) } }
      : {}),
    ...(diag ? { duplicates: dup } : {}),
    ...(lim ? { limits: { ...lr, admittedMean: r3(lr.admittedMean), minAcceptedShare: r3(lr.minAcceptedShare) } } : {}),
  };
}

/** runScale with wall-clock, CPU and memory figures of the run itself. */
export function measureScale(cfg: ScaleConfig): ScaleRun {
  let peakRss = process.memoryUsage.rss();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = runScale(cfg, () => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  return {
    result,
    wallMs: Math.round(wallMs),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    eventsPerSec: Math.round(result.events / Math.max(wallMs / 1000, 1e-9)),
    peakRssBytes: peakRss,
  };
}
