/**
 * Feeds what discovery learns into the scheduler: one watch per batch of missing segments,
 * block lists of partial holders (v1, refreshed periodically and on demand), and fresh probes
 * while no peer is known. Sightings of this daemon itself are ignored.
 */
import { PeerError } from '../protocol/pccrr/errors.js';
import type { Session } from './session.js';
import type { SightingLike, WatchLike } from './types.js';
import { hostOf } from './scheduler.js';

/**
 * Segment IDs per discovery watch: what one probe can carry (v1 32 IDs per probe, so 2 probes;
 * v2 up to 255). Fewer, fuller probes matter for v2 content, whose many small segments are only
 * learned from ProbeMatches and whose probes go through the discovery pacer (15/s).
 */
const WATCH_BATCH: Record<1 | 2, number> = { 1: 64, 2: 255 };
/** While no peer is known, a fresh probe for a sample of the segments this often. */
const REPROBE_MS = 500;
const REPROBE_MAX = 20;
/** Segment IDs per re-probe: one probe datagram's worth (v1 32, v2 255). */
const REPROBE_SAMPLE = { 1: 32, 2: 255 } as const;
/**
 * Distinct peer addresses one download uses (issue 16.5): a ProbeMatch can name any host:port, so
 * without a cap a LAN host could make us send requests to as many addresses as it likes. Addresses
 * that answered validly before (proven) are admitted up to PROVEN_PEER_CAP.
 */
const PEER_CAP = 16;
const PROVEN_PEER_CAP = 64;
/**
 * Addresses on hosts seen probing for this content (crowd members) are admitted up to this many
 * (issue 24 item 5; protocol/engine.md "Flash crowds" 17): in one subnet of 1,000 downloading
 * daemons a responder takes 1 probe in 75 (200/s of 15,000/s), so a member hears from each peer
 * it admitted only every few minutes; with 64 admitted, 94% of the answers it got named peers it
 * could not use and it fetched from the origin what its subnet held. As many as MAX_PROBERS: a host
 * can add an address only by probing from it, and the probers kept are bounded.
 */
const CROWD_PEER_CAP = 256;
/** Hosts remembered as probers of this content (proberSeen), for admission; the oldest go first. */
const MAX_PROBERS = 256;

export class DiscoveryFeed {
  private watches: WatchLike[] = [];
  private extraWatch: WatchLike | undefined;
  private reprobeTimer: unknown;
  private refreshTimer: unknown;
  private readonly refreshing = new Map<string, Promise<void>>();
  private rounds = 0;
  /** Addresses this download admitted as peers (see PEER_CAP). */
  private readonly admitted = new Set<string>();
  /**
   * Hosts seen probing for this content (a flash crowd's members, transfer.ts onForeignProbe): an
   * address on such a host is admitted up to PROVEN_PEER_CAP (see admit).
   */
  private readonly probers = new Set<string>();
  /** The origin's own host:port: never a peer, whatever a ProbeMatch says. */
  private readonly originAddress: string | undefined;

