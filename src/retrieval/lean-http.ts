/**
 * A lean HTTP/1.1 server on `net` for exactly what MS-PCCRR needs (issue 25): POST to the fixed
 * path with a Content-Length body, keep-alive and pipelining (answered in order, one at a time per
 * connection), `Expect: 100-continue`. Every other request gets the answer node:http's server gave
 * (400 / 404 / 405 / 411 / 413 / 417 / 431, the connection closed after it). The request head is
 * parsed in place from the socket's chunk, a body that arrived with its head is a view of that chunk
 * (no copy), and the response goes out as one corked write of [head, ...body parts]. Deadlines
 * (header, upload, keep-alive idle) are checked by one sweep per server, not a timer per request.
 * The MS-PCCRR semantics stay in server.ts / block-responder.ts; protocol/pccrr.md, "Server behaviour".
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { sourceKey } from './fair-share.js';

/** Request heads larger than this are answered 431 (node:http's default limit). */
export const MAX_HEAD_BYTES = 16_384;
/** An idle keep-alive connection is closed after this (node:http's default keepAliveTimeout). */
export const KEEP_ALIVE_MS = 5000;
/** How long a closing connection is read (and dropped) for before it is destroyed. */
const LINGER_MS = 2000;
/** Bytes of later (pipelined) requests buffered while one is answered; beyond it reading pauses. */
const PIPELINE_BYTES = 65_536;

const REASONS: Record<number, string> = {
  100: 'Continue',
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  411: 'Length Required',
  413: 'Payload Too Large',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  505: 'HTTP Version Not Supported',
};

/** A parsed request head, or the status it is refused with before any handler sees it. */
export interface RequestHead {
  method: string;
  /** The request-target as sent (origin form: path and query). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: 0 | 1;
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  /** A Transfer-Encoding header was sent (chunked bodies are not supported: 411). */
  transferEncoding: boolean;
  /** The Expect header's value, lowercased, if any. */
  expect: string | undefined;
  /** Connection: close was asked for. */
  close: boolean;
  /** Connection: keep-alive was asked for (matters for HTTP/1.0). */
  keepAlive: boolean;
  /** Every header, names lowercased (only when asked for: the hosted cache's hook reads them). */
  headers: IncomingHttpHeaders | undefined;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Control characters other than HTAB may not appear in a head (CR and LF only as line ends).
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const CTL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Parses the head in `s` (latin1, without the final CRLF CRLF). Returns the status to refuse it
 * with (400 malformed, 505 version) when it is not a well-formed HTTP/1.x request head.
 */
export function parseRequestHead(s: string, wantHeaders: boolean): RequestHead | number {
  let eol = s.indexOf('\r\n');
  if (eol < 0) eol = s.length;
  const line = s.slice(0, eol);
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || line.indexOf(' ', sp2 + 1) >= 0) return 400;
  const method = line.slice(0, sp1);
  const target = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!TOKEN.test(method) || CTL.test(line)) return 400;
  let minor: 0 | 1;
  if (version === 'HTTP/1.1') minor = 1;
  else if (version === 'HTTP/1.0') minor = 0;
  else return /^HTTP\/\d\.\d$/.test(version) ? 505 : 400;
  const head: RequestHead = {
    method,
    target,
    minor,
    contentLength: -1,
    transferEncoding: false,
    expect: undefined,
    close: false,
    keepAlive: false,
    headers: wantHeaders ? {} : undefined,
  };
  let at = eol + 2;
  while (at < s.length) {
    let end = s.indexOf('\r\n', at);
    if (end < 0) end = s.length;
    const colon = s.indexOf(':', at);
    if (colon <= at || colon >= end) return 400; // no name, or no colon (obs-fold included)
    const name = s.slice(at, colon);
    const value = s.slice(colon + 1, end).trim();
    at = end + 2;
    if (!TOKEN.test(name) || CTL.test(value)) return 400;
    const key = name.length <= 17 ? name.toLowerCase() : name; // the names below are at most 17 long
    if (key === 'content-length') {
      if (head.contentLength >= 0 || !/^\d{1,15}$/.test(value)) return 400; // duplicate or not a number
      head.contentLength = Number(value);
    } else if (key === 'transfer-encoding') head.transferEncoding = true;
    else if (key === 'expect') head.expect = value.toLowerCase();
    else if (key === 'connection') {
      for (const tok of value.toLowerCase().split(',')) {
        const t = tok.trim();
        if (t === 'close') head.close = true;
        else if (t === 'keep-alive') head.keepAlive = true;
      }
    }
    if (head.headers) {
      const k = name.toLowerCase();
      const prev = head.headers[k];
      head.headers[k] = prev === undefined ? value : `${String(prev)}, ${value}`;
    }
  }
  if (head.contentLength >= 0 && head.transferEncoding) return 400; // both framings: refused (RFC 9112 6.1)
  return head;
}

