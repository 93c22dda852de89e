/**
 * The PeerDist part of a download: lays the content out in blocks, runs the Scheduler, feeds it
 * from discovery, starts peer and origin fetches as it decides, and stores every verified block.
 * The origin is used only once discovery had its chance (the initial gate).
 */
import { blockCount, blockRange, type ContentInfo, type SegmentInfo, verifyBlock } from '../protocol/pccrc/types.js';
import type { Logger } from '../util/log.js';
import { DiscoveryFeed } from './discovery-feed.js';
import { DownloadError } from './errors.js';
import { fetchFromOrigin } from './fetch-origin.js';
import { fetchFromPeer } from './fetch-peer.js';
import type { BlockLayout } from './reader.js';
import { type Assignment, BlockTable, hostOf, type PeerStat, Scheduler } from './scheduler.js';
import type { JobContext, Session } from './session.js';
import type { TraceEvent } from './trace.js';
import type { ByteSource } from './types.js';
import type { OriginSet } from './origins.js';
import { isLoopbackHost } from '../util/address.js';
import { SegmentIndex } from './segment-index.js';

const GATE_REFRESH_WAIT_MS = 500;
/** The longest the origin gate waits for the hosted caches' first answers (firstAnswers). */
const HOSTED_CACHE_WAIT_MS = 1500;
/**
 * Verified blocks kept in memory after they were stored, for the readers streaming the download:
 * a block at or ahead of the slowest reader stays here until every reader has passed it, so a
 * reader takes it from memory instead of reading and hashing it again from the cache (issue 11:
 * the lone-daemon profile showed a quarter of the verification work in such re-reads once origin
 * requests ran ahead of the reader). Bounded: beyond this many bytes the block furthest ahead goes
 * (it is read from the cache when its turn comes).
 */
export const RECENT_BYTES = 16 * 1024 * 1024;
/**
 * Blocks per origin range request once the job has fetched from the origin alone for a while
 * (protocol/engine.md "Origin"): one request and one round trip for 1 MiB of v1 content instead of
 * 16 (issue 11; BENCHMARKS.md has the lone-daemon figures).
 */
const ORIGIN_RANGE_BLOCKS = 16;
const V2_SIGHTING_GRACE_MS = 60;
/**
 * When the cache cannot take a verified block (its limit is reached by pinned downloads, or its
 * filesystem is full), the block is kept in memory for the readers instead, and fetching goes on
 * only this far ahead of the slowest reader (issue 16.4: the cache is an optimisation).
 */
export const HOLD_BYTES = 8 * 1024 * 1024;

/** Cache failures that mean "no room", not "broken": the block is delivered without caching. */
export function isCacheCapacityError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return (
    code === 'CACHE_FULL' || code === 'NO_SPACE' || code === 'UNKNOWN_SEGMENT' || code === 'ENOSPC' || code === 'EDQUOT'
  );
}

/** What a transfer needs from its job. */
export interface TransferHost {
  readonly ctx: JobContext;
  readonly url: string;
  readonly headers: Record<string, string>;
  /** The origin nodes when the download names mirrors (origins.ts). */
  readonly origins?: OriginSet;
  /** The ETag the content information came with (its version of the content). */
  readonly etag?: string;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Settles when the job ends. */
  readonly ended: Promise<unknown>;
  stopped(): boolean;
  /** Lowest block some reader still needs; undefined when nobody reads. */
  readerLow(): number | undefined;
  landed(source: ByteSource, n: number): void;
  fail(err: unknown): void;
  finish(): void;
  trace(ev: TraceEvent): void;
}

