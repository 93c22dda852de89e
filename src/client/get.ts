/**
 * `peerdist get`: streams GET /v1/fetch from the daemon into a temporary file of its own next to
 * the target (FILE.<random>.part, created exclusively) and renames that file to FILE only when
 * the whole length arrived, the file holds exactly the bytes received and the job reports `done`.
 * On any failure only that temporary file is removed; a partial file never appears under the
 * final name, and two gets writing the same FILE never touch each other's temporary file.
 * Targets that are not regular files (devices, FIFOs, sockets, or symlinks to them, anything under
 * /dev or /proc) are written in place and never renamed over; `-o -` writes to stdout;
 * `-o DIR` writes DIR/<name from the URL>.
 */
import { once } from 'node:events';
import { type FileHandle, lstat, rename, unlink, open, realpath, stat } from 'node:fs/promises';
import { type Stats, writeSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { safeFileName } from '../util/terminal.js';
import type { AdminAddress } from '../util/address.js';
import { AdminClientError, connectionError, errorFromBody } from './admin-client.js';
import { RawHttpError, rawGet, type RawResponse } from './raw-http.js';
import { StagedFileWriter } from './direct-file.js';
import type { JobView } from '../daemon/jobs.js';
import { isErrorCode } from '../util/error-codes.js';
import { encodeOriginHeaders, ORIGIN_HEADERS_HEADER } from '../util/origin-headers.js';
import type { ByteCounts } from '../engine/types.js';

/** The `get --json` document (protocol/admin-api.md). */
export interface GetResult extends ByteCounts {
  url: string;
  output: string;
  bytes: number;
  seconds: number;
  /** Seconds until the daemon had the origin's answer (content information or plain headers), as the daemon measured it. */
  originAnswerSeconds?: number;
  peers: number;
  peerdist: boolean;
}

/**
 * Default output name: the URL's last path segment, made safe as a plain file name: no path
 * separators, and no control or bidi characters (a URL like `x%1b%5d0%3bPWNED%07` must not create
 * a file whose name drives the terminal of whoever lists the directory; issue 27.8).
 */
export function defaultOutputName(url: string): string {
  let seg = '';
  try {
    seg = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
  } catch {
    /* keep empty */
  }
  seg = safeFileName(seg).trim();
  if (seg === '' || seg === '.' || seg === '..') return 'index.html';
  return seg;
}

export interface GetOptions {
  daemon: AdminAddress;
  url: string;
  output?: string;
  /**
   * Called a few times a second while downloading (for a progress bar): every `progressIntervalMs`
   * (default 250, never below 100: at most 10 a second), never per chunk received.
   */
  onProgress?: (p: { received: number; total?: number; job?: JobView }) => void;
  progressIntervalMs?: number;
  /** Runs `tick` every `ms` until the returned function is called (default setInterval; tests inject). */
  every?: (tick: () => void, ms: number) => () => void;
  signal?: AbortSignal;
  /** Other origin nodes with the same content (`--mirror`), used when the origin fails. */
  mirrors?: string[];
  /** Headers for the origin only (`-H`, e.g. Authorization); see util/origin-headers.ts. */
  originHeaders?: Record<string, string>;
  /** How long to wait for the job to report done after the last byte arrived. */
  settleTimeoutMs?: number;
  now?: () => number;
}

/** Progress is drawn at most this often (issue 25: at most 10 times a second). */
export const MIN_PROGRESS_INTERVAL_MS = 100;

const everyMs = (tick: () => void, ms: number) => {
  const t = setInterval(tick, ms);
  return () => clearInterval(t);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * GET /v1/jobs/<id> over the same raw client as the stream (not node:http, which `get` then never
 * loads: about 0.02 CPU s of every start; issue 25). Errors as adminJson's: NO_DAEMON, DAEMON_GONE,
 * ADMIN_IO for the connection, the daemon's own error for a non-200 answer, ADMIN_HTTP for bad JSON.
 */
async function jobView(daemon: AdminAddress, id: string): Promise<JobView> {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const failed = (err: Error) => {
    throw connectionError(daemon, err);
  };
  const res = await rawGet(daemon, path, { headers: { accept: 'application/json' } }).catch(failed);
  if (res.head.status !== 200) {
    const text = await res.text(1024 * 1024).catch(() => Buffer.alloc(0));
    throw errorFromBody(res.head.status, res.head.statusText, text);
  }
  const body = await res.text(64 * 1024 * 1024).catch(failed);
  try {
    return JSON.parse(body.toString('utf8')) as JobView;
  } catch (err) {
    throw new AdminClientError('ADMIN_HTTP', `daemon sent invalid JSON for ${path}`, res.head.status, { cause: err });
  }
}

/** 12 hex digits for a temporary file's name (unique enough: the file is created with O_EXCL anyway). */
function randomHex12(): string {
  return Math.floor(Math.random() * 2 ** 48)
    .toString(16)
    .padStart(12, '0');
}

/** Where the bytes go. */
interface Sink {
  /** What the result reports as `output`. */
  output: string;
  /**
   * Writes buf[start, end) (valid only during the call: the receive buffer is reused). Files are
   * written synchronously, one write per socket read; a returned promise pauses the download.
   */
  write(buf: Buffer, start: number, end: number): void | Promise<void>;
  /** Makes the content visible under its final name (after every check passed). */
  commit(received: number): Promise<void>;
  /** Undoes what can be undone (removes the temporary file). */
  abort(): Promise<void>;
  /** Where socket reads may go so that `write` need not copy them (direct-file.ts). */
  readBuffer?: () => Buffer;
}

/** Paths that name this process's stdout. */
const STDOUT_PATHS = new Set(['/dev/stdout', '/proc/self/fd/1', '/dev/fd/1']);

/** Writes buf[start, end) to `fd` at its current position, synchronously. */
function writeAll(fd: number, buf: Buffer, start: number, end: number): void {
  for (let off = start; off < end; ) off += writeSync(fd, buf, off, end - off);
}

const outputError = (msg: string, err?: unknown) =>
  new AdminClientError('OUTPUT', msg, undefined, err === undefined ? undefined : { cause: err });
const statOrUndefined = (p: string): Promise<Stats | undefined> => stat(p).catch(() => undefined);

function stdoutSink(): Sink {
  return {
    output: '-',
    write: (buf, start, end) => {
      // process.stdout may keep the buffer until it is flushed: give it its own copy.
      if (!process.stdout.write(Buffer.from(buf.subarray(start, end))))
        return once(process.stdout, 'drain').then(() => undefined);
    },
    commit: async () => {
      /* nothing to rename */
    },
    abort: async () => {
      /* bytes already written stay written */
    },
  };
}

/** Opens a non-regular target (device, FIFO, /dev or /proc path) for writing in place. */
async function inPlaceSink(path: string): Promise<Sink> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'w');
  } catch (err) {
    throw outputError(`cannot write ${path}: ${(err as Error).message}`, err);
  }
  return {
    output: path,
    write: (buf, start, end) => writeAll(fh.fd, buf, start, end),
    commit: async () => {
      await fh.close();
    },
    abort: async () => {
      await fh.close().catch(() => {
        /* already closed */
      });
    },
  };
}

