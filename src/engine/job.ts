/**
 * One download: asks the origin for content information, then fills the block store from peers
 * and the origin as the Scheduler decides, verifying every block. Non-PeerDist answers are plain
 * downloads buffered to a temp file (see plain.ts). Readers stream the content in order while it
 * arrives (reader.ts). Design notes: protocol/engine.md.
 */
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { parseContentInfo } from '../protocol/pccrc/codec.js';
import { type ContentInfo, type SegmentInfo, blockCount, blockRange, verifyBlock } from '../protocol/pccrc/types.js';
import { segmentMetaFrom } from '../cache/store.js';
import { clientRequestHeaders, missingDataRequestHeaders, parsePeerDistResponse } from '../protocol/pccrtp/headers.js';
import type { Logger } from '../util/log.js';
import { DownloadError } from './errors.js';
import { type OriginClient, type OriginResponse, header, readBody } from './origin-client.js';
import { PlainBuffer } from './plain.js';
import { blockReader, type BlockLayout } from './reader.js';
import { type Assignment, type BlockDesc, type PeerFailure, type PeerStat, Scheduler } from './scheduler.js';
import type { DownloadResult, EngineDeps, JobInfo, JobProgress, JobState, SightingLike, WatchLike } from './types.js';
import { checkSignature } from './check-signature.js';

export interface DownloadJob extends EventEmitter {
  readonly id: string;
  readonly url: string;
  /** Resolves once the origin answered. */
  readonly info: Promise<JobInfo>;
  progress(): JobProgress;
  /** Content bytes [start, end] (end inclusive, like fs.createReadStream) in order, as they become available. */
  createReadStream(start?: number, end?: number): NodeJS.ReadableStream;
  readonly done: Promise<DownloadResult>;
  cancel(): void;
  /** Settles once no cache write is in flight (after cancel() the counters and cache stop changing). */
  idle(): Promise<void>;
}

/** Counter deltas reported to the engine's totals. */
export type CounterSink = (field: 'fromOrigin' | 'fromPeers' | 'fromCache' | 'contentInfoBytes' | 'bytesDone', n: number) => void;

export interface JobContext {
  deps: EngineDeps;
  http: OriginClient;
  log: Logger;
  now: () => number;
  random: () => number;
  count: CounterSink;
  isSelf: (address: string) => boolean;
}

const MAX_CONTENT_INFO = 256 * 1024 * 1024;
/**
 * Segment IDs per discovery watch: what one probe can carry (v1 32 IDs per probe, so 2 probes;
 * v2 up to 255). Fewer, fuller probes matter for v2 content, whose many small segments are only
 * learned from ProbeMatches and whose probes go through the discovery pacer (15/s).
 */
const WATCH_BATCH: Record<1 | 2, number> = { 1: 64, 2: 255 };
const GATE_REFRESH_WAIT_MS = 500;
const V2_SIGHTING_GRACE_MS = 60;
/** Pre-origin re-check: peers asked, and how long we wait for them. */
const RECHECK_PEERS = 8;
const RECHECK_WAIT_MS = 50;
/** While no peer is known, a fresh probe for a sample of the segments this often. */
const REPROBE_MS = 500;
const REPROBE_MAX = 20;
/** Segment IDs per re-probe: one probe datagram's worth (v1 32, v2 255). */
const REPROBE_SAMPLE = { 1: 32, 2: 255 } as const;

export class Job extends EventEmitter implements DownloadJob {
  readonly info: Promise<JobInfo>;
  readonly done: Promise<DownloadResult>;
  private resolveInfo!: (i: JobInfo) => void;
  private rejectInfo!: (e: Error) => void;
  private resolveDone!: (r: DownloadResult) => void;
  private rejectDone!: (e: Error) => void;
  private state: JobState = 'starting';
  private error: DownloadError | undefined;
  private readonly abort = new AbortController();
  private readonly started: number;
  private counters = { fromOrigin: 0, fromPeers: 0, fromCache: 0, contentInfoBytes: 0, bytesDone: 0 };
  private contentLength: number | undefined;
  private ci: ContentInfo | undefined;
  private sched: Scheduler | undefined;
  private layout: BlockLayout | undefined;
  private plain: PlainBuffer | undefined;
  private watches: WatchLike[] = [];
  private unpins: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private reprobeTimer: NodeJS.Timeout | undefined;
  private extraWatch: WatchLike | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private originOpen = false;
  private readonly refreshing = new Map<string, Promise<void>>();
  private readonly segByHex = new Map<string, number>();
  private readonly log: Logger;
  /** Resolved and replaced whenever a block lands or the state changes (readers wait on it). */
  private tick!: Promise<void>;
  private fireTick!: () => void;

