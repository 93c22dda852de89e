/**
 * A small in-memory stand-in for the download engine, for testing the admin API, proxy and
 * `peerdist get` without the network. Content is served in chunks with real timer delays;
 * behaviours: 'ok', 'fail-info' (origin 404 before any byte), 'fail-mid' (stream breaks halfway),
 * 'fail-start' (the job fails after the origin answered, before the first byte), 'slow' (4 KiB
 * every 20 ms). Failures carry a code (BLOCK_FAILED) like the engine's DownloadError.
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { EngineLike } from '../../src/daemon/jobs.js';
import type { DownloadJob, DownloadResult, JobInfo, JobProgress } from '../../src/engine/types.js';

export type Behaviour = 'ok' | 'fail-info' | 'fail-mid' | 'fail-start' | 'slow';

class HttpishError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

class CodedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class FakeJob extends EventEmitter implements DownloadJob {
  readonly info: Promise<JobInfo>;
  readonly done: Promise<DownloadResult>;
  private state: JobProgress['state'] = 'starting';
  private sent = 0;
  private error?: string;
  private resolveDone!: (r: DownloadResult) => void;
  private rejectDone!: (e: Error) => void;
  cancelled = false;
  readonly headers?: Record<string, string>;

  constructor(
    readonly id: string,
    readonly url: string,
    private readonly data: Buffer | undefined,
    readonly behaviour: Behaviour,
    headers?: Record<string, string>,
  ) {
    super();
    this.headers = headers;
    this.done = new Promise<DownloadResult>((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    this.done.catch(() => {});
    if (behaviour === 'fail-info' || !data) {
      this.info = Promise.reject(new HttpishError('origin answered 404', 404));
      this.info.catch(() => {});
      this.state = 'failed';
      this.error = 'origin answered 404';
      this.rejectDone(new Error(this.error));
    } else {
      this.info = Promise.resolve({
        contentLength: data.length,
        peerdist: true,
        contentType: 'application/x-test',
        etag: '"e1"',
      });
      this.state = 'running';
    }
  }

  progress(): JobProgress {
    const len = this.data?.length;
    return {
      state: this.state,
      contentLength: this.behaviour === 'fail-info' ? undefined : len,
      bytesDone: this.sent,
      fromOrigin: this.sent,
      fromPeers: 0,
      fromCache: 0,
      contentInfoBytes: 100,
      peers: 2,
      blocksTotal: len ? Math.ceil(len / 65536) : 0,
      blocksDone: Math.ceil(this.sent / 65536),
      error: this.error,
    };
  }

  createReadStream(start = 0, end?: number): NodeJS.ReadableStream {
    const data = this.data!;
    const last = end ?? data.length - 1;
    const failAt =
      this.behaviour === 'fail-mid' ? Math.floor(data.length / 2) : this.behaviour === 'fail-start' ? 0 : Infinity;
    let pos = start;
    const job = this;
    return new Readable({
      read() {
        setTimeout(
          () => {
            if (pos > last) {
              job.sent = data.length;
              job.state = 'done';
              job.resolveDone(job.result());
              this.push(null);
              return;
            }
            if (pos >= failAt) {
              job.state = 'failed';
              job.error = `block ${Math.floor(pos / 65536)} of segment 0 could not be obtained: peer and origin both failed`;
              const e = new CodedError('BLOCK_FAILED', job.error);
              job.rejectDone(e);
              this.destroy(e);
              return;
            }
            const n = Math.min(job.behaviour === 'slow' ? 4096 : 16384, last + 1 - pos, failAt - pos);
            this.push(data.subarray(pos, pos + n));
            pos += n;
            job.sent = Math.max(job.sent, pos);
          },
          job.behaviour === 'slow' ? 20 : 1,
        );
      },
    });
  }

  private result(): DownloadResult {
    const p = this.progress();
    return {
      url: this.url,
      contentLength: this.data!.length,
      peerdist: true,
      fromOrigin: p.fromOrigin,
      fromPeers: p.fromPeers,
      fromCache: p.fromCache,
      contentInfoBytes: p.contentInfoBytes,
      peers: p.peers,
      durationMs: 0,
      peerStats: [],
    };
  }

  cancel(): void {
    this.cancelled = true;
  }

  async idle(): Promise<void> {
    /* no cache writes */
  }
}

export class FakeEngine implements EngineLike {
  readonly started: FakeJob[] = [];
  private n = 0;
  constructor(readonly content: Map<string, { data?: Buffer; behaviour?: Behaviour }> = new Map()) {}

  download(url: string, opts?: { headers?: Record<string, string> }): FakeJob {
    const c = this.content.get(url);
    const job = new FakeJob(
      `job${++this.n}`,
      url,
      c?.data,
      c?.behaviour ?? (c?.data ? 'ok' : 'fail-info'),
      opts?.headers,
    );
    this.started.push(job);
    return job;
  }

  jobs(): FakeJob[] {
    return this.started.filter((j) => j.progress().state === 'running');
  }
  totals(): object {
    return {
      fromOrigin: this.started.reduce((a, j) => a + j.progress().fromOrigin, 0),
      fromPeers: 0,
      fromCache: 0,
      contentInfoBytes: 0,
    };
  }
  async close(): Promise<void> {
    for (const j of this.started) j.cancel();
  }
}
