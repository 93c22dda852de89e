/**
 * `peerdist get`: streams GET /v1/fetch from the daemon into a temporary file of its own next to
 * the target (FILE.<random>.part, created exclusively) and renames that file to FILE only when
 * the whole length arrived, the file holds exactly the bytes received and the job reports `done`.
 * On any failure only that temporary file is removed; a partial file never appears under the
 * final name, and two gets writing the same FILE never touch each other's temporary file.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, rename, unlink, open } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { basename, resolve } from 'node:path';
import type { AdminAddress } from '../util/address.js';
import { AdminClientError, adminJson, adminRequest, errorFrom } from './admin-client.js';
import type { JobView } from '../daemon/jobs.js';

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
  // Create the temporary file first: an unwritable target fails before the daemon starts
  // downloading. Its name is unique to this run and it is created exclusively (O_EXCL), so another
  // get writing the same FILE, or a symlink planted at some name, is never followed or replaced.
  const part = `${output}.${randomBytes(6).toString('hex')}.part`;
  let fh: FileHandle;
  try {
    fh = await open(part, 'wx');
  } catch (err) {
    throw new AdminClientError('OUTPUT', `cannot write ${part}: ${(err as Error).message}`, undefined, { cause: err });
  }
  let res: IncomingMessage | undefined;
  let received = 0;
  let timer: NodeJS.Timeout | undefined;
  try {
    res = await adminRequest(opts.daemon, `/v1/fetch?url=${encodeURIComponent(opts.url)}`, { signal: opts.signal });
    if (res.statusCode !== 200) throw await errorFrom(res);
    const jobId = res.headers['x-peerdist-job'];
    if (typeof jobId !== 'string' || jobId === '') throw new AdminClientError('ADMIN_HTTP', 'daemon response lacks X-PeerDist-Job');
    const lenHeader = res.headers['content-length'];
    const total = lenHeader === undefined ? undefined : Number(lenHeader);

    if (opts.onProgress) {
      const report = opts.onProgress;
      let polling = false;
      timer = setInterval(() => {
        if (polling) return;
        polling = true;
        jobView(opts.daemon, jobId).then((job) => report({ received, total, job }), () => report({ received, total }))
          .finally(() => { polling = false; });
      }, opts.progressIntervalMs ?? 250);
    }
    for await (const chunk of res as AsyncIterable<Buffer>) {
      opts.signal?.throwIfAborted();
      for (let off = 0; off < chunk.length;) off += (await fh.write(chunk, off)).bytesWritten;
      received += chunk.length;
    }
    if (!res.complete) throw new AdminClientError('TRUNCATED', 'the daemon closed the stream early');
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
    await fh.sync();
    // The file must hold exactly what was received (nobody else writes it; checked anyway, since
    // the result reports these bytes as written).
    const written = (await fh.stat()).size;
    if (written !== received) throw new AdminClientError('OUTPUT', `${part} holds ${written} bytes, ${received} were received`);
    await fh.close();
    await rename(part, output);
    return {
      url: opts.url, output, bytes: received, seconds: (now() - started) / 1000,
      fromOrigin: job.fromOrigin, fromPeers: job.fromPeers, fromCache: job.fromCache,
      contentInfoBytes: job.contentInfoBytes, peers: job.peers, peerdist: job.peerdist === true,
    };
  } catch (err) {
    res?.destroy();
    await fh.close().catch(() => { /* already closed */ });
    await unlink(part).catch(() => { /* already gone */ });
    if (opts.signal?.aborted) throw new AdminClientError('ABORTED', 'download interrupted', undefined, { cause: err });
    if (err instanceof AdminClientError) throw err;
    if ((err as { name?: string }).name === 'AbortError') throw new AdminClientError('ABORTED', 'download interrupted', undefined, { cause: err });
    // The response stream was cut (node reports 'aborted', ECONNRESET): the daemon stopped or crashed mid-download.
    if ((err as { code?: string }).code === 'ECONNRESET') {
      throw new AdminClientError('DAEMON_GONE', `the daemon closed the connection during the download of ${basename(output)} (stopped or crashed?)`, undefined, { cause: err });
    }
    throw new AdminClientError('DOWNLOAD_FAILED', `download of ${basename(output)} failed: ${(err as Error).message}`, undefined, { cause: err });
  } finally {
    if (timer) clearInterval(timer);
  }
}
