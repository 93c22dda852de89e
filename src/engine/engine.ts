/**
 * The download engine: runs downloads (jobs) that fetch content mostly from peers, always
 * verified, falling back to the origin. Identical concurrent requests (same URL) share one job.
 * See protocol/engine.md for the design.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { nullLogger } from '../util/log.js';
import { realTimers } from '../util/timers.js';
import { MemoryBudget } from './budget.js';
import { DownloadError } from './errors.js';
import { EngineJob } from './job.js';
import { credentialKey, type OriginClient, UndiciOriginClient } from './origin-client.js';
import type { JobContext } from './session.js';
import type { DownloadJob, EngineDeps, EngineTotals } from './types.js';

export { DownloadError } from './errors.js';
export type { DownloadErrorCode } from './errors.js';
export type { OriginClient, OriginResponse } from './origin-client.js';
export { UndiciOriginClient } from './origin-client.js';
export type { PeerStat } from './scheduler.js';
export type {
  ByteCounts,
  ByteSource,
  DiscoveryLike,
  DownloadJob,
  DownloadResult,
  EngineDeps,
  EngineTotals,
  JobInfo,
  JobProgress,
  JobState,
  RetrievalLike,
  SightingLike,
  StoreLike,
  WatchLike,
} from './types.js';

export interface EngineOptions extends EngineDeps {
  /** Addresses (host:port) of this daemon's own retrieval server: never used as peers. */
  selfAddresses?: () => string[];
}

export class DownloadEngine extends EventEmitter {
  private readonly http: OriginClient;
  private readonly ownHttp: boolean;
  private readonly all: EngineJob[] = [];
  private readonly running = new Map<string, EngineJob>();
  private readonly sums: EngineTotals = {
    jobs: 0,
    active: 0,
    completed: 0,
    failed: 0,
    bytesDone: 0,
    fromOrigin: 0,
    fromPeers: 0,
    fromCache: 0,
    contentInfoBytes: 0,
  };
  private closed = false;
  /** Memory for the block state of running downloads (issue 16.7). */
  private readonly budget: MemoryBudget;

  constructor(private readonly deps: EngineOptions) {
    super();
    this.ownHttp = !deps.http;
    this.http = deps.http ?? new UndiciOriginClient();
    this.budget = new MemoryBudget(deps.blockStateBudgetBytes);
  }

  /**
   * Starts a download, or returns the running job for the same URL. `http` fetches from the origin
   * for this job instead of the engine's client (the proxy's, which refuses local targets); jobs
   * with another client are never joined.
   */
  download(
    url: string,
    opts: { headers?: Record<string, string>; http?: OriginClient; mirrors?: string[] } = {},
  ): DownloadJob {
    if (this.closed) throw new DownloadError('ENGINE_CLOSED', 'download engine is closed');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new DownloadError('ORIGIN_STATUS', `not a URL: ${url}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new DownloadError('ORIGIN_STATUS', `unsupported URL scheme: ${parsed.protocol}`);
    parsed.hash = '';
    const key = parsed.href;
    const cred = credentialKey(opts.headers);
    const clientKey = opts.http && opts.http !== this.http ? `${this.clientTag(opts.http)} ${key}` : key;
    // A job is joined only by a download through the same origin client with the same credentials.
    const joinKey = cred ? `${clientKey}\0${cred}` : clientKey;
    const existing = this.running.get(joinKey);
    if (existing && !existing.finished) return existing;
    const self = new Set<string>();
    const ctx: JobContext = {
      deps: this.deps,
      http: opts.http ?? this.http,
      log: (this.deps.logger ?? nullLogger).child({ component: 'download' }),
      now: this.deps.now ?? Date.now,
      timers: this.deps.timers ?? realTimers,
      random: this.deps.random ?? Math.random,
      count: (field, n) => {
        this.sums[field] += n;
      },
      budget: this.budget,
      selfAddresses: () => this.deps.selfAddresses?.() ?? [],
      isSelf: (a) => {
        if (!this.deps.selfAddresses) return false;
        self.clear();
        for (const s of this.deps.selfAddresses()) self.add(s);
        return self.has(a);
      },
    };
    const mirrors = (opts.mirrors ?? []).map((m) => mirrorUrl(m, parsed)).filter((m) => m !== key);
    const job = new EngineJob(randomUUID(), key, { ...(opts.headers ?? {}) }, ctx, [...new Set(mirrors)]);
    this.running.set(joinKey, job);
    this.all.push(job);
    this.sums.jobs++;
    this.sums.active++;
    const settle = (ok: boolean) => {
      this.sums.active--;
      if (ok) this.sums.completed++;
      else this.sums.failed++;
      if (this.running.get(joinKey) === job) this.running.delete(joinKey);
      this.trim();
    };
    job.done.then(
      () => settle(true),
      () => settle(false),
    );
    job.start();
    this.emit('job', job);
    return job;
  }

  private readonly clientTags = new WeakMap<OriginClient, number>();
  private nextClientTag = 1;
  private clientTag(c: OriginClient): string {
    let n = this.clientTags.get(c);
    if (n === undefined) {
      n = this.nextClientTag++;
      this.clientTags.set(c, n);
    }
    return `client${n}`;
  }

  jobs(): DownloadJob[] {
    return [...this.all];
  }

  totals(): EngineTotals {
    return { ...this.sums };
  }

  /** Keeps the most recent finished jobs (readers may still use them); disposes older ones. */
  private trim(): void {
    const keep = this.deps.keepFinishedJobs ?? 32;
    let finished = this.all.filter((j) => j.finished).length;
    for (let i = 0; i < this.all.length && finished > keep; ) {
      const j = this.all[i]!;
      if (j.finished) {
        this.all.splice(i, 1);
        finished--;
        void j.dispose();
      } else i++;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const j of this.all) if (!j.finished) j.cancel();
    await Promise.all(this.all.map((j) => j.done.catch(() => undefined)));
    await Promise.all(this.all.map((j) => j.dispose()));
    if (this.ownHttp) await this.http.close();
  }
}

/**
 * A mirror (`get --mirror`) as the URL of the same content on another node: a URL with a path is
 * taken as it is; a bare node (`http://host:port` or with path `/`) gets the download's path and
 * query. Only http:// and https:// (ORIGIN_STATUS otherwise, like the URL itself).
 */
export function mirrorUrl(mirror: string, of: URL): string {
  let m: URL;
  try {
    m = new URL(mirror);
  } catch {
    throw new DownloadError('ORIGIN_STATUS', `mirror is not a URL: ${mirror}`);
  }
  if (m.protocol !== 'http:' && m.protocol !== 'https:')
    throw new DownloadError('ORIGIN_STATUS', `unsupported mirror URL scheme: ${m.protocol}`);
  m.hash = '';
  if (m.pathname === '/' && m.search === '') {
    m.pathname = of.pathname;
    m.search = of.search;
  }
  return m.href;
}
