/**
 * Prober state machine (no sockets): multicasts Probes for watched segments, retransmits with the
 * same MessageID, keeps probing with fresh MessageIDs while a watch is open, and turns accepted
 * ProbeMatches into a per-segment peer table. See protocol/pccrd.md for timing and limits.
 */
import { isIP } from 'node:net';
import {
  encodeProbe,
  parseDiscoveryMessage,
  parseXAddr,
  segmentIdHex,
  type DiscoveryVersion,
  type ProbeMatches,
} from '../protocol/pccrd/codec.js';
import { withPackedIds } from '../protocol/pccrd/values.js';
import { DiscoveryParseError } from '../protocol/pccrd/errors.js';
import type { DampingTable } from './damping.js';
import { ExpiringSet, TokenBucket } from './limits.js';
import { countDrop, type Peer, type Runtime } from './runtime.js';
import { Watch, type PeerSighting, type SegmentWatch } from './watch.js';
import { SegmentKeys } from './keys.js';

export type { PeerSighting, SegmentWatch };

export interface ProberTiming {
  /** Offsets (ms from the first transmission) of the repeats of the first probe, same MessageID. */
  retransmitMs: number[];
  /** Interval range for later probes (new MessageID each) while the watch stays open. */
  repeatMinMs: number;
  repeatMaxMs: number;
  /** Request timer: a probe with no reply by then counts as "nobody answered" for the adaptive wait. */
  requestTimerMs: number;
  /** Adaptive initial wait: maximum, and the step it drops by per unanswered probe. */
  maxWaitMs: number;
  waitStepMs: number;
  /**
   * Pacing of all probe transmissions of this prober (token bucket). Keeps a daemon that watches
   * thousands of segments under the responders' per-source limit (20/s, burst 40) and the LAN quiet.
   */
  maxProbesPerSecond: number;
  probeBurst: number;
}

export const DEFAULT_TIMING: ProberTiming = {
  retransmitMs: [100, 300],
  repeatMinMs: 1000,
  repeatMaxMs: 2000,
  requestTimerMs: 500,
  maxWaitMs: 300,
  waitStepMs: 100,
  maxProbesPerSecond: 15,
  probeBurst: 30,
};

/** Segment IDs per probe: v1 keeps datagrams near one MTU-ish size; v2 is bounded by its u8 count. */
export const MAX_IDS_PER_PROBE: Record<DiscoveryVersion, number> = { 1: 32, 2: 255 };

/** XAddrs used from one ProbeMatch (the rest are ignored). */
export const MAX_XADDRS_PER_MATCH = 4;

function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || /^::ffff:127\./i.test(address);
}
/**
 * Probing that scales with the crowd (issue 25): in a 32-client flash crowd every daemon repeated
 * each probe every 1-2 s and each probe drew an answer from most of the other 31, so each daemon
 * parsed about 3,300 probes and 4,000 ProbeMatches in a 16 MiB download and discovery took 42% of
 * its CPU (a profile of 4 daemons, bench/sim.js --diagnose). Now the repeat period grows with the
 * distinct responders that answered us within CROWD_WINDOW_MS: x (responders / CROWD_UNIT),
 * between 1 and CROWD_MAX_FACTOR, at most CROWD_REPEAT_CAP_MS; the LAN's probe rate grows with
 * the crowd, each daemon's work much less. What we learn meanwhile comes from follow-up
 * ProbeMatches, remembered by the responders for a correspondingly longer while (followUpTtlMs),
 * and each repeat still gets every answer. The cap keeps a member's probes within the engine's
 * 5 s crowd-membership window.
 */
export const CROWD_UNIT = 8;
export const CROWD_MAX_FACTOR = 3;
export const CROWD_REPEAT_CAP_MS = 4500;
const CROWD_WINDOW_MS = 5000;
/** Follow-ups are remembered this long by default (follow-ups.ts DEFAULT_FOLLOW_UP_LIMITS). */
const FOLLOW_UP_TTL_MS = 3000;

/** Message IDs of a chunk that still accept replies (the current probe and the two before). */
const KEEP_IDS_PER_CHUNK = 3;

