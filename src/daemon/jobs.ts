/**
 * The slice of the download engine the daemon's front ends (admin API, proxy) use, and a book of
 * jobs they started so a finished job's final stats stay queryable at /v1/jobs/<id>.
 * Structural types: src/engine/engine.ts's DownloadEngine satisfies EngineLike.
 */
import type { OriginClient } from '../engine/origin-client.js';
import type { DownloadJob, JobInfo, JobProgress } from '../engine/types.js';
import { credentialKey } from '../engine/origin-client.js';

export interface EngineLike {
  download(
    url: string,
    opts?: { headers?: Record<string, string>; http?: OriginClient; mirrors?: string[] },
  ): DownloadJob;
  jobs(): DownloadJob[];
  totals(): object;
  close(): Promise<void>;
}

/** What /v1/jobs/<id> and /v1/status report per job. */
export interface JobView extends JobProgress {
  id: string;
  url: string;
  /** Whether the origin answered with PeerDist content information; null until known. */
  peerdist: boolean | null;
  startedAt: string;
  seconds: number;
  /**
   * Seconds from the start until the origin answered (the content information, or the headers of a
   * plain body); absent until then. What comes after it is the data phase.
   */
  originAnswerSeconds?: number;
  /** Code of the failure (BLOCK_FAILED, ORIGIN_MISMATCH, LOCAL, ...) once the job failed; `error` has the reason. */
  errorCode?: string;
}

interface Entry {
  job: DownloadJob;
  /** The origin client the job was started with (undefined = the engine's own). */
  http?: OriginClient;
  /** credentialKey() of the headers it was started with ('' = none). */
  cred?: string;
  info?: JobInfo;
  started: number;
  /** When job.info resolved (the origin's answer). */
  infoAt?: number;
  finished?: number;
  errorCode?: string;
}

/**
 * Jobs started through the daemon's front ends. Active jobs with the same URL are shared
 * (`obtain` joins them); finished ones are kept (up to `keepFinished`) for their final stats.
 */
export class JobBook {
  private readonly entries = new Map<string, Entry>();
  constructor(
    private readonly engine: EngineLike,
    private readonly opts: { keepFinished?: number; now?: () => number } = {},
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * Starts a download of `url`, or joins an active one for the same URL started with the same
   * origin client (`http`: the proxy's, which refuses local targets; undefined = the engine's)
   * and the same credentials (Authorization, Cookie: see credentialKey). `mirrors` (get --mirror)
   * name other nodes with the same content for a new job; a joined job keeps its own.
   */
  obtain(url: string, headers?: Record<string, string>, http?: OriginClient, mirrors?: string[]): DownloadJob {
    const cred = credentialKey(headers);
    for (const e of this.entries.values()) {
      if (e.job.url !== url || e.finished !== undefined || e.http !== http || (e.cred ?? '') !== cred) continue;
      const st = e.job.progress().state;
      if (st === 'starting' || st === 'running') return e.job;
    }
    const opts = {
      ...(headers ? { headers } : {}),
      ...(http ? { http } : {}),
      ...(mirrors?.length ? { mirrors } : {}),
    };
    const job = this.engine.download(url, Object.keys(opts).length ? opts : undefined);
    this.add(job, http);
    const e = this.entries.get(job.id);
    if (e && cred) e.cred = cred;
    return job;
  }

  add(job: DownloadJob, http?: OriginClient): void {
    if (this.entries.has(job.id)) return;
    const e: Entry = { job, started: this.now(), ...(http ? { http } : {}) };
    this.entries.set(job.id, e);
    job.info.then(
      (i) => {
        e.info = i;
        e.infoAt = this.now();
      },
      () => {
        /* reported through progress().error */
      },
    );
    const fin = () => {
      e.finished = this.now();
      this.prune();
    };
    job.done.then(fin, (err: unknown) => {
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === 'string') e.errorCode = code;
      fin();
    });
  }

  private prune(): void {
    const keep = this.opts.keepFinished ?? 256;
    const finished = [...this.entries.values()]
      .filter((e) => e.finished !== undefined)
      .sort((a, b) => a.finished! - b.finished!);
    for (let i = 0; i < finished.length - keep; i++) this.entries.delete(finished[i]!.job.id);
  }

  get(id: string): DownloadJob | undefined {
    return this.entries.get(id)?.job ?? this.engine.jobs().find((j) => j.id === id);
  }

  view(id: string): JobView | undefined {
    const job = this.get(id);
    if (!job) return undefined;
    if (!this.entries.has(id)) this.add(job);
    const e = this.entries.get(id)!;
    const p = job.progress();
    const end = e.finished ?? this.now();
    return {
      id: job.id,
      url: job.url,
      peerdist: e.info ? e.info.peerdist : null,
      startedAt: new Date(e.started).toISOString(),
      seconds: Math.max(0, end - e.started) / 1000,
      ...(e.infoAt !== undefined ? { originAnswerSeconds: Math.max(0, e.infoAt - e.started) / 1000 } : {}),
      ...p,
      ...(p.state === 'failed' && e.errorCode ? { errorCode: e.errorCode } : {}),
    };
  }

  /** Every job the engine or this book knows that has not finished. */
  active(): JobView[] {
    const ids = new Set<string>([...this.engine.jobs().map((j) => j.id), ...this.entries.keys()]);
    const out: JobView[] = [];
    for (const id of ids) {
      const v = this.view(id);
      if (v && (v.state === 'starting' || v.state === 'running')) out.push(v);
    }
    return out;
  }
}
