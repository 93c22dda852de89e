/**
 * One HTTP/1.1 GET to the daemon's admin API over a raw socket (loopback TCP or unix socket), for
 * `peerdist get` (issue 25): the body is read with `onread` into one reused buffer and handed to a
 * writer that normally writes it to the output file synchronously, so a GiB costs a few thousand
 * reads and writes and no per-chunk Buffer, stream or promise. node:http spent 8-12 CPU s per GiB
 * in its parser and stream plumbing here (BENCHMARKS.md, issue 25).
 *
 * Handles what the admin API sends: a status line and headers (at most 64 KiB), then a body framed
 * by Content-Length, by chunked transfer coding, or by the end of the connection. The request says
 * `Connection: close`; one request per connection.
 */
import { connect, type Socket } from 'node:net';
import type { AdminAddress } from '../util/address.js';

/** Bytes read per socket read (one buffer, reused). */
export const READ_BUFFER_BYTES = 1024 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 4096;

export interface RawHead {
  status: number;
  statusText: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

/**
 * Receives the body: bytes `buf[start, end)`, valid only during the call (the buffer is reused).
 * Returning a promise pauses reading until it settles (a rejection ends the body with it).
 */
export type BodyWriter = (buf: Buffer, start: number, end: number) => void | Promise<void>;

export class RawHttpError extends Error {
  constructor(
    readonly code: 'TRUNCATED' | 'BAD_RESPONSE' | 'ECONNRESET',
    message: string,
  ) {
    super(message);
  }
}

export interface RawResponse {
  head: RawHead;
  /** Streams the body to `write`; resolves with the body's length once it is complete. */
  body(write: BodyWriter): Promise<number>;
  /** The whole body (at most `limit` bytes). */
  text(limit: number): Promise<Buffer>;
  destroy(): void;
}

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' };

/** Parses a response head (without its final CRLF CRLF). */
export function parseHead(text: string): RawHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m)
    throw new RawHttpError('BAD_RESPONSE', `not an HTTP/1.1 status line: ${JSON.stringify(lines[0]?.slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.indexOf(':');
    if (c <= 0) throw new RawHttpError('BAD_RESPONSE', `malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, c).trim().toLowerCase();
    const value = line.slice(c + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', headers };
}

function framingOf(head: RawHead): Framing {
  const te = head.headers['transfer-encoding'];
  if (te !== undefined) {
    if (te.toLowerCase() !== 'chunked') throw new RawHttpError('BAD_RESPONSE', `unsupported Transfer-Encoding ${te}`);
    return { kind: 'chunked' };
  }
  const cl = head.headers['content-length'];
  if (cl !== undefined) {
    if (!/^\d{1,15}$/.test(cl)) throw new RawHttpError('BAD_RESPONSE', `bad Content-Length ${JSON.stringify(cl)}`);
    return { kind: 'length', left: Number(cl) };
  }
  if (head.status === 204 || head.status === 304) return { kind: 'length', left: 0 };
  return { kind: 'close' };
}

/**
 * Decoder of a chunked body: feeds data bytes to `out` and says when the last chunk and the
 * trailer are in. States: size line, data, CRLF after data, trailer lines.
 */
export class ChunkedDecoder {
  private state: 'size' | 'data' | 'crlf' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;

  get done(): boolean {
    return this.state === 'done';
  }

