/**
 * The hosted cache's fetch side: after an offer it pulls the segment's missing blocks from the
 * offering clients (and only from them) over MS-PCCRR. Waiting pulls are queued per client (an
 * IPv4 address or an IPv6 /64, client-key.ts) with a cap per client and overall, and dequeued
 * round robin across clients; at most `concurrency` run at once (and `perPeer` per client), under
 * a byte-rate cap over all pulls; one request per block (v1) or per segment (v2, index 0), like
 * Windows. v1 blocks are decrypted with the offered Kp and hash-checked before they are stored; a
 * bad or missing block does not end the pull, and blocks still missing are asked of the other
 * clients that offered the segment meanwhile. v2 payloads cannot be checked (no key) and are stored
 * as replay records after a length sanity check. A pull that stored nothing leaves no metadata.
 * See protocol/pchc.md.
 */
import type { SegmentMeta } from '../cache/meta.js';
import { digest, verifyBlock, blockRange } from '../protocol/pccrc/types.js';
import type { CryptoAlgo } from '../protocol/pccrr/codec.js';
import { asSegmentInfo } from '../cache/meta.js';
import { encodeReplayRecord, replayImplausible } from '../retrieval/replay-record.js';
import { PeerError } from '../protocol/pccrr/errors.js';
import { type RateLimitedLogger, type Logger, nullLogger, rateLimited } from '../util/log.js';
import { clientKeyOfPeer } from './client-key.js';

/** What a pull needs from the block store (BlockStore satisfies it). */
export interface PullStore {
  addSegment(meta: SegmentMeta): Promise<void>;
  getSegment(segmentId: Buffer): SegmentMeta | undefined;
  hasBlock(segmentId: Buffer, index: number): boolean;
  putBlock(segmentId: Buffer, index: number, data: Buffer): Promise<void>;
  pin(segmentId: Buffer): () => void;
  /** Drops a segment's metadata when it holds no block (BlockStore.evictSegment); absent: kept. */
  evictSegment?(segmentId: Buffer, opts: { ifEmpty?: boolean }): Promise<boolean>;
}

/** What a pull needs from the MS-PCCRR client (RetrievalClient satisfies it). */
export interface PullClient {
  getBlock(req: {
    peer: string;
    segmentId: Buffer;
    index: number;
    kp: Buffer;
    expectedLength: number;
    verify: (plain: Buffer) => boolean;
    signal?: AbortSignal;
  }): Promise<{ data: Buffer }>;
  getRawBlock(req: {
    peer: string;
    segmentId: Buffer;
    index: number;
    signal?: AbortSignal;
  }): Promise<{ cryptoAlgo: CryptoAlgo; block: Buffer; iv: Buffer }>;
}

/** What became of an offered pull: queued, already waiting or running (nothing more to do), refused (queue full). */
export type PullOutcome = 'queued' | 'pending' | 'refused';

/** Other clients that offered a segment while its pull was waiting or running, asked in turn if it fails. */
const MAX_ALTERNATES = 4;
/** Bad blocks (failed hash check, undecryptable, malformed answer) after which a v1 pull stops asking that client. */
const MAX_BAD_BLOCKS = 4;

export type PullTask =
  | { kind: 'v1'; peer: string; meta: SegmentMeta }
  | { kind: 'v2'; peer: string; segmentId: Buffer; segmentSize: number };

