/**
 * The MS-PCCRR client's own HTTP/1.1 transport on `net` (issue 25): keep-alive connections per
 * peer (capped), one request at a time per connection, requests beyond the cap queued in order,
 * the response head parsed by hand, and a body of declared length read by the kernel straight into
 * the exchange's buffer (`onread` with a buffer chosen per read: no per-chunk buffers or copies).
 * Chunked and close-delimited bodies are accepted too (bounded by the caller's onData).
 * No timers here: the client's one sweeper reads `progressAt`/`idleMs` of each exchange. The
 * request is a POST to PCCRR_PATH (MS-PCCRR 2.1: the transport is HTTP/1.1).
 */
import net from 'node:net';
import { PCCRR_PATH } from '../protocol/pccrr/codec.js';
import { CROWD_HEADER, CROWD_REQUEST_VALUE } from '../protocol/pchc/crowd.js';

/** What the transport drives: the client's exchange (see client.ts). */
export interface WireHandler {
  /** Set by the transport: called when the exchange stops (abort or timeout). */
  abortFn: ((err: Error) => void) | undefined;
  /** Wall clock (performance.now()) of the last progress: sent, connected, bytes read. */
  progressAt: number;
  /** How long without progress before the sweeper cuts the exchange off; 0: not on the wire yet. */
  idleMs: number;
  /** Why idleMs runs: 'connect' or 'headers' or 'body' (the error code of a cut-off). */
  idleWhat: string;
  /** Whether the exchange has settled; and whether it failed. */
  readonly settledYet: boolean;
  readonly failedYet: boolean;
  /** Response head: status and raw [name, value, ...] of the headers the client reads. False: failed. */
  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void): boolean;
  /** Where the next body bytes go (declared length), or undefined (chunks are handed to onData). */
  target(): Buffer | undefined;
  /** Body bytes written into target() by the kernel. */
  advance(n: number): void;
  /** Body bytes in a buffer the caller may reuse (copy if kept). False: failed. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

export interface WireOptions {
  connections: number;
  connectTimeoutMs: number;
  firstByteMs: (h: WireHandler) => number;
  /** Idle kept-alive connections are closed after this long (or the server's Keep-Alive hint - 1 s). */
  keepAliveMs?: number;
}

const MAX_HEAD = 16 * 1024;
const MAX_CHUNK_LINE = 1024;
const MAX_DRAIN = 64 * 1024;
/** Head reads (and chunked or close-delimited bodies) go through this one buffer: it is consumed
 * synchronously by the read callback, before any other socket reads. */
const SCRATCH = Buffer.allocUnsafe(8 * 1024);
const CRLFCRLF = Buffer.from('\r\n\r\n');

enum Phase {
  Idle,
  Head,
  Length,
  Chunked,
  Close,
  Drain,
}
enum Ck {
  Size,
  Data,
  DataEnd,
  Trailer,
}

function wireError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The transport of one client: a Link per peer address. */
export class PeerWire {
  private readonly links = new Map<string, Link>();
  private closed = false;
  constructor(readonly opts: WireOptions) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends `body` to `peer` (host:port, [v6]:port) for `h`; errors reach h.onError. */
  dispatch(peer: string, hostname: string, port: number, body: Buffer, crowd: boolean, h: WireHandler): void {
    if (this.closed) return h.onError(wireError('CLIENT_CLOSED', 'client closed'));
    let link = this.links.get(peer);
    if (!link) {
      link = new Link(this, peer, hostname, port);
      this.links.set(peer, link);
    }
    link.send(body, crowd, h);
  }

  /** @internal */
  forget(link: Link): void {
    if (this.links.get(link.peer) === link) this.links.delete(link.peer);
  }

  close(): void {
    this.closed = true;
    const links = [...this.links.values()];
    this.links.clear();
    for (const l of links) l.destroy();
  }

  /** Open connections (all peers): for tests. */
  connectionCount(): number {
    let n = 0;
    for (const l of this.links.values()) n += l.conns.size;
    return n;
  }
}

interface Pending {
  h: WireHandler;
  req: Buffer;
  /** Sent once already on a reused connection that closed without a byte of answer. */
  retried: boolean;
}

class Link {
  readonly conns = new Set<Conn>();
  private readonly queue: Pending[] = [];
  private qHead = 0;
  private readonly prefix: Buffer;
  private readonly crowdPrefix: Buffer;