let dateSecond = -1;
let dateText = '';
/** The Date header's value, made at most once a second. */
function httpDate(): string {
  const now = Date.now();
  const sec = Math.floor(now / 1000);
  if (sec !== dateSecond) {
    dateSecond = sec;
    dateText = new Date(sec * 1000).toUTCString();
  }
  return dateText;
}

/** The response to one request, as the MS-PCCRR layer decides it. */
export interface LeanAnswer {
  status: number;
  /** The body in pieces, written in order; none for an empty body. */
  parts?: Buffer[];
  length?: number;
  /** Extra response headers (the hosted cache's PeerDist-Crowd answer). */
  headers?: Record<string, string>;
  /** Close the connection after this response. */
  close?: boolean;
  /** Extra header lines, already formatted (`Allow: POST\r\n`). */
  extraLines?: string;
}

/** What the lean server asks of the MS-PCCRR layer (server.ts). */
export interface LeanHandler {
  /** Whether request heads should carry every header (for a responseHeaders hook). */
  wantHeaders: boolean;
  uploadTimeoutMs: number;
  headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this (default KEEP_ALIVE_MS). */
  keepAliveMs?: number;
  /**
   * A request head is in. Returns a refusal to send at once (404, 405, 411, 413, 400 for a short
   * body; the connection is closed after it), or undefined to read `head.contentLength` bytes of body.
   */
  route(head: RequestHead): LeanAnswer | undefined;
  /**
   * The body is in: answer it. `exchange` is the connection's record: `gone()` says whether the
   * answer is no longer wanted (connection closed or timed out).
   */
  answer(body: Buffer, head: RequestHead, exchange: LeanExchange): Promise<LeanAnswer | undefined>;
  /** The upload deadline of a request expired (the connection is then destroyed). */
  timedOut(remote: string | undefined): void;
  /** A response was written with this status (statistics). */
  responded(status: number): void;
}

/** One connection's view for the handler. */
export interface LeanExchange {
  readonly socket: Socket;
  /** The connection's source (fair-share.ts sourceKey), computed once per connection. */
  readonly source: string;
  /** Whether the answer is no longer wanted (the connection closed or timed out). */
  readonly gone: () => boolean;
  /** Called once when the request in progress ends (answered, timed out or the connection closed). */
  onEnd: (() => void) | undefined;
}

enum State {
  /** Waiting for the first byte of a request (fresh connection or keep-alive). */
  Idle,
  /** Some of a request head is in. */
  Head,
  /** Reading a request body. */
  Body,
  /** The request is being answered. */
  Busy,
  /** Closing after the last response. */
  Closing,
}

const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

class Connection implements LeanExchange {
  state = State.Idle;
  deadline: number;
  pending: Buffer | undefined;
  head: RequestHead | undefined;
  body: Buffer | undefined;
  bodyAt = 0;
  closeAfter = false;
  readEnded = false;
  paused = false;
  onEnd: (() => void) | undefined;
  readonly source: string;
  private readonly written = () => this.afterWrite();
  private readonly keepAliveMs: number;
  /** `Keep-Alive: timeout=N` (whole seconds, at least 1): clients stop reusing the connection before we close it. */
  private readonly keepAliveHeader: string;