export interface ProberConfig {
  /** Multicasts one probe datagram (on every chosen interface). */
  send: (datagram: Buffer) => void;
  isLocal: (address: string) => boolean;
  /** Our own responder's endpoint: replies from it are ignored. */
  ownEndpoint: string;
  damping: DampingTable;
  timing?: Partial<ProberTiming>;
}

interface Outstanding {
  chunk: Chunk;
  messageId: string;
  replied: boolean;
}

interface Chunk {
  watch: Watch<Chunk>;
  version: DiscoveryVersion;
  /**
   * The chunk's segment IDs, packed (v2 IDs are 32 bytes, v1 32, 48 or 64, one length per chunk):
   * views are made when a probe goes out or an answer comes in, instead of a Buffer per watched
   * segment held for the life of the watch (issue 25 target 6).
   */
  packed: Buffer;
  idLength: number;
  ids: string[];
  cycle: number;
  step: number;
  timer?: unknown;
}

/** A chunk's segment IDs as Buffers (views over its packed IDs). */
function chunkIds(c: Chunk): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < c.packed.length; p += c.idLength) out.push(c.packed.subarray(p, p + c.idLength));
  return withPackedIds(out, c.packed);
}

export class Prober {
  readonly timing: ProberTiming;
  private readonly outstanding = new Map<string, Outstanding>();
  private readonly own = new ExpiringSet(30_000, 8192);
  private readonly watches = new Set<Watch<Chunk>>();
  private readonly inbound: TokenBucket;
  private readonly pacer: TokenBucket;
  /** Chunks whose next transmission is due but waits for the pacer, in FIFO order. */
  private readonly ready = new Set<Chunk>();
  private pumpTimer?: unknown;
  private wait: number;
  /** Responder endpoints that answered us, by the last time (oldest first). */
  private readonly responders = new Map<string, number>();

  constructor(
    private readonly cfg: ProberConfig,
    private readonly rt: Runtime,
  ) {
    this.timing = { ...DEFAULT_TIMING, ...cfg.timing };
    this.wait = this.timing.maxWaitMs;
    this.inbound = new TokenBucket(500, 1000, rt.now());
    this.pacer = new TokenBucket(this.timing.maxProbesPerSecond, this.timing.probeBurst, rt.now());
  }

  /** Suggested wait before a block with no known peer falls back (adaptive, like iPXE). */
  get initialWaitMs(): number {
    return this.wait;
  }

  isOwnProbe(messageId: string): boolean {
    return this.own.has(messageId, this.rt.now());
  }

  watch(segmentIds: Buffer[], version: DiscoveryVersion): SegmentWatch {
    if (version !== 1 && version !== 2) throw new RangeError('version must be 1 or 2');
    for (const id of segmentIds) {
      if (version === 2 ? id.length !== 32 : ![32, 48, 64].includes(id.length)) {
        throw new RangeError(
          `v${version} segment IDs are ${version === 2 ? '32' : '32, 48 or 64'} bytes, got ${id.length}`,
        );
      }
    }
    const unique = new Map<string, Buffer>();
    for (const id of segmentIds) unique.set(segmentIdHex(id), id);
    const w = new Watch<Chunk>((x) => this.forget(x), this.rt.timers);
    this.watches.add(w);
    const ids = [...unique.values()];
    const per = MAX_IDS_PER_PROBE[version];
    // One chunk per probe, of IDs of one length (v1 content of one hash algorithm has one).
    const byLength = new Map<number, Buffer[]>();
    for (const id of ids) {
      const list = byLength.get(id.length);
      if (list) list.push(id);
      else byLength.set(id.length, [id]);
    }
    for (const [idLength, list] of byLength)
      for (let k = 0; k < list.length; k += per) {
        const packed = Buffer.concat(list.slice(k, k + per));
        const chunk: Chunk = { watch: w, version, packed, idLength, ids: [], cycle: 0, step: 0 };
        w.chunks.push(chunk);
        this.due(chunk);
      }
    return w;
  }

  /** A chunk's next transmission is due: send now if the pacer allows, else queue it. */
  private due(chunk: Chunk): void {
    chunk.timer = undefined;
    if (chunk.watch.closed) return;
    this.ready.add(chunk);
    this.pump();
  }

