/**
 * Probes remembered for follow-up ProbeMatches (our extension, protocol/pccrd.md "Follow-up
 * ProbeMatches"): a probe for segments we do not hold yet is kept for a short while, and when one of
 * them arrives in our cache we answer that probe then, instead of leaving the prober to find out at
 * its next probe 1-2 s later. Pure bookkeeping: no sockets, no timers; time is passed in.
 *
 * Bounds: a probe is kept at most `ttlMs` (longer in a crowd, whose probers repeat less often:
 * Prober.followUpTtlMs; the sweep stops at the first probe not yet expired, so a shorter one behind
 * a longer one goes a little late); at most `maxProbes` in all and `maxPerSource` per source
 * address (the oldest go first); for each (segment, prober socket) only the newest probe is kept, so
 * a prober repeating its probe gets one follow-up per segment, related to its latest MessageID
 * (the one it is sure to still accept).
 */
import type { Probe } from '../protocol/pccrd/codec.js';
import { ownKey, packedSpan, type SegmentKeys } from './keys.js';
import type { Peer } from './runtime.js';

/** One prober socket waiting for a segment: the newest probe from it asking, and the ID's index there. */
interface Asker {
  w: Waiting;
  /** The ID's index in w's probe; -1 once the entry left the index (arrived or dropped). */
  index: number;
  /** When the socket first asked for the segment (kept while newer probes take over): arrival order. */
  seq: number;
  /** The entry's key (its own copy, hashed once). */
  key: string;
}

/** A prober socket's entries, and its newest remembered probes. */
interface SocketAsks {
  asks: Map<string, Asker>;
  /**
   * Its newest remembered probes, newest last (a prober repeats each of its chunks' probes in
   * turn: the one repeated now is seldom the very last one it sent).
   */
  recent: Waiting[];
}

export interface Waiting {
  probe: Probe;
  from: Peer;
  expires: number;
  /** Indices (into probe.segmentIds) that arrived since the last follow-up was sent. */
  ready: number[];
  /** IDs of this probe still indexed (waiting for their segment). */
  live: number;
  /** Set by the owner while a follow-up send is scheduled. */
  timer?: unknown;
  /** This probe's entries in its socket's index, by ID index (those it took over included). */
  asks: Array<Asker | undefined>;
}

export interface FollowUpLimits {
  ttlMs: number;
  maxProbes: number;
  maxPerSource: number;
}

/** Probes per socket looked at for a repeat (a 1 GiB v2 watch has 57 chunks; a 64 MiB one 4). */
const RECENT_PER_SOCKET = 8;

export const DEFAULT_FOLLOW_UP_LIMITS: FollowUpLimits = { ttlMs: 3000, maxProbes: 256, maxPerSource: 8 };

export class FollowUps {
  /** By MessageID; Map order is arrival order (oldest first). */
  private readonly probes = new Map<string, Waiting>();
  /**
   * Prober socket ("addr|port") -> upper-case segment ID hex -> the newest probe from that socket
   * asking for it and the ID's index in it. By socket first (a probe's IDs all go into one Map,
   * instead of one Map per segment: a 255-ID probe touches 255 segments, and a segment's arrival,
   * which looks into every socket's Map, is rarer than that by far).
   */
  private readonly bySocket = new Map<string, SocketAsks>();
  private seq = 0;
  private readonly perSource = new Map<string, number>();

  constructor(private readonly limits: FollowUpLimits = DEFAULT_FOLLOW_UP_LIMITS) {}

  get size(): number {
    return this.probes.size;
  }

  /**
   * Remembers `probe` for the IDs at `missing` (indices into probe.segmentIds; `keys` has their
   * hex). A probe already remembered (same MessageID) is left as it is.
   */
  remember(
    probe: Probe,
    from: Peer,
    missing: number[],
    keys: SegmentKeys,
    now: number,
    ttlMs = this.limits.ttlMs,
  ): void {
    this.sweep(now);
    if (missing.length === 0 || this.probes.has(probe.messageId)) return;
    while ((this.perSource.get(from.address) ?? 0) >= this.limits.maxPerSource) this.dropOldestOf(from.address);
    while (this.probes.size >= this.limits.maxProbes) this.drop(this.probes.values().next().value!);
    const w: Waiting = { probe, from, expires: now + ttlMs, ready: [], live: 0, asks: [] };
    const socket = socketKey(from);
    let sock = this.bySocket.get(socket);
    if (!sock) {
      sock = { asks: new Map(), recent: [] };
      this.bySocket.set(socket, sock);
    }
    let prev: Waiting | undefined;
    for (let k = sock.recent.length - 1; k >= 0 && !prev; k--)
      if (this.repeats(sock.recent[k]!, probe, missing)) prev = sock.recent[k];
    if (prev) {
      // The socket's prober repeated an earlier probe (a new MessageID, the same IDs) and we still
      // lack the same segments: its entries pass to the new probe as they are, without a lookup
      // per ID (what the loop below would do to them, in the same order).
      for (const index of missing) {
        const a = prev.asks[index]!;
        this.release(prev);
        a.w = w;
        w.asks[index] = a;
        w.live++;
      }
    } else {
      const asks = sock.asks;
      for (const index of missing) {
        const hex = keys.upper(index);
        let a = asks.get(hex);
        if (a) {
          this.release(a.w);
          a.w = w;
          a.index = index;
        } else {
          const key = ownKey(hex);
          a = { w, index, seq: ++this.seq, key };
          asks.set(key, a);
        }
        w.asks[index] = a;
        w.live++;
      }
    }
    sock.recent.push(w);
    if (sock.recent.length > RECENT_PER_SOCKET) sock.recent.shift();
    this.probes.set(probe.messageId, w);
    this.perSource.set(from.address, (this.perSource.get(from.address) ?? 0) + 1);
  }