  constructor(
    readonly socket: Socket,
    private readonly h: LeanHandler,
    conns: Set<Connection>,
  ) {
    this.source = sourceKey(socket.remoteAddress);
    this.keepAliveMs = h.keepAliveMs ?? KEEP_ALIVE_MS;
    this.keepAliveHeader = `Keep-Alive: timeout=${Math.max(1, Math.floor(this.keepAliveMs / 1000))}\r\n`;
    this.deadline = Date.now() + h.headersTimeoutMs;
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('end', () => {
      this.readEnded = true;
      if (this.state === State.Body)
        socket.destroy(); // the rest of the body will never come
      else if (this.state === State.Closing) socket.destroySoon();
      else this.pump();
    });
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      conns.delete(this);
      this.endExchange();
    });
  }

  readonly gone = (): boolean => this.socket.destroyed;

  private endExchange(): void {
    const f = this.onEnd;
    if (f) {
      this.onEnd = undefined;
      f();
    }
  }

  private onData(chunk: Buffer): void {
    if (this.state === State.Body) {
      const body = this.body!;
      const n = Math.min(chunk.length, body.length - this.bodyAt);
      chunk.copy(body, this.bodyAt, 0, n);
      this.bodyAt += n;
      if (n < chunk.length) this.pending = chunk.subarray(n);
      if (this.bodyAt === body.length) this.dispatch(body);
      return;
    }
    if (this.state === State.Closing) return; // read and dropped (see closeSoon)
    this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    if (this.state === State.Busy) {
      if (this.pending.length > PIPELINE_BYTES && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
      return;
    }
    this.pump();
  }

  /** Parses and starts what the buffered bytes hold, while no request is being answered. */
  pump(): void {
    while (!this.socket.destroyed && (this.state === State.Idle || this.state === State.Head)) {
      let buf = this.pending;
      if (this.state === State.Idle && buf) {
        // Empty lines before a request line are ignored (RFC 9112 2.2).
        let skip = 0;
        while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
        if (skip > 0) buf = this.pending = skip === buf.length ? undefined : buf.subarray(skip);
        if (buf && !(buf.length === 1 && buf[0] === 13)) {
          this.state = State.Head;
          this.deadline = Date.now() + this.h.headersTimeoutMs;
        }
      }
      if (!buf || this.state === State.Idle) {
        if (this.readEnded) this.closeSoon();
        return;
      }
      const end = buf.indexOf(CRLF2);
      if (end < 0 || end + 4 > MAX_HEAD_BYTES) {
        if (end >= 0 || buf.length > MAX_HEAD_BYTES) return this.refuse(431);
        if (this.readEnded) this.socket.destroy(); // an unfinished head: nothing to answer
        return;
      }
      const text = buf.toString('latin1', 0, end);
      const rest = end + 4;
      this.pending = rest === buf.length ? undefined : buf.subarray(rest);
      const head = parseRequestHead(text, this.h.wantHeaders);
      if (typeof head === 'number') return this.refuse(head);
      if (head.expect !== undefined && head.minor === 1 && head.expect !== '100-continue') return this.refuse(417);
      if (head.close || (head.minor === 0 && !head.keepAlive)) this.closeAfter = true;
      const no = this.h.route(head);
      if (no) {
        this.closeAfter = true;
        this.send(no);
        return;
      }
      this.head = head;
      // The upload deadline: the whole exchange (body in, block read, response out) from here.
      this.deadline = Date.now() + this.h.uploadTimeoutMs;
      const len = head.contentLength;
      const have = this.pending?.length ?? 0;
      if (have >= len) {
        const p = this.pending!;
        this.pending = have === len ? undefined : p.subarray(len);
        this.dispatch(p.subarray(0, len));
        return;
      }
      if (head.expect === '100-continue' && head.minor === 1) this.socket.write(CONTINUE);
      const body = Buffer.allocUnsafe(len);
      if (have > 0) this.pending!.copy(body);
      this.pending = undefined;
      this.body = body;
      this.bodyAt = have;
      this.state = State.Body;
      if (this.readEnded) this.socket.destroy(); // the body will never come
      return;
    }
  }

  private dispatch(body: Buffer): void {
    this.state = State.Busy;
    this.body = undefined;
    const head = this.head!;
    this.h.answer(body, head, this).then(
      (a) => {
        if (this.socket.destroyed || this.state !== State.Busy) return;
        if (!a) return this.socket.destroy();
        this.send(a);
      },
      () => this.socket.destroy(),
    );
  }

  /** A refusal before any handler: the answer node:http's parser gave, then the connection closes. */
  private refuse(status: number): void {
    this.closeAfter = true;
    this.send({ status }, false);
  }

  /** `counted`: a handler's answer (statistics); refusals by the parser are not counted, as before. */
  private send(a: LeanAnswer, counted = true): void {
    const close = this.closeAfter || !!a.close;
    this.closeAfter = close;
    if (counted) this.h.responded(a.status);
    let text = `HTTP/1.1 ${a.status} ${REASONS[a.status] ?? 'Unknown'}\r\n`;
    if (a.parts) text += 'Content-Type: application/octet-stream\r\n';
    text += `Content-Length: ${a.length ?? 0}\r\nDate: ${httpDate()}\r\n`;
    if (a.extraLines) text += a.extraLines;
    if (a.headers) for (const k in a.headers) text += `${k}: ${a.headers[k]}\r\n`;
    text += close
      ? 'Connection: close\r\n\r\n'
      : this.head?.minor === 0
        ? `Connection: keep-alive\r\n${this.keepAliveHeader}\r\n`
        : `${this.keepAliveHeader}\r\n`;
    this.state = State.Busy;
    const s = this.socket;
    const parts = a.parts;
    if (!parts || parts.length === 0) {
      s.write(text, 'latin1', this.written);
      return;
    }
    s.cork();
    s.write(text, 'latin1');
    const last = parts.length - 1;
    for (let i = 0; i < last; i++) s.write(parts[i]!);
    s.write(parts[last]!, this.written);
    s.uncork();
  }

  /** The response is with the kernel: the exchange ends; the next pipelined request may start. */
  private afterWrite(): void {
    this.endExchange();
    if (this.socket.destroyed) return;
    this.head = undefined;
    if (this.closeAfter) return this.closeSoon();
    this.state = State.Idle;
    this.deadline = Date.now() + this.keepAliveMs;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.pump();
  }

  /**
   * Ends our side and reads (and drops) whatever the client still sends until it closes its side or
   * LINGER_MS pass: closing with unread bytes would reset the connection, and a reset can discard
   * the answers the client has not read yet (the pipelined responses before a refusal).
   */
  private closeSoon(): void {
    this.state = State.Closing;
    this.pending = undefined;
    this.deadline = Date.now() + LINGER_MS;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.socket.end();
    if (this.readEnded) this.socket.destroySoon();
  }

  /** Called by the sweep: acts on an expired deadline. */
  expire(now: number): void {
    if (now < this.deadline) return;
    if (this.state === State.Body || this.state === State.Busy) {
      this.h.timedOut(this.socket.remoteAddress);
      this.endExchange();
      this.socket.destroy();
    } else if (this.state === State.Head) {
      // Slow headers (slowloris): 408, as node:http answers, and the connection closes.
      this.closeAfter = true;
      this.send({ status: 408 }, false);
      this.deadline = now + LINGER_MS;
    } else this.socket.destroy(); // idle keep-alive, or closing too slowly
  }
}