/** A regular file: written to FILE.<random>.part beside it, renamed to FILE on success. */
async function fileSink(output: string): Promise<Sink> {
  // Created before the daemon is asked to download, so an unwritable target fails early. The name
  // is unique to this run and created exclusively (O_EXCL): another get writing the same FILE, or
  // a symlink planted at some name, is never followed or replaced.
  const part = `${output}.${randomHex12()}.part`;
  let fh: FileHandle;
  try {
    fh = await open(part, 'wx');
  } catch (err) {
    throw outputError(`cannot write ${part}: ${(err as Error).message}`, err);
  }
  // Written around the page cache where the file system allows it (direct-file.ts; issue 25).
  const file = new StagedFileWriter(fh.fd);
  return {
    output,
    write: (buf, start, end) => file.write(buf, start, end),
    readBuffer: () => file.readBuffer(),
    commit: async (received) => {
      file.finish();
      await fh.sync();
      // The file must hold exactly what was received (nobody else writes it; checked anyway, since
      // the result reports these bytes as written).
      const written = (await fh.stat()).size;
      if (written !== received) throw outputError(`${part} holds ${written} bytes, ${received} were received`);
      await fh.close();
      await rename(part, output);
    },
    abort: async () => {
      file.closeDirect();
      await fh.close().catch(() => {
        /* already closed */
      });
      await unlink(part).catch(() => {
        /* already gone */
      });
    },
  };
}

