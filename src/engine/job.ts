/**
 * One download: asks the origin for content information (negotiate.ts), then fills the block
 * store from peers and the origin as the Scheduler decides, verifying every block (transfer.ts,
 * with discovery-feed.ts and fetch-peer.ts / fetch-origin.ts). Non-PeerDist answers are plain
 * downloads buffered to a temp file (plain.ts). Readers stream the content in order while it
 * arrives (reader.ts). This file holds the job's state and its life cycle. Design notes:
 * protocol/engine.md.
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import { blockCount, type ContentInfo } from '../protocol/pccrc/types.js';
import { segmentMetaFrom } from '../cache/store.js';
import { type RateLimitedLogger, rateLimited } from '../util/log.js';
import { JobCounters } from './counters.js';
import { DownloadError } from './errors.js';
import { negotiate, tooLarge, type Negotiated, type OriginMeta } from './negotiate.js';
import { nodeFault, OriginSet } from './origins.js';
import { stateBytes } from './budget.js';
import type { OriginResponse } from './origin-client.js';
import { PlainBuffer, plainLength, receivePlain } from './plain.js';
import { blockBatches, blockReader, firstBlockAt, type ReaderCursor, type ReaderSource } from './reader.js';
import type { PeerStat } from './scheduler.js';
import type { JobContext } from './session.js';
import { isCacheCapacityError, Transfer, type TransferHost } from './transfer.js';
import type { ByteSource, DownloadJob, DownloadResult, JobInfo, JobProgress, JobState } from './types.js';
import type { TraceEvent } from './trace.js';

/** The engine's DownloadJob; start(), peerStats() and dispose() are for the engine. */
export class EngineJob extends EventEmitter implements DownloadJob {
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
  private readonly counters: JobCounters;
  private contentLength: number | undefined;
  private peerdist = false;
  private transfer: Transfer | undefined;
  /** The ETag the content information came with (the version of the content being downloaded). */
  private etag: string | undefined;
  private plain: PlainBuffer | undefined;
  /** Undo actions run when the job ends (the memory budget's reservation). */
  private releases: Array<() => void> = [];
  /** Content-information version to ask for, when the daemon's own setting was too much (v2 too large). */
  private maxVersion: 1 | 2 | undefined;
  /**
   * The job's pin on each of its segments (by segment number). Held while the job runs and, once
   * it has ended, while an open reader has yet to read the segment (issue 27.1: blocks stored ahead
   * of a reader used to become evictable the moment the job ended). See keepForReaders().
   */
  private readonly segPins = new Map<number, () => void>();
  /** Repeats of one message are capped per download (an origin file changing mid-download once logged thousands). */
  private readonly log: RateLimitedLogger;
  /** Resolved and replaced whenever a block lands or the state changes (readers wait on it). */
  private tick!: Promise<void>;
  private fireTick!: () => void;
  /** Open read streams (a plain body is kept while any is open). */
  private readers = 0;
  private dropTimer: unknown;
  /** The plain body was dropped (finished, no reader left). */
  private plainReleased = false;
  /** The URL and its mirrors (get --mirror); undefined without mirrors. */
  private readonly origins: OriginSet | undefined;

  constructor(
    readonly id: string,
    readonly url: string,
    private readonly headers: Record<string, string>,
    private readonly ctx: JobContext,
    mirrors: readonly string[] = [],
  ) {
    super();
    this.started = ctx.now();
    // Every peer and origin request of the job listens on its signal: up to the total peer plus
    // origin concurrency (32 + 6 by default) at once, more than Node's default warning level (10).
    setMaxListeners(256, this.abort.signal);
    this.log = rateLimited(ctx.log.child({ job: id }), { now: ctx.now });
    this.counters = new JobCounters(ctx.count);
    if (mirrors.length > 0)
      this.origins = new OriginSet([url, ...mirrors], {
        now: ctx.now,
        log: this.log,
        fetchContentInfo: (u) => this.mirrorContentInfo(u),
      });
    this.info = new Promise((res, rej) => {
      this.resolveInfo = res;
      this.rejectInfo = rej;
    });
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    // Callers may only look at one of them; an unobserved rejection must not crash the daemon.
    this.info.catch(() => undefined);
    this.done.catch(() => undefined);
    this.renewTick();
  }

  private renewTick(): void {
    const old = this.fireTick;
    this.tick = new Promise((r) => {
      this.fireTick = r;
    });
    old?.();
  }

