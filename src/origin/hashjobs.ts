/**
 * Background hashing: one job per cache key (concurrent callers share it), at most `concurrency`
 * jobs running, results written to the HashCache. Jobs are aborted on close().
 */
import type { Logger } from '../util/log.js';
import type { HashCache } from './hashcache.js';

export type Producer = (signal: AbortSignal) => Promise<Buffer>;

export class HashJobs {
  private readonly inflight = new Map<string, Promise<Buffer | undefined>>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;
  private readonly abort = new AbortController();
  /** Jobs that started hashing. */
  started = 0;
  failed = 0;

  constructor(private readonly cache: HashCache, private readonly concurrency: number, private readonly log: Logger) {}

  /** The running (or queued) job for a key, if any. */
  get(key: string): Promise<Buffer | undefined> | undefined {
    return this.inflight.get(key);
  }

  /**
   * Starts (or joins) the job for `key`. Resolves to the encoded content information, or undefined
   * when the job failed (logged) or was aborted; never rejects.
   */
  run(key: string, produce: Producer): Promise<Buffer | undefined> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const job = this.execute(key, produce).finally(() => this.inflight.delete(key));
    this.inflight.set(key, job);
    return job;
  }

  private async execute(key: string, produce: Producer): Promise<Buffer | undefined> {
    await this.slot();
    try {
      if (this.abort.signal.aborted) return undefined;
      const cached = await this.cache.get(key);
      if (cached) return cached;
      this.started++;
      const blob = await produce(this.abort.signal);
      await this.cache.put(key, blob);
      return blob;
    } catch (err) {
      if (!this.abort.signal.aborted) {
        this.failed++;
        this.log.warn('hash job failed', { key: key.replace(/\0/g, ' '), err: err as Error });
      }
      return undefined;
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  private slot(): Promise<void> {
    if (this.running < this.concurrency) { this.running++; return Promise.resolve(); }
    return new Promise((resolve) => this.waiting.push(() => { this.running++; resolve(); }));
  }

  /** Aborts every job and waits until none is running. */
  async close(): Promise<void> {
    this.abort.abort();
    while (this.waiting.length) this.waiting.shift()!();
    await Promise.all([...this.inflight.values()]);
  }
}
