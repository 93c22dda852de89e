/**
 * `peerdist hosted-cache`: composes the hosted cache server. An HTTP listener (MS-PCHC v2.0 path
 * and the MS-PCCRR path: Windows clients fetch from a hosted cache on the same port), an HTTPS
 * listener (MS-PCHC v1.0; optional), the crash-safe block store, the puller (MS-PCCRR client to the
 * offering clients) and the admin API (status, metrics, cache). See protocol/pchc.md.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BlockStore } from '../cache/store.js';
import { createRetrievalServer, type RetrievalServer } from '../retrieval/server.js';
import { ConnectionGuard, type ConnectionGuardStats } from '../retrieval/fair-share.js';
import { CrowdTracker, crowdHeaders } from './crowd.js';
import { RetrievalClient } from '../retrieval/client.js';
import { PCHC_PATH_V1, PCHC_PATH_V2, MAX_REQUEST_SIZE } from '../protocol/pchc/codec.js';
import { PCCRR_PATH } from '../protocol/pccrr/codec.js';
import { startAdminServer } from '../daemon/admin.js';
import { renderMetrics, type Metric } from '../daemon/metrics.js';
import { type AdminAddress, type HostPort, formatAdminAddress, formatHostPort } from '../util/address.js';
import { type Logger, createLogger } from '../util/log.js';
import { PeerdistError } from '../util/errors.js';
import { VERSION } from '../util/version.js';
import { OfferHandler, type OfferStats } from './offers.js';
import { Puller, type PullStats } from './puller.js';
import { Shares } from './shares.js';
import { clientKey } from './client-key.js';
import { decodeRequest as decodePccrr } from '../protocol/pccrr/codec.js';
import { loadOrCreateCertificate } from './cert.js';
import { makeDirs } from '../util/mkdirs.js';

export const HOSTED_CACHE_VERSION = VERSION;

export interface HostedCacheConfig {
  stateDir: string;
  /** MS-PCHC v2.0 + MS-PCCRR listener (default 0.0.0.0:80). */
  http: HostPort;
  /** MS-PCHC v1.0 listener; undefined = no HTTPS. */
  https?: HostPort;
  /** Admin's certificate and key (PEM); absent = generated self-signed in <stateDir>/tls. */
  certFile?: string;
  keyFile?: string;
  /** Names for a generated certificate (default: the host name and localhost). */
  tlsNames?: string[];
  admin: AdminAddress;
  cacheLimitBytes?: number;
  /** Segment pulls at once (default 8) and per offering client (default 4). */
  fetchConcurrency?: number;
  fetchPerClient?: number;
  /** Pull rate cap, bytes/s (default 32 MiB/s; 0 = none). */
  fetchRateBytesPerSec?: number;
  /** MS-PCCRR requests served at once (default 1024, Windows' hosted cache figure). */
  maxUploads?: number;
  /**
   * Open connections at most over the HTTP and HTTPS listeners (default 4096), and per source
   * (IPv4 address or IPv6 /64; default 64). When all are taken, a host holding fewer takes a slot
   * from the host holding the most (src/retrieval/fair-share.ts). Issue 27.7: one host held 18,000.
   */
  maxConnections?: number;
  maxConnectionsPerSource?: number;
}

const DEFAULT_MAX_CONNECTIONS = 4096;
const DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 64;

export interface HostedCacheReady {
  event: 'ready';
  role: 'hosted-cache';
  http: string;
  https: string | null;
  admin: string;
  certificate: string | null;
  pid: number;
}

export interface RunningHostedCache {
  readonly ready: HostedCacheReady;
  readonly store: BlockStore;
  readonly puller: Puller;
  readonly offers: OfferHandler;
  stats(): HostedCacheStats;
  close(): Promise<void>;
}

export interface HostedCacheStats extends OfferStats {
  segmentsPulled: number;
  blocksPulled: number;
  bytesPulled: number;
  pullFailures: number;
  pullsRefused: number;
  /** Pulls not made because the offering client's share of the cache was full (protocol/pchc.md, "Fair shares"). */
  pullsRefusedNoRoom: number;
  /** Pulls asked of a second client that offered the same segment. */
  pullsFromOtherOfferers: number;
  /** Segments pulled on an offer that no other client has asked for yet, and their bytes. */
  unaskedSegments: number;
  unaskedBytes: number;
  /** Unasked segments evicted to keep clients within their shares. */
  unaskedEvicted: number;
  pullsInProgress: number;
  pullsWaiting: number;
  bytesServed: number;
  blocksServed: number;
  /** MS-PCCRR answers that named the other askers of the same segments (PeerDist-Crowd). */
  crowdAnswers: number;
  /** The listeners' connections: open, sources, dropped, evicted (fair-share.ts). */
  connections: ConnectionGuardStats;
}