  constructor(
    readonly wire: PeerWire,
    readonly peer: string,
    readonly hostname: string,
    readonly port: number,
  ) {
    const host = hostname.includes(':') ? `[${hostname}]:${port}` : `${hostname}:${port}`;
    const head = `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\n`;
    this.prefix = Buffer.from(`${head}Content-Length: `, 'latin1');
    this.crowdPrefix = Buffer.from(`${head}${CROWD_HEADER}: ${CROWD_REQUEST_VALUE}\r\nContent-Length: `, 'latin1');
  }

  send(body: Buffer, crowd: boolean, h: WireHandler): void {
    const pre = crowd ? this.crowdPrefix : this.prefix;
    const len = `${body.length}\r\n\r\n`;
    const req = Buffer.allocUnsafe(pre.length + len.length + body.length);
    pre.copy(req, 0);
    req.write(len, pre.length, 'latin1');
    body.copy(req, pre.length + len.length);
    const p: Pending = { h, req, retried: false };
    h.abortFn = () => this.unqueue(p);
    this.queue.push(p);
    this.pump();
  }

  private unqueue(p: Pending): void {
    const i = this.queue.indexOf(p, this.qHead);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** A reused connection closed before any answer: send once more on a fresh one, first in line. */
  retry(p: Pending): void {
    p.retried = true;
    p.h.abortFn = () => this.unqueue(p);
    p.h.idleMs = 0;
    this.queue.splice(this.qHead, 0, p);
  }

  /** Hands queued requests to idle connections, opening new ones up to the cap. */
  pump(): void {
    const now = performance.now();
    while (this.qHead < this.queue.length) {
      let conn: Conn | undefined;
      for (const c of this.conns) {
        if (c.phase !== Phase.Idle || c.current) continue;
        if (c.expiresAt <= now) {
          c.destroy();
          continue;
        }
        conn = c;
        break;
      }
      if (!conn) {
        if (this.conns.size >= this.wire.opts.connections) break;
        conn = new Conn(this);
        this.conns.add(conn);
      }
      const p = this.queue[this.qHead++]!;
      if (this.qHead > 64 && this.qHead * 2 > this.queue.length) {
        this.queue.splice(0, this.qHead);
        this.qHead = 0;
      }
      conn.start(p, now);
    }
    if (this.qHead === this.queue.length && this.qHead > 0) {
      this.queue.length = 0;
      this.qHead = 0;
    }
  }

  gone(c: Conn): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.qHead === this.queue.length) this.wire.forget(this);
    // Later in this task: an abort that stops several requests at once (the caller's signal) takes
    // the queued ones out first, rather than opening a connection for each in turn.
    else if (this.qHead < this.queue.length) queueMicrotask(() => this.pump());
  }

  destroy(): void {
    const q = this.queue.slice(this.qHead);
    this.queue.length = 0;
    this.qHead = 0;
    for (const c of [...this.conns]) c.destroy(wireError('CLIENT_CLOSED', 'client closed'));
    for (const p of q) p.h.onError(wireError('CLIENT_CLOSED', 'client closed'));
  }
}

class Conn {
  readonly sock: net.Socket;
  phase = Phase.Idle;
  current: Pending | undefined;
  expiresAt = Number.POSITIVE_INFINITY;
  private connecting = true;
  private dead = false;
  /** Completed exchanges on this connection. */
  private uses = 0;
  /** Bytes of the current answer read so far. */
  private got = 0;
  private carry: Buffer | undefined;
  private remaining = 0;
  private keepAlive = true;
  private keepAliveHintMs = Number.POSITIVE_INFINITY;
  private ck = Ck.Size;
  private ckLine = '';
  private inRead = false;