  /** Consumes buf[start, end); returns the offset where the body ended (end when not yet done). */
  feed(buf: Buffer, start: number, end: number, out: (s: number, e: number) => void): number {
    let i = start;
    while (i < end && this.state !== 'done') {
      if (this.state === 'data') {
        const n = Math.min(this.left, end - i);
        out(i, i + n);
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = 'crlf';
        continue;
      }
      // Line-oriented states: collect up to LF.
      const lf = buf.indexOf(10, i);
      const stop = lf === -1 || lf >= end ? end : lf;
      this.line += buf.toString('latin1', i, stop);
      if (this.line.length > MAX_CHUNK_LINE) throw new RawHttpError('BAD_RESPONSE', 'chunk size line too long');
      if (stop === end) return end;
      i = stop + 1;
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      if (this.state === 'crlf') {
        if (line !== '') throw new RawHttpError('BAD_RESPONSE', 'chunk data not followed by CRLF');
        this.state = 'size';
      } else if (this.state === 'size') {
        const hex = line.split(';')[0]!.trim();
        if (!/^[0-9a-fA-F]{1,12}$/.test(hex))
          throw new RawHttpError('BAD_RESPONSE', `bad chunk size ${JSON.stringify(hex)}`);
        this.left = Number.parseInt(hex, 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
      } else if (line === '') this.state = 'done'; // end of the trailer
    }
    return i;
  }
}

/**
 * Sends `GET path` and resolves once the response head is in. Connection errors reject with the
 * socket's error (its `code`: ECONNREFUSED, ENOENT ...); the signal rejects with an AbortError.
 */
export function rawGet(
  addr: AdminAddress,
  path: string,
  opts: {
    headers?: Record<string, string>;
    signal?: AbortSignal;
    bufferBytes?: number;
    /**
     * Where each socket read goes (instead of one reused buffer of `bufferBytes`): called before
     * every read; the bytes are then handed to the body writer in that same memory.
     */
    readBuffer?: () => Buffer;
  } = {},
): Promise<RawResponse> {
  const hdrs = { host: addr.kind === 'socket' ? 'localhost' : `${addr.host}:${addr.port}`, ...opts.headers };
  let req = `GET ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(hdrs)) {
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) return Promise.reject(new TypeError(`header ${k} holds a line break`));
    req += `${k}: ${v}\r\n`;
  }
  req += 'connection: close\r\n\r\n';
  return new Promise((resolveHead, rejectHead) => {
    const buffer = Buffer.allocUnsafe(opts.bufferBytes ?? READ_BUFFER_BYTES);
    let headBytes: Buffer[] | undefined = [];
    let headLen = 0;
    let head: RawHead | undefined;
    let framing: Framing | undefined;
    let chunked: ChunkedDecoder | undefined;
    // Body bytes that arrived before anyone asked for them (with the head, or before body() was called).
    const early: Buffer[] = [];
    let writer: BodyWriter | undefined;
    let received = 0;
    let finished = false;
    let failure: Error | undefined;
    let settleBody: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;

    const sock: Socket = connect({
      ...(addr.kind === 'socket' ? { path: addr.path } : { host: addr.host, port: addr.port }),
      onread: {
        // Node asks for the next read's memory right after each read's callback. opts.readBuffer's
        // memory is lent only once the writer is in place: the head, and body bytes kept before
        // body() was called, are read into our own buffer (the writer may stage them where the
        // lent memory would be).
        buffer: opts.readBuffer ? () => (writer ? opts.readBuffer!() : buffer) : buffer,
        callback: (n: number, buf: Uint8Array) => onData(buf as Buffer, n),
      },
    });

    const fail = (err: Error) => {
      if (finished || failure) return;
      failure = err;
      sock.destroy();
      if (!head) rejectHead(err);
      else settleBody?.reject(err);
    };
    const complete = () => {
      if (finished || failure) return;
      finished = true;
      sock.destroy();
      settleBody?.resolve(received);
    };
    const onAbort = () => {
      const e = new Error('the operation was aborted');
      e.name = 'AbortError';
      fail(e);
    };
    if (opts.signal?.aborted) {
      queueMicrotask(onAbort);
    } else opts.signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('close', () => {
      opts.signal?.removeEventListener('abort', onAbort);
      // Closed without an error or an end we acted on (a reset some platforms report this way).
      if (!finished && !failure && !(framing?.kind === 'close' && early.length > 0))
        fail(new RawHttpError(head ? 'TRUNCATED' : 'ECONNRESET', 'the daemon closed the connection early'));
    });

    sock.write(req, 'latin1');
    sock.on('error', (err) => fail(err));
    sock.on('end', () => {
      if (!head) return fail(new RawHttpError('ECONNRESET', 'the daemon closed the connection before answering'));
      if (framing?.kind === 'close' && early.length === 0) return complete();
      if (framing?.kind === 'close') return; // delivered once body() drains `early`
      fail(new RawHttpError('TRUNCATED', 'the daemon closed the stream early'));
    });

    /** Body bytes buf[s, e): to the writer, or kept until there is one. Returns false to pause. */
    const deliver = (buf: Buffer, s: number, e: number): Promise<void> | undefined => {
      if (e <= s) return undefined;
      received += e - s;
      if (!writer) {
        early.push(Buffer.from(buf.subarray(s, e)));
        return undefined;
      }
      const r = writer(buf, s, e);
      return r instanceof Promise ? r : undefined;
    };

    /** Frames body bytes buf[s, e); returns a promise when the writer asked to wait. */
    const body = (buf: Buffer, s: number, e: number): Promise<void> | undefined => {
      const f = framing!;
      let wait: Promise<void> | undefined;
      if (f.kind === 'length') {
        const n = Math.min(f.left, e - s);
        f.left -= n;
        wait = deliver(buf, s, s + n);
      } else if (f.kind === 'chunked') {
        const waits: Promise<void>[] = [];
        // Writers that return promises must see stable bytes: copy for them.
        chunked!.feed(buf, s, e, (a, b) => {
          const w = deliver(buf, a, b);
          if (w) waits.push(w);
        });
        if (waits.length) wait = Promise.all(waits).then(() => undefined);
      } else wait = deliver(buf, s, e);
      return wait;
    };
    const bodyDone = () =>
      (framing!.kind === 'length' && framing!.left === 0) || (framing!.kind === 'chunked' && chunked!.done);

    function onData(buf: Buffer, n: number): boolean {
      if (finished || failure) return false;
      if (!head) {
        headBytes!.push(Buffer.from(buf.subarray(0, n)));
        headLen += n;
        const all = Buffer.concat(headBytes!, headLen);
        const at = all.indexOf('\r\n\r\n');
        if (at === -1) {
          if (headLen > MAX_HEAD_BYTES) fail(new RawHttpError('BAD_RESPONSE', 'response head too large'));
          else headBytes = [all];
          return true;
        }
        try {
          head = parseHead(all.toString('latin1', 0, at));
          framing = framingOf(head);
        } catch (err) {
          fail(err as Error);
          return false;
        }
        if (framing.kind === 'chunked') chunked = new ChunkedDecoder();
        headBytes = undefined;
        // What followed the head in this read was copied into `all`: frame it from there.
        const rest = all.subarray(at + 4);
        try {
          body(rest, 0, rest.length); // no writer yet: kept in `early`
        } catch (err) {
          fail(err as Error);
          return false;
        }
        resolveHead(response);
        if (bodyDone()) complete();
        return true;
      }
      let wait: Promise<void> | undefined;
      try {
        wait = body(buf, 0, n);
      } catch (err) {
        fail(err as Error);
        return false;
      }
      if (bodyDone()) {
        if (wait) wait.then(complete, fail);
        else complete();
        return false;
      }
      if (!wait) return true;
      wait.then(
        () => {
          if (!finished && !failure) sock.resume();
        },
        (err: Error) => fail(err),
      );
      return false;
    }

    const response: RawResponse = {
      get head() {
        return head!;
      },
      body: (write) =>
        new Promise<number>((resolveBody, rejectBody) => {
          settleBody = { resolve: resolveBody, reject: rejectBody };
          if (failure) return rejectBody(failure);
          // Bytes that came with the head: written first, synchronously or awaited, then the socket.
          const drain = async () => {
            for (let b = early.shift(); b; b = early.shift()) await write(b, 0, b.length);
            writer = write;
          };
          sock.pause();
          drain().then(
            () => {
              if (failure) return rejectBody(failure);
              if (finished) return resolveBody(received);
              if (bodyDone()) return complete();
              if (sock.readableEnded || sock.destroyed) {
                if (framing!.kind === 'close') return complete();
                return fail(new RawHttpError('TRUNCATED', 'the daemon closed the stream early'));
              }
              sock.resume();
            },
            (err: Error) => fail(err),
          );
        }),
      text: async (limit) => {
        const parts: Buffer[] = [];
        let n = 0;
        await response.body((b, s, e) => {
          n += e - s;
          if (n > limit) throw new RawHttpError('BAD_RESPONSE', 'response too large');
          parts.push(Buffer.from(b.subarray(s, e)));
        });
        return Buffer.concat(parts, n);
      },
      destroy: () => {
        if (!finished && !failure) {
          failure = new RawHttpError('ECONNRESET', 'destroyed');
          sock.destroy();
        }
      },
    };
  });
}
