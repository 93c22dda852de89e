/**
 * MS-PCCRR block server. Routes only POST /116B50EB-ECE2-41ac-8429-9F9E963361B7/ (case-insensitive);
 * protocol semantics live in block-responder.ts. listen() serves over the lean HTTP/1.1 server on
 * `net` (lean-http.ts; issue 25) or node:http; `handler` mounts in another node:http server (the
 * hosted cache). See protocol/pccrr.md.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { createLogger, type Logger } from '../util/log.js';
import { MAX_REQUEST_SIZE, MIN_MESSAGE_SIZE, PCCRR_PATH } from '../protocol/pccrr/codec.js';
import { respond, type BlockSource, type Reply, type ServedAlgo } from './block-responder.js';
import {
  createLeanServer,
  type LeanAnswer,
  type LeanExchange,
  type LeanHandler,
  type LeanServer,
  type RequestHead,
} from './lean-http.js';
import { TokenBucket } from './rate-limit.js';
import { ConnectionGuard, FairSlots, FairUploadQueue, sourceKey } from './fair-share.js';
import { SealedBlocks, SEALED_BUDGET_BYTES } from './sealed-blocks.js';
import { SealWorker } from './seal-worker.js';

export type { BlockSource } from './block-responder.js';

const PCCRR_PATH_LOWER = PCCRR_PATH.toLowerCase();

export interface RetrievalServerOptions {
  source: BlockSource;
  host?: string;
  port?: number;
  /**
   * Requests in progress at most; beyond it a request gets the empty (busy) response when its
   * source already has its share of the slots (default 64). Sources: fair-share.ts.
   */
  maxConcurrent?: number;
  /** A request not completed within this time is cut off (default 15000 ms). */
  uploadTimeoutMs?: number;
  /** Algorithm we encrypt blocks with (default 3, AES-256 with all of Kp). Never plaintext. */
  cryptoAlgo?: ServedAlgo;
  /**
   * Memory for encrypted blocks kept for reuse (a block several peers ask for is read and encrypted
   * once; sealed-blocks.ts), default 16 MiB; 0 turns it off.
   */
  sealedBudgetBytes?: number;
  /**
   * Encrypt served blocks on a worker thread, in memory shared with it (seal-worker.ts; default
   * false): the block-sized ciphertext of every served block is then made in the worker's heap, not
   * this one (issue 25: it drove this heap's full collections). Off by default until measured end
   * to end on a quiet machine: on a busy one each block waits for one more thread to be scheduled
   * (BENCHMARKS.md, issue 25, "blocks encrypted on a worker thread").
   */
  sealWorker?: boolean;
  /**
   * Upload cap in bytes/s on block responses (token bucket); undefined or 0 = unlimited. Only what
   * this server sends is capped: the same machine's downloads from peers never go through it.
   */
  uploadRateLimit?: number;
  /** The bucket itself (tests inject one with a fake clock); overrides uploadRateLimit. */
  bucket?: TokenBucket;
  /** A block response that would wait longer than this for the cap is answered "busy" instead (default 3000 ms). */
  maxThrottleWaitMs?: number;
  /** How the server waits for the cap (default setTimeout; tests inject). */
  sleep?: (ms: number) => Promise<void>;
  /**
   * Open peer connections at most (default unlimited). When all are taken, a host holding fewer
   * takes a slot from the host holding the most (fair-share.ts, ConnectionGuard).
   */
  maxConnections?: number;
  /** Open connections one source (IPv4 address, IPv6 /64) may hold (default: maxConnections). */
  maxConnectionsPerSource?: number;
  /**
   * Asked before every request: a string is the reason we do not serve peers right now (on
   * battery, ...); every block, block-list and segment-list request is then answered as busy.
   */
  notServing?: () => string | undefined;
  /**
   * Extra headers for a request's 200 response, asked once its body is in (a hosted cache's
   * `PeerDist-Crowd` answer, protocol/pchc.md). Called with the raw request body, which may be
   * malformed.
   */
  responseHeaders?: (req: RetrievalRequestView, body: Buffer) => Record<string, string> | undefined;
  /**
   * What listen() serves with: 'lean' (default), the MS-PCCRR-only HTTP/1.1 server on `net`
   * (lean-http.ts: no node:http objects per request), or 'node', node:http with `handler` (the
   * transport before issue 25; kept for side-by-side measurements). The same guards, timeouts and
   * answers either way; `handler` mounts in another node:http server whichever is chosen.
   */
  transport?: 'lean' | 'node';
  /** The lean transport closes a keep-alive connection idle this long (default 5000 ms, as node:http). */
  keepAliveTimeoutMs?: number;
  logger?: Logger;
}