/**
 * Decides how to write `-o` (before anything is downloaded): `-` and /dev/stdout go to stdout; an
 * existing directory gets DIR/<name from the URL>; a device, FIFO or socket (or a symlink to one),
 * and anything under /dev or /proc, is written in place, never renamed over; a symlink to a
 * regular file keeps the link (its target is replaced); otherwise a temporary file is renamed over FILE.
 */
export async function openOutput(url: string, output: string | undefined): Promise<Sink> {
  if (output === '-' || (output !== undefined && STDOUT_PATHS.has(output))) return stdoutSink();
  let path = resolve(output ?? defaultOutputName(url));
  let st = await statOrUndefined(path);
  if (st?.isDirectory()) {
    path = join(path, defaultOutputName(url));
    st = await statOrUndefined(path);
    if (st?.isDirectory()) throw outputError(`${path} is a directory`);
  }
  if (st && !st.isFile()) return inPlaceSink(path);
  if (/^\/(dev|proc)(\/|$)/.test(path)) return inPlaceSink(path);
  const l = await lstat(path).catch(() => undefined);
  if (l?.isSymbolicLink()) {
    // A dangling link is written through (open creates its target); a link to a regular file
    // keeps being a link: the temporary file goes beside its target and replaces that.
    if (!st) return inPlaceSink(path);
    const real = await realpath(path);
    const sink = await fileSink(real);
    return { ...sink, output: path };
  }
  return fileSink(path);
}

/** Polls /v1/jobs/<id> until the job is done or failed, or `timeoutMs` passed. */
async function settledJob(daemon: AdminAddress, jobId: string, now: () => number, timeoutMs: number): Promise<JobView> {
  let job = await jobView(daemon, jobId);
  const deadline = now() + timeoutMs;
  while (job.state !== 'done' && job.state !== 'failed' && now() < deadline) {
    await sleep(50);
    job = await jobView(daemon, jobId);
  }
  return job;
}

/** The job's own failure, with its code (BLOCK_FAILED, ORIGIN_MISMATCH, LOCAL, ...). */
function jobFailure(job: JobView): AdminClientError {
  if (job.state === 'failed')
    return new AdminClientError(
      isErrorCode(job.errorCode) ? job.errorCode : 'DOWNLOAD_FAILED',
      job.error ?? 'the download failed (no reason given)',
    );
  return new AdminClientError('DOWNLOAD_FAILED', `download failed: job is ${job.state}`);
}

/**
 * Why the daemon's stream ended early: the job's failure when the daemon still answers; DAEMON_GONE
 * only when it does not.
 */
async function explainBrokenStream(
  daemon: AdminAddress,
  jobId: string,
  name: string,
  err: unknown,
  now: () => number,
): Promise<AdminClientError> {
  let job: JobView;
  try {
    job = await settledJob(daemon, jobId, now, 3_000);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'NO_DAEMON' || code === 'DAEMON_GONE' || code === 'ADMIN_IO') {
      return new AdminClientError(
        'DAEMON_GONE',
        `the daemon closed the connection during the download of ${name} (stopped or crashed?)`,
        undefined,
        { cause: err },
      );
    }
    return new AdminClientError(
      'DOWNLOAD_FAILED',
      `download of ${name} failed: ${(err as Error).message}; the daemon's job ${jobId} could not be read: ${(e as Error).message}`,
      undefined,
      { cause: err },
    );
  }
  if (job.state === 'failed') return jobFailure(job);
  return new AdminClientError(
    'STREAM_BROKEN',
    `the daemon's stream of ${name} ended early (${(err as Error).message}) while its download is ${job.state}; see the daemon's log`,
    undefined,
    { cause: err },
  );
}

