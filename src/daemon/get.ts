/**
 * `peerdist get`: streams GET /v1/fetch from the daemon into FILE.part next to the target and
 * renames it to FILE only when the whole length arrived and the job reports `done`. On any
 * failure FILE.part is removed; a partial file never appears under the final name.
 */
import { createWriteStream } from 'node:fs';
import { rename, unlink, open } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AdminAddress } from './address.js';
import { AdminClientError, adminJson, adminRequest, errorFrom } from './admin-client.js';
import type { JobView } from './jobs.js';

/** The `get --json` document (protocol/admin-api.md). */
export interface GetResult {
  url: string;
  output: string;
  bytes: number;
  seconds: number;
  fromOrigin: number;
  fromPeers: number;
  fromCache: number;
  contentInfoBytes: number;
  peers: number;
  peerdist: boolean;
}

/** Default output name: the URL's last path segment, made safe as a plain file name. */
export function defaultOutputName(url: string): string {
  let seg = '';
  try { seg = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? ''); } catch { /* keep empty */ }
  seg = seg.replace(/[/\\\0]/g, '_').trim();
  if (seg === '' || seg === '.' || seg === '..') return 'index.html';
  return seg;
}

export interface GetOptions {
  daemon: AdminAddress;
  url: string;
  output?: string;
  /** Called a few times a second while downloading (for a progress bar). */
  onProgress?: (p: { received: number; total?: number; job?: JobView }) => void;
  progressIntervalMs?: number;
  signal?: AbortSignal;
  /** How long to wait for the job to report done after the last byte arrived. */
  settleTimeoutMs?: number;
  now?: () => number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function jobView(daemon: AdminAddress, id: string): Promise<JobView> {
  return adminJson<JobView>(daemon, `/v1/jobs/${encodeURIComponent(id)}`);
}

export async function getToFile(opts: GetOptions): Promise<GetResult> {
  const now = opts.now ?? Date.now;
  const started = now();
  const output = resolve(opts.output ?? defaultOutputName(opts.url));
  const part = `${output}.part`;
  const res = await adminRequest(opts.daemon, `/v1/fetch?url=${encodeURIComponent(opts.url)}`, { signal: opts.signal });
  if (res.statusCode !== 200) throw await errorFrom(res);
  const jobId = res.headers['x-peerdist-job'];
  if (typeof jobId !== 'string' || jobId === '') { res.destroy(); throw new AdminClientError('ADMIN_HTTP', 'daemon response lacks X-PeerDist-Job'); }
  const lenHeader = res.headers['content-length'];
  const total = lenHeader === undefined ? undefined : Number(lenHeader);

  let received = 0;
  let timer: NodeJS.Timeout | undefined;
  let polling = false;
  if (opts.onProgress) {
    const report = opts.onProgress;
    timer = setInterval(() => {
      if (polling) return;
      polling = true;
      jobView(opts.daemon, jobId).then((job) => report({ received, total, job }), () => report({ received, total }))
        .finally(() => { polling = false; });
    }, opts.progressIntervalMs ?? 250);
  }
  const counter = new Transform({ transform(chunk: Buffer, _e, cb) { received += chunk.length; cb(null, chunk); } });
  try {
    // 'wx' semantics are not wanted here: a .part left by a crashed earlier run is ours to replace.
    await pipeline(res, counter, createWriteStream(part), { signal: opts.signal });
    if (res.complete === false) throw new AdminClientError('TRUNCATED', 'the daemon closed the stream early');
    if (total !== undefined && received !== total) {
      throw new AdminClientError('TRUNCATED', `received ${received} of ${total} bytes`);
    }
    let job = await jobView(opts.daemon, jobId);
    const deadline = now() + (opts.settleTimeoutMs ?? 10_000);
    while (job.state !== 'done' && job.state !== 'failed' && now() < deadline) {
      await sleep(50);
      job = await jobView(opts.daemon, jobId);
    }
    if (job.state !== 'done') throw new AdminClientError('DOWNLOAD_FAILED', `download failed: ${job.error ?? `job is ${job.state}`}`);
    if (job.contentLength !== undefined && job.contentLength !== received) {
      throw new AdminClientError('TRUNCATED', `received ${received} bytes but the content is ${job.contentLength} bytes`);
    }
    const fh = await open(part, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    await rename(part, output);
    return {
      url: opts.url, output, bytes: received, seconds: (now() - started) / 1000,
      fromOrigin: job.fromOrigin, fromPeers: job.fromPeers, fromCache: job.fromCache,
      contentInfoBytes: job.contentInfoBytes, peers: job.peers, peerdist: job.peerdist === true,
    };
  } catch (err) {
    res.destroy();
    await unlink(part).catch(() => { /* never created */ });
    if (err instanceof AdminClientError) throw err;
    if ((err as { name?: string }).name === 'AbortError') throw new AdminClientError('ABORTED', 'download interrupted', undefined, { cause: err });
    throw new AdminClientError('DOWNLOAD_FAILED', `download of ${basename(output)} failed: ${(err as Error).message}`, undefined, { cause: err });
  } finally {
    if (timer) clearInterval(timer);
  }
}