  private pump(): void {
    if (this.pumpTimer !== undefined) return;
    for (const chunk of this.ready) {
      if (!this.pacer.take(this.rt.now())) {
        this.pumpTimer = this.rt.timers.set(
          () => {
            this.pumpTimer = undefined;
            this.pump();
          },
          Math.ceil(1000 / this.timing.maxProbesPerSecond),
        );
        return;
      }
      this.ready.delete(chunk);
      this.transmit(chunk);
    }
  }

  /** One transmission of a chunk, then schedules the next. */
  private transmit(chunk: Chunk): void {
    const t = this.timing;
    const now = this.rt.now();
    if (chunk.step === 0) {
      const messageId = this.rt.newMessageId();
      const rec: Outstanding = { chunk, messageId, replied: false };
      this.outstanding.set(messageId, rec);
      this.own.add(messageId, now);
      chunk.ids.push(messageId);
      while (chunk.ids.length > KEEP_IDS_PER_CHUNK) this.outstanding.delete(chunk.ids.shift()!);
      const h = this.rt.timers.set(() => {
        chunk.watch.timers.delete(h);
        if (!rec.replied) this.wait = Math.max(0, this.wait - t.waitStepMs);
      }, t.requestTimerMs);
      chunk.watch.timers.add(h);
    }
    const messageId = chunk.ids[chunk.ids.length - 1]!;
    this.cfg.send(Buffer.from(encodeProbe({ version: chunk.version, messageId, segmentIds: chunkIds(chunk) })));
    this.rt.stats.probesSent++;
    let delay: number;
    const offsets = chunk.cycle === 0 ? [0, ...t.retransmitMs] : [0];
    if (chunk.step + 1 < offsets.length) {
      delay = offsets[chunk.step + 1]! - offsets[chunk.step]!;
      chunk.step++;
    } else {
      delay = t.repeatMinMs + this.rt.random() * (t.repeatMaxMs - t.repeatMinMs);
      const f = this.crowdFactor(now);
      if (f > 1) delay = Math.min(delay * f, Math.max(delay, CROWD_REPEAT_CAP_MS));
      chunk.cycle++;
      chunk.step = 0;
    }
    chunk.timer = this.rt.timers.set(() => this.due(chunk), delay);
  }