  constructor(private readonly link: Link) {
    this.sock = net.connect({
      host: link.hostname,
      port: link.port,
      noDelay: true,
      onread: {
        buffer: () => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array) => {
          this.onRead(n, buf);
          return true;
        },
      },
    });
    this.sock.on('connect', () => {
      this.connecting = false;
      const h = this.current?.h;
      if (h) {
        h.progressAt = performance.now();
        h.idleMs = this.link.wire.opts.firstByteMs(h);
        h.idleWhat = 'HEADERS_TIMEOUT';
      }
    });
    this.sock.on('end', () => this.ended());
    this.sock.on('error', (e) => this.destroy(e));
    this.sock.on('close', () => this.destroy());
  }

  start(p: Pending, now: number): void {
    this.current = p;
    this.phase = Phase.Head;
    this.got = 0;
    this.carry = undefined;
    const h = p.h;
    h.abortFn = () => {
      // A request on the wire cannot be taken back: its connection goes (unless the answer is being
      // read right now and the reader decides).
      if (!this.inRead) this.destroy();
    };
    h.progressAt = now;
    if (this.connecting) {
      h.idleMs = this.link.wire.opts.connectTimeoutMs;
      h.idleWhat = 'CONNECT_TIMEOUT';
    } else {
      h.idleMs = this.link.wire.opts.firstByteMs(h);
      h.idleWhat = 'HEADERS_TIMEOUT';
      this.sock.ref();
    }
    this.sock.write(p.req);
  }

  private nextBuffer(): Uint8Array {
    if (this.phase === Phase.Length && this.remaining > 0) {
      const t = this.current?.h.target();
      if (t && t.length >= this.remaining) return t.subarray(0, this.remaining);
    }
    return SCRATCH;
  }

  private onRead(n: number, buf: Uint8Array): void {
    const p = this.current;
    if (!p || this.dead) {
      // Bytes nobody asked for (one request at a time): the connection is out of step.
      this.destroy();
      return;
    }
    const h = p.h;
    this.got += n;
    h.progressAt = performance.now();
    this.inRead = true;
    try {
      if (buf !== SCRATCH) {
        // Read straight into the exchange's buffer.
        this.remaining -= n;
        h.advance(n);
        if (this.remaining === 0) this.finish();
      } else this.feed(SCRATCH.subarray(0, n));
    } finally {
      this.inRead = false;
    }
    if (this.current === undefined && !this.dead) this.idle();
  }

  private feed(data: Buffer): void {
    while (!this.dead) {
      const p = this.current;
      if (!p) {
        if (data.length > 0) this.destroy(); // more than the answer: out of step
        return;
      }
      const h = p.h;
      switch (this.phase) {
        case Phase.Head: {
          if (data.length === 0) return;
          if (this.carry) {
            data = Buffer.concat([this.carry, data]);
            this.carry = undefined;
          }
          const end = data.indexOf(CRLFCRLF);
          if (end < 0) {
            if (data.length > MAX_HEAD) return this.fail(wireError('HEAD_TOO_LARGE', 'response head too large'));
            this.carry = Buffer.from(data);
            return;
          }
          if (end > MAX_HEAD) return this.fail(wireError('HEAD_TOO_LARGE', 'response head too large'));
          const head = data.toString('latin1', 0, end);
          data = data.subarray(end + 4);
          if (!this.head(head, h)) return;
          break;
        }
        case Phase.Length: {
          if (data.length === 0) return;
          const take = Math.min(this.remaining, data.length);
          const piece = data.subarray(0, take);
          data = data.subarray(take);
          this.remaining -= take;
          if (h.target()) {
            piece.copy(h.target()!, 0);
            h.advance(take);
          } else if (!h.onData(Buffer.from(piece))) return this.fail();
          if (this.remaining === 0) this.finish();
          break;
        }
        case Phase.Chunked:
          if (data.length === 0) return;
          data = this.chunked(data, h);
          break;
        case Phase.Close:
          if (data.length === 0) return;
          if (!h.onData(Buffer.from(data))) return this.fail();
          return;
        case Phase.Drain: {
          if (data.length === 0) return;
          const take = Math.min(this.remaining, data.length);
          data = data.subarray(take);
          this.remaining -= take;
          if (this.remaining === 0) this.finish();
          break;
        }
        default:
          if (data.length > 0) this.destroy();
          return;
      }
    }
  }

  /** Parses a response head; false when the exchange or the connection ended. */
  private head(text: string, h: WireHandler): boolean {
    const r = parseResponseHead(text);
    if (typeof r === 'string') {
      this.fail(wireError('BAD_RESPONSE', r));
      return false;
    }
    const { status, raw, connection } = r;
    let length = r.length;
    const chunked = r.chunked;
    if (r.keepAliveMs !== undefined) this.keepAliveHintMs = r.keepAliveMs;
    if (status >= 100 && status < 200) {
      if (status === 101) {
        this.fail(wireError('BAD_RESPONSE', 'HTTP 101 to a POST'));
        return false;
      }
      return true; // an interim answer: the real one follows
    }
    if (chunked && length >= 0) {
      this.fail(wireError('BAD_RESPONSE', 'both Content-Length and chunked'));
      return false;
    }
    this.keepAlive = r.minor === 1 ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
    if (status === 204 || status === 304) length = 0;
    const ok = h.onHeaders(
      status,
      length >= 0 ? raw : raw.filter((_, i) => raw[i - (i % 2)] !== 'content-length'),
      noop,
    );
    h.idleWhat = 'BODY_TIMEOUT';
    if (!ok || h.settledYet) {
      // Failed on the head (HTTP error, too large): keep the connection only for a small known body.
      if (!this.keepAlive || chunked || length < 0 || length > MAX_DRAIN) {
        this.destroy();
        return false;
      }
      this.phase = Phase.Drain;
      this.remaining = length;
      if (length === 0) this.finish();
      return true;
    }
    if (chunked) {
      this.phase = Phase.Chunked;
      this.ck = Ck.Size;
      this.ckLine = '';
    } else if (length >= 0) {
      this.phase = Phase.Length;
      this.remaining = length;
      if (length === 0) this.finish();
    } else {
      this.phase = Phase.Close;
      this.keepAlive = false;
    }
    return true;
  }

  /** Chunked framing (RFC 9112 7.1); returns what is left of `data` after the answer ended. */
  private chunked(data: Buffer, h: WireHandler): Buffer {
    let i = 0;
    while (i < data.length && !this.dead && this.current) {
      switch (this.ck) {
        case Ck.Size:
        case Ck.Trailer:
        case Ck.DataEnd: {
          const nl = data.indexOf(10, i);
          const part = data.toString('latin1', i, nl < 0 ? data.length : nl);
          i = nl < 0 ? data.length : nl + 1;
          this.ckLine += part;
          if (this.ckLine.length > MAX_CHUNK_LINE) {
            this.fail(wireError('BAD_RESPONSE', 'chunk framing line too long'));
            return data.subarray(0, 0);
          }
          if (nl < 0) break;
          const line = this.ckLine.endsWith('\r') ? this.ckLine.slice(0, -1) : this.ckLine;
          this.ckLine = '';
          if (this.ck === Ck.DataEnd) {
            if (line !== '') {
              this.fail(wireError('BAD_RESPONSE', 'chunk data not followed by CRLF'));
              return data.subarray(0, 0);
            }
            this.ck = Ck.Size;
          } else if (this.ck === Ck.Trailer) {
            if (line === '') {
              this.finish();
              return data.subarray(i);
            }
          } else {
            const sz = /^([0-9a-fA-F]{1,8})(?:[ \t]*;.*)?$/.exec(line);
            if (!sz) {
              this.fail(wireError('BAD_RESPONSE', 'bad chunk size line'));
              return data.subarray(0, 0);
            }
            this.remaining = Number.parseInt(sz[1]!, 16);
            this.ck = this.remaining === 0 ? Ck.Trailer : Ck.Data;
          }
          break;
        }
        case Ck.Data: {
          const take = Math.min(this.remaining, data.length - i);
          if (!h.onData(Buffer.from(data.subarray(i, i + take)))) {
            this.fail();
            return data.subarray(0, 0);
          }
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.ck = Ck.DataEnd;
          break;
        }
      }
    }
    return data.subarray(i);
  }

  /** The whole answer is read: the exchange completes, the connection is free again. */
  private finish(): void {
    const p = this.current!;
    const drained = this.phase === Phase.Drain;
    this.current = undefined;
    this.phase = Phase.Idle;
    this.uses++;
    if (!this.keepAlive) this.dead = true;
    if (!p.h.settledYet) p.h.onComplete();
    // An answer that did not make sense (a lying Content-Length, say) may have more bytes coming
    // that would be read as the next answer: the connection is not used again.
    if (p.h.failedYet && !drained) this.dead = true;
    if (this.dead) this.destroy();
  }

  /** Free for the next request (called after the read that finished an answer). */
  private idle(): void {
    const ka = this.link.wire.opts.keepAliveMs ?? 30_000;
    this.expiresAt = performance.now() + Math.min(ka, this.keepAliveHintMs - 1000);
    this.sock.unref();
    this.link.pump();
  }

  /** The exchange failed on what the peer sent: the connection is out of step, so it goes. */
  private fail(err?: Error): void {
    const h = this.current?.h;
    this.current = undefined;
    if (h && err && !h.settledYet) h.onError(err);
    this.destroy();
  }

  private ended(): void {
    if (this.phase === Phase.Close && this.current) {
      this.dead = true;
      const p = this.current;
      this.current = undefined;
      this.phase = Phase.Idle;
      if (!p.h.settledYet) p.h.onComplete();
    }
    this.destroy(wireError('SOCKET_CLOSED', 'other side closed'));
  }

  destroy(err?: Error): void {
    const p = this.current;
    this.current = undefined;
    if (!this.dead || !this.sock.destroyed) {
      this.dead = true;
      this.sock.destroy();
    }
    if (p && !p.h.settledYet) {
      // A kept-alive connection the peer had closed before our request reached it: once more.
      if (this.uses > 0 && this.got === 0 && !p.retried && err && !this.link.wire.isClosed) {
        this.link.retry(p);
      } else p.h.onError(err ?? wireError('SOCKET_CLOSED', 'connection closed'));
    }
    if (this.link.conns.has(this)) this.link.gone(this);
  }
}