export async function getToFile(opts: GetOptions): Promise<GetResult> {
  const now = opts.now ?? Date.now;
  const started = now();
  const sink = await openOutput(opts.url, opts.output);
  const output = sink.output;
  let res: RawResponse | undefined;
  let received = 0;
  let stopProgress: (() => void) | undefined;
  try {
    const oh = opts.originHeaders && Object.keys(opts.originHeaders).length ? opts.originHeaders : undefined;
    const mirrorQuery = (opts.mirrors ?? []).map((m) => `&mirror=${encodeURIComponent(m)}`).join('');
    // A raw socket, not node:http: the body is written as it is read, one write per read into one
    // reused buffer (raw-http.ts; issue 25).
    res = await rawGet(opts.daemon, `/v1/fetch?url=${encodeURIComponent(opts.url)}${mirrorQuery}`, {
      signal: opts.signal,
      headers: { accept: 'application/json', ...(oh ? { [ORIGIN_HEADERS_HEADER]: encodeOriginHeaders(oh) } : {}) },
      // A file is read into its own write stage: the bytes are not copied again (direct-file.ts).
      ...(sink.readBuffer ? { readBuffer: sink.readBuffer } : {}),
    }).catch((err: Error) => {
      throw connectionError(opts.daemon, err);
    });
    const head = res.head;
    if (head.status !== 200) {
      const text = await res.text(1024 * 1024).catch(() => Buffer.alloc(0));
      throw errorFromBody(head.status, head.statusText, text);
    }
    const jobId = head.headers['x-peerdist-job'];
    if (typeof jobId !== 'string' || jobId === '')
      throw new AdminClientError('ADMIN_HTTP', 'daemon response lacks X-PeerDist-Job');
    const lenHeader = head.headers['content-length'];
    const total = lenHeader === undefined ? undefined : Number(lenHeader);

    if (opts.onProgress) {
      const report = opts.onProgress;
      let polling = false;
      const ms = Math.max(MIN_PROGRESS_INTERVAL_MS, opts.progressIntervalMs ?? 250);
      stopProgress = (opts.every ?? everyMs)(() => {
        if (polling) return;
        polling = true;
        jobView(opts.daemon, jobId)
          .then(
            (job) => report({ received, total, job }),
            () => report({ received, total }),
          )
          .finally(() => {
            polling = false;
          });
      }, ms);
    }
    const write = sink.write;
    await res.body((buf, start, end) => {
      const w = write(buf, start, end);
      received += end - start;
      return w;
    });
    opts.signal?.throwIfAborted();
    if (total !== undefined && received !== total) {
      throw new AdminClientError('TRUNCATED', `received ${received} of ${total} bytes`);
    }
    const job = await settledJob(opts.daemon, jobId, now, opts.settleTimeoutMs ?? 10_000);
    if (job.state !== 'done') throw jobFailure(job);
    if (job.contentLength !== undefined && job.contentLength !== received) {
      throw new AdminClientError(
        'TRUNCATED',
        `received ${received} bytes but the content is ${job.contentLength} bytes`,
      );
    }
    await sink.commit(received);
    return {
      url: opts.url,
      output,
      bytes: received,
      seconds: (now() - started) / 1000,
      ...(job.originAnswerSeconds !== undefined ? { originAnswerSeconds: job.originAnswerSeconds } : {}),
      fromOrigin: job.fromOrigin,
      fromPeers: job.fromPeers,
      fromCache: job.fromCache,
      contentInfoBytes: job.contentInfoBytes,
      peers: job.peers,
      peerdist: job.peerdist === true,
    };
  } catch (err) {
    res?.destroy();
    await sink.abort();
    if (opts.signal?.aborted) throw new AdminClientError('ABORTED', 'download interrupted', undefined, { cause: err });
    if ((err as { name?: string }).name === 'AbortError')
      throw new AdminClientError('ABORTED', 'download interrupted', undefined, { cause: err });
    const jobId = res?.head?.headers['x-peerdist-job'];
    // The stream ended early (cut, or closed short): ask the daemon why. A running daemon tells the
    // job's real failure (BLOCK_FAILED, LOCAL: disk full, ORIGIN_* ...); only a daemon that no
    // longer answers is reported as gone.
    const streamBroke =
      (err as { code?: string }).code === 'ECONNRESET' ||
      (err instanceof RawHttpError && err.code === 'TRUNCATED') ||
      (err instanceof AdminClientError && err.code === 'TRUNCATED');
    if (streamBroke && typeof jobId === 'string' && jobId !== '') {
      throw await explainBrokenStream(opts.daemon, jobId, basename(output), err, now);
    }
    if (err instanceof AdminClientError) throw err;
    if (err instanceof RawHttpError && err.code === 'TRUNCATED')
      throw new AdminClientError('TRUNCATED', err.message, undefined, { cause: err });
    throw new AdminClientError(
      'DOWNLOAD_FAILED',
      `download of ${basename(output)} failed: ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
  } finally {
    stopProgress?.();
  }
}