  constructor(readonly id: string, readonly url: string, private readonly headers: Record<string, string>, private readonly ctx: JobContext) {
    super();
    this.started = ctx.now();
    this.log = ctx.log.child({ job: id });
    this.info = new Promise((res, rej) => { this.resolveInfo = res; this.rejectInfo = rej; });
    this.done = new Promise((res, rej) => { this.resolveDone = res; this.rejectDone = rej; });
    // Callers may only look at one of them; an unobserved rejection must not crash the daemon.
    this.info.catch(() => undefined);
    this.done.catch(() => undefined);
    this.renewTick();
  }

  private renewTick(): void {
    const old = this.fireTick;
    this.tick = new Promise((r) => { this.fireTick = r; });
    old?.();
  }

  /** Runs the download; settles `done`. Called once by the engine. */
  start(): void {
    this.run().catch((err) => this.fail(err));
  }

  get finished(): boolean { return this.state === 'done' || this.state === 'failed'; }

  progress(): JobProgress {
    const p: JobProgress = {
      state: this.state,
      bytesDone: this.counters.bytesDone,
      fromOrigin: this.counters.fromOrigin,
      fromPeers: this.counters.fromPeers,
      fromCache: this.counters.fromCache,
      contentInfoBytes: this.counters.contentInfoBytes,
      peers: this.sched ? this.sched.peerStats().filter((s) => s.blocks > 0).length : 0,
      blocksTotal: this.sched?.total ?? 0,
      blocksDone: this.sched?.completed ?? 0,
    };
    if (this.contentLength !== undefined) p.contentLength = this.contentLength;
    if (this.error) p.error = this.error.message;
    return p;
  }

  /** Per-peer statistics (throughput, failures, bad blocks, bans) of this job. */
  peerStats(): PeerStat[] { return this.sched?.peerStats() ?? []; }

  cancel(): void {
    if (!this.finished) this.fail(new DownloadError('CANCELLED', `download cancelled: ${this.url}`));
  }

  createReadStream(start = 0, end?: number): Readable {
    return blockReader({
      start, end,
      info: this.info,
      plain: () => this.plain,
      layout: () => this.layout,
      store: this.ctx.deps.store,
      waitChange: () => this.tick,
      failure: () => this.error,
      finished: () => this.finished,
    });
  }

  // ------------------------------------------------------------------ origin request

  private async run(): Promise<void> {
    const { deps, http } = this.ctx;
    const reqHeaders = { ...this.headers, ...clientRequestHeaders({ maxContentVersion: deps.maxContentVersion ?? 2 }) };
    const res = await http.get(this.url, reqHeaders, this.abort.signal);
    if (res.status !== 200) {
      res.discard();
      throw new DownloadError('ORIGIN_STATUS', `origin answered HTTP ${res.status} for ${this.url}`, { status: res.status });
    }
    const pd = parsePeerDistResponse(res.headers);
    const base: Omit<JobInfo, 'contentLength' | 'peerdist'> = {};
    const etag = header(res.headers, 'etag'); if (etag) base.etag = etag;
    const lm = header(res.headers, 'last-modified'); if (lm) base.lastModified = lm;
    const ct = header(res.headers, 'content-type'); if (ct) base.contentType = ct;
    if (!pd.peerdist) return this.runPlain(res, base);

    const body = await readBody(res, MAX_CONTENT_INFO);
    this.add('contentInfoBytes', body.length);
    if (deps.signaturePublicKeyPem) {
      const why = checkSignature(deps.signaturePublicKeyPem, this.url, res.headers, body);
      if (why) throw new DownloadError('BAD_SIGNATURE', `content information for ${this.url} rejected: ${why}`);
    }
    let ci: ContentInfo;
    try { ci = parseContentInfo(body); } catch (err) {
      throw new DownloadError('BAD_CONTENT_INFO', `origin sent malformed content information for ${this.url}: ${(err as Error).message}`, { cause: err });
    }
    if (pd.contentLength === undefined) throw new DownloadError('BAD_CONTENT_INFO', `PeerDist response for ${this.url} lacks X-P2P-PeerDist ContentLength`);
    if (ci.rangeStart !== 0 || ci.rangeEnd !== pd.contentLength || ci.contentLength !== pd.contentLength) {
      throw new DownloadError('BAD_CONTENT_INFO', `content information for ${this.url} covers ${ci.rangeStart}-${ci.rangeEnd} of ${ci.contentLength} bytes but ContentLength is ${pd.contentLength}`);
    }
    if (ci.version > (deps.maxContentVersion ?? 2)) throw new DownloadError('BAD_CONTENT_INFO', `origin sent content information v${ci.version}, we asked for at most v${deps.maxContentVersion}`);
    this.ci = ci;
    this.contentLength = ci.contentLength;
    this.resolveInfo({ ...base, contentLength: ci.contentLength, peerdist: true, contentInfo: ci });
    await this.runPeerDist(ci);
  }