  /**
   * Whether `probe` asks for what `prev` (an earlier probe of the same socket) still waits for: the same
   * IDs in the same order, and each missing one's entry still prev's at that index.
   */
  private repeats(prev: Waiting, probe: Probe, missing: number[]): boolean {
    if (!sameIds(prev.probe.segmentIds, probe.segmentIds)) return false;
    for (const index of missing) {
      const a = prev.asks[index];
      if (!a || a.w !== prev || a.index !== index) return false;
    }
    return true;
  }

  /**
   * Segment `hex` (upper case) is now held: every remembered probe still asking for it gets the
   * index added to its `ready` list. Returns those probes (each once; in the order their sockets
   * first asked for it), for the owner to schedule a send.
   */
  arrived(hex: string, now: number): Waiting[] {
    this.sweep(now);
    const found: Asker[] = [];
    for (const [socket, sock] of this.bySocket) {
      const a = sock.asks.get(hex);
      if (!a) continue;
      found.push(a);
      sock.asks.delete(hex);
      if (sock.asks.size === 0) this.bySocket.delete(socket);
    }
    found.sort((x, y) => x.seq - y.seq);
    const out: Waiting[] = [];
    for (const a of found) {
      const { w, index } = a;
      a.index = -1;
      w.ready.push(index);
      w.live--;
      out.push(w);
    }
    return out;
  }

  /** The owner sent (or gave up on) a probe's ready follow-up: forget it once nothing else waits. */
  sent(w: Waiting): void {
    w.ready = [];
    w.timer = undefined;
    if (w.live <= 0) this.forget(w);
  }

  /** Drops everything (the responder closes). */
  clear(): Waiting[] {
    const all = [...this.probes.values()];
    this.probes.clear();
    this.bySocket.clear();
    this.perSource.clear();
    return all;
  }

  private sweep(now: number): void {
    for (const w of this.probes.values()) {
      if (w.expires > now) break;
      this.drop(w);
    }
  }

  private dropOldestOf(address: string): void {
    for (const w of this.probes.values())
      if (w.from.address === address) {
        this.drop(w);
        return;
      }
    this.perSource.delete(address);
  }

  /** Stops waiting for any of w's segments (a follow-up already scheduled still goes out: the owner holds w). */
  private drop(w: Waiting): void {
    if (w.live > 0) {
      const socket = socketKey(w.from);
      const sock = this.bySocket.get(socket);
      // In ID order, as w asked; an entry another probe took over, or that left, is not w's.
      for (let i = 0; sock && i < w.asks.length && w.live > 0; i++) {
        const a = w.asks[i];
        if (a && a.w === w && a.index === i) {
          sock.asks.delete(a.key);
          a.index = -1;
          w.live--;
        }
      }
      if (sock?.asks.size === 0) this.bySocket.delete(socket);
      w.live = 0;
    }
    this.forget(w);
  }

  /** A newer probe from the same socket took over one of w's segments. */
  private release(w: Waiting): void {
    w.live--;
    if (w.live <= 0 && w.timer === undefined && w.ready.length === 0) this.forget(w);
  }

  private forget(w: Waiting): void {
    if (this.probes.get(w.probe.messageId) !== w) return;
    this.probes.delete(w.probe.messageId);
    const n = (this.perSource.get(w.from.address) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(w.from.address);
    else this.perSource.set(w.from.address, n);
  }
}

/** The same segment IDs in the same order (byte for byte). */
function sameIds(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  const sa = packedSpan(a);
  const sb = sa && packedSpan(b);
  if (sa && sb) return sa.equals(sb) && a[0]!.length === b[0]!.length;
  for (let k = 0; k < a.length; k++) if (!a[k]!.equals(b[k]!)) return false;
  return true;
}

function socketKey(p: Peer): string {
  return `${p.address}|${p.port}`;
}
