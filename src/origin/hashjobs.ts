/**
 * Background hashing: one job per cache key (concurrent callers share it), at most `concurrency`
 * jobs running, results written to the HashCache. Jobs are aborted on close().
 */
import type { Logger } from '../util/log.js';
import type { HashCache } from './hashcache.js';
import { Slots } from './slots.js';

export type Producer = (signal: AbortSignal) => Promise<Buffer>;

export class HashJobs {
  private readonly inflight = new Map<string, Promise<Buffer | undefined>>();
  private readonly slots: Slots;
  private readonly abort = new AbortController();
  /** Jobs that started hashing. */
  started = 0;
  failed = 0;
  /** Hash throughput of finished jobs, bytes/s (EWMA; undefined before the first job of ≥ 1 MiB). */
  private rate: number | undefined;

  constructor(
    private readonly cache: Pick<HashCache, 'get' | 'put'>,
    concurrency: number,
    private readonly log: Logger,
  ) {
    this.slots = new Slots(concurrency);
  }

  /** Jobs waiting for a free slot. */
  get queued(): number {
    return this.slots.queued;
  }

  /** The running (or queued) job for a key, if any. */
  get(key: string): Promise<Buffer | undefined> | undefined {
    return this.inflight.get(key);
  }

  /**
   * Starts (or joins) the job for `key`. Resolves to the encoded content information, or undefined
   * when the job failed (logged) or was aborted; never rejects.
   */
  run(key: string, produce: Producer, length = 0): Promise<Buffer | undefined> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const job = this.execute(key, produce, length).finally(() => this.inflight.delete(key));
    this.inflight.set(key, job);
    return job;
  }

  /**
   * How long hashing `length` bytes is expected to take, ms, from the measured rate (0 while
   * nothing has been measured: optimistic, so the first entity is always waited for).
   */
  expectedMs(length: number): number {
    return this.rate === undefined ? 0 : (length / this.rate) * 1000;
  }

  private async execute(key: string, produce: Producer, length: number): Promise<Buffer | undefined> {
    await this.slots.acquire();
    try {
      if (this.abort.signal.aborted) return undefined;
      const cached = await this.cache.get(key);
      if (cached) return cached;
      this.started++;
      const t0 = performance.now();
      const blob = await produce(this.abort.signal);
      const ms = performance.now() - t0;
      if (length >= 1 << 20 && ms > 0) {
        const r = length / (ms / 1000);
        this.rate = this.rate === undefined ? r : 0.7 * this.rate + 0.3 * r;
      }
      await this.cache.put(key, blob);
      return blob;
    } catch (err) {
      if (!this.abort.signal.aborted) {
        this.failed++;
        this.log.warn('hash job failed', { key: key.replace(/\0/g, ' '), err: err as Error });
      }
      return undefined;
    } finally {
      this.slots.release();
    }
  }

  /** Resolves once no job is queued or running (jobs started meanwhile are waited for too). */
  async idle(): Promise<void> {
    while (this.inflight.size) await Promise.all([...this.inflight.values()]);
  }

  /** Aborts every job and waits until none is running. */
  async close(): Promise<void> {
    this.abort.abort();
    this.slots.drain();
    await Promise.all([...this.inflight.values()]);
  }
}
