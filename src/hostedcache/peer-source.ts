/**
 * Hosted caches as one more peer source for the download engine, with no change to the engine: a
 * DiscoveryLike wrapper whose watches report, next to discovery's own sightings, the configured
 * hosted caches that hold the watched segments. Each watch asks every hosted cache at once and then
 * every POLL_MS for the segments it has not shown yet (other clients keep offering while we
 * download): MSG_GETSEGLIST for a v2.0 hosted cache (one request for up to 1,000 IDs), MSG_GETBLKLIST
 * per segment for a v1.0 one (Windows Server 2008 R2 has no GETSEGLIST). A hosted cache is then a
 * peer like any other: the scheduler picks the source with the least expected completion time, so
 * a hosted cache on the LAN wins over the origin, and over slower peers. See protocol/pchc.md.
 */
import { EventEmitter } from 'node:events';
import type { DiscoveryLike, SightingLike, WatchLike } from '../engine/types.js';
import type { CrowdCallback } from '../retrieval/client.js';
import { MAX_BLOCKS_PER_SEGMENT } from '../protocol/pccrr/codec.js';
import { type Logger, nullLogger } from '../util/log.js';

export interface HostedCachePeer {
  /** host:port of its MS-PCCRR endpoint. */
  address: string;
  /** 2: ask with GETSEGLIST; 1: GETBLKLIST per segment. */
  version: 1 | 2;
}

/** The retrieval calls the source makes (RetrievalClient satisfies it). */
export interface ListClient {
  getSegmentList(req: {
    peer: string;
    segmentIds: Buffer[];
    signal?: AbortSignal;
    crowd?: CrowdCallback;
  }): Promise<number[]>;
  getBlockList(req: {
    peer: string;
    segmentId: Buffer;
    ranges: Array<[number, number]>;
    signal?: AbortSignal;
    crowd?: CrowdCallback;
  }): Promise<{ ranges: Array<[number, number]> }>;
}

export interface HostedCacheSourceOptions {
  caches: HostedCachePeer[];
  client: ListClient;
  /** Poll period for segments not yet held (default 500 ms); doubles up to 8 s while a cache fails. */
  pollMs?: number;
  /**
   * Poll period of young watches (default 100 ms for the first 1.5 s of a watch opened while fewer
   * than 4 are open): clients that start together learn of each other, and of each other's first
   * segments, before the file has crossed the WAN. Bounded so that a large download (one watch per
   * 255 v2 segments) or many at once do not multiply the requests.
   */
  fastPollMs?: number;
  fastWindowMs?: number;
  now?: () => number;
  logger?: Logger;
}

const IDS_PER_SEGLIST = 1000;
const MAX_BACKOFF_MS = 8000;
/** A watch polls fast while young if fewer than this many were open when it opened (a lone download's first 4 x 255 v2 segments). */
const FAST_WATCHES = 4;

export interface HostedCacheSourceStats {
  polls: number;
  failures: number;
  sightings: number;
  /** Other clients named by hosted caches as asking for the same segments (PeerDist-Crowd), counted per answer. */
  crowdMembers: number;
}

type ProbeListener = (segmentIds: Buffer[], from: string) => void;

