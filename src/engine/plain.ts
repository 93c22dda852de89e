/**
 * Plain (non-PeerDist) downloads: the origin body is appended to a private temp file so any
 * number of readers can stream it, while it arrives and after it completed. The file is removed
 * once the job finished and its last reader is done (job.ts), or when the engine drops the job.
 */
import { mkdtemp, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError } from './errors.js';
import { type HeaderMap, type OriginResponse, header } from './origin-client.js';

/** The announced Content-Length, or -1 when absent or not a number. */
export function plainLength(headers: HeaderMap): number {
  const cl = header(headers, 'content-length');
  return cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
}

/**
 * Streams the origin body into `buf`, calling `received` after each chunk. Returns false when the
 * job ended meanwhile (`stopped`), true once the body is complete (`expected` bytes, if >= 0).
 */
export async function receivePlain(
  res: OriginResponse,
  buf: PlainBuffer,
  expected: number,
  url: string,
  hooks: { stopped(): boolean; received(n: number): void },
): Promise<boolean> {
  try {
    for await (const chunk of res.body) {
      if (hooks.stopped()) break;
      await buf.append(chunk);
      hooks.received(chunk.length);
    }
  } catch (err) {
    if (hooks.stopped()) return false;
    throw new DownloadError('ORIGIN_UNREACHABLE', `origin connection failed during ${url}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (hooks.stopped()) return false;
  if (expected >= 0 && buf.size !== expected)
    throw new DownloadError('ORIGIN_UNREACHABLE', `origin sent ${buf.size} of ${expected} bytes for ${url}`);
  await buf.finish();
  return true;
}

export class PlainBuffer {
  private written = 0;
  private complete = false;
  private constructor(
    private readonly dir: string,
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(tmpDir?: string): Promise<PlainBuffer> {
    const dir = await mkdtemp(join(tmpDir ?? tmpdir(), 'peerdist-dl-'));
    const path = join(dir, 'body');
    const fh = await open(path, 'w+', 0o600);
    return new PlainBuffer(dir, path, fh);
  }

  get size(): number {
    return this.written;
  }
  get finished(): boolean {
    return this.complete;
  }

  async append(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.written + off);
      off += bytesWritten;
    }
    this.written += chunk.length;
  }

  async finish(): Promise<void> {
    this.complete = true;
  }

  /** Reads up to `len` bytes at `pos` (never beyond what was written). */
  async read(pos: number, len: number): Promise<Buffer> {
    const n = Math.max(0, Math.min(len, this.written - pos));
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.fh.read(buf, got, n - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  }

  async dispose(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Removes `peerdist-dl-*` directories left in `dir` by an earlier process (killed before it could
 * drop them); returns how many. Only for a directory this process owns alone (the daemon's
 * <state dir>/tmp): another live process's bodies must not be in it.
 */
export async function clearStaleBuffers(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    if (!name.startsWith('peerdist-dl-')) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    n++;
  }
  return n;
}