  /** Handles a datagram received on a probe socket (a unicast ProbeMatches, normally). */
  handle(datagram: Buffer, from: Peer): void {
    const { stats, logger } = this.rt;
    const now = this.rt.now();
    if (!this.inbound.take(now)) return countDrop(stats, 'rateInbound');
    if (!this.cfg.isLocal(from.address)) return countDrop(stats, 'notLocal', logger, { from: from.address });
    let pm: ProbeMatches;
    try {
      // v2 answers are read by position (pairs) against the chunk's packed IDs below; v1 answers
      // name their IDs and are checked against the probe's.
      const msg = parseDiscoveryMessage(datagram, { pairs: true });
      if (msg.kind !== 'ProbeMatches') return countDrop(stats, 'unexpected');
      pm = msg;
      const c = this.outstanding.get(pm.relatesTo)?.chunk;
      // The check the parser makes when given the probe's IDs (protocol/pccrd.md): one pair per probed ID.
      if (c && pm.pairs && pm.pairs.length !== 4 * Math.ceil(c.packed.length / c.idLength / 4))
        throw new DiscoveryParseError(
          'PCCRD_INVALID',
          'Scopes',
          `${pm.pairs.length / 4} bytes of availability for ${c.packed.length / c.idLength} probed segments`,
        );
    } catch (err) {
      if (!(err instanceof DiscoveryParseError)) throw err;
      return countDrop(stats, 'malformed', logger, { from: from.address, err });
    }
    const rec = this.outstanding.get(pm.relatesTo);
    if (!rec || rec.chunk.watch.closed) return countDrop(stats, 'unsolicited', logger, { relatesTo: pm.relatesTo });
    if (pm.version !== rec.chunk.version) return countDrop(stats, 'versionMismatch');
    if (pm.endpoint === this.cfg.ownEndpoint) return countDrop(stats, 'self');
    // Peers must be on our subnet: keep only IP-literal XAddrs that are local (no names, no routing
    // elsewhere), and loopback addresses only from a sender on this very host.
    const fromLoopback = isLoopback(from.address);
    const addrs = pm.xaddrs.filter((x) => {
      const a = parseXAddr(x);
      if (!a || isIP(a.host.replace(/%.*$/, '')) === 0 || !this.cfg.isLocal(a.host)) return false;
      return fromLoopback || !isLoopback(a.host);
    });
    if (addrs.length === 0) return countDrop(stats, 'nonLocalXAddrs', logger, { xaddrs: pm.xaddrs });
    // A peer has one or two addresses (IPv4, IPv6); a ProbeMatch listing more is pointing us at
    // other hosts' ports (issue 16.5: 16 tarpit XAddrs per answer). Only the first few are used.
    if (addrs.length > MAX_XADDRS_PER_MATCH) {
      countDrop(stats, 'extraXAddrs');
      addrs.length = MAX_XADDRS_PER_MATCH;
    }
    stats.matchesReceived++;
    this.responders.delete(pm.endpoint);
    this.responders.set(pm.endpoint, now);
    if (this.responders.size > 4 * CROWD_UNIT * CROWD_MAX_FACTOR)
      this.responders.delete(this.responders.keys().next().value!);
    rec.replied = true;
    this.wait = this.timing.maxWaitMs;
    const chunk = rec.chunk;
    const ids = chunkIds(chunk);
    // Each probed ID's hex once for this datagram (damping and the peer table are keyed by it).
    const keys = new SegmentKeys(ids);
    const sighted = (k: number, blockCount: number, complete: boolean) => {
      const hex = keys.upper(k);
      this.cfg.damping.observe(hex, pm.endpoint, blockCount, complete);
      for (const address of addrs) chunk.watch.upsert(hex, address, blockCount, complete, now);
    };
    if (pm.pairs) {
      // v2: pair k is probed ID k (checked above); 0 = not held.
      const pairs = pm.pairs;
      for (let k = 0; k < ids.length; k++) if (pairs[k] !== 0) sighted(k, 1, (pairs[k]! & 1) !== 0);
      return;
    }
    let index: Map<string, number> | undefined;
    for (const m of pm.matches) {
      // v1 names its IDs: only those we probed count.
      if (!index) {
        index = new Map();
        for (let k = 0; k < ids.length; k++) index.set(keys.upper(k), k);
      }
      const k = index.get(segmentIdHex(m.segmentId));
      if (k === undefined) continue;
      const blockCount = m.blockCount ?? 0;
      if (blockCount <= 0) continue;
      sighted(k, blockCount, false);
    }
  }

  /** How many times the usual repeat period the crowd around us calls for (1 when few answer). */
  crowdFactor(now = this.rt.now()): number {
    for (const [k, at] of this.responders) {
      if (at >= now - CROWD_WINDOW_MS) break;
      this.responders.delete(k);
    }
    return Math.min(CROWD_MAX_FACTOR, Math.max(1, this.responders.size / CROWD_UNIT));
  }

  /**
   * How long our responder should remember other hosts' probes for follow-ups: their probers see
   * the crowd we see and repeat their probes as seldom, so the memory covers their repeat period.
   */
  get followUpTtlMs(): number {
    const f = this.crowdFactor();
    if (f <= 1) return FOLLOW_UP_TTL_MS;
    return Math.max(FOLLOW_UP_TTL_MS, Math.min(this.timing.repeatMaxMs * f, CROWD_REPEAT_CAP_MS) + 1000);
  }

  /** Called by a watch when it closes. */
  private forget(w: Watch<Chunk>): void {
    this.watches.delete(w);
    for (const chunk of w.chunks) {
      this.ready.delete(chunk);
      if (chunk.timer !== undefined) this.rt.timers.clear(chunk.timer);
      for (const id of chunk.ids) this.outstanding.delete(id);
    }
    for (const h of w.timers) this.rt.timers.clear(h);
    w.timers.clear();
    if (this.ready.size === 0 && this.pumpTimer !== undefined) {
      this.rt.timers.clear(this.pumpTimer);
      this.pumpTimer = undefined;
    }
  }

  close(): void {
    for (const w of [...this.watches]) w.close();
  }

  get openWatches(): number {
    return this.watches.size;
  }

  /** Distinct peer addresses currently known across open watches. */
  get peersKnown(): number {
    const all = new Set<string>();
    for (const w of this.watches) for (const a of w.addresses()) all.add(a);
    return all.size;
  }
}