export class HostedCacheStartError extends PeerdistError {
  constructor(what: string, cause: unknown) {
    super('START_FAILED', `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

const PCHC_PATHS = new Set([PCHC_PATH_V1, PCHC_PATH_V2].map((p) => p.toLowerCase()));
const BODY_TIMEOUT_MS = 10_000;

/** Which endpoint a request path names (case-insensitive, trailing slash optional, query ignored). */
export function routeOf(url: string | undefined): 'pchc' | 'pccrr' | undefined {
  let path = (url ?? '').split('?')[0]!.toLowerCase();
  if (path === PCCRR_PATH.toLowerCase()) return 'pccrr';
  if (path.endsWith('/')) path = path.slice(0, -1);
  return PCHC_PATHS.has(path) ? 'pchc' : undefined;
}

function drop(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'Content-Length': 0, Connection: 'close' });
  res.end();
}

/**
 * The HTTP(S) request handler: PCHC offers to `offers`, PCCRR requests to `retrieval`. A dropped
 * offer (protocol/pchc.md) gets 400 and the connection closed; other paths 404, other methods 405,
 * bodies over the cap 413.
 */
export function createHostedCacheHandler(
  offers: OfferHandler,
  retrieval: RetrievalServer | undefined,
  log: Logger,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const route = routeOf(req.url);
    if (route === 'pccrr' && retrieval) return retrieval.handler(req, res);
    if (route !== 'pchc') return drop(res, 404);
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return drop(res, 405);
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && (!/^\d+$/.test(declared) || Number(declared) > MAX_REQUEST_SIZE))
      return drop(res, 413);
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    const timer = setTimeout(() => req.socket.destroy(), BODY_TIMEOUT_MS);
    req.on('data', (c: Buffer) => {
      if (over) return;
      n += c.length;
      if (n > MAX_REQUEST_SIZE) {
        over = true;
        drop(res, 413);
        req.socket.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => clearTimeout(timer));
    req.on('end', () => {
      clearTimeout(timer);
      if (over || res.writableEnded) return;
      let r: ReturnType<typeof offers.handle>;
      try {
        r = offers.handle(Buffer.concat(chunks, n), req.socket.remoteAddress ?? '');
      } catch (err) {
        log.error('hosted cache: offer handling failed', { err });
        return drop(res, 500);
      }
      if (!r.ok) {
        log.debug('hosted cache: dropped a malformed offer', {
          remote: req.socket.remoteAddress,
          field: r.error.field,
          err: r.error.message,
        });
        return drop(res, 400);
      }
      if (r.busy) {
        // MS-PCHC has no "not taken" code (OK and INTERESTED only): an offer we could not queue fails
        // at the HTTP level, so the client does not take it as accepted (protocol/pchc.md).
        res.writeHead(503, { 'Content-Length': 0, 'Retry-After': String(r.retryAfterSeconds) });
        return res.end();
      }
      res.writeHead(200, { 'Content-Length': r.body.length });
      res.end(r.body);
    });
  };
}

interface Listener {
  server: Server;
  sockets: Set<Socket>;
  address: AddressInfo;
}

function listen(server: Server, where: HostPort, guard: ConnectionGuard): Promise<Listener> {
  const sockets = new Set<Socket>();
  guard.attach(server);
  server.on('connection', (s: Socket) => {
    if (s.destroyed) return;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, () => {
      server.off('error', reject);
      resolve({ server, sockets, address: server.address() as AddressInfo });
    });
  });
}

function closeListener(l: Listener): Promise<void> {
  return new Promise((r) => {
    l.server.close(() => r());
    for (const s of l.sockets) s.destroy();
  });
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PeerdistError) throw err;
    throw new HostedCacheStartError(what, err);
  }
}

export async function startHostedCache(
  config: HostedCacheConfig,
  opts: { logger?: Logger } = {},
): Promise<RunningHostedCache> {
  const log = opts.logger ?? createLogger({ component: 'hosted-cache' });
  const closers: Array<{ name: string; close: () => Promise<void> | void }> = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c.close();
      } catch (err) {
        log.warn('shutdown step failed', { step: c.name, err });
      }
    }
  };
  try {
    await makeDirs(config.stateDir);
    const store = await BlockStore.open({
      dir: join(config.stateDir, 'cache'),
      limitBytes: config.cacheLimitBytes,
      logger: log.child({ component: 'cache' }),
    });
    closers.push({ name: 'store', close: () => store.close() });

    // Per-client shares of the cache (issue 27.3). Segments held from before a restart that nobody
    // has asked for count as unasked, under no client.
    const shares = new Shares(store);
    store.on('evict', (idHex: string) => shares.forget(idHex));
    for (const seg of store.list()) if (seg.hitsPeer === 0) shares.adopt('', seg.segmentId, seg.bytes);

    const client = new RetrievalClient({ connections: 4, logger: log.child({ component: 'pccrr-client' }) });
    closers.push({ name: 'retrieval client', close: () => client.close() });
    const puller = new Puller({
      store,
      client,
      concurrency: config.fetchConcurrency,
      perPeer: config.fetchPerClient,
      rateBytesPerSec: config.fetchRateBytesPerSec,
      shares,
      logger: log.child({ component: 'puller' }),
    });
    closers.push({ name: 'puller', close: () => puller.close() });
    const offers = new OfferHandler({
      store,
      pull: (t) => puller.offer(t),
      logger: log.child({ component: 'offers' }),
    });
    // Crowds across subnets: who else asked for the same segments (protocol/pchc.md).
    // Askers of segments we hold or are pulling are kept apart from the rest (issue 27.6).
    const crowd = crowdHeaders(new CrowdTracker({ known: (id) => !!store.getSegment(id) || puller.pending(id) }));
    const retrieval = createRetrievalServer({
      source: store,
      maxConcurrent: config.maxUploads ?? 1024,
      responseHeaders: (req, body) => {
        // A block asked for by another client than the one that offered it: the segment is in use.
        if (body.length < 256) {
          try {
            const m = decodePccrr(body);
            if (m.type === 'GETBLKS')
              shares.asked(m.segmentId.toString('hex'), clientKey(req.socket.remoteAddress ?? ''));
          } catch {
            // malformed: the retrieval server answers it
          }
        }
        return crowd.hook(req, body);
      },
      logger: log.child({ component: 'pccrr-server' }),
    });
    const handler = createHostedCacheHandler(offers, retrieval, log);
    // One connection budget for both listeners, shared fairly between sources.
    const guard = new ConnectionGuard({
      maxConnections: config.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      maxPerSource: config.maxConnectionsPerSource ?? DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
    });

    const http = await step(`HTTP listener on ${formatHostPort(config.http)}`, () =>
      listen(createHttpServer(handler), config.http, guard),
    );
    closers.push({ name: 'http', close: () => closeListener(http) });

    let https: Listener | undefined;
    let certificate: string | null = null;
    if (config.https) {
      const cert = await loadOrCreateCertificate(config.stateDir, {
        certFile: config.certFile,
        keyFile: config.keyFile,
        names: config.tlsNames?.length ? config.tlsNames : [hostname(), 'localhost', '127.0.0.1'],
      });
      if (cert.generated)
        log.info('generated a self-signed certificate for the HTTPS listener', {
          path: cert.path,
          fingerprint256: cert.fingerprint256,
          names: cert.subjectAltName,
        });
      certificate = cert.path;
      https = await step(`HTTPS listener on ${formatHostPort(config.https)}`, () =>
        listen(createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, handler), config.https!, guard),
      );
      const l = https;
      closers.push({ name: 'https', close: () => closeListener(l) });
    }

    const started = Date.now();
    const stats = (): HostedCacheStats => {
      const p: PullStats = puller.snapshot();
      const sh = shares.stats();
      const r = retrieval.stats();
      return {
        ...offers.stats,
        segmentsPulled: p.segmentsPulled,
        blocksPulled: p.blocksPulled,
        bytesPulled: p.bytesPulled,
        pullFailures: p.failures,
        pullsRefused: p.refused,
        pullsRefusedNoRoom: p.refusedNoRoom,
        pullsFromOtherOfferers: p.alternateAttempts,
        unaskedSegments: sh.unaskedSegments,
        unaskedBytes: sh.unaskedBytes,
        unaskedEvicted: sh.evicted,
        pullsInProgress: p.inProgress,
        pullsWaiting: p.waiting,
        bytesServed: r.bytesServed,
        blocksServed: r.blocksServed,
        crowdAnswers: crowd.answered(),
        connections: guard.stats(),
      };
    };
    const admin = await step(`admin API on ${formatAdminAddress(config.admin)}`, () =>
      startAdminServer(config.admin, {
        logger: log.child({ component: 'admin' }),
        status: () => hostedCacheStatus({ stats: stats(), store, retrieval, started }),
        metrics: () => renderMetrics(hostedCacheMetrics(stats(), store.stats())),
        cache: { stats: () => store.stats(), list: () => store.list(), verifyAll: () => store.verifyAll() },
      }),
    );
    closers.push({ name: 'admin', close: () => admin.close() });

    const ready: HostedCacheReady = {
      event: 'ready',
      role: 'hosted-cache',
      http: formatHostPort({ host: http.address.address, port: http.address.port }),
      https: https ? formatHostPort({ host: https.address.address, port: https.address.port }) : null,
      admin: admin.address || formatAdminAddress(config.admin),
      certificate,
      pid: process.pid,
    };
    log.info('hosted cache ready', { ...ready, stateDir: config.stateDir });
    let closing: Promise<void> | undefined;
    return { ready, store, puller, offers, stats, close: () => (closing ??= closeAll()) };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The /v1/status document: the daemon's shape (so `peerdist status` reads it) plus a hostedCache section. */
export function hostedCacheStatus(p: {
  stats: HostedCacheStats;
  store: { stats(): object };
  retrieval: { stats(): object };
  started: number;
  now?: number;
}): object {
  const now = p.now ?? Date.now();
  return {
    version: HOSTED_CACHE_VERSION,
    role: 'hosted-cache',
    pid: process.pid,
    uptimeSeconds: Math.max(0, (now - p.started) / 1000),
    downloads: [],
    totals: {
      fromOrigin: 0,
      fromPeers: 0,
      fromCache: 0,
      contentInfoBytes: 0,
      servedToPeers: p.stats.bytesServed,
      blocksServedToPeers: p.stats.blocksServed,
    },
    cache: p.store.stats(),
    hostedCache: p.stats,
    retrievalServer: p.retrieval.stats(),
  };
}

export function hostedCacheMetrics(
  s: HostedCacheStats,
  cache: { bytes: number; limitBytes: number; segments: number; blocks: number; evictions: number },
): Metric[] {
  return [
    {
      name: 'peerdist_hc_offers_received_total',
      type: 'counter',
      help: 'MS-PCHC offers received, by message type.',
      value: [
        { labels: { type: 'initial_offer' }, value: s.initialOffers },
        { labels: { type: 'segment_info' }, value: s.segmentInfos },
        { labels: { type: 'batched_offer' }, value: s.batchedOffers },
      ],
    },
    {
      name: 'peerdist_hc_offers_dropped_total',
      type: 'counter',
      help: 'MS-PCHC requests dropped as malformed.',
      value: s.dropped,
    },
    {
      name: 'peerdist_hc_offers_busy_total',
      type: 'counter',
      help: 'MS-PCHC offers answered HTTP 503 because their pulls could not be queued.',
      value: s.answeredBusy,
    },
    {
      name: 'peerdist_hc_segments_pulled_total',
      type: 'counter',
      help: 'Segments pulled completely from offering clients.',
      value: s.segmentsPulled,
    },
    {
      name: 'peerdist_hc_bytes_pulled_total',
      type: 'counter',
      help: 'Block bytes pulled from offering clients.',
      value: s.bytesPulled,
    },
    {
      name: 'peerdist_hc_pull_failures_total',
      type: 'counter',
      help: 'Block pulls that failed.',
      value: s.pullFailures,
    },
    {
      name: 'peerdist_hc_crowd_answers_total',
      type: 'counter',
      help: 'MS-PCCRR answers naming the other clients that asked for the same segments (PeerDist-Crowd).',
      value: s.crowdAnswers,
    },
    { name: 'peerdist_hc_pulls_in_progress', type: 'gauge', help: 'Segment pulls running.', value: s.pullsInProgress },
    {
      name: 'peerdist_served_bytes_total',
      type: 'counter',
      help: 'Block bytes served to peers (MS-PCCRR).',
      value: s.bytesServed,
    },
    {
      name: 'peerdist_served_blocks_total',
      type: 'counter',
      help: 'Blocks served to peers (MS-PCCRR).',
      value: s.blocksServed,
    },
    { name: 'peerdist_cache_bytes', type: 'gauge', help: 'Bytes of blocks held in the cache.', value: cache.bytes },
    { name: 'peerdist_cache_limit_bytes', type: 'gauge', help: 'Cache size limit.', value: cache.limitBytes },
    { name: 'peerdist_cache_segments', type: 'gauge', help: 'Segments in the cache.', value: cache.segments },
    { name: 'peerdist_cache_blocks', type: 'gauge', help: 'Blocks in the cache.', value: cache.blocks },
    {
      name: 'peerdist_cache_evictions_total',
      type: 'counter',
      help: 'Segments evicted from the cache.',
      value: cache.evictions,
    },
  ];
}