  /** Runs the download; settles `done`. Called once by the engine. */
  start(): void {
    this.run().catch((err) => this.fail(err));
  }

  get finished(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  progress(): JobProgress {
    const c = this.counters.counts;
    const sched = this.transfer?.sched;
    const p: JobProgress = {
      state: this.state,
      bytesDone: c.bytesDone,
      fromOrigin: c.fromOrigin,
      fromPeers: c.fromPeers,
      fromCache: c.fromCache,
      contentInfoBytes: c.contentInfoBytes,
      peers: sched ? sched.peerStats().filter((s) => s.blocks > 0).length : 0,
      blocksTotal: sched?.total ?? 0,
      blocksDone: sched?.completed ?? 0,
    };
    if (this.contentLength !== undefined) p.contentLength = this.contentLength;
    if (this.error) p.error = this.error.message;
    return p;
  }

  /** Per-peer statistics (throughput, failures, bad blocks, bans) of this job. */
  peerStats(): PeerStat[] {
    return this.transfer?.peerStats() ?? [];
  }

  cancel(): void {
    if (!this.finished) this.fail(new DownloadError('CANCELLED', `download cancelled: ${this.url}`));
  }

  createReadStream(start = 0, end?: number): Readable {
    const { source, closed } = this.readerSource(start, end);
    const stream = blockReader(source);
    stream.once('close', closed);
    return stream;
  }

  /**
   * The same bytes as createReadStream, as batches of the blocks that are ready together (the
   * stream to `get` writes a batch with one system call; reader.ts blockBatches). The reader ends
   * when the generator does, or at close() (the client went away; idempotent).
   */
  readBatches(start = 0, end?: number): { batches: AsyncGenerator<Buffer[]>; close(): void } {
    const { source, closed } = this.readerSource(start, end);
    async function* run(): AsyncGenerator<Buffer[]> {
      try {
        yield* blockBatches(source);
      } finally {
        closed();
      }
    }
    return { batches: run(), close: closed };
  }

  /** A reader's source, counted and tracked from now; `closed` ends it (idempotent). */
  private readerSource(start: number, end: number | undefined): { source: ReaderSource; closed: () => void } {
    // Counted from now (not from its first read): a plain body is kept while any reader is open,
    // and the blocks it will read are kept for it (pinned in the cache, or in memory when the cache
    // refuses them) from now on, not from its first read.
    this.readers++;
    const cursor = this.track(start, end);
    let open = true;
    const source: ReaderSource = {
      start,
      end,
      info: this.info,
      plain: () => this.plain,
      plainReleased: () => this.plainReleased,
      layout: () => this.transfer?.layout,
      store: this.ctx.deps.store,
      recent: (g) => this.transfer?.recentBlock(g),
      held: (g) => this.transfer?.heldBlock(g),
      cursor,
      waitChange: () => this.tick,
      failure: () => this.error,
      finished: () => this.finished,
    };
    const closed = () => {
      cursor.done();
      if (!open) return;
      open = false;
      this.readers--;
      this.maybeDropPlain();
    };
    return { source, closed };
  }

  /**
   * A finished job's plain body is dropped once no reader streams it (after a short linger for a
   * front end that obtained the job and is about to open its reader), not when 32 later jobs have
   * finished: a 5 GiB body must not sit in the temp dir outside any limit.
   */
  private maybeDropPlain(): void {
    if (!this.finished || this.readers > 0 || !this.plain || this.dropTimer !== undefined) return;
    this.dropTimer = this.ctx.timers.set(
      () => {
        this.dropTimer = undefined;
        if (this.readers > 0 || !this.plain) return;
        const body = this.plain;
        this.plain = undefined;
        this.plainReleased = true;
        void body.dispose();
      },
      this.ctx.deps.plainLingerMs ?? 5_000,
      true,
    );
  }

  /**
   * Where each active reader is: the next block it needs (`g`) and one past the last block it will
   * read (`end`; Infinity until known). Blocks kept in memory and segment pins wait for them.
   */
  private readonly readerCursors = new Set<{ g: number; end: number }>();

  private track(start: number, endByte: number | undefined): ReaderCursor {
    const layout = this.transfer?.layout;
    const cursor = { g: 0, end: Infinity };
    if (layout) {
      cursor.g = firstBlockAt(layout.offsets, start);
      if (endByte !== undefined) cursor.end = Math.max(cursor.g, firstBlockAt(layout.offsets, endByte) + 1);
    }
    this.readerCursors.add(cursor);
    if (this.finished) this.pinForReader(cursor);
    else this.transfer?.readerJoined(cursor.g, cursor.end);
    this.transfer?.readersMoved();
    return {
      at: (g, end) => {
        const was = { ...cursor };
        cursor.g = Math.max(cursor.g, g);
        cursor.end = Math.min(cursor.end, end);
        if (cursor.g === was.g && cursor.end === was.end) return;
        this.transfer?.readersMoved();
        this.unpinPassed(was.g, cursor.g);
        this.unpinPassed(cursor.end, was.end);
      },
      done: () => {
        if (!this.readerCursors.delete(cursor)) return;
        this.transfer?.readersMoved();
        this.unpinPassed(cursor.g, cursor.end);
      },
    };
  }

  /** A reader came after the job ended: pins what is left of the segments it will read. */
  private pinForReader(c: { g: number; end: number }): void {
    const t = this.transfer;
    if (!t) return;
    const { blocks } = t.layout;
    const end = Math.min(c.end, blocks.length);
    for (let g = c.g; g < end; g++) {
      const seg = blocks.at(g)!.seg;
      if (!this.segPins.has(seg)) this.segPins.set(seg, this.ctx.deps.store.pin(t.layout.segmentId(g)));
    }
  }

  /**
   * After the job ended: releases the pins of the segments holding blocks [from, to) that no open
   * reader needs any more (the blocks left behind by a reader, or beyond its range).
   */
  private unpinPassed(from: number, to: number): void {
    const t = this.transfer;
    if (!this.finished || !t || this.segPins.size === 0) return;
    const { blocks } = t.layout;
    to = Math.min(to, blocks.length);
    let last = -1;
    for (let g = Math.max(0, from); g < to; g++) {
      const seg = blocks.at(g)!.seg;
      if (seg === last) continue;
      last = seg;
      const unpin = this.segPins.get(seg);
      if (unpin && !this.readerNeeds(seg)) {
        this.segPins.delete(seg);
        unpin();
      }
    }
  }

  /** Some open reader has yet to read a block of segment `seg`. */
  private readerNeeds(seg: number): boolean {
    const sched = this.transfer?.sched;
    const first = sched?.blockOf(seg, 0);
    if (!sched || first === undefined) return false;
    const last = first + sched.blocksInSegment(seg) - 1;
    for (const c of this.readerCursors) if (c.g <= last && first < c.end) return true;
    return false;
  }

  private readerLow(): number | undefined {
    let low: number | undefined;
    for (const r of this.readerCursors) if (low === undefined || r.g < low) low = r.g;
    return low;
  }

  /** Settles once no cache write is in flight (a block that arrived just before cancel() is still stored and counted). */
  async idle(): Promise<void> {
    await this.transfer?.idle();
  }

  private negotiate(url: string): Promise<Negotiated> {
    return negotiate(
      this.ctx,
      url,
      this.headers,
      this.abort.signal,
      (n) => this.counters.add('contentInfoBytes', n),
      this.ctx.budget,
      this.maxVersion,
    );
  }

  /** Takes the memory budget's share for a download of `ci`: its release, or null when it does not fit. */
  private reserveState(ci: ContentInfo): (() => void) | null {
    if (!this.ctx.budget) return () => {};
    return this.ctx.budget.reserve(stateBytes(ci)) ?? null;
  }

  private fitsAsV1(length: number): boolean {
    return this.ctx.budget?.fits(stateBytes({ version: 1, contentLength: length, segments: [] })) ?? true;
  }

  /** A mirror's content information, which must match the download's before any byte of it is used. */
  private async mirrorContentInfo(url: string): Promise<ContentInfo | undefined> {
    const a = await this.negotiate(url);
    if (a.peerdist) return a.contentInfo;
    a.res.discard();
    return undefined;
  }

  /**
   * The first request: to the URL, or with mirrors to the first node that answers (one that is
   * down, or answers 5xx, passes the question on). That node's content information is the one the
   * others must match.
   */
  private async firstAnswer(): Promise<Negotiated> {
    const urls = this.origins?.urls ?? [this.url];
    for (const [k, url] of urls.entries()) {
      try {
        const answer = await this.negotiate(url);
        if (answer.peerdist) this.origins?.setReference(url, answer.contentInfo);
        return answer;
      } catch (err) {
        if (k === urls.length - 1 || !nodeFault(err) || this.abort.signal.aborted) throw err;
        this.origins?.failed(url);
        this.log.warn('origin node failed the first request; asking the next', { url, err });
      }
    }
    throw new DownloadError('ORIGIN_UNREACHABLE', `no origin node answered for ${this.url}`);
  }

  private async run(): Promise<void> {
    let answer = await this.firstAnswer();
    if (!answer.peerdist) return this.runPlain(answer.res, answer.meta);
    let release = this.reserveState(answer.contentInfo);
    if (release === null && answer.contentInfo.version === 2 && this.fitsAsV1(answer.contentInfo.contentLength)) {
      // v2 content information has a segment per 64 KiB-1 MiB chunk, v1 one per 32 MiB: the same
      // file as v1 needs about a tenth of the state (protocol/engine.md "Memory per download"). Ask
      // again for v1 rather than fail a download the daemon can carry.
      this.log.info('v2 block state does not fit the memory budget; asking for v1 content information', {
        segments: answer.contentInfo.segments.length,
      });
      this.maxVersion = 1;
      const v2 = answer.contentInfo;
      try {
        answer = await this.firstAnswer();
      } catch (err) {
        if (this.abort.signal.aborted) throw err;
        const why = `asking for v1 content information instead failed: ${(err as Error).message}`;
        throw tooLarge(this.url, v2.contentLength, stateBytes(v2), this.ctx.budget!, why);
      }
      if (!answer.peerdist) return this.runPlain(answer.res, answer.meta);
      release = this.reserveState(answer.contentInfo);
    }
    const ci = answer.contentInfo;
    if (release === null) throw tooLarge(this.url, ci.contentLength, stateBytes(ci), this.ctx.budget!);
    this.releases.push(release);
    this.trace({
      type: 'content',
      version: ci.version,
      contentLength: ci.contentLength,
      segments: ci.segments.length,
      hashAlgorithm: ci.hashAlgorithm,
      blocks: ci.segments.reduce((n, s) => n + blockCount(ci.version, s), 0),
      contentInfoBytes: this.counters.counts.contentInfoBytes,
    });
    this.peerdist = true;
    this.contentLength = ci.contentLength;
    this.etag = answer.meta.etag;
    this.resolveInfo({ ...answer.meta, contentLength: ci.contentLength, peerdist: true, contentInfo: ci });
    await this.runPeerDist(ci);
  }

  private async runPlain(res: OriginResponse, meta: OriginMeta): Promise<void> {
    const len = plainLength(res.headers);
    if (len >= 0) this.contentLength = len;
    this.trace({ type: 'plain', contentLength: len });
    this.plain = await PlainBuffer.create(this.ctx.deps.tmpDir);
    this.state = 'running';
    this.resolveInfo({ ...meta, contentLength: len, peerdist: false });
    this.emitProgress();
    const plain = this.plain;
    const complete = await receivePlain(res, plain, len, this.url, {
      stopped: () => this.finished,
      received: (n) => this.landed('fromOrigin', n),
    });
    if (!complete) return;
    if (len < 0) this.contentLength = plain.size;
    this.finish();
  }

  private async runPeerDist(ci: ContentInfo): Promise<void> {
    const { store } = this.ctx.deps;
    const metas = ci.segments.map((seg) => segmentMetaFrom(ci.version, ci.hashAlgorithm, seg));
    // Pinned before they are registered: the store makes room for new segments' metadata by
    // evicting unpinned ones, which must not be this download's own earlier batches (issue 27.5).
    for (const [k, seg] of ci.segments.entries()) this.segPins.set(k, store.pin(seg.segmentId));
    // All at once (few index writes); when the cache's filesystem is full, one by one below, so
    // that only the segments that find no room go uncached.
    let registered = false;
    if (store.addSegments) {
      try {
        await store.addSegments(metas);
        registered = true;
      } catch (err) {
        if (!isCacheCapacityError(err)) throw err;
      }
    }
    for (const [k, seg] of ci.segments.entries()) {
      try {
        if (!registered) await store.addSegment(metas[k]!);
      } catch (err) {
        // No room even for the index entry (full filesystem): the segment is downloaded without
        // caching, its blocks go to the readers from memory (issue 16.4).
        if (!isCacheCapacityError(err)) throw err;
        // Not in the cache: nothing of it to keep, so no pin either.
        this.segPins.get(k)?.();
        this.segPins.delete(k);
        this.log.warn('cannot register a segment in the cache; downloading it without caching', {
          segment: seg.index,
          err,
        });
      }
    }
    if (this.finished) {
      // Cancelled while registering: cleanup() already ran, so release what was pinned since.
      this.unpinAll();
      return;
    }
    const transfer = new Transfer(ci, this.transferHost());
    this.transfer = transfer;
    const cached = transfer.cachedAtStart();
    for (const n of cached) this.counters.content('fromCache', n);
    this.trace({ type: 'cached', blocks: cached.length, bytes: cached.reduce((a, n) => a + n, 0) });
    this.state = 'running';
    this.changed();
    if (transfer.sched.isDone()) {
      this.finish();
      return;
    }
    await transfer.run();
  }

  private transferHost(): TransferHost {
    return {
      ctx: this.ctx,
      url: this.url,
      headers: this.headers,
      ...(this.origins ? { origins: this.origins } : {}),
      ...(this.etag !== undefined ? { etag: this.etag } : {}),
      log: this.log,
      signal: this.abort.signal,
      ended: this.done,
      stopped: () => this.finished,
      readerLow: () => this.readerLow(),
      landed: (source, n) => this.landed(source, n),
      fail: (err) => this.fail(err),
      finish: () => this.finish(),
      trace: (ev) => this.trace(ev),
    };
  }

  /** `peerdist explain` listens to these (trace.ts); cheap when nobody does. */
  private trace(ev: TraceEvent): void {
    if (this.listenerCount('trace') > 0) this.emit('trace', ev);
  }

  /** Verified content bytes arrived: count them, wake readers, report progress. */
  private landed(source: ByteSource, n: number): void {
    this.counters.content(source, n);
    this.changed();
  }

  private changed(): void {
    this.renewTick();
    this.emitProgress();
  }

  // ------------------------------------------------------------------ end of job

  /** Per landed block: built only when somebody listens (issue 25: no per-block objects for nobody). */
  private emitProgress(): void {
    if (this.listenerCount('progress') > 0) this.emit('progress', this.progress());
  }

  /** The job ended: releases what it held, except the segments its open readers have yet to read. */
  private cleanup(): void {
    queueMicrotask(() => this.maybeDropPlain());
    this.transfer?.close();
    for (const u of this.releases) u();
    this.releases = [];
    // A failed job's readers end with its error: they need nothing more.
    if (this.state === 'failed' || !this.transfer) this.unpinAll();
    else this.unpinPassed(0, this.transfer.layout.blocks.length);
    this.log.flush();
  }

  private unpinAll(): void {
    for (const unpin of this.segPins.values()) unpin();
    this.segPins.clear();
  }

  private finish(): void {
    if (this.finished) return;
    this.state = 'done';
    this.cleanup();
    const c = this.counters.counts;
    const stats = this.peerStats();
    const result: DownloadResult = {
      url: this.url,
      contentLength: this.contentLength ?? c.bytesDone,
      peerdist: this.peerdist,
      fromOrigin: c.fromOrigin,
      fromPeers: c.fromPeers,
      fromCache: c.fromCache,
      contentInfoBytes: c.contentInfoBytes,
      peers: stats.filter((s) => s.blocks > 0).length,
      durationMs: this.ctx.now() - this.started,
      peerStats: stats,
    };
    this.log.info('download complete', {
      url: this.url,
      bytes: result.contentLength,
      fromOrigin: result.fromOrigin,
      fromPeers: result.fromPeers,
      fromCache: result.fromCache,
      peers: result.peers,
      ms: result.durationMs,
    });
    this.changed();
    this.resolveDone(result);
    this.emit('done', result);
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    const e =
      err instanceof DownloadError
        ? err
        : new DownloadError('LOCAL', `download of ${this.url} failed: ${(err as Error)?.message ?? String(err)}`, {
            cause: err,
          });
    this.error = e;
    this.state = 'failed';
    this.abort.abort(e);
    this.cleanup();
    this.log.warn('download failed', { url: this.url, code: e.code, err: e });
    this.changed();
    this.rejectInfo(e);
    this.rejectDone(e);
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  /** Releases local resources of a finished job (the plain-download temp file). */
  async dispose(): Promise<void> {
    if (!this.finished) this.cancel();
    if (this.dropTimer !== undefined) this.ctx.timers.clear(this.dropTimer);
    this.dropTimer = undefined;
    // A reader still streaming keeps its blocks (memory and pins); its done() releases them.
    if (this.readerCursors.size === 0) {
      this.transfer?.releaseMemory();
      this.unpinAll();
    }
    const body = this.plain;
    this.plain = undefined;
    this.plainReleased = true;
    await body?.dispose();
  }
}