export interface PullerOptions {
  store: PullStore;
  client: PullClient;
  /** Segment pulls in progress at once (default 8). */
  concurrency?: number;
  /** Segment pulls in progress from one offering client (default 4). */
  perPeer?: number;
  /** Pulls waiting beyond this many are refused (default 4096). */
  maxQueued?: number;
  /** Pulls waiting for one client beyond this many are refused (default 512). */
  maxQueuedPerClient?: number;
  /** Byte rate cap over all pulls, bytes/s (default 32 MiB/s; 0 = no cap). */
  rateBytesPerSec?: number;
  /**
   * Per-client shares of the cache (shares.ts): a pull of a segment the store does not hold yet is
   * made only when admitted, and settled when it ends. Absent: no shares (tests of the queue).
   */
  shares?: {
    admit(client: string, idHex: string, bytes: number): Promise<boolean>;
    settle(idHex: string, held: boolean): void;
  };
  logger?: Logger;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface PullStats {
  /** Segment pulls accepted into the queue. */
  queued: number;
  /** Offers refused because the queue (the client's share or the whole) was full. */
  refused: number;
  /** Blocks or segments asked of another client that offered the segment after the first failed. */
  alternateAttempts: number;
  /** Pulls not made: the client's share of the cache was full of segments nobody has asked for. */
  refusedNoRoom: number;
  /** Segment pulls that ended with every block stored. */
  segmentsPulled: number;
  blocksPulled: number;
  bytesPulled: number;
  /** Blocks that failed (not available, bad hash, implausible, network). */
  failures: number;
  inProgress: number;
  waiting: number;
}

const defaultSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** Byte-rate limiter: each acquire books its bytes on a timeline and waits until it may start. */
export class RateLimiter {
  private free = 0;
  constructor(
    private readonly rate: number,
    private readonly now: () => number,
    private readonly burstMs = 100,
  ) {}
  /** Milliseconds to wait before sending `bytes`. */
  book(bytes: number): number {
    if (!(this.rate > 0)) return 0;
    const now = this.now();
    const start = Math.max(now - this.burstMs, this.free);
    this.free = start + (bytes * 1000) / this.rate;
    return Math.max(0, start - now);
  }
}

export class Puller {
  /** Waiting pulls per client, FIFO. */
  private readonly queues = new Map<string, PullTask[]>();
  private waiting = 0;
  /** Pulls waiting or running, by segment ID (hex), with the other clients that offered it meanwhile. */
  private readonly pendingPulls = new Map<string, { client: string; alternates: PullTask[] }>();
  private readonly perClientActive = new Map<string, number>();
  /** When each client with work last had a pull started (round robin: least recently served first). */
  private readonly lastServed = new Map<string, number>();
  private served = 0;
  private active = 0;
  private readonly ac = new AbortController();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly rate: RateLimiter;
  private readonly o: Required<Pick<PullerOptions, 'concurrency' | 'perPeer' | 'maxQueued' | 'maxQueuedPerClient'>>;
  private readonly log: RateLimitedLogger;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly stats: Omit<PullStats, 'inProgress' | 'waiting'> = {
    queued: 0,
    refused: 0,
    alternateAttempts: 0,
    refusedNoRoom: 0,
    segmentsPulled: 0,
    blocksPulled: 0,
    bytesPulled: 0,
    failures: 0,
  };

  constructor(private readonly opts: PullerOptions) {
    this.o = {
      concurrency: opts.concurrency ?? 8,
      perPeer: opts.perPeer ?? 4,
      maxQueued: opts.maxQueued ?? 4096,
      maxQueuedPerClient: opts.maxQueuedPerClient ?? 512,
    };
    for (const [k, v] of Object.entries(this.o))
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    const rate = opts.rateBytesPerSec ?? 32 * 1024 * 1024;
    if (!(rate >= 0)) throw new RangeError(`rateBytesPerSec must be >= 0, got ${rate}`);
    this.rate = new RateLimiter(rate, opts.now ?? Date.now);
    // Failed pulls are logged like the daemon's downloads: a few lines per message per 10 s (issue 27.12).
    this.log = rateLimited(opts.logger ?? nullLogger, { now: opts.now });
    this.sleep = opts.sleep ?? defaultSleep;
  }

  snapshot(): PullStats {
    return { ...this.stats, inProgress: this.active, waiting: this.waiting };
  }

  /** True when a pull of this segment is waiting or running. */
  pending(segmentId: Buffer): boolean {
    return this.pendingPulls.has(segmentId.toString('hex'));
  }

  /** Pulls waiting for one client (a client key, client-key.ts). */
  waitingFor(client: string): number {
    return this.queues.get(client)?.length ?? 0;
  }