class MergedWatch extends EventEmitter implements WatchLike {
  private readonly found = new Map<string, SightingLike[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly ac = new AbortController();
  private hit: (() => void) | undefined;
  private readonly hitP: Promise<void>;
  private closed = false;
  private readonly born: number;
  /** Polls every fastPollMs while younger than fastWindowMs (one of the first FAST_WATCHES). */
  private readonly fast: boolean;
  /** Hosted caches whose first answer for this watch is still to come (firstAnswers). */
  private readonly unanswered = new Set<string>();
  private answeredAll: (() => void) | undefined;
  private readonly answeredP: Promise<void>;

  constructor(
    private readonly inner: WatchLike,
    private readonly ids: Buffer[],
    private readonly src: HostedCacheSource,
  ) {
    super();
    this.hitP = new Promise((r) => {
      this.hit = r;
    });
    this.born = src.now();
    this.fast = src.liveWatches++ < FAST_WATCHES;
    // A hosted cache that failed its last request is not waited for (it may be down for long).
    for (const hc of src.caches) if (!src.failing(hc)) this.unanswered.add(hc.address);
    this.answeredP = new Promise((r) => {
      this.answeredAll = r;
    });
    if (this.unanswered.size === 0) this.answeredAll?.();
    inner.on('peer', (p: SightingLike) => this.emit('peer', p));
    for (const hc of src.caches) void this.poll(hc, src.pollMs);
  }

  private async poll(hc: HostedCachePeer, backoff: number): Promise<void> {
    if (this.closed) return;
    const wanted = this.ids.filter(
      (id) => !this.found.get(id.toString('hex').toUpperCase())?.some((s) => s.address === hc.address),
    );
    if (wanted.length === 0) return;
    let ok = true;
    try {
      if (hc.version === 2) {
        for (let i = 0; i < wanted.length && !this.closed; i += IDS_PER_SEGLIST) {
          const batch = wanted.slice(i, i + IDS_PER_SEGLIST);
          const held = await this.src.client.getSegmentList({
            peer: hc.address,
            segmentIds: batch,
            signal: this.ac.signal,
            crowd: (m) => this.src.crowdAnswer(hc, batch, m),
          });
          this.src.stats.polls++;
          for (const k of held) if (batch[k]) this.sighting(hc, batch[k]!, 1);
        }
      } else {
        for (const id of wanted) {
          if (this.closed) break;
          const r = await this.src.client.getBlockList({
            peer: hc.address,
            segmentId: id,
            ranges: [[0, MAX_BLOCKS_PER_SEGMENT]],
            signal: this.ac.signal,
            crowd: (m) => this.src.crowdAnswer(hc, [id], m),
          });
          this.src.stats.polls++;
          const n = r.ranges.reduce((a, [, c]) => a + c, 0);
          if (n > 0) this.sighting(hc, id, n);
        }
      }
    } catch (err) {
      if (this.closed) return;
      ok = false;
      this.src.stats.failures++;
      // Unreachable, it names nobody: clients on other subnets may be downloading unseen again.
      this.src.crowdAnswer(hc, [], undefined);
      this.src.log.debug('hosted cache poll failed', { cache: hc.address, err: (err as Error).message });
    }
    this.src.setFailing(hc, !ok);
    if (this.unanswered.delete(hc.address) && this.unanswered.size === 0) this.answeredAll?.();
    if (this.closed) return;
    const young = this.fast && this.src.now() - this.born < this.src.fastWindowMs;
    const next = ok ? (young ? this.src.fastPollMs : this.src.pollMs) : Math.min(MAX_BACKOFF_MS, backoff * 2);
    const t = setTimeout(() => {
      this.timers.delete(t);
      void this.poll(hc, next);
    }, next);
    t.unref?.();
    this.timers.add(t);
  }

  private sighting(hc: HostedCachePeer, id: Buffer, blockCount: number): void {
    const key = id.toString('hex').toUpperCase();
    // complete: false: the engine asks for block lists (v1) or takes the segment as held (v2).
    // relay: what it holds came from other clients; it is not a crowd member itself.
    const s: SightingLike = { segmentId: key, address: hc.address, blockCount, complete: false, relay: true };
    const list = this.found.get(key) ?? [];
    list.push(s);
    this.found.set(key, list);
    this.src.stats.sightings++;
    this.hit?.();
    this.emit('peer', s);
  }

  peers(segmentId: Buffer): SightingLike[] {
    return [...this.inner.peers(segmentId), ...(this.found.get(segmentId.toString('hex').toUpperCase()) ?? [])];
  }

  reportFailure(address: string): void {
    this.inner.reportFailure(address);
  }

  waitForPeers(timeoutMs: number): Promise<void> {
    if (this.found.size > 0) return Promise.resolve();
    return Promise.race([this.inner.waitForPeers(timeoutMs), this.hitP]);
  }

  firstAnswers(): Promise<void> {
    return this.answeredP;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.src.liveWatches--;
    this.ac.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.hit?.();
    this.answeredAll?.();
    this.inner.close();
    this.emit('close');
  }
}

export class HostedCacheSource {
  readonly caches: HostedCachePeer[];
  readonly client: ListClient;
  readonly pollMs: number;
  readonly fastPollMs: number;
  readonly fastWindowMs: number;
  readonly now: () => number;
  readonly log: Logger;
  readonly stats: HostedCacheSourceStats = { polls: 0, failures: 0, sightings: 0, crowdMembers: 0 };
  /** Watches open now (MergedWatch counts itself in and out). */
  liveWatches = 0;
  /** Hosted caches whose last request failed (not waited for by new watches). */
  private readonly failed = new Set<string>();
  /** Per hosted cache: whether its last answer carried a valid crowd header. */
  private readonly reportsCrowds = new Map<string, boolean>();
  private readonly probeListeners = new Set<ProbeListener>();

  constructor(opts: HostedCacheSourceOptions) {
    this.caches = opts.caches;
    this.client = opts.client;
    this.pollMs = opts.pollMs ?? 500;
    this.fastPollMs = opts.fastPollMs ?? 100;
    this.fastWindowMs = opts.fastWindowMs ?? 1500;
    this.now = opts.now ?? Date.now;
    this.log = opts.logger ?? nullLogger;
  }

  /**
   * Whether clients beyond our probes may download unseen: true until every hosted cache has
   * answered with a crowd header (a peerdist hosted cache names the other clients that ask it for
   * the same segments, so the crowd is complete again; a Windows one does not).
   */
  get unseenCrowd(): boolean {
    return this.caches.some((hc) => this.reportsCrowds.get(hc.address) !== true);
  }

  failing(hc: HostedCachePeer): boolean {
    return this.failed.has(hc.address);
  }

  setFailing(hc: HostedCachePeer, failed: boolean): void {
    if (failed) this.failed.add(hc.address);
    else this.failed.delete(hc.address);
  }

  /** A hosted cache's crowd answer for a request that named `ids`: each member counts as a prober of them. */
  crowdAnswer(hc: HostedCachePeer, ids: Buffer[], members: string[] | undefined): void {
    this.reportsCrowds.set(hc.address, members !== undefined);
    if (!members) return;
    for (const m of members) {
      this.stats.crowdMembers++;
      for (const fn of this.probeListeners) fn(ids, m);
    }
  }

  /** A DiscoveryLike that adds the hosted caches to every watch of `inner`. */
  wrap(inner: DiscoveryLike): DiscoveryLike {
    if (this.caches.length === 0) return inner;
    const src = this;
    return {
      get initialWaitMs() {
        return inner.initialWaitMs;
      },
      // Other hosts' probes on our subnet, and the clients a hosted cache names (crowdAnswer).
      onForeignProbe(fn) {
        const stopInner = inner.onForeignProbe?.(fn);
        src.probeListeners.add(fn);
        return () => {
          stopInner?.();
          src.probeListeners.delete(fn);
        };
      },
      announce: inner.announce ? (id) => inner.announce!(id) : undefined,
      get bridged() {
        return src.unseenCrowd;
      },
      watch(ids: Buffer[], version: 1 | 2): WatchLike {
        return new MergedWatch(inner.watch(ids, version), ids, src);
      },
    };
  }
}