/** Every block of every segment in content order, and segment numbers by segment ID. */
export function contentLayout(ci: ContentInfo): { layout: BlockLayout; segByHex: SegmentIndex } {
  let total = 0;
  for (const seg of ci.segments) total += blockCount(ci.version, seg);
  // Typed arrays, not an object per block (issue 16.7).
  const blocks = new BlockTable(total);
  const offsets = new Float64Array(total);
  let g = 0;
  for (const seg of ci.segments) {
    const n = blockCount(ci.version, seg);
    for (let i = 0; i < n; i++, g++) {
      const [s, e] = blockRange(ci.version, seg, i);
      blocks.set(g, seg.index, i, e - s);
      offsets[g] = seg.offset + s;
    }
  }
  const segOf = (g: number) => ci.segments[blocks.seg[g]!]!;
  return {
    layout: { blocks, offsets, segmentId: (g) => segOf(g).segmentId, contentLength: ci.contentLength },
    // Segment numbers by ID without a hex string per segment (issue 25 target 6).
    segByHex: SegmentIndex.of(ci.segments),
  };
}

export class Transfer implements Session {
  readonly ctx: JobContext;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly origins?: OriginSet;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly layout: BlockLayout;
  readonly segByHex: SegmentIndex;
  readonly sched: Scheduler;
  lastOriginError: string | undefined;
  readonly etag?: string;
  originEtagNow: string | undefined;
  readonly noBlockLists = new Set<string>();
  private readonly feed: DiscoveryFeed;
  private timer: unknown;
  private wakeAt = Infinity;
  private originOpen = false;
  /** Resolved by pump() once no trial request is in flight. */
  private trialsSettled: (() => void) | undefined;
  /** Cache writes in flight (a block that arrived just before cancel() is still stored and counted). */
  private readonly storing = new Set<Promise<void>>();
  /** Verified blocks kept for the readers by block number (keepForReaders, RECENT_BYTES). */
  private readonly recent = new Map<number, Buffer>();
  private recentBytes = 0;
  /** Verified blocks the cache refused, kept until the readers have passed them. */
  private readonly held = new Map<number, Buffer>();
  private heldBytes = 0;
  /** The cache refused a block: fetching stays within HOLD_BYTES of the slowest reader. */
  private holding = false;
  private readonly holdBlocks: number;
  private unsubscribeProbes: (() => void) | undefined;
  /** Crowd members traced so far ("probe host" / "peer host"), for memberSeen. */
  private readonly membersTraced = new Set<string>();
  private pumpQueued = false;

  constructor(
    readonly ci: ContentInfo,
    private readonly host: TransferHost,
  ) {
    this.ctx = host.ctx;
    this.url = host.url;
    this.headers = host.headers;
    if (host.etag !== undefined) this.etag = host.etag;
    if (host.origins) this.origins = host.origins;
    this.log = host.log;
    this.signal = host.signal;
    const { layout, segByHex } = contentLayout(ci);
    this.layout = layout;
    this.segByHex = segByHex;
    const { deps } = this.ctx;
    this.sched = new Scheduler({
      blocks: layout.blocks,
      present: (g) => deps.store.hasBlock(layout.segmentId(g), layout.blocks.at(g)!.index),
      random: this.ctx.random,
      originConcurrency: deps.originConcurrency,
      originRunBlocks: deps.originRangeBlocks ?? ORIGIN_RANGE_BLOCKS,
      aloneAfterMs: deps.originAloneAfterMs,
      peerConcurrency: deps.peerConcurrency,
      proven: deps.retrieval.proven ? (a) => deps.retrieval.proven!(a) : undefined,
      totalPeerConcurrency: deps.totalPeerConcurrency,
      // v1: block lists every refresh period; v2: discovery repeats (1-2 s) and pre-origin re-checks.
      visibilityLagMs: ci.version === 1 ? (deps.blockListRefreshMs ?? 300) + 100 : 1000,
      // Our identity in a flash crowd: the address the other clients see (hostOf our first XAddr).
      // Not while hosted caches may hide clients on other subnets, which would fetch the same
      // blocks in the same order unseen (protocol/engine.md, "Flash crowds" 8).
      self: selfIdentity(this.ctx.selfAddresses()),
      crowdVisible: () => !deps.discovery.bridged,
    });
    this.feed = new DiscoveryFeed(this);
    let maxBlock = 1;
    for (let g = 0; g < layout.blocks.length; g++) maxBlock = Math.max(maxBlock, layout.blocks.at(g)!.length);
    this.holdBlocks = Math.max(4, Math.floor(HOLD_BYTES / maxBlock));
  }

  /** A block delivered without caching, while some reader still needs it. */
  heldBlock(g: number): Buffer | undefined {
    return this.held.get(g);
  }

  /** Readers moved (or came and went): drop held blocks behind all of them, move the window. */
  readersMoved(): void {
    const low = this.host.readerLow();
    this.sched.setReaderAt(low);
    // By key, not by [key, value] entries: this runs for every block a reader passes, and an
    // entry array per kept block was the largest allocation of a daemon filling its cache from the
    // origin (~35 MB every 15 s, heap sampling; BENCHMARKS.md, h-mem evening).
    for (const g of this.recent.keys()) {
      if (low !== undefined && g >= low) continue;
      this.recentBytes -= this.recent.get(g)!.length;
      this.recent.delete(g);
    }
    for (const g of this.held.keys()) {
      if (low !== undefined && g >= low) continue;
      this.heldBytes -= this.held.get(g)!.length;
      this.held.delete(g);
    }
    if (!this.holding) return;
    this.sched.setLimit(low === undefined ? this.layout.blocks.length : low + this.holdBlocks);
    this.pump();
  }

  /**
   * A reader joined the running job at block `from` (reading up to `end`, exclusive): blocks it
   * will read that the cache refused and that were dropped from memory before it came (earlier
   * readers had passed them, or nobody read) are fetched again (issue 27.1).
   */
  readerJoined(from: number, end: number): void {
    const store = this.ctx.deps.store;
    const to = Math.min(end, this.layout.blocks.length);
    let lost = 0;
    for (let g = from; g < to; g++) {
      if (!this.sched.hasBlock(g) || this.held.has(g) || this.recent.has(g)) continue;
      if (store.hasBlock(this.layout.segmentId(g), this.layout.blocks.at(g)!.index)) continue;
      this.sched.markMissing(g);
      lost++;
    }
    if (lost === 0) return;
    this.log.info('a reader joined after blocks it needs were delivered without caching; fetching them again', {
      blocks: lost,
    });
    this.pumpSoon();
  }

  /** A block just stored, kept while a reader has yet to pass it (within RECENT_BYTES, nearest first). */
  private keepForReaders(g: number, data: Buffer): void {
    const low = this.host.readerLow();
    if (low === undefined || g < low || this.recent.has(g)) return;
    this.recent.set(g, data);
    this.recentBytes += data.length;
    while (this.recentBytes > RECENT_BYTES) {
      let far = -1;
      for (const k of this.recent.keys()) if (k > far) far = k;
      this.recentBytes -= this.recent.get(far)!.length;
      this.recent.delete(far);
    }
  }

  private forget(g: number): void {
    const data = this.recent.get(g);
    if (!data) return;
    this.recent.delete(g);
    this.recentBytes -= data.length;
  }

  /** The cache could not take block g: keep it for the readers (nobody reads: nothing to keep). */
  private hold(g: number, data: Buffer, why: unknown): void {
    if (!this.holding) {
      this.holding = true;
      this.log.warn('cache cannot take more of this download; delivering it without caching', {
        url: this.url,
        why: (why as Error)?.message,
      });
    }
    const low = this.host.readerLow();
    if (low !== undefined && g >= low && !this.held.has(g)) {
      this.held.set(g, data);
      this.heldBytes += data.length;
    }
    this.sched.setLimit(low === undefined ? this.layout.blocks.length : low + this.holdBlocks);
  }

  /** Lengths of the blocks already in the cache when the transfer starts. */
  cachedAtStart(): number[] {
    const out: number[] = [];
    for (let g = 0; g < this.layout.blocks.length; g++)
      if (this.sched.hasBlock(g)) out.push(this.layout.blocks.at(g)!.length);
    return out;
  }

  peerStats(): PeerStat[] {
    return this.sched.peerStats();
  }

  /** Runs until the origin gate opened; fetches then go on until the job finishes or fails. */
  async run(): Promise<void> {
    if (this.stopped()) return;
    const { store, discovery } = this.ctx.deps;
    store.on('block', this.onStoreBlock);
    // Another client probing for our segments: it downloads the same content now (a flash crowd).
    this.unsubscribeProbes = discovery.onForeignProbe?.((ids, from) => {
      for (const id of ids)
        if (this.segByHex.ofId(id) !== undefined) {
          // Daemons on one host probe from one loopback address: a crowd, but no identity.
          this.sched.crowdSeen(isLoopbackHost(from) ? undefined : from, this.ctx.now());
          if (!isLoopbackHost(from)) this.feed.proberSeen(from);
          this.memberSeen(from, 'probe');
          return;
        }
    });
    const self = selfIdentity(this.ctx.selfAddresses());
    if (self !== undefined) this.trace({ type: 'member', host: self, via: 'self', at: this.ctx.now() });
    this.feed.start();
    this.pump(); // peers already known start right away

    // A hosted cache's first answer names the clients on every subnet that ask for the same
    // segments now: with it a flash crowd shares the origin blocks out from its first block. It
    // answers within a LAN round trip, or within a second on a busy host; without the wait each
    // client of a crowd over several subnets started its origin fetches blind (RELIABILITY.md
    // item 13). Bounded; a hosted cache that failed its last request is not waited for.
    await this.until(this.feed.firstAnswers(), HOSTED_CACHE_WAIT_MS);
    // Adaptive initial wait: the origin is only used once discovery had its chance.
    const wait = Math.max(0, discovery.initialWaitMs);
    if (this.sched.peerCount() === 0 && wait > 0) await this.until(this.feed.waitForPeers(wait), wait + 50);
    if (this.sched.peerCount() > 0) {
      if (this.ci.version === 2) await this.until(new Promise(() => undefined), V2_SIGHTING_GRACE_MS);
      await this.until(this.feed.refreshAll(), GATE_REFRESH_WAIT_MS);
      // The gate also waits for the first answers of peers on trial, but only for the trial grace
      // from the first trial request (Scheduler.trialGraceEndsAt): a genuine LAN peer answers in
      // milliseconds and then takes the blocks it holds, instead of the origin. Waiting for the
      // retrieval client's 1.5 s first-byte limit, and longer while a host kept naming new silent
      // addresses, cost every download beside a tarpit about 2 s of idle origin (issue 27.9).
      // On a starved machine the grace grows with how late our own timers fire (this one's too:
      // Scheduler.timerLate), so the wait goes on until the grace as it stands now has passed.
      for (;;) {
        const graceEnd = this.sched.trialGraceEndsAt();
        if (this.stopped() || this.sched.trialsPending() === 0 || graceEnd === undefined || graceEnd <= this.ctx.now())
          break;
        await this.until(
          new Promise<void>((r) => {
            this.trialsSettled = r;
          }),
          graceEnd - this.ctx.now(),
        );
        this.trialsSettled = undefined;
      }
    }
    if (this.stopped()) return;
    this.trace({
      type: 'gate',
      at: this.ctx.now(),
      peers: this.sched.peerCount(),
      ...(this.sched.trialGraceEndsAt() !== undefined ? { graceMs: this.sched.trialGraceMs() } : {}),
    });
    this.originOpen = true;
    this.pump();
    this.feed.reprobe();
  }

  /** Stops timers and discovery (the job ended). */
  close(): void {
    this.unsubscribeProbes?.();
    this.unsubscribeProbes = undefined;
    if (this.timer !== undefined) this.ctx.timers.clear(this.timer);
    this.timer = undefined;
    this.feed.close();
    this.ctx.deps.store.off('block', this.onStoreBlock);
    // Readers still streaming take the blocks kept for them (readersMoved drops what they passed).
    if (this.host.readerLow() === undefined) this.releaseMemory();
  }

  /** Drops every block kept in memory for readers (the job is disposed of). */
  releaseMemory(): void {
    this.recent.clear();
    this.recentBytes = 0;
    this.held.clear();
    this.heldBytes = 0;
  }

  /** A verified block stored moments ago, still in memory (readers at the front take it from here). */
  recentBlock(g: number): Buffer | undefined {
    return this.recent.get(g);
  }

  /** Settles once no cache write is in flight. */
  async idle(): Promise<void> {
    while (this.storing.size > 0) await Promise.allSettled([...this.storing]);
  }

  stopped(): boolean {
    return this.host.stopped();
  }

  /**
   * pump() once this turn of the event loop is over, once however often it is asked for meanwhile
   * (Session): the answers that one poll of the sockets delivers, and the writes one group commit
   * finishes, take one Scheduler pick together instead of one each (issue 25).
   */
  pumpSoon(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(this.pumpQueuedNow);
  }

  private readonly pumpQueuedNow = (): void => {
    this.pumpQueued = false;
    this.pump();
  };

  /** Starts whatever the scheduler decides now and arms a timer for its next deadline. */
  pump(): void {
    const sched = this.sched;
    if (this.stopped()) return;
    const f = sched.failed();
    if (f) return this.failBlock(f.block, f.reason);
    if (sched.isDone()) {
      // Peer blocks count as done once verified (fetch-peer.ts); the job ends once the cache has
      // them too. Each write's task pumps again when it finishes.
      if (this.storing.size === 0) this.host.finish();
      return;
    }
    const now = this.ctx.now();
    for (const a of sched.next(now, this.originOpen)) this.launch(a);
    if (this.trialsSettled && sched.trialsPending() === 0) this.trialsSettled();
    const f2 = sched.failed();
    if (f2) return this.failBlock(f2.block, f2.reason);
    const wake = sched.nextWakeAt();
    if (wake !== undefined && wake < this.wakeAt) {
      if (this.timer !== undefined) this.ctx.timers.clear(this.timer);
      this.wakeAt = wake;
      const delay = Math.max(1, wake - now);
      // Not weak: a job waiting out a retry backoff must keep a standalone process alive.
      this.timer = this.ctx.timers.set(() => {
        this.timer = undefined;
        this.wakeAt = Infinity;
        this.timerFired(now + delay);
        this.pump();
      }, delay);
    }
  }

  /**
   * One of our timers, due at `due`, fires now: how late tells the scheduler how starved of CPU
   * this process is (Scheduler.timerLate: the trial grace grows with it).
   */
  private timerFired(due: number): void {
    const late = this.ctx.now() - due;
    if (late > 0) this.sched.timerLate(late);
  }

  async until(p: Promise<unknown>, ms: number): Promise<void> {
    let t: unknown;
    const due = this.ctx.now() + ms;
    await Promise.race([
      p.catch(() => undefined),
      new Promise<void>((r) => {
        t = this.ctx.timers.set(() => {
          this.timerFired(due);
          r();
        }, ms);
      }),
      this.host.ended.then(
        () => undefined,
        () => undefined,
      ),
    ]);
    this.ctx.timers.clear(t);
  }

  segInfo(g: number): SegmentInfo {
    return this.ci.segments[this.layout.blocks.at(g)!.seg]!;
  }

  check(g: number, data: Buffer): boolean {
    const b = this.layout.blocks.at(g)!,
      seg = this.segInfo(g),
      st = this.ctx.deps.store;
    if (st.checkBlock) {
      if (st.checkBlock(seg.segmentId, b.index, data)) return true;
      // The store refused: tell wrong bytes (the sender's fault) from a store that lost the segment.
      return verifyBlock(this.ci.version, seg, b.index, data);
    }
    return verifyBlock(this.ci.version, seg, b.index, data);
  }

  async store(g: number, data: Buffer): Promise<void> {
    const b = this.layout.blocks.at(g)!;
    // Kept for the readers before the write: the store marks the block present (and a waiting reader
    // wakes) before this function resumes.
    if (!this.stopped()) this.keepForReaders(g, data);
    const write = this.ctx.deps.store.putBlock(this.segInfo(g).segmentId, b.index, data);
    this.storing.add(write);
    try {
      await write;
    } catch (err) {
      this.forget(g);
      if (isCacheCapacityError(err)) {
        this.hold(g, data, err);
        return;
      }
      throw new DownloadError('LOCAL', `cannot store block ${b.index} of segment ${b.seg}: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      this.storing.delete(write);
    }
  }

  storeBacklog(): number {
    return this.storing.size;
  }

  recheckStore(g: number): void {
    const b = this.layout.blocks.at(g)!;
    if (this.ctx.deps.store.hasBlock(this.segInfo(g).segmentId, b.index) && !this.sched.hasBlock(g)) {
      this.sched.markDone(g);
      this.landed('fromCache', b.length);
    }
  }

  landed(source: ByteSource, n: number): void {
    this.host.landed(source, n);
  }

  memberSeen(host: string, via: 'probe' | 'peer' | 'capped'): void {
    const key = `${via} ${host}`;
    if (this.membersTraced.has(key) || this.membersTraced.size >= MAX_MEMBERS_TRACED) return;
    this.membersTraced.add(key);
    this.trace({ type: 'member', host, via, at: this.ctx.now() });
  }

  badPeer(peer: string): void {
    this.feed.reportFailure(peer);
  }

  trace(ev: TraceEvent): void {
    this.host.trace(ev);
  }

  /** Blocks another job (or an import) stores meanwhile count as cache hits. */
  private readonly onStoreBlock = (idHex: string, index: number): void => {
    const seg = this.segByHex.get(idHex);
    if (seg === undefined) return;
    const g = this.sched.blockOf(seg, index);
    if (g === undefined || this.sched.hasBlock(g)) return;
    this.sched.markDone(g);
    if (this.sched.hasBlock(g)) this.landed('fromCache', this.layout.blocks.at(g)!.length);
  };

  private launch(a: Assignment): void {
    const run = a.kind === 'peer' ? fetchFromPeer(this, a.block, a.peer) : fetchFromOrigin(this, a.block, a.count ?? 1);
    // Coalesced (pumpSoon): the writes of a group commit finish together, and a pick per finished
    // write on top of the pick per verified block (fetch-peer.ts) doubled the Scheduler's work.
    run.catch((err) => this.host.fail(err)).finally(() => this.pumpSoon());
  }

  private failBlock(g: number, reason: 'origin' | 'mismatch'): void {
    const b = this.layout.blocks.at(g)!;
    const where = `block ${b.index} of segment ${b.seg} (bytes ${this.layout.offsets[g]}-${this.layout.offsets[g]! + b.length - 1})`;
    if (reason === 'mismatch' && this.originEtagNow !== undefined)
      this.host.fail(
        new DownloadError(
          'ORIGIN_CHANGED',
          `${this.url} changed at the origin during the download (ETag ${this.etag} when it started, ` +
            `${this.originEtagNow} now): no byte of the new version was used; download it again`,
        ),
      );
    else if (reason === 'mismatch')
      this.host.fail(
        new DownloadError(
          'ORIGIN_MISMATCH',
          `origin returned data that does not match its content information: ${where} of ${this.url}`,
        ),
      );
    else
      this.host.fail(
        new DownloadError(
          'BLOCK_FAILED',
          `could not get ${where} of ${this.url} from any peer or the origin${this.lastOriginError ? `: ${this.lastOriginError}` : ''}`,
        ),
      );
  }
}

/** memberSeen traces at most this many (host, way) pairs per download. */
const MAX_MEMBERS_TRACED = 512;

/** This daemon's crowd identity: the host of its first advertised address (undefined: unknown). */
function selfIdentity(addresses: string[] | undefined): string | undefined {
  const first = addresses?.[0];
  return first === undefined ? undefined : hostOf(first);
}