function noop(): void {}

/** A response head as the transport reads it (names of `raw` in lower case, values trimmed). */
export interface ResponseHead {
  minor: 0 | 1;
  status: number;
  /** Declared Content-Length, or -1. */
  length: number;
  chunked: boolean;
  /** Connection header value in lower case ('' when absent). */
  connection: string;
  /** Keep-Alive: timeout=N, in ms. */
  keepAliveMs?: number;
  /** [name, value, ...] of every header but Transfer-Encoding, Connection and Keep-Alive. */
  raw: string[];
}

const isOws = (c: number) => c === 32 || c === 9;

/** Whether text[from, to) is 1 to 15 ASCII digits. */
function allDigits(text: string, from: number, to: number): boolean {
  if (to <= from || to - from > 15) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * Parses a response head (without its final CRLF CRLF) in one pass over the string: status line
 * `HTTP/1.x NNN[ reason]`, header lines `name: value` split at CRLF (issue 25: no split of the head
 * into lines, no regular expression per line). Returns the reason it is malformed as a string.
 */
export function parseResponseHead(text: string): ResponseHead | string {
  let eol = text.indexOf('\r\n');
  if (eol < 0) eol = text.length;
  const c7 = text.charCodeAt(7);
  if (
    eol < 12 ||
    !text.startsWith('HTTP/1.') ||
    (c7 !== 48 && c7 !== 49) ||
    text.charCodeAt(8) !== 32 ||
    !allDigits(text, 9, 12) ||
    (eol > 12 && text.charCodeAt(12) !== 32)
  )
    return `not an HTTP/1.x status line: ${JSON.stringify(text.slice(0, Math.min(eol, 40)))}`;
  const head: ResponseHead = {
    minor: c7 === 49 ? 1 : 0,
    status: Number(text.slice(9, 12)),
    length: -1,
    chunked: false,
    connection: '',
    raw: [],
  };
  for (let start = eol + 2; start < text.length + 2 && eol < text.length; start = eol + 2) {
    eol = text.indexOf('\r\n', start);
    if (eol < 0) eol = text.length;
    const colon = text.indexOf(':', start);
    if (colon <= start || colon >= eol || isOws(text.charCodeAt(start))) return 'malformed response header line';
    let ne = colon;
    while (ne > start && isOws(text.charCodeAt(ne - 1))) ne--;
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
    while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
    const name = text.slice(start, ne).toLowerCase();
    switch (name) {
      case 'content-length': {
        const v = allDigits(text, vs, ve) ? Number(text.slice(vs, ve)) : Number.NaN;
        if (Number.isNaN(v) || (head.length >= 0 && v !== head.length))
          return `bad Content-Length ${JSON.stringify(text.slice(vs, Math.min(ve, vs + 20)))}`;
        head.length = v;
        head.raw.push(name, text.slice(vs, ve));
        break;
      }
      case 'transfer-encoding': {
        const value = text.slice(vs, ve);
        head.chunked = /(?:^|,)\s*chunked\s*$/i.test(value);
        if (!head.chunked) return `unsupported Transfer-Encoding ${JSON.stringify(value.slice(0, 20))}`;
        break;
      }
      case 'connection':
        head.connection = text.slice(vs, ve).toLowerCase();
        break;
      case 'keep-alive': {
        const t = /timeout=(\d+)/i.exec(text.slice(vs, ve));
        if (t) head.keepAliveMs = Number(t[1]) * 1000;
        break;
      }
      default:
        head.raw.push(name, text.slice(vs, ve));
    }
  }
  return head;
}