  /**
   * Queues a pull. 'pending' when the segment is already waiting or running (another client's
   * offer is kept as an alternate source); 'refused' when the client's share of the queue or the
   * whole queue is full.
   */
  offer(task: PullTask): PullOutcome {
    if (this.ac.signal.aborted) return 'refused';
    const key = segmentKey(task);
    const client = clientKeyOfPeer(task.peer);
    const p = this.pendingPulls.get(key);
    if (p) {
      const alts = p.alternates;
      if (client !== p.client && alts.length < MAX_ALTERNATES && !alts.some((a) => clientKeyOfPeer(a.peer) === client))
        alts.push(task);
      return 'pending';
    }
    const q = this.queues.get(client);
    if (this.waiting >= this.o.maxQueued || (q?.length ?? 0) >= this.o.maxQueuedPerClient) {
      this.stats.refused++;
      return 'refused';
    }
    if (q) q.push(task);
    else this.queues.set(client, [task]);
    this.waiting++;
    this.pendingPulls.set(key, { client, alternates: [] });
    this.stats.queued++;
    this.pump();
    return 'queued';
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.active === 0 && this.waiting === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  async close(): Promise<void> {
    this.ac.abort();
    for (const q of this.queues.values()) for (const task of q) this.pendingPulls.delete(segmentKey(task));
    this.queues.clear();
    this.waiting = 0;
    await this.idle();
    this.log.flush();
  }

  /** The next pull to start: the least recently served client under its running cap, its oldest pull. */
  private next(): { task: PullTask; client: string } | undefined {
    let best: string | undefined;
    let bestAt = Infinity;
    for (const c of this.queues.keys()) {
      if ((this.perClientActive.get(c) ?? 0) >= this.o.perPeer) continue;
      const at = this.lastServed.get(c) ?? -1;
      if (at < bestAt) {
        best = c;
        bestAt = at;
      }
    }
    if (best === undefined) return undefined;
    const q = this.queues.get(best)!;
    const task = q.shift()!;
    if (q.length === 0) this.queues.delete(best);
    this.waiting--;
    this.lastServed.set(best, this.served++);
    return { task, client: best };
  }

  private pump(): void {
    while (this.active < this.o.concurrency) {
      const n = this.next();
      if (!n) break;
      const { task, client } = n;
      this.active++;
      this.perClientActive.set(client, (this.perClientActive.get(client) ?? 0) + 1);
      this.run(task)
        .catch((err) => this.log.warn('hosted cache pull failed', { peer: task.peer, err }))
        .finally(() => {
          this.active--;
          const a = (this.perClientActive.get(client) ?? 1) - 1;
          if (a <= 0) this.perClientActive.delete(client);
          else this.perClientActive.set(client, a);
          if (a <= 0 && !this.queues.has(client)) this.lastServed.delete(client);
          this.pendingPulls.delete(segmentKey(task));
          this.pump();
          if (this.active === 0 && this.waiting === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  private async paced(bytes: number): Promise<void> {
    const wait = this.rate.book(bytes);
    if (wait > 0) await this.sleep(wait, this.ac.signal);
  }

  /** Pulls from the offering client, then from the others that offered the segment, until it is held. */
  private async run(task: PullTask): Promise<void> {
    const key = segmentKey(task);
    const segmentId = task.kind === 'v1' ? task.meta.segmentId : task.segmentId;
    const { shares, store } = this.opts;
    // A segment new to the store takes room from the offering client's share (issue 27.3). v2: the
    // record is the MSG_BLK payload, at most SegmentSize + 16 (PKCS#7) + 16 (IV) + 2.
    const admitted = !!shares && !store.getSegment(segmentId);
    if (admitted) {
      const bytes = task.kind === 'v1' ? task.meta.length : task.segmentSize + 34;
      if (!(await shares.admit(clientKeyOfPeer(task.peer), key, bytes))) {
        this.stats.refusedNoRoom++;
        this.log.info("hosted cache: offer not pulled, the client's share of the cache is full", { peer: task.peer });
        return;
      }
    }
    try {
      for (let t: PullTask | undefined = task; t; t = this.pendingPulls.get(key)?.alternates.shift()) {
        if (this.ac.signal.aborted) return;
        if (t !== task) this.stats.alternateAttempts++;
        const done =
          t.kind === 'v1' ? await this.pullV1(t.peer, t.meta) : await this.pullV2(t.peer, t.segmentId, t.segmentSize);
        if (done) return;
      }
    } finally {
      // Nothing stored: the metadata the pull registered goes too (issue 27.5).
      await store.evictSegment?.(segmentId, { ifEmpty: true }).catch(() => false);
      if (admitted) shares.settle(key, !!store.getSegment(segmentId));
    }
  }

  /** True when the segment is complete afterwards. */
  private async pullV1(peer: string, meta: SegmentMeta): Promise<boolean> {
    const { store, client } = this.opts;
    try {
      await store.addSegment(meta);
    } catch (err) {
      this.stats.failures++;
      this.log.info('hosted cache: cannot register an offered segment', {
        peer,
        segmentId: meta.segmentId.toString('hex'),
        err: (err as Error).message,
      });
      return false;
    }
    const release = store.pin(meta.segmentId);
    try {
      const info = asSegmentInfo(meta);
      const n = meta.blockHashes.length;
      let got = 0;
      let bad = 0;
      for (let i = 0; i < n; i++) {
        if (this.ac.signal.aborted) return false;
        if (store.hasBlock(meta.segmentId, i)) {
          got++;
          continue;
        }
        const [s, e] = blockRange(1, meta, i);
        await this.paced(e - s);
        try {
          const { data } = await client.getBlock({
            peer,
            segmentId: meta.segmentId,
            index: i,
            kp: meta.kp,
            expectedLength: e - s,
            verify: (plain) => verifyBlock(1, info, i, plain),
            signal: this.ac.signal,
          });
          await store.putBlock(meta.segmentId, i, data);
          got++;
          this.stats.blocksPulled++;
          this.stats.bytesPulled += data.length;
        } catch (err) {
          this.stats.failures++;
          // A block the client lacks (Windows offers segments it holds in part) or sends bad: go on
          // with the next one, up to MAX_BAD_BLOCKS bad ones (each costs a block of the pull rate).
          // A client that cannot be reached or the cache refusing: stop here.
          const code = err instanceof PeerError ? err.code : undefined;
          const isBad = code === 'BAD_BLOCK' || code === 'PEER_PROTOCOL';
          if (isBad) bad++;
          const perBlock = code === 'PEER_NOT_AVAILABLE' || (isBad && bad < MAX_BAD_BLOCKS);
          this.log.info('hosted cache: block pull failed', {
            peer,
            segmentId: meta.segmentId.toString('hex'),
            index: i,
            err: (err as Error).message,
          });
          if (!perBlock) return false;
        }
      }
      if (got === n) this.stats.segmentsPulled++;
      return got === n;
    } finally {
      release();
    }
  }

  /** True when the segment is held afterwards. */
  private async pullV2(peer: string, segmentId: Buffer, segmentSize: number): Promise<boolean> {
    const { store, client } = this.opts;
    if (store.getSegment(segmentId)) return true; // already held (or conflicting): first record wins
    await this.paced(segmentSize);
    let rec: Awaited<ReturnType<typeof client.getRawBlock>>;
    try {
      rec = await client.getRawBlock({ peer, segmentId, index: 0, signal: this.ac.signal });
    } catch (err) {
      this.stats.failures++;
      this.log.info('hosted cache: segment pull failed', {
        peer,
        segmentId: segmentId.toString('hex'),
        err: (err as Error).message,
      });
      return false;
    }
    const why = replayImplausible(rec, segmentSize);
    if (why) {
      this.stats.failures++;
      this.log.warn('hosted cache: implausible v2 block refused', { peer, segmentId: segmentId.toString('hex'), why });
      return false;
    }
    const record = encodeReplayRecord(rec);
    const meta: SegmentMeta = {
      segmentId,
      version: 2,
      hashAlgorithm: 'SHA-512/256t',
      hod: digest('SHA-512/256t', record),
      kp: Buffer.alloc(0),
      length: record.length,
      blockSize: record.length,
      blockHashes: [],
      replay: true,
    };
    await store.addSegment(meta);
    const release = store.pin(segmentId);
    try {
      await store.putBlock(segmentId, 0, record);
    } finally {
      release();
    }
    this.stats.blocksPulled++;
    this.stats.bytesPulled += rec.block.length;
    this.stats.segmentsPulled++;
    return true;
  }
}

function segmentKey(task: PullTask): string {
  return (task.kind === 'v1' ? task.meta.segmentId : task.segmentId).toString('hex');
}
