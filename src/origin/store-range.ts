/**
 * Reading a byte range of a blob with undici instead of the storage SDK's download stream.
 *
 * Why: the SDK receives through node:http, whose parser copies every body chunk out of the socket's
 * read buffer, and wraps the body in its own retrying stream. undici hands the body on as views of
 * the socket reads. Relaying 256 MiB from Azurite cost the receiving process 0.40-0.51 CPU s through
 * the SDK and 0.21-0.27 s through undici (BENCHMARKS.md, "Origin over Azure Blob Storage", item 9).
 * Everything else (properties, listing, records, leases) stays with the SDK.
 *
 * Semantics are the SDK download's: `If-Match` holds the read to one blob version (404 or 412 is
 * ObjectChangedError, never a mix), a body cut short is resumed from where it stopped with the same
 * `If-Match` (at most `maxResumes` times), and storage that cannot be reached or answers 5xx, 401,
 * 403, 408 or 429 is StoreUnavailableError.
 */
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ObjectChangedError, StoreUnavailableError } from './store.js';

/** What the range reader needs from undici (tests may inject a dispatcher). */
export interface RangeFetch {
  dispatcher: Dispatcher;
  /** The blob's URL with its authorization in the query (a SAS); never logged. */
  url: () => string;
  /** Name for errors and logs. */
  name: string;
  etag: string;
  maxResumes?: number;
}

function statusError(name: string, status: number): Error {
  if (status === 404 || status === 412) return new ObjectChangedError(name);
  if (status >= 500 || status === 401 || status === 403 || status === 408 || status === 429)
    return new StoreUnavailableError(`storage read of ${name}: HTTP ${status}`);
  return new Error(`storage read of ${name}: unexpected HTTP ${status}`);
}

/** One ranged GET; resolves with its body once the status and Content-Range are checked. */
async function getRange(f: RangeFetch, start: number, end: number): Promise<Dispatcher.ResponseData['body']> {
  let r: Dispatcher.ResponseData;
  try {
    const u = new URL(f.url());
    r = await f.dispatcher.request({
      origin: u.origin,
      path: u.pathname + u.search,
      method: 'GET',
      headers: { range: `bytes=${start}-${end}`, 'if-match': f.etag },
    });
  } catch (err) {
    throw new StoreUnavailableError(`storage read of ${f.name}: ${(err as Error).message}`, err);
  }
  if (r.statusCode !== 206) {
    r.body.on('error', () => undefined).destroy();
    throw statusError(f.name, r.statusCode);
  }
  const cr = /^bytes (\d+)-(\d+)\//.exec(String(r.headers['content-range'] ?? ''));
  if (!cr || Number(cr[1]) !== start || Number(cr[2]) !== end) {
    r.body.on('error', () => undefined).destroy();
    throw new StoreUnavailableError(
      `storage read of ${f.name}: asked for bytes ${start}-${end}, got Content-Range ${String(r.headers['content-range'])}`,
    );
  }
  return r.body;
}

/**
 * Bytes [start, end] of the blob as one stream. The first request is made before this resolves,
 * so a missing, replaced or unreachable blob is an error of the call, not of the stream.
 */
export async function readRange(f: RangeFetch, start: number, end: number): Promise<Readable> {
  const first = await getRange(f, start, end);
  return new RangeStream(f, first, start, end);
}

class RangeStream extends Readable {
  private body: Dispatcher.ResponseData['body'] | undefined;
  private resumes = 0;

  constructor(
    private readonly f: RangeFetch,
    body: Dispatcher.ResponseData['body'],
    private pos: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: 256 * 1024 });
    this.attach(body);
  }

  private attach(body: Dispatcher.ResponseData['body']): void {
    this.body = body;
    body.on('data', (chunk: Buffer) => {
      if (this.body !== body) return;
      this.pos += chunk.length;
      if (!this.push(chunk)) body.pause();
    });
    body.once('end', () => {
      if (this.body !== body) return;
      if (this.pos === this.end + 1) this.push(null);
      else this.resume_(new Error(`body ended ${this.end + 1 - this.pos} bytes short`));
    });
    body.once('error', (err: Error) => {
      if (this.body === body) this.resume_(err);
    });
  }

  /** The body broke off: ask again for what is left, same version, or fail the stream. */
  private resume_(cause: Error): void {
    this.body = undefined;
    if (this.destroyed) return;
    if (this.resumes >= (this.f.maxResumes ?? 3)) {
      this.destroy(new StoreUnavailableError(`storage read of ${this.f.name} broke off: ${cause.message}`, cause));
      return;
    }
    this.resumes++;
    getRange(this.f, this.pos, this.end).then(
      (body) => {
        if (this.destroyed) body.on('error', () => undefined).destroy();
        else this.attach(body);
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _read(): void {
    this.body?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const b = this.body;
    this.body = undefined;
    b?.on('error', () => undefined).destroy();
    cb(err);
  }
}