/** What a responseHeaders hook sees of a request (an IncomingMessage is one). */
export interface RetrievalRequestView {
  /** Header names lowercased. */
  headers: IncomingHttpHeaders;
  socket: { remoteAddress?: string };
}

export interface RetrievalStats {
  /** HTTP requests received (any path/method). */
  requests: number;
  /** MSG_BLK responses carrying a block. */
  blocksServed: number;
  /** Plaintext bytes of the blocks served. */
  bytesServed: number;
  /** MSG_BLK responses with SizeOfBlock 0 because the block or segment is not held. */
  blocksMissing: number;
  /** Empty responses sent because we were at the concurrency cap. */
  busy: number;
  /** Requests answered 400 because the body was not a valid PCCRR request. */
  malformed: number;
  byStatus: Record<number, number>;
  /** Block responses delayed by the upload cap, and the total delay (ms). */
  throttled: number;
  throttledMs: number;
  /** Block requests answered busy because the upload cap's queue was too long. */
  busyRateLimited: number;
  /** Requests answered busy because serving was off (notServing: on battery, ...). */
  notServing: number;
  /** Connections closed at once (their source at its cap, or every slot taken and shared fairly). */
  connectionsDropped: number;
  /** Connections closed to give their slot to a source holding fewer. */
  connectionsEvicted: number;
  /** Open peer connections now, and the sources (IPv4 addresses, IPv6 /64s) they come from. */
  connections: number;
  sources: number;
  /** Block responses waiting for the upload cap now. */
  uploadWaiting: number;
  /**
   * Blocks read, verified and encrypted for peers (sealed), and block requests answered from the
   * sealed-block memory instead (or joined to a sealing in progress): sealed-blocks.ts.
   */
  blocksSealed: number;
  sealedHits: number;
  /** Of the blocks sealed, those encrypted by the seal worker (option sealWorker; seal-worker.ts). */
  sealedInWorker: number;
}

export interface RetrievalServer {
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  stats(): RetrievalStats;
  /** The request handler, for mounting in another node:http server. */
  handler(req: IncomingMessage, res: ServerResponse): void;
}

