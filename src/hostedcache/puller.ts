/**
 * The hosted cache's fetch side: after an offer it pulls the segment's missing blocks from the
 * offering client (and only from it) over MS-PCCRR. A bounded queue of segment pulls, at most
 * `concurrency` in progress (and `perPeer` per offering client), a byte-rate cap over all pulls,
 * one request per block (v1) or per segment (v2, index 0), like Windows. v1 blocks are decrypted
 * with the offered Kp and hash-checked before they are stored; v2 payloads cannot be (no key) and
 * are stored as replay records after a length sanity check. See protocol/pchc.md.
 */
import type { SegmentMeta } from '../cache/meta.js';
import { digest, verifyBlock, blockRange } from '../protocol/pccrc/types.js';
import type { CryptoAlgo } from '../protocol/pccrr/codec.js';
import { asSegmentInfo } from '../cache/meta.js';
import { encodeReplayRecord, replayImplausible } from '../retrieval/replay-record.js';
import { type Logger, nullLogger } from '../util/log.js';

/** What a pull needs from the block store (BlockStore satisfies it). */
export interface PullStore {
  addSegment(meta: SegmentMeta): Promise<void>;
  getSegment(segmentId: Buffer): SegmentMeta | undefined;
  hasBlock(segmentId: Buffer, index: number): boolean;
  putBlock(segmentId: Buffer, index: number, data: Buffer): Promise<void>;
  pin(segmentId: Buffer): () => void;
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
  /** Byte rate cap over all pulls, bytes/s (default 32 MiB/s; 0 = no cap). */
  rateBytesPerSec?: number;
  logger?: Logger;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface PullStats {
  /** Segment pulls accepted into the queue. */
  queued: number;
  /** Offers refused because the queue was full. */
  refused: number;
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
  private readonly queue: PullTask[] = [];
  private readonly keys = new Set<string>();
  private readonly perPeerActive = new Map<string, number>();
  private active = 0;
  private readonly ac = new AbortController();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly rate: RateLimiter;
  private readonly o: Required<Pick<PullerOptions, 'concurrency' | 'perPeer' | 'maxQueued'>>;
  private readonly log: Logger;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly stats: Omit<PullStats, 'inProgress' | 'waiting'> = {
    queued: 0,
    refused: 0,
    segmentsPulled: 0,
    blocksPulled: 0,
    bytesPulled: 0,
    failures: 0,
  };

  constructor(private readonly opts: PullerOptions) {
    this.o = { concurrency: opts.concurrency ?? 8, perPeer: opts.perPeer ?? 4, maxQueued: opts.maxQueued ?? 4096 };
    for (const [k, v] of Object.entries(this.o))
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
    const rate = opts.rateBytesPerSec ?? 32 * 1024 * 1024;
    if (!(rate >= 0)) throw new RangeError(`rateBytesPerSec must be >= 0, got ${rate}`);
    this.rate = new RateLimiter(rate, opts.now ?? Date.now);
    this.log = opts.logger ?? nullLogger;
    this.sleep = opts.sleep ?? defaultSleep;
  }

  snapshot(): PullStats {
    return { ...this.stats, inProgress: this.active, waiting: this.queue.length };
  }

  /** True when a pull of this segment is waiting or running. */
  pending(segmentId: Buffer): boolean {
    return this.keys.has(segmentId.toString('hex'));
  }

  /** Queues a pull; false if the segment is already being pulled or the queue is full. */
  offer(task: PullTask): boolean {
    if (this.ac.signal.aborted) return false;
    const key = (task.kind === 'v1' ? task.meta.segmentId : task.segmentId).toString('hex');
    if (this.keys.has(key)) return false;
    if (this.queue.length >= this.o.maxQueued) {
      this.stats.refused++;
      return false;
    }
    this.keys.add(key);
    this.queue.push(task);
    this.stats.queued++;
    this.pump();
    return true;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  async close(): Promise<void> {
    this.ac.abort();
    this.queue.length = 0;
    await this.idle();
  }

  private pump(): void {
    while (this.active < this.o.concurrency) {
      const k = this.queue.findIndex((t) => (this.perPeerActive.get(t.peer) ?? 0) < this.o.perPeer);
      if (k < 0) break;
      const task = this.queue.splice(k, 1)[0]!;
      this.active++;
      this.perPeerActive.set(task.peer, (this.perPeerActive.get(task.peer) ?? 0) + 1);
      this.run(task)
        .catch((err) => this.log.warn('hosted cache pull failed', { peer: task.peer, err }))
        .finally(() => {
          this.active--;
          const n = (this.perPeerActive.get(task.peer) ?? 1) - 1;
          if (n <= 0) this.perPeerActive.delete(task.peer);
          else this.perPeerActive.set(task.peer, n);
          this.keys.delete((task.kind === 'v1' ? task.meta.segmentId : task.segmentId).toString('hex'));
          this.pump();
          if (this.active === 0 && this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  private async paced(bytes: number): Promise<void> {
    const wait = this.rate.book(bytes);
    if (wait > 0) await this.sleep(wait, this.ac.signal);
  }

  private async run(task: PullTask): Promise<void> {
    if (task.kind === 'v1') return this.pullV1(task.peer, task.meta);
    return this.pullV2(task.peer, task.segmentId, task.segmentSize);
  }

  private async pullV1(peer: string, meta: SegmentMeta): Promise<void> {
    const { store, client } = this.opts;
    await store.addSegment(meta);
    const release = store.pin(meta.segmentId);
    try {
      const info = asSegmentInfo(meta);
      const n = meta.blockHashes.length;
      let got = 0;
      for (let i = 0; i < n; i++) {
        if (this.ac.signal.aborted) return;
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
          this.log.info('hosted cache: block pull failed; giving up on the segment', {
            peer,
            segmentId: meta.segmentId.toString('hex'),
            index: i,
            err: (err as Error).message,
          });
          return; // the client lacks it or misbehaves: the next offer will try again
        }
      }
      if (got === n) this.stats.segmentsPulled++;
    } finally {
      release();
    }
  }

  private async pullV2(peer: string, segmentId: Buffer, segmentSize: number): Promise<void> {
    const { store, client } = this.opts;
    if (store.getSegment(segmentId)) return; // already held (or conflicting): first record wins
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
      return;
    }
    const why = replayImplausible(rec, segmentSize);
    if (why) {
      this.stats.failures++;
      this.log.warn('hosted cache: implausible v2 block refused', { peer, segmentId: segmentId.toString('hex'), why });
      return;
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
  }
}
