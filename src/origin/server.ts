/**
 * `peerdist serve`: an HTTP/1.1 origin for a directory (or a reverse proxy for an upstream) that
 * speaks the PeerDist HTTP extension (MS-PCCRTP). See protocol/pccrtp.md.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { realpath, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { Agent } from 'undici';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { PeerdistError, UsageError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { serveFile, type FileContext } from './files.js';
import { plainError } from './respond.js';
import { HashCache, type Chunking } from './hashcache.js';
import { HashJobs } from './hashjobs.js';
import { negotiate } from '../protocol/pccrtp/headers.js';
import { SignatureMemo } from './peerdist-response.js';
import { loadOrCreateSecret, originDir } from './secret.js';
import { EntityStore } from './entity-store.js';
import { join } from 'node:path';
import { publicKeyPem } from '../protocol/pccrtp/signature.js';
import { loadOrCreateSigningKey } from './signing-key.js';
import { emptyStats, type OriginStats } from './stats.js';
import { serveUpstream, type UpstreamContext } from './upstream.js';
import { isHiddenTarget, parseRequestPath } from './urlpath.js';
import { serveBlob, type BlobContext } from './blobs.js';
import { SharedHashJobs } from './shared-hash.js';
import type { ObjectStore } from './store.js';
import type { TlsPair } from './tls.js';
import type { TokenGate } from './auth.js';

export type { OriginStats } from './stats.js';

export interface OriginServerOptions {
  /** Directory to publish (exactly one of root / upstream). */
  root?: string;
  /** Base URL of an upstream HTTP server to reverse-proxy. */
  upstream?: string;
  /** An object store to publish (azblob://...); content information is shared through it. */
  store?: ObjectStore;
  /** Require a bearer token (JWT) for every content request (`--require-jwt`). */
  tokenGate?: TokenGate;
  /** Serve HTTPS with this certificate and key (PEM) instead of HTTP. */
  tls?: TlsPair;
  /** Store mode: how often a node waiting for another node's hash looks for its record (default 250 ms). */
  storePollMs?: number;
  host?: string;
  port?: number;
  stateDir: string;
  /** Server secret; default: loadOrCreateSecret(stateDir). */
  secret?: Buffer;
  /** Content-information signing key; default: loadOrCreateSigningKey(stateDir). */
  signingKey?: KeyObject;
  logger?: Logger;
  /** v2 segment boundaries (default 'cdc'). */
  chunking?: Chunking;
  /** Content-information version to send when the client accepts both (default 2). */
  preferVersion?: ContentVersion;
  /** Concurrent hash jobs (default 2). */
  hashConcurrency?: number;
  /** How long a HashRequest=true response waits for hashing (default 60 s). */
  hashWaitMs?: number;
  /**
   * How long the first PeerDist request for an entity not hashed yet waits for hashing before the
   * plain body goes out (default DEFAULT_FIRST_WAIT_MS; 0 = never wait). See protocol/pccrtp.md.
   */
  firstWaitMs?: number;
  /** Upstream mode: size limit of the on-disk entity store, bytes (default 10 GiB; 0 = no store, relay only). */
  upstreamStoreLimit?: number;
  /** Upstream mode: revalidate a stored entity with the upstream once it is older than this (default 5 s). */
  upstreamRevalidateMs?: number;
  /**
   * Directory mode: serve names starting with '.' (.git/, .env, ...). Default false: such paths
   * answer 404, like a missing file.
   */
  allowDotfiles?: boolean;
}

/** Stands in for the hash cache in store mode (nothing is cached locally). */
const NO_CACHE = {
  get: async (): Promise<Buffer | undefined> => undefined,
  put: async (): Promise<void> => undefined,
};

export const DEFAULT_UPSTREAM_STORE_LIMIT = 10 * 2 ** 30;
export const DEFAULT_UPSTREAM_REVALIDATE_MS = 5_000;

/**
 * Default first-request wait: 10 s. Hashing here ran at 65-250 MB/s on 2 loaded cores (v2 cdc the
 * slowest, BENCHMARKS.md), so 10 s covers entities of 650 MB and more; the download engine's
 * response-header timeout is 15 s, which bounds it from above.
 */
export const DEFAULT_FIRST_WAIT_MS = 10_000;

export interface OriginServer {
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  stats(): OriginStats;
  /** Resolves once no background hash job is queued or running. */
  hashingIdle(): Promise<void>;
  /** PEM (SPKI) of the key that signs content information. */
  readonly publicKeyPem: string;
  /** HTTPS only: new connections use this certificate from now on (open ones keep theirs). */
  setTls(pair: TlsPair): void;
}

export async function createOriginServer(opts: OriginServerOptions): Promise<OriginServer> {
  if ([opts.root, opts.upstream, opts.store].filter((x) => x !== undefined).length !== 1) {
    throw new UsageError('give exactly one of a directory to serve, an upstream URL or a store');
  }
  const log = opts.logger ?? createLogger({ component: 'origin' });
  let rootReal = '';
  if (opts.root !== undefined) {
    rootReal = await realpath(opts.root);
    if (!(await stat(rootReal)).isDirectory())
      throw new PeerdistError('NOT_A_DIRECTORY', `${opts.root} is not a directory`);
  }
  let upstream: URL | undefined;
  if (opts.upstream !== undefined) {
    try {
      upstream = new URL(opts.upstream);
    } catch {
      throw new UsageError(`bad upstream URL ${opts.upstream}`);
    }
    if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:')
      throw new UsageError(`upstream must be http(s): ${opts.upstream}`);
  }
  const secret = opts.secret ?? (await loadOrCreateSecret(opts.stateDir));
  const signingKey = opts.signingKey ?? (await loadOrCreateSigningKey(opts.stateDir));
  // Store mode keeps its content information in the store, not in the local hash cache.
  const cache = opts.store ? undefined : await HashCache.open(opts.stateDir);
  const jobs = new HashJobs(cache ?? NO_CACHE, opts.hashConcurrency ?? 2, log);
  const counters = emptyStats();
  const dispatcher = new Agent({ keepAliveTimeout: 4_000 });
  const chunking = opts.chunking ?? 'cdc';
  const base = {
    cache: cache ?? NO_CACHE,
    jobs,
    stats: counters,
    signingKey,
    signatures: new SignatureMemo(),
    hashWaitMs: opts.hashWaitMs ?? 60_000,
    firstWaitMs: opts.firstWaitMs ?? DEFAULT_FIRST_WAIT_MS,
    secret,
    chunking,
  };
  const fileCtx: FileContext = { ...base, rootReal, allowDotfiles: opts.allowDotfiles ?? false };
  const storeLimit = opts.upstreamStoreLimit ?? DEFAULT_UPSTREAM_STORE_LIMIT;
  const store =
    upstream && storeLimit > 0
      ? await EntityStore.open(join(originDir(opts.stateDir), 'entities'), storeLimit, log)
      : undefined;
  const upCtx: UpstreamContext | undefined = upstream
    ? {
        ...base,
        upstream,
        dispatcher,
        store,
        log,
        fills: new Map(),
        revalidateMs: opts.upstreamRevalidateMs ?? DEFAULT_UPSTREAM_REVALIDATE_MS,
        fillWaitMs: 10_000,
      }
    : undefined;
  const shared = opts.store
    ? new SharedHashJobs({
        store: opts.store,
        secret,
        log,
        concurrency: opts.hashConcurrency ?? 2,
        pollMs: opts.storePollMs,
      })
    : undefined;
  const blobCtx: BlobContext | undefined =
    opts.store && shared
      ? {
          stats: counters,
          signingKey,
          signatures: base.signatures,
          hashWaitMs: base.hashWaitMs,
          firstWaitMs: base.firstWaitMs,
          store: opts.store,
          shared,
          secret,
          chunking,
          log,
          retryAfterS: 5,
          outage: {},
        }
      : undefined;
  const pem = publicKeyPem(signingKey);

  const stats = (): OriginStats => ({
    ...counters,
    hashJobs: jobs.started,
    hashJobsFailed: jobs.failed,
    ...(shared
      ? {
          hashJobs: shared.started,
          hashJobsFailed: shared.failed,
          recordHits: shared.recordHits,
          recordsRejected: shared.recordsRejected,
          lockWaits: shared.lockWaits,
        }
      : {}),
    ...(store
      ? { storeEntities: store.stats().entities, storeBytes: store.stats().bytes, storeEvictions: store.evictions }
      : {}),
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    counters.requests++;
    if (req.method !== 'GET' && req.method !== 'HEAD') return plainError(res, 405, { Allow: 'GET, HEAD' });
    const p = parseRequestPath(req.url);
    if (!p.ok) return plainError(res, p.status);
    if (p.reserved) return serveReserved(req, res, p.segments);
    if (opts.tokenGate) {
      const g = await opts.tokenGate.check(req.headers.authorization, p.segments);
      if (!g.ok) {
        counters.authRejected = (counters.authRejected ?? 0) + 1;
        const body = `${g.status} ${g.reason}\n`;
        res
          .writeHead(g.status, {
            'Content-Type': 'text/plain',
            'Content-Length': String(Buffer.byteLength(body)),
            'WWW-Authenticate': g.header,
            'Cache-Control': 'no-store',
          })
          .end(req.method === 'HEAD' ? undefined : body);
        return;
      }
    }
    const n = negotiate(req.headers, { preferVersion: opts.preferVersion });
    if (n.hashRequest) counters.hashRequests++;
    if (upCtx) return serveUpstream(upCtx, req, res, n);
    // Hidden names (unless allowed) and trailing slashes are not served: 404 like a missing file.
    // In store mode this also keeps the store's own `.peerdist/` records out of reach.
    if (blobCtx) {
      if (isHiddenTarget(req.url ?? '/', p.segments, false)) return plainError(res, 404);
      return serveBlob(blobCtx, req, res, n, p.segments);
    }
    if (isHiddenTarget(req.url ?? '/', p.segments, fileCtx.allowDotfiles ?? false)) return plainError(res, 404);
    return serveFile(fileCtx, req, res, n, p.segments);
  }

  function serveReserved(req: IncomingMessage, res: ServerResponse, segments: string[]): void {
    const name = segments.slice(1).join('/');
    let body: string, type: string;
    if (name === 'stats') {
      body = JSON.stringify(stats()) + '\n';
      type = 'application/json';
    } else if (name === 'public-key') {
      body = pem;
      type = 'application/x-pem-file';
    } else return plainError(res, 404);
    res.writeHead(200, {
      'Content-Type': type,
      'Content-Length': String(Buffer.byteLength(body)),
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      log.error('request failed', { url: req.url, err: err as Error });
      if (!res.headersSent) plainError(res, 500);
      else res.destroy();
    });
  };
  const tlsServer: HttpsServer | undefined = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest)
    : undefined;
  const server: Server = tlsServer ?? createServer(onRequest);
  tlsServer?.on('tlsClientError', (err, socket) => {
    log.debug('TLS handshake failed', { remote: socket.remoteAddress, err: err.message });
    socket.destroy();
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  let closed: Promise<void> | undefined;
  return {
    publicKeyPem: pem,
    stats,
    setTls: (pair) => {
      if (!tlsServer) throw new UsageError('this origin serves plain HTTP');
      tlsServer.setSecureContext({ cert: pair.cert, key: pair.key });
    },
    hashingIdle: async () => {
      await jobs.idle();
      await shared?.idle();
    },
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          log.info('listening', {
            host: a.address,
            port: a.port,
            root: rootReal || undefined,
            upstream: opts.upstream,
            store: opts.store?.url,
            tls: tlsServer !== undefined,
          });
          resolve({ host: a.address, port: a.port });
        });
      }),
    close: () =>
      (closed ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const grace = setTimeout(() => server.closeAllConnections(), 2_000);
        await jobs.close();
        await shared?.close();
        if (upCtx) await Promise.all([...upCtx.fills.values()]);
        await stopped;
        clearTimeout(grace);
        await dispatcher.close();
        await cache?.close();
      })()),
  };
}