export function createRetrievalServer(opts: RetrievalServerOptions): RetrievalServer {
  const maxConcurrent = opts.maxConcurrent ?? 64;
  const uploadTimeoutMs = opts.uploadTimeoutMs ?? 15_000;
  const cryptoAlgo: ServedAlgo = opts.cryptoAlgo ?? 3;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1)
    throw new RangeError(`maxConcurrent must be a positive integer, got ${maxConcurrent}`);
  if (!(uploadTimeoutMs > 0)) throw new RangeError(`uploadTimeoutMs must be positive, got ${uploadTimeoutMs}`);
  if (opts.keepAliveTimeoutMs !== undefined && !(opts.keepAliveTimeoutMs > 0))
    throw new RangeError(`keepAliveTimeoutMs must be positive, got ${opts.keepAliveTimeoutMs}`);
  if (![1, 2, 3].includes(cryptoAlgo))
    throw new RangeError(`cryptoAlgo must be 1, 2 or 3 (peers never get plaintext), got ${cryptoAlgo}`);
  const log = opts.logger ?? createLogger({ component: 'pccrr-server' });
  const st: RetrievalStats = {
    requests: 0,
    blocksServed: 0,
    bytesServed: 0,
    blocksMissing: 0,
    busy: 0,
    malformed: 0,
    byStatus: {},
    throttled: 0,
    throttledMs: 0,
    busyRateLimited: 0,
    notServing: 0,
    connectionsDropped: 0,
    connectionsEvicted: 0,
    connections: 0,
    sources: 0,
    uploadWaiting: 0,
    blocksSealed: 0,
    sealedHits: 0,
    sealedInWorker: 0,
  };
  const rate = opts.uploadRateLimit;
  if (rate !== undefined && (!Number.isFinite(rate) || rate < 0))
    throw new RangeError(`uploadRateLimit must be a non-negative number, got ${rate}`);
  const bucket = opts.bucket ?? (rate ? new TokenBucket({ rate }) : undefined);
  const maxThrottleWaitMs = opts.maxThrottleWaitMs ?? 3000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  // Connection slots, request slots and the upload budget are shared fairly between sources.
  const guard = new ConnectionGuard({
    maxConnections: opts.maxConnections,
    maxPerSource: opts.maxConnectionsPerSource,
  });
  const slots = new FairSlots(maxConcurrent);
  const uploads = bucket ? new FairUploadQueue(bucket, maxThrottleWaitMs, sleep) : undefined;
  // A block several peers ask for is read and encrypted once (issue 25, protocol/pccrr.md).
  const sealed = new SealedBlocks(opts.sealedBudgetBytes ?? SEALED_BUDGET_BYTES);
  // Slots for what is being sent and what the sealed memory keeps (128 KiB each), made as needed.
  const sealer = opts.sealWorker
    ? new SealWorker({ maxSlots: maxConcurrent + Math.ceil(sealed.budgetBytes / 131_072) + 16 })
    : undefined;
  let server: NetServer | undefined;
  let leanServer: LeanServer | undefined;
  const sockets = new Set<Socket>();
  const transport = opts.transport ?? 'lean';

  /** `body`: the response body in pieces (written in one tick: node corks them into one writev). */
  const finish = (res: ServerResponse, status: number, body?: { parts: Buffer[]; length: number }, close = false) => {
    st.byStatus[status] = (st.byStatus[status] ?? 0) + 1;
    if (close) res.setHeader('Connection', 'close');
    if (body) {
      res.writeHead(status, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
      const last = body.parts.length - 1;
      for (let i = 0; i < last; i++) res.write(body.parts[i]);
      res.end(body.parts[last]);
    } else {
      res.writeHead(status, { 'Content-Length': 0 });
      res.end();
    }
  };

  /**
   * What a request head is refused with before its body is read (both transports): 404 other paths
   * (case-insensitive, query ignored), 405 other methods, 411 no Content-Length (chunked bodies),
   * 413 over MAX_REQUEST_SIZE, 400 shorter than a message header. Undefined: read the body.
   */
  const refusal = (
    method: string | undefined,
    url: string,
    length: string | number | undefined,
  ): number | undefined => {
    st.requests++;
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path.length !== PCCRR_PATH.length || path.toLowerCase() !== PCCRR_PATH_LOWER) return 404;
    if (method !== 'POST') return 405;
    if (length === undefined || (typeof length === 'string' && !/^\d+$/.test(length))) return 411;
    const n = Number(length);
    if (n > MAX_REQUEST_SIZE) return 413;
    if (n < MIN_MESSAGE_SIZE) {
      st.malformed++;
      return 400;
    }
    return undefined;
  };

  /** The answer to one request body: MS-PCCRR (block-responder.ts), then the upload cap. */
  const exchange = async (body: Buffer, source: string, busy: boolean, gone: () => boolean): Promise<Reply> => {
    const why = opts.notServing?.();
    if (why !== undefined) st.notServing++;
    const r = await respond(body, {
      source: opts.source,
      cryptoAlgo,
      busy: busy || why !== undefined,
      sealed,
      sealer,
    });
    if (!uploads || !r.ok || r.outcome !== 'served') return r;
    // The upload cap, shared fairly between sources: wait our turn, or say busy when our
    // source's fair wait is too long (the peer backs off).
    const waited = await uploads.wait(source, r.length, gone);
    if (waited === undefined) {
      r.release?.();
      st.busyRateLimited++;
      return respond(body, { source: opts.source, cryptoAlgo, busy: true });
    }
    if (waited > 0) {
      st.throttled++;
      st.throttledMs += waited;
    }
    return r;
  };

  /** Counts a reply that is about to be sent; its HTTP status (400: not a valid request). */
  const settle = (r: Reply): 200 | 400 => {
    if (!r.ok) {
      st.malformed++;
      log.debug('malformed request', { field: r.error.field, error: r.error });
      return 400;
    }
    if (r.outcome === 'served') {
      st.blocksServed++;
      st.bytesServed += r.blockBytes;
    } else if (r.outcome === 'missing') st.blocksMissing++;
    else if (r.outcome === 'busy') st.busy++;
    return 200;
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const refused = refusal(req.method, req.url ?? '', req.headers['content-length']);
    if (refused !== undefined) {
      if (refused === 405) res.setHeader('Allow', 'POST');
      return finish(res, refused, undefined, true);
    }
    const length = Number(req.headers['content-length']);
    const source = sourceKey(req.socket.remoteAddress);
    const slot = slots.take(source);
    const busy = slot.over;
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      slot.release();
      clearTimeout(timer);
    };
    // Upload timer: the whole exchange (receiving, reading the block, sending) must finish in time.
    const timer = setTimeout(() => {
      timedOut(req.socket.remoteAddress);
      release();
      req.socket.destroy();
    }, uploadTimeoutMs);
    res.on('close', release);

    const chunks: Buffer[] = [];
    let received = 0;
    req.on('data', (c: Buffer) => {
      received += c.length;
      if (received > length) {
        req.socket.destroy(); // cannot happen with a well-behaved parser; never buffer beyond the cap
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => release());
    req.on('end', () => {
      if (done) return;
      const body = Buffer.concat(chunks, received);
      const extra = opts.responseHeaders?.(req, body);
      exchange(body, source, busy, () => done || res.destroyed).then(
        (r) => {
          if (r.ok && r.release) {
            if (done || res.destroyed) return r.release();
            res.once('close', r.release); // the shared memory is given back once written (or not)
          }
          if (done || res.destroyed) return;
          const status = settle(r);
          if (!r.ok) return finish(res, status, undefined, true);
          if (extra) for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
          finish(res, status, r);
        },
        (e: unknown) => {
          log.error('block source failed', { error: e });
          if (!done && !res.destroyed) finish(res, 500, undefined, true);
        },
      );
    });
  };

  const timedOut = (remote: string | undefined) =>
    log.warn('upload timer expired, cutting off client', { remote, timeoutMs: uploadTimeoutMs });
  const headersTimeoutMs = Math.min(uploadTimeoutMs, 60_000);

  /** The lean transport's view of the same server (lean-http.ts). */
  const lean: LeanHandler = {
    wantHeaders: opts.responseHeaders !== undefined,
    uploadTimeoutMs,
    headersTimeoutMs,
    keepAliveMs: opts.keepAliveTimeoutMs,
    route(head: RequestHead): LeanAnswer | undefined {
      const status = refusal(
        head.method,
        head.target,
        head.transferEncoding || head.contentLength < 0 ? undefined : head.contentLength,
      );
      if (status === undefined) return undefined;
      return { status, close: true, extraLines: status === 405 ? 'Allow: POST\r\n' : undefined };
    },
    async answer(body: Buffer, head: RequestHead, ex: LeanExchange): Promise<LeanAnswer | undefined> {
      const slot = slots.take(ex.source);
      ex.onEnd = slot.release;
      const extra = opts.responseHeaders?.({ headers: head.headers ?? {}, socket: ex.socket }, body);
      let r: Reply;
      try {
        r = await exchange(body, ex.source, slot.over, ex.gone);
      } catch (e) {
        log.error('block source failed', { error: e });
        return { status: 500, close: true };
      }
      if (r.ok && r.release) {
        if (ex.gone()) {
          r.release();
          return undefined;
        }
        // The shared memory is given back when the exchange ends (written, timed out or closed).
        const { release } = r;
        const before = ex.onEnd;
        ex.onEnd = () => {
          before?.();
          release();
        };
      }
      if (ex.gone()) return undefined;
      const status = settle(r);
      if (!r.ok) return { status, close: true };
      return { status, parts: r.parts, length: r.length, headers: extra };
    },
    timedOut,
    responded(status: number) {
      st.byStatus[status] = (st.byStatus[status] ?? 0) + 1;
    },
  };

  return {
    handler,
    stats: () => {
      const g = guard.stats();
      return {
        ...st,
        byStatus: { ...st.byStatus },
        connectionsDropped: g.dropped,
        connectionsEvicted: g.evicted,
        connections: g.connections,
        sources: g.sources,
        uploadWaiting: uploads?.waiting ?? 0,
        blocksSealed: sealed.sealedCount,
        sealedHits: sealed.hits,
        sealedInWorker: sealer?.encrypted ?? 0,
      };
    },
    listen: () =>
      new Promise((resolve, reject) => {
        let srv: NetServer;
        if (transport === 'lean') {
          leanServer = createLeanServer(lean, (s) => guard.admit(s));
          srv = leanServer.server;
        } else {
          // Bound slow request headers too (the upload timer starts once the headers are in).
          const hs = createServer(
            {
              headersTimeout: headersTimeoutMs,
              requestTimeout: uploadTimeoutMs + 1000,
              connectionsCheckingInterval: Math.min(1000, uploadTimeoutMs),
            },
            handler,
          );
          guard.attach(hs);
          hs.on('connection', (s) => {
            if (s.destroyed) return;
            sockets.add(s);
            s.on('close', () => sockets.delete(s));
          });
          srv = hs;
        }
        srv.once('error', reject);
        sealer?.start(); // warm by the first request (until it runs, blocks are sealed inline)
        srv.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
          srv.off('error', reject);
          server = srv;
          const a = srv.address() as AddressInfo;
          log.info('PCCRR server listening', { host: a.address, port: a.port, transport });
          resolve({ host: a.address, port: a.port });
        });
      }),
    close: () =>
      new Promise((resolve) => {
        if (!server) return resolve();
        const srv = server;
        server = undefined;
        uploads?.close();
        srv.close(() => resolve());
        for (const s of sockets) s.destroy();
        leanServer?.destroyAll();
        leanServer = undefined;
        sealed.clear();
        void sealer?.close();
      }),
  };
}