  // ------------------------------------------------------------------ plain download

  private async runPlain(res: OriginResponse, base: Omit<JobInfo, 'contentLength' | 'peerdist'>): Promise<void> {
    const cl = header(res.headers, 'content-length');
    const len = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
    if (len >= 0) this.contentLength = len;
    this.plain = await PlainBuffer.create(this.ctx.deps.tmpDir);
    this.state = 'running';
    this.resolveInfo({ ...base, contentLength: len, peerdist: false });
    this.emitProgress();
    try {
      for await (const chunk of res.body) {
        if (this.finished) break;
        await this.plain.append(chunk);
        this.add('fromOrigin', chunk.length);
        this.add('bytesDone', chunk.length);
        this.renewTick();
        this.emitProgress();
      }
    } catch (err) {
      if (this.finished) return;
      throw new DownloadError('ORIGIN_UNREACHABLE', `origin connection failed during ${this.url}: ${(err as Error).message}`, { cause: err });
    }
    if (this.finished) return;
    if (len >= 0 && this.plain.size !== len) throw new DownloadError('ORIGIN_UNREACHABLE', `origin sent ${this.plain.size} of ${len} bytes for ${this.url}`);
    await this.plain.finish();
    if (len < 0) this.contentLength = this.plain.size;
    this.finish();
  }

  // ------------------------------------------------------------------ PeerDist download