export interface LeanServer {
  readonly server: Server;
  /** Open connections now. */
  readonly connections: number;
  /** Destroys every connection and stops the sweep (the listener is closed by the caller). */
  destroyAll(): void;
}

/**
 * A net.Server speaking the lean HTTP/1.1 above. `admit` is asked first for every connection (the
 * ConnectionGuard); a connection it refuses was destroyed by it.
 */
export function createLeanServer(h: LeanHandler, admit: (s: Socket) => boolean): LeanServer {
  const conns = new Set<Connection>();
  // allowHalfOpen: a client may send its request and close its side; it still gets its answer.
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    if (s.destroyed || !admit(s)) return;
    conns.add(new Connection(s, h, conns));
  });
  const shortest = Math.min(h.uploadTimeoutMs, h.headersTimeoutMs, h.keepAliveMs ?? KEEP_ALIVE_MS);
  const every = Math.max(25, Math.min(1000, Math.floor(shortest / 4)));
  const sweep = setInterval(() => {
    if (conns.size === 0) return;
    const now = Date.now();
    for (const c of conns) c.expire(now);
  }, every);
  sweep.unref();
  server.on('close', () => clearInterval(sweep));
  return {
    server,
    get connections() {
      return conns.size;
    },
    destroyAll() {
      clearInterval(sweep);
      for (const c of conns) c.socket.destroy();
    },
  };
}
