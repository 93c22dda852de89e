/**
 * Fair shares of what a server gives to the hosts that connect to it (issue 27.7): connection
 * slots, request slots and the upload budget are shared between sources, a source being one IPv4
 * address or one IPv6 /64 (a host owns a whole /64). One host opening hundreds of connections, or
 * keeping the upload cap's queue full, must not lock the others out. Used by the MS-PCCRR server
 * (the daemon's peer listener) and the hosted cache's HTTP(S) listeners. See protocol/pccrr.md,
 * "Server behaviour".
 */
import { isIP, type Server as NetServer, type Socket } from 'node:net';
import type { TokenBucket } from './rate-limit.js';

/** The source a remote address counts as: the IPv4 address, or the IPv6 /64 (`a:b:c:d::/64`). */
export function sourceKey(address: string | undefined): string {
  if (!address) return '?';
  let a = address.toLowerCase();
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) return a.slice(7);
  if (isIP(a) !== 6) return a;
  // Expand '::' to find the first four groups.
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  if (t.length > 0 && t[t.length - 1]!.includes('.')) t.splice(t.length - 1, 1, '0', '0'); // embedded IPv4
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g || '0', 16) || 0).toString(16))
    .join(':')}::/64`;
}

/**
 * This host's own loopback address: every local process (several daemons on one machine, the
 * loopback simulation's clients) connects from it, so it is not held to the per-source cap (the
 * total cap and its fair sharing still apply). Other 127.x addresses are ordinary sources.
 */
const SHARED_LOOPBACK = new Set(['127.0.0.1', sourceKey('::1')]);

export interface ConnectionGuardOptions {
  /** Open connections at most, over every attached listener (undefined: unlimited). */
  maxConnections?: number;
  /** Open connections one source may hold (undefined: as many as maxConnections). */
  maxPerSource?: number;
}

export interface ConnectionGuardStats {
  /** Open connections now. */
  connections: number;
  /** Sources with open connections now. */
  sources: number;
  /** Connections closed at once (their source at its cap, or every slot held fairly). */
  dropped: number;
  /** Connections closed to make room for a source holding fewer (the oldest of the largest holder). */
  evicted: number;
}

/**
 * Accepts or closes each new connection. A source at `maxPerSource` gets no more (except this
 * host's own 127.0.0.1 / ::1, see SHARED_LOOPBACK). When all
 * `maxConnections` slots are taken, a newcomer whose source holds at least two fewer connections
 * than the largest holder takes that holder's oldest connection's slot (it is closed); otherwise
 * the newcomer is closed. So one host can use every free slot while alone, and slots even out
 * between hosts as others arrive: a source can always get to within one of the others' share.
 */
export class ConnectionGuard {
  private readonly bySource = new Map<string, Set<Socket>>();
  private total = 0;
  private dropped = 0;
  private evicted = 0;
  private readonly max: number;
  private readonly perSource: number;

  constructor(opts: ConnectionGuardOptions = {}) {
    for (const [k, v] of Object.entries(opts))
      if (v !== undefined && (!Number.isInteger(v) || v < 1))
        throw new RangeError(`${k} must be a positive integer, got ${String(v)}`);
    this.max = opts.maxConnections ?? Infinity;
    this.perSource = Math.min(opts.maxPerSource ?? Infinity, this.max);
  }

  /** Guards every connection the server accepts (call before it listens; do not set server.maxConnections). */
  attach(server: NetServer): void {
    server.on('connection', (s: Socket) => this.admit(s));
  }

  /** Admits `s` or destroys it; returns whether it was admitted. */
  admit(s: Socket): boolean {
    const key = sourceKey(s.remoteAddress);
    const mine = this.bySource.get(key)?.size ?? 0;
    const capped = mine >= this.perSource && !SHARED_LOOPBACK.has(key);
    if (capped || (this.total >= this.max && !this.evictFor(key, mine))) {
      this.dropped++;
      s.destroy();
      return false;
    }
    let set = this.bySource.get(key);
    if (!set) {
      set = new Set();
      this.bySource.set(key, set);
    }
    set.add(s);
    this.total++;
    const held = set;
    s.once('close', () => {
      if (!held.delete(s)) return;
      this.total--;
      if (held.size === 0 && this.bySource.get(key) === held) this.bySource.delete(key);
    });
    return true;
  }

  /** Frees a slot held by the largest other source when it holds at least two more than `mine`. */
  private evictFor(key: string, mine: number): boolean {
    let victim: Set<Socket> | undefined;
    for (const [k, set] of this.bySource) if (k !== key && (!victim || set.size > victim.size)) victim = set;
    if (!victim || victim.size < mine + 2) return false;
    const oldest = victim.values().next().value!;
    // Counted as gone now, whenever its 'close' event comes.
    victim.delete(oldest);
    this.total--;
    for (const [k, set] of this.bySource) if (set === victim && set.size === 0) this.bySource.delete(k);
    this.evicted++;
    oldest.destroy();
    return true;
  }

  stats(): ConnectionGuardStats {
    return { connections: this.total, sources: this.bySource.size, dropped: this.dropped, evicted: this.evicted };
  }

  /** Destroys every open connection (server shutdown). */
  destroyAll(): void {
    for (const set of this.bySource.values()) for (const s of set) s.destroy();
  }
}

/**
 * Request slots shared between sources: beyond `max` requests in progress, a request is refused
 * (answered busy) only when its source already has its share (max / sources with requests in
 * progress), so a host with many connections fills the slots but cannot keep others out of them.
 */
export class FairSlots {
  private readonly bySource = new Map<string, number>();
  private active = 0;
  constructor(readonly max: number) {}

  /** Takes a slot for `source`; the result says whether it is over its share (answer busy). */
  take(source: string): { over: boolean; release: () => void } {
    const mine = this.bySource.get(source) ?? 0;
    const sources = this.bySource.size + (mine === 0 ? 1 : 0);
    const over = this.active >= this.max && mine >= Math.max(1, Math.floor(this.max / sources));
    this.bySource.set(source, mine + 1);
    this.active++;
    let released = false;
    return {
      over,
      release: () => {
        if (released) return;
        released = true;
        this.active--;
        const n = (this.bySource.get(source) ?? 1) - 1;
        if (n > 0) this.bySource.set(source, n);
        else this.bySource.delete(source);
      },
    };
  }

  get inProgress(): number {
    return this.active;
  }
}

interface Waiting {
  bytes: number;
  gone: () => boolean;
  resolve: (waitedMs: number | undefined) => void;
  since: number;
}

interface SourceQueue {
  items: Waiting[];
  bytes: number;
  /** Bytes this source was given (start-time fair queueing: the smallest goes next). */
  served: number;
}

/**
 * The upload budget (a token bucket) shared byte-fairly between sources. Responses wait in one
 * queue per source; whenever the bucket is out of debt the next response goes to the waiting
 * source that was given the fewest bytes (a source that starts waiting counts as having had as
 * much as the last one served: no credit is banked while idle). A response whose source's fair
 * wait (its own queued bytes times the number of waiting sources, plus the bucket's debt) would
 * exceed `maxWaitMs` is refused (answered busy): one host keeping the queue full delays another
 * host's response by about one of its own, never by the whole backlog (issue 27.7: before, the
 * queue was first come first served and its length applied to everyone, so an honest peer got
 * "busy" for every block).
 */
export class FairUploadQueue {
  private readonly queues = new Map<string, SourceQueue>();
  private queuedBytes = 0;
  private vtime = 0;
  private running = false;
  private closed = false;

  constructor(
    private readonly bucket: TokenBucket,
    private readonly maxWaitMs: number,
    private readonly sleep: (ms: number) => Promise<void>,
  ) {}

  private now(): number {
    return this.bucket.time();
  }

  /**
   * Waits until `bytes` may be sent for `source`. Resolves with the time waited (ms), or undefined
   * when the fair wait would be too long (answer busy) or the queue was closed. `gone`: the
   * response no longer needs sending (its connection closed); it is then skipped.
   */
  wait(source: string, bytes: number, gone: () => boolean = () => false): Promise<number | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const q = this.queues.get(source);
    let waitingSources = q?.items.length ? 0 : 1;
    for (const o of this.queues.values()) if (o.items.length > 0) waitingSources++;
    // Start-time fair queueing: before this response go the bytes queued ahead of it in its own
    // queue, about as many from each other waiting source, and what the bucket still owes.
    const ahead = Math.min(this.queuedBytes, (q?.bytes ?? 0) * waitingSources) + bytes;
    const estimate = (Math.max(0, ahead - this.bucket.available()) * 1000) / this.bucket.rate;
    if (estimate > this.maxWaitMs) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let sq = this.queues.get(source);
      if (!sq) {
        sq = { items: [], bytes: 0, served: this.vtime };
        this.queues.set(source, sq);
      } else if (sq.items.length === 0) sq.served = Math.max(sq.served, this.vtime);
      sq.items.push({ bytes, gone, resolve, since: this.now() });
      sq.bytes += bytes;
      this.queuedBytes += bytes;
      if (!this.running) void this.run();
    });
  }

  /** Responses waiting now (in all sources' queues; not the one being paid for). */
  get waiting(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.items.length;
    return n;
  }

  /** Releases everything waiting (as refused) and stops. */
  close(): void {
    this.closed = true;
    for (const q of this.queues.values()) for (const w of q.items) w.resolve(undefined);
    this.queues.clear();
    this.queuedBytes = 0;
  }

  private pick(): Waiting | undefined {
    for (;;) {
      let best: SourceQueue | undefined;
      for (const [key, q] of this.queues) {
        // An idle source that is not ahead of the others has nothing to remember.
        if (q.items.length === 0) {
          if (q.served <= this.vtime) this.queues.delete(key);
        } else if (!best || q.served < best.served) best = q;
      }
      if (!best) return undefined;
      const q = best;
      const w = q.items.shift()!;
      q.bytes -= w.bytes;
      this.queuedBytes -= w.bytes;
      if (w.gone()) {
        w.resolve(undefined);
        continue;
      }
      this.vtime = q.served;
      q.served += w.bytes;
      return w;
    }
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        if (this.closed) return;
        const w = this.pick();
        if (!w) return;
        const wait = this.bucket.reserve(w.bytes);
        if (wait > 0) await this.sleep(wait);
        w.resolve(this.now() - w.since);
      }
    } finally {
      this.running = false;
    }
  }
}