  private async runPeerDist(ci: ContentInfo): Promise<void> {
    const { store } = this.ctx.deps;
    const blocks: BlockDesc[] = [];
    const offsets: number[] = [];
    for (const seg of ci.segments) {
      await store.addSegment(segmentMetaFrom(ci.version, ci.hashAlgorithm, seg));
      this.unpins.push(store.pin(seg.segmentId));
      this.segByHex.set(seg.segmentId.toString('hex').toUpperCase(), seg.index);
      const n = blockCount(ci.version, seg);
      for (let i = 0; i < n; i++) {
        const [s, e] = blockRange(ci.version, seg, i);
        blocks.push({ seg: seg.index, index: i, length: e - s });
        offsets.push(seg.offset + s);
      }
    }
    if (this.finished) {
      // Cancelled while registering: cleanup() already ran, so release what was pinned since.
      for (const u of this.unpins.splice(0)) u();
      return;
    }
    const segOf = (g: number) => ci.segments[blocks[g]!.seg]!;
    this.layout = { blocks, offsets, segmentId: (g) => segOf(g).segmentId, contentLength: ci.contentLength };
    const sched = new Scheduler({
      blocks,
      present: (g) => store.hasBlock(segOf(g).segmentId, blocks[g]!.index),
      random: this.ctx.random,
      originConcurrency: this.ctx.deps.originConcurrency,
      peerConcurrency: this.ctx.deps.peerConcurrency,
      totalPeerConcurrency: this.ctx.deps.totalPeerConcurrency,
      // v1: block lists every refresh period; v2: discovery repeats (1-2 s) and pre-origin re-checks.
      visibilityLagMs: ci.version === 1 ? (this.ctx.deps.blockListRefreshMs ?? 300) + 100 : 1000,
    });
    this.sched = sched;
    for (let g = 0; g < blocks.length; g++) if (sched.hasBlock(g)) { this.add('fromCache', blocks[g]!.length); this.add('bytesDone', blocks[g]!.length); }
    this.state = 'running';
    this.renewTick();
    this.emitProgress();
    if (sched.isDone()) { this.finish(); return; }

    // Blocks another job (or an import) stores meanwhile count as cache hits.
    const onStoreBlock = (idHex: string, index: number) => {
      const seg = this.segByHex.get(idHex.toUpperCase());
      if (seg === undefined || !this.sched) return;
      const g = this.sched.blockOf(seg, index);
      if (g === undefined || this.sched.hasBlock(g)) return;
      this.sched.markDone(g);
      if (this.sched.hasBlock(g)) { this.add('fromCache', blocks[g]!.length); this.add('bytesDone', blocks[g]!.length); this.blockLanded(); }
    };
    store.on('block', onStoreBlock);
    this.unpins.push(() => store.off('block', onStoreBlock));

    // Discovery: watch every missing segment, a batch of IDs per watch.
    const needed = sched.segmentsNeeded().map((s) => ci.segments[s]!.segmentId);
    const batch = WATCH_BATCH[ci.version];
    for (let i = 0; i < needed.length; i += batch) {
      const w = this.ctx.deps.discovery.watch(needed.slice(i, i + batch), ci.version);
      this.watches.push(w);
      w.on('peer', (p) => this.onSighting(p));
      for (const id of needed.slice(i, i + batch)) for (const p of w.peers(id)) this.onSighting(p);
    }
    const refreshMs = this.ctx.deps.blockListRefreshMs ?? 300;
    if (ci.version === 1) {
      this.refreshTimer = setInterval(() => this.refreshAll(), refreshMs);
      this.refreshTimer.unref?.();
    }
    this.pump(); // peers already known start right away

    // Adaptive initial wait: the origin is only used once discovery had its chance.
    const wait = Math.max(0, this.ctx.deps.discovery.initialWaitMs);
    if (sched.peerCount() === 0 && wait > 0) {
      await this.until(Promise.race(this.watches.map((w) => w.waitForPeers(wait))), wait + 50);
    }
    if (sched.peerCount() > 0) {
      if (ci.version === 2) await this.until(delay(V2_SIGHTING_GRACE_MS), V2_SIGHTING_GRACE_MS);
      await this.until(this.refreshAll(), GATE_REFRESH_WAIT_MS);
    }
    if (this.finished) return;
    this.originOpen = true;
    this.pump();
    this.reprobe(0);
  }

  /**
   * The discovery watch repeats its probe only every 1-2 s. Clients that start together find
   * each other only once they hold blocks, so while no peer is known we send a fresh probe for a
   * random sample of the missing segments every REPROBE_MS (one datagram; a hit on any segment
   * reveals the peer, and block lists tell us the rest).
   */
  private reprobe(n: number): void {
    if (n >= REPROBE_MAX || this.finished) return;
    const t = setTimeout(() => {
      this.extraWatch?.close();
      this.extraWatch = undefined;
      const sched = this.sched, ci = this.ci;
      if (!sched || !ci || this.finished || sched.peerCount() > 0) return;
      const needed = sched.segmentsNeeded();
      for (let i = needed.length - 1; i > 0; i--) { const j = Math.floor(this.ctx.random() * (i + 1)); [needed[i], needed[j]] = [needed[j]!, needed[i]!]; }
      const ids = needed.slice(0, REPROBE_SAMPLE[ci.version]).map((s) => ci.segments[s]!.segmentId);
      if (ids.length === 0) return;
      const w = this.ctx.deps.discovery.watch(ids, ci.version);
      w.on('peer', (p) => this.onSighting(p));
      this.extraWatch = w;
      this.reprobe(n + 1);
    }, REPROBE_MS);
    t.unref?.();
    this.reprobeTimer = t;
  }

