/**
 * MS-PCCRR block server over node:http. Routes only POST /116B50EB-ECE2-41ac-8429-9F9E963361B7/
 * (case-insensitive); protocol semantics live in responder.ts. See protocol/pccrr.md.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createLogger, type Logger } from '../util/log.js';
import { MAX_REQUEST_SIZE, MIN_MESSAGE_SIZE, PCCRR_PATH } from '../protocol/pccrr/codec.js';
import { respond, type BlockSource, type ServedAlgo } from './block-responder.js';
import { TokenBucket } from './rate-limit.js';
import { ConnectionGuard, FairSlots, FairUploadQueue, sourceKey } from './fair-share.js';
import { SealedBlocks, SEALED_BUDGET_BYTES } from './sealed-blocks.js';

export type { BlockSource } from './block-responder.js';

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
  responseHeaders?: (req: IncomingMessage, body: Buffer) => Record<string, string> | undefined;
  logger?: Logger;
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
  let server: Server | undefined;
  const sockets = new Set<Socket>();

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

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    st.requests++;
    const path = (req.url ?? '').split('?')[0]!;
    if (path.toLowerCase() !== PCCRR_PATH.toLowerCase()) return finish(res, 404, undefined, true);
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return finish(res, 405, undefined, true);
    }
    const lenHeader = req.headers['content-length'];
    if (lenHeader === undefined || !/^\d+$/.test(lenHeader)) return finish(res, 411, undefined, true);
    const length = Number(lenHeader);
    if (length > MAX_REQUEST_SIZE) return finish(res, 413, undefined, true);
    if (length < MIN_MESSAGE_SIZE) {
      st.malformed++;
      return finish(res, 400, undefined, true);
    }

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
      log.warn('upload timer expired, cutting off client', {
        remote: req.socket.remoteAddress,
        timeoutMs: uploadTimeoutMs,
      });
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
      const why = opts.notServing?.();
      if (why !== undefined) st.notServing++;
      const answer = async () => {
        const r = await respond(body, { source: opts.source, cryptoAlgo, busy: busy || why !== undefined, sealed });
        if (!uploads || !r.ok || r.outcome !== 'served') return r;
        // The upload cap, shared fairly between sources: wait our turn, or say busy when our
        // source's fair wait is too long (the peer backs off).
        const waited = await uploads.wait(source, r.length, () => done || res.destroyed);
        if (waited === undefined) {
          st.busyRateLimited++;
          return respond(body, { source: opts.source, cryptoAlgo, busy: true });
        }
        if (waited > 0) {
          st.throttled++;
          st.throttledMs += waited;
        }
        return r;
      };
      answer().then(
        (r) => {
          if (done || res.destroyed) return;
          if (!r.ok) {
            st.malformed++;
            log.debug('malformed request', { field: r.error.field, error: r.error });
            return finish(res, 400, undefined, true);
          }
          if (r.outcome === 'served') {
            st.blocksServed++;
            st.bytesServed += r.blockBytes;
          } else if (r.outcome === 'missing') st.blocksMissing++;
          else if (r.outcome === 'busy') st.busy++;
          if (extra) for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
          finish(res, 200, r);
        },
        (e: unknown) => {
          log.error('block source failed', { error: e });
          if (!done && !res.destroyed) finish(res, 500, undefined, true);
        },
      );
    });
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
      };
    },
    listen: () =>
      new Promise((resolve, reject) => {
        // Bound slow request headers too (the upload timer starts once the headers are in).
        const srv = createServer(
          {
            headersTimeout: Math.min(uploadTimeoutMs, 60_000),
            requestTimeout: uploadTimeoutMs + 1000,
            connectionsCheckingInterval: Math.min(1000, uploadTimeoutMs),
          },
          handler,
        );
        guard.attach(srv);
        srv.on('connection', (s) => {
          if (s.destroyed) return;
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
        });
        srv.once('error', reject);
        srv.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
          srv.off('error', reject);
          server = srv;
          const a = srv.address() as AddressInfo;
          log.info('PCCRR server listening', { host: a.address, port: a.port });
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
        sealed.clear();
      }),
  };
}