  constructor(private readonly s: Session) {
    try {
      const u = new URL(s.url);
      this.originAddress = `${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
    } catch {
      this.originAddress = undefined;
    }
  }

  /** Whether a sighted address may be used by this download. */
  private admit(address: string): boolean {
    if (this.admitted.has(address)) return true;
    const { ctx } = this.s;
    if (ctx.isSelf(address) || address === this.originAddress) return false;
    const retrieval = ctx.deps.retrieval;
    if (retrieval.usable?.(address) === false) return false;
    // A crowd member (its host probed for this content) is admitted like a proven address: in a
    // crowd of more than 16 others the cap kept each member from learning what all but 16 of the
    // others held, so it fetched their blocks from the origin again (protocol/engine.md "Flash
    // crowds" 13). A host naming addresses it did not probe from gains nothing by it.
    const cap = this.probers.has(hostOf(address))
      ? CROWD_PEER_CAP
      : retrieval.proven?.(address)
        ? PROVEN_PEER_CAP
        : PEER_CAP;
    if (this.admitted.size >= cap) {
      // For traces (the crowd's duplicate analysis): a holder we will not learn from.
      this.s.memberSeen(hostOf(address), 'capped');
      return false;
    }
    this.admitted.add(address);
    return true;
  }

  /** Another host probed for this content (its IP address as the probe came from; not loopback). */
  proberSeen(host: string): void {
    if (this.probers.has(host)) return;
    if (this.probers.size >= MAX_PROBERS) this.probers.delete(this.probers.values().next().value!);
    this.probers.add(host);
  }

  /** Watches every missing segment, a batch of IDs per watch; v1 also refreshes block lists periodically. */
  start(): void {
    const { ci, sched, ctx } = this.s;
    const needed = sched.segmentsNeeded().map((s) => ci.segments[s]!.segmentId);
    const batch = WATCH_BATCH[ci.version];
    for (let i = 0; i < needed.length; i += batch) {
      const ids = needed.slice(i, i + batch);
      const w = ctx.deps.discovery.watch(ids, ci.version);
      const round = this.round('initial', ids.length);
      this.watches.push(w);
      w.on('peer', (p) => this.onSighting(p, round));
      for (const id of ids) for (const p of w.peers(id)) this.onSighting(p, round);
    }
    if (ci.version === 1) this.refreshEvery(ctx.deps.blockListRefreshMs ?? 300);
  }

  /** Resolves once any watch found a peer or after `ms` (callers bound the wait). */
  waitForPeers(ms: number): Promise<void> {
    return Promise.race(this.watches.map((w) => w.waitForPeers(ms)));
  }

  /** Resolves once every watch's hosted caches gave their first answers (WatchLike.firstAnswers). */
  firstAnswers(): Promise<unknown> {
    return Promise.all(this.watches.map((w) => w.firstAnswers?.()));
  }

  /** Tells discovery that `address` misbehaved. */
  reportFailure(address: string): void {
    for (const w of this.watches) w.reportFailure(address);
  }

  close(): void {
    if (this.refreshTimer !== undefined) this.s.ctx.timers.clear(this.refreshTimer);
    this.refreshTimer = undefined;
    if (this.reprobeTimer !== undefined) this.s.ctx.timers.clear(this.reprobeTimer);
    this.reprobeTimer = undefined;
    this.extraWatch?.close();
    this.extraWatch = undefined;
    for (const w of this.watches) w.close();
    this.watches = [];
  }

  private refreshEvery(ms: number): void {
    this.refreshTimer = this.s.ctx.timers.set(
      () => {
        void this.refreshAll();
        this.refreshEvery(ms);
      },
      ms,
      true,
    );
  }

  /**
   * The discovery watch repeats its probe only every 1-2 s. Clients that start together find
   * each other only once they hold blocks, so while no peer is known we send a fresh probe for a
   * random sample of the missing segments every REPROBE_MS (one datagram; a hit on any segment
   * reveals the peer, and block lists tell us the rest).
   */
  reprobe(n = 0): void {
    const s = this.s;
    if (n >= REPROBE_MAX || s.stopped()) return;
    this.reprobeTimer = s.ctx.timers.set(
      () => {
        const { sched, ci } = s;
        // The last re-probe stays open once a peer is known: other clients answer its MessageID
        // with follow-up ProbeMatches as their segments arrive (protocol/pccrd.md).
        if (s.stopped() || sched.peerCount() > 0) return;
        this.extraWatch?.close();
        this.extraWatch = undefined;
        const needed = sched.segmentsNeeded();
        for (let i = needed.length - 1; i > 0; i--) {
          const j = Math.floor(s.ctx.random() * (i + 1));
          [needed[i], needed[j]] = [needed[j]!, needed[i]!];
        }
        const ids = needed.slice(0, REPROBE_SAMPLE[ci.version]).map((g) => ci.segments[g]!.segmentId);
        if (ids.length === 0) return;
        const w = s.ctx.deps.discovery.watch(ids, ci.version);
        const round = this.round('reprobe', ids.length);
        w.on('peer', (p) => this.onSighting(p, round));
        this.extraWatch = w;
        this.reprobe(n + 1);
      },
      REPROBE_MS,
      true,
    );
  }

  /** Numbers a discovery round (a watch) and traces its start. */
  private round(kind: 'initial' | 'reprobe', segments: number): number {
    const round = ++this.rounds;
    this.s.trace({ type: 'round', round, kind, segments, at: this.s.ctx.now() });
    return round;
  }

  private onSighting(p: SightingLike, round: number): void {
    const { sched, ci, ctx } = this.s;
    if (this.s.stopped()) return;
    const seg = this.s.segByHex.get(p.segmentId.toUpperCase());
    if (seg === undefined || p.blockCount <= 0 || !this.admit(p.address)) return;
    this.s.trace({ type: 'answer', round, peer: p.address, seg, blockCount: p.blockCount, at: ctx.now() });
    if (!p.relay) this.s.memberSeen(hostOf(p.address), 'peer');
    if (p.relay) sched.peerIsRelay(p.address);
    if (ci.version === 2) sched.peerHasSegment(p.address, seg, ctx.now());
    // v1 ProbeMatches carry a BlockCount: all of the segment's blocks means the whole segment, and
    // blocks are asked for directly (issue 16.11: peers such as python-peerdist do not answer
    // MSG_GETBLKLIST, and iPXE never sends it).
    else if (p.complete || p.blockCount >= sched.blocksInSegment(seg)) sched.peerHasSegment(p.address, seg);
    else {
      sched.addPeer(p.address);
      void this.refreshPeer(p.address, seg);
    }
    // A new peer may hold other segments of this content too.
    if (ci.version === 1) for (const s of sched.segmentsNeeded()) if (s !== seg) void this.refreshPeer(p.address, s);
    this.s.pumpSoon();
  }

  /** Block lists of every partial holder for every segment still needed (v1). */
  refreshAll(): Promise<unknown> {
    const { sched, ci } = this.s;
    if (this.s.stopped() || ci.version !== 1) return Promise.resolve();
    const work: Promise<void>[] = [];
    for (const seg of sched.segmentsNeeded()) {
      for (const peer of sched.partialHolders(seg))
        if (!this.s.noBlockLists.has(peer)) work.push(this.refreshPeer(peer, seg));
    }
    return Promise.all(work);
  }

  /** One block-list request per peer and segment at a time; callers share the running one. */
  private refreshPeer(peer: string, seg: number): Promise<void> {
    const key = `${peer}/${seg}`;
    let p = this.refreshing.get(key);
    if (!p) {
      p = this.blockList(peer, seg).finally(() => this.refreshing.delete(key));
      this.refreshing.set(key, p);
    }
    return p;
  }

  private async blockList(peer: string, seg: number): Promise<void> {
    const s = this.s;
    if (s.stopped()) return;
    try {
      const n = s.sched.blocksInSegment(seg);
      const r = await s.ctx.deps.retrieval.getBlockList({
        peer,
        segmentId: s.ci.segments[seg]!.segmentId,
        ranges: [[0, n]],
        signal: s.signal,
      });
      if (s.stopped()) return;
      const indices: number[] = [];
      for (const [first, count] of r.ranges) for (let i = first; i < first + count && i < n; i++) indices.push(i);
      s.sched.peerBlocks(peer, seg, indices, s.ctx.now());
      s.pump();
    } catch (err) {
      s.log.debug('block list failed', { peer, seg, err });
      if (s.stopped() || !(err instanceof PeerError) || err.code !== 'PEER_HTTP') return;
      // The peer answers HTTP but refuses MSG_GETBLKLIST (python-peerdist answers 400): it is a
      // holder by its ProbeMatch, so ask it for the segment's blocks directly; an empty MSG_BLK
      // tells us which ones it lacks (issue 16.11). No more block lists for it in this download.
      s.noBlockLists.add(peer);
      s.sched.peerHasSegment(peer, seg);
      s.pump();
    }
  }
}