  /** Waits for `p` but at most `ms` and not beyond the end of the job. */
  private async until(p: Promise<unknown>, ms: number): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    await Promise.race([
      p.catch(() => undefined),
      new Promise<void>((r) => { t = setTimeout(r, ms); }),
      this.done.then(() => undefined, () => undefined),
    ]);
    clearTimeout(t);
  }

  private onSighting(p: SightingLike): void {
    const sched = this.sched;
    const ci = this.ci;
    if (!sched || !ci || this.finished || this.ctx.isSelf(p.address)) return;
    const seg = this.segByHex.get(p.segmentId.toUpperCase());
    if (seg === undefined || p.blockCount <= 0) return;
    if (ci.version === 2) sched.peerHasSegment(p.address, seg, this.ctx.now());
    else if (p.complete) sched.peerHasSegment(p.address, seg);
    else {
      sched.addPeer(p.address);
      void this.refreshPeer(p.address, seg);
    }
    // A new peer may hold other segments of this content too.
    if (ci.version === 1) for (const s of sched.segmentsNeeded()) if (s !== seg) void this.refreshPeer(p.address, s);
    this.pump();
  }

  /** Block lists of every partial holder for every segment still needed. */
  private refreshAll(): Promise<unknown> {
    const sched = this.sched;
    if (!sched || this.finished || this.ci?.version !== 1) return Promise.resolve();
    const work: Promise<void>[] = [];
    for (const seg of sched.segmentsNeeded()) for (const peer of sched.partialHolders(seg)) work.push(this.refreshPeer(peer, seg));
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
    const sched = this.sched;
    const ci = this.ci;
    if (!sched || !ci || this.finished) return;
    try {
      const n = sched.blocksInSegment(seg);
      const r = await this.ctx.deps.retrieval.getBlockList({ peer, segmentId: ci.segments[seg]!.segmentId, ranges: [[0, n]], signal: this.abort.signal });
      if (this.finished) return;
      const indices: number[] = [];
      for (const [first, count] of r.ranges) for (let i = first; i < first + count && i < n; i++) indices.push(i);
      sched.peerBlocks(peer, seg, indices, this.ctx.now());
      this.pump();
    } catch (err) {
      this.log.debug('block list failed', { peer, seg, err });
    }
  }

  /** Starts whatever the scheduler decides now and arms a timer for its next deadline. */
  private pump(): void {
    const sched = this.sched;
    if (!sched || this.finished) return;
    const f = sched.failed();
    if (f) return this.failBlock(f.block, f.reason);
    if (sched.isDone()) return this.finish();
    const now = this.ctx.now();
    for (const a of sched.next(now, this.originOpen)) this.launch(a);
    const f2 = sched.failed();
    if (f2) return this.failBlock(f2.block, f2.reason);
    const wake = sched.nextWakeAt();
    if (wake !== undefined && wake < this.wakeAt) {
      if (this.timer) clearTimeout(this.timer);
      this.wakeAt = wake;
      // Not unref'd: a job waiting out a retry backoff must keep a standalone process alive.
      this.timer = setTimeout(() => { this.timer = undefined; this.wakeAt = Infinity; this.pump(); }, Math.max(1, wake - now));
    }
  }

  private failBlock(g: number, reason: 'origin' | 'mismatch'): void {
    const b = this.layout!.blocks[g]!;
    const where = `block ${b.index} of segment ${b.seg} (bytes ${this.layout!.offsets[g]}-${this.layout!.offsets[g]! + b.length - 1})`;
    if (reason === 'mismatch') this.fail(new DownloadError('ORIGIN_MISMATCH', `origin returned data that does not match its content information: ${where} of ${this.url}`));
    else this.fail(new DownloadError('BLOCK_FAILED', `could not get ${where} of ${this.url} from any peer or the origin${this.lastOriginError ? `: ${this.lastOriginError}` : ''}`));
  }

  private lastOriginError: string | undefined;

  private launch(a: Assignment): void {
    const run = a.kind === 'peer' ? this.fetchFromPeer(a.block, a.peer) : this.fetchFromOrigin(a.block);
    run.catch((err) => this.fail(err)).finally(() => this.pump());
  }

  private segInfo(g: number): SegmentInfo { return this.ci!.segments[this.layout!.blocks[g]!.seg]!; }

  private async fetchFromPeer(g: number, peer: string): Promise<void> {
    const ci = this.ci!, sched = this.sched!, b = this.layout!.blocks[g]!, seg = this.segInfo(g);
    const t0 = this.ctx.now();
    let data: Buffer;
    let next = 0;
    try {
      const r = await this.ctx.deps.retrieval.getBlock({
        peer, segmentId: seg.segmentId, index: b.index, kp: seg.kp, expectedLength: b.length,
        verify: (plain) => verifyBlock(ci.version, seg, b.index, plain), signal: this.abort.signal,
      });
      data = r.data;
      next = r.nextBlockIndex;
      if (!verifyBlock(ci.version, seg, b.index, data)) throw Object.assign(new Error('block does not match its hash'), { code: 'bad-block' });
    } catch (err) {
      if (this.finished) return;
      const why = classifyPeerError(err);
      this.log.debug('peer block failed', { peer, block: g, why, err });
      if (why === 'bad-block') {
        this.log.warn('peer sent a block that does not match its hash; not using it again for this download', { peer, segment: b.seg, index: b.index });
        for (const w of this.watches) w.reportFailure(peer);
      }
      sched.peerFailed(peer, g, why, this.ctx.now());
      this.recheckStore(g);
      return;
    }
    if (this.finished) return;
    await this.store(g, data);
    sched.peerSucceeded(peer, g, b.length, this.ctx.now() - t0);
    if (next > b.index) sched.peerHasBlock(peer, b.seg, next);
    this.add('fromPeers', b.length);
    this.add('bytesDone', b.length);
    this.blockLanded();
  }

  private async fetchFromOrigin(g: number): Promise<void> {
    const ci = this.ci!, sched = this.sched!, b = this.layout!.blocks[g]!, seg = this.segInfo(g);
    const start = this.layout!.offsets[g]!;
    if (await this.peerHasItNow(g)) {
      if (this.finished) return;
      sched.originSkipped(g);
      return;
    }
    if (this.finished) return;
    const t0 = this.ctx.now();
    let data: Buffer;
    try {
      const res = await this.ctx.http.get(this.url, { ...this.headers, ...missingDataRequestHeaders(), Range: `bytes=${start}-${start + b.length - 1}` }, this.abort.signal);
      if (res.status !== 206 && !(res.status === 200 && start === 0 && b.length === ci.contentLength)) {
        res.discard();
        throw new DownloadError('ORIGIN_STATUS', `origin answered HTTP ${res.status} to a range request`);
      }
      data = await readBody(res, b.length, 'ORIGIN_MISMATCH');
    } catch (err) {
      if (this.finished) return;
      this.lastOriginError = (err as Error).message;
      this.log.debug('origin block failed', { block: g, err });
      sched.originFailed(g, err instanceof DownloadError && err.code === 'ORIGIN_MISMATCH' ? 'mismatch' : 'error', this.ctx.now());
      this.recheckStore(g);
      return;
    }
    if (this.finished) return;
    if (!verifyBlock(ci.version, seg, b.index, data)) {
      this.log.warn('origin block does not match the content information', { block: g, segment: b.seg, index: b.index });
      sched.originFailed(g, 'mismatch', this.ctx.now());
      this.recheckStore(g);
      return;
    }
    await this.store(g, data);
    sched.originSucceeded(g, this.ctx.now() - t0);
    this.add('fromOrigin', b.length);
    this.add('bytesDone', b.length);
    this.blockLanded();
  }

  /**
   * Last check before an origin fetch: asks the known peers that might have gained this block
   * since our last look (one MSG_GETBLKLIST each, bounded wait). A yes saves a WAN transfer.
   */
  private async peerHasItNow(g: number): Promise<boolean> {
    const sched = this.sched!, b = this.layout!.blocks[g]!, seg = this.segInfo(g);
    const peers = sched.recheckPeers(b.seg, this.ctx.now(), RECHECK_PEERS);
    if (peers.length === 0) return false;
    let found = false;
    const asks = peers.map(async (peer) => {
      try {
        const r = await this.ctx.deps.retrieval.getBlockList({ peer, segmentId: seg.segmentId, ranges: [[b.index, 1]], signal: this.abort.signal });
        if (r.ranges.some(([first, count]) => first <= b.index && b.index < first + count)) {
          found = true;
          if (this.ci!.version === 2) sched.peerHasSegment(peer, b.seg, this.ctx.now());
          else sched.peerHasBlock(peer, b.seg, b.index);
        }
      } catch { /* no answer: the origin it is */ }
    });
    await this.until(Promise.all(asks), RECHECK_WAIT_MS);
    return found;
  }

  private async store(g: number, data: Buffer): Promise<void> {
    const b = this.layout!.blocks[g]!;
    const write = this.ctx.deps.store.putBlock(this.segInfo(g).segmentId, b.index, data);
    this.storing.add(write);
    try {
      await write;
    } catch (err) {
      throw new DownloadError('LOCAL', `cannot store block ${b.index} of segment ${b.seg}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.storing.delete(write);
    }
  }

  /** Cache writes in flight (a block that arrived just before cancel() is still stored and counted). */
  private readonly storing = new Set<Promise<void>>();

  async idle(): Promise<void> {
    while (this.storing.size > 0) await Promise.allSettled([...this.storing]);
  }

  /** After a failed attempt: the block may have reached the cache another way meanwhile. */
  private recheckStore(g: number): void {
    const b = this.layout!.blocks[g]!;
    if (this.ctx.deps.store.hasBlock(this.segInfo(g).segmentId, b.index) && !this.sched!.hasBlock(g)) {
      this.sched!.markDone(g);
      this.add('fromCache', b.length);
      this.add('bytesDone', b.length);
      this.blockLanded();
    }
  }

  private blockLanded(): void {
    this.renewTick();
    this.emitProgress();
  }

  // ------------------------------------------------------------------ end of job

  private add(field: 'fromOrigin' | 'fromPeers' | 'fromCache' | 'contentInfoBytes' | 'bytesDone', n: number): void {
    this.counters[field] += n;
    this.ctx.count(field, n);
  }

  private emitProgress(): void { this.emit('progress', this.progress()); }

  private cleanup(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.timer = undefined;
    this.refreshTimer = undefined;
    if (this.reprobeTimer) clearTimeout(this.reprobeTimer);
    this.extraWatch?.close();
    this.extraWatch = undefined;
    for (const w of this.watches) w.close();
    this.watches = [];
    for (const u of this.unpins) u();
    this.unpins = [];
  }

  private finish(): void {
    if (this.finished) return;
    this.state = 'done';
    this.cleanup();
    const stats = this.peerStats();
    const result: DownloadResult = {
      url: this.url,
      contentLength: this.contentLength ?? this.counters.bytesDone,
      peerdist: !!this.ci,
      fromOrigin: this.counters.fromOrigin,
      fromPeers: this.counters.fromPeers,
      fromCache: this.counters.fromCache,
      contentInfoBytes: this.counters.contentInfoBytes,
      peers: stats.filter((s) => s.blocks > 0).length,
      durationMs: this.ctx.now() - this.started,
      peerStats: stats,
    };
    this.log.info('download complete', { url: this.url, bytes: result.contentLength, fromOrigin: result.fromOrigin, fromPeers: result.fromPeers, fromCache: result.fromCache, peers: result.peers, ms: result.durationMs });
    this.renewTick();
    this.emitProgress();
    this.resolveDone(result);
    this.emit('done', result);
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    const e = err instanceof DownloadError ? err : new DownloadError('LOCAL', `download of ${this.url} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    this.error = e;
    this.state = 'failed';
    this.abort.abort(e);
    this.cleanup();
    this.log.warn('download failed', { url: this.url, code: e.code, err: e });
    this.renewTick();
    this.emitProgress();
    this.rejectInfo(e);
    this.rejectDone(e);
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  /** Releases local resources of a finished job (the plain-download temp file). */
  async dispose(): Promise<void> {
    if (!this.finished) this.cancel();
    await this.plain?.dispose();
  }
}

function classifyPeerError(err: unknown): PeerFailure {
  const code = (err as { code?: string })?.code;
  switch (code) {
    case 'bad-block': return 'bad-block';
    case 'not-available': return 'not-available';
    case 'timeout': return 'timeout';
    case 'busy': return 'busy';
    default: return 'error';
  }
}

function delay(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }
