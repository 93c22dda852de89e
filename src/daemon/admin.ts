/**
 * The daemon's admin API (protocol/admin-api.md). Served ONLY on a loopback address or a unix
 * socket; every request's peer address and Host header are checked too, and requests made by
 * web pages (Origin / Sec-Fetch-Site) or that came through a proxy (Via, Forwarded,
 * X-Forwarded-*) are refused. The API never writes
 * files at client-named paths: fetched content is streamed back in the response.
 */
import { decodeOriginHeaders, ORIGIN_HEADERS_HEADER } from '../util/origin-headers.js';
import { connect } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import { type AdminAddress, AddressError, formatHostPort, isLoopbackHost } from '../util/address.js';
import { errorMessage, listenHttp, sendJson, sendText, upstreamStatus } from './http-util.js';
import type { JobBook } from './jobs.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import { type Logger, nullLogger, rateLimited } from '../util/log.js';

export interface AdminDeps {
  /** Absent on a server that runs no downloads (the hosted cache): no jobs, /v1/fetch 404. */
  jobs?: JobBook;
  /** The /v1/status document. */
  status(): unknown;
  /** The /metrics exposition text. */
  metrics(): string;
  cache: { stats(): unknown; list(): unknown; verifyAll(): Promise<unknown> };
  /** The trace of a recent download (`peerdist explain`): by job ID, the latest for a URL, or the latest. */
  explain?(q: { job?: string; url?: string }): unknown;
  logger?: Logger;
}

/** True when a TCP request came from a loopback address. */
export function isLoopbackPeer(req: IncomingMessage): boolean {
  const addr = req.socket.remoteAddress;
  return addr !== undefined && isLoopbackHost(addr);
}

/**
 * Host header check against DNS rebinding: a browser page on some other origin that resolves its
 * name to 127.0.0.1 still sends its own name as Host.
 */
function hostAllowed(req: IncomingMessage): boolean {
  const host = req.headers.host;
  if (host === undefined) return true;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return isLoopbackHost(name);
}

/**
 * Requests a web browser makes on behalf of some page carry Origin or Sec-Fetch-Site; our clients
 * (the CLI, curl, scripts) send neither. Refusing them stops cross-site request forgery (a page
 * making the daemon download URLs or re-verify the cache) without tokens.
 */
function fromBrowserPage(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'none') return true;
  return req.headers.origin !== undefined;
}

/**
 * Headers a proxy adds to what it forwards: ours adds `Via: 1.1 peerdist` (and refuses local
 * targets anyway); other proxies add these too. Our clients (the CLI, curl, scripts talking to
 * the admin address directly) send none of them, so a request carrying one came through a proxy
 * and is refused: the admin API must not be reachable through one (issue 27.2).
 */
const PROXY_HEADERS = ['via', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip'];

/** The first proxy-marked header of a request, or undefined. */
export function proxiedBy(req: IncomingMessage): string | undefined {
  return PROXY_HEADERS.find((h) => req.headers[h] !== undefined);
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/**
 * The request handler. `transport: 'tcp'` (default) checks each request's peer address and Host
 * header; on a unix socket the file permissions are the access control.
 */
export function createAdminHandler(
  deps: AdminDeps,
  transport: 'tcp' | 'socket' = 'tcp',
): (req: IncomingMessage, res: ServerResponse) => void {
  // Refusals repeat at the rate a hostile page or host sends requests: capped per message.
  const log = rateLimited(deps.logger ?? nullLogger);
  return (req, res) => {
    if (transport === 'tcp' && (!isLoopbackPeer(req) || !hostAllowed(req))) {
      log.warn('admin: refused non-local request', { remote: req.socket.remoteAddress, host: req.headers.host });
      sendJson(res, 403, { error: 'the admin API only answers local clients' });
      return;
    }
    if (fromBrowserPage(req)) {
      log.warn('admin: refused a request made by a web page', {
        origin: req.headers.origin,
        site: req.headers['sec-fetch-site'],
      });
      sendJson(res, 403, { error: 'the admin API does not answer requests made by web pages' });
      return;
    }
    const proxied = proxiedBy(req);
    if (proxied) {
      log.warn('admin: refused a request that came through a proxy', {
        header: proxied,
        value: String(req.headers[proxied]).slice(0, 200),
      });
      sendJson(res, 403, {
        error: `the admin API does not answer requests that came through a proxy (${proxied} header)`,
      });
      return;
    }
    route(deps, req, res).catch((err) => {
      log.error('admin: request failed', { url: req.url, err });
      sendJson(res, 500, { error: errorMessage(err) });
    });
  };
}

async function route(deps: AdminDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const u = new URL(req.url ?? '/', 'http://admin.invalid');
  const path = u.pathname;
  const method = req.method ?? 'GET';
  const get = method === 'GET';

  if (get && path === '/v1/status') return sendJson(res, 200, await deps.status());
  if (get && path === '/metrics') return sendText(res, 200, await deps.metrics(), METRICS_CONTENT_TYPE);
  if (get && path === '/v1/explain' && deps.explain) {
    const job = u.searchParams.get('job') ?? undefined,
      url = u.searchParams.get('url') ?? undefined;
    const tr = deps.explain({ job, url });
    return tr
      ? sendJson(res, 200, tr)
      : sendJson(res, 404, {
          error: job
            ? `no trace of job ${job} (the daemon keeps the last 32 downloads)`
            : url
              ? `no recent download of ${url}`
              : 'no download yet',
        });
  }
  if (get && path === '/v1/cache/stats') return sendJson(res, 200, await deps.cache.stats());
  if (get && path === '/v1/cache/ls') return sendJson(res, 200, await deps.cache.list());
  if (method === 'POST' && path === '/v1/cache/verify') return sendJson(res, 200, await deps.cache.verifyAll());
  if (!deps.jobs && (path === '/v1/fetch' || path === '/v1/jobs' || path.startsWith('/v1/jobs/'))) {
    if (get && path === '/v1/jobs') return sendJson(res, 200, []);
    return sendJson(res, 404, { error: 'this server runs no downloads' });
  }
  const jobs = deps.jobs!;
  if (get && path.startsWith('/v1/jobs/')) {
    let id: string;
    try {
      id = decodeURIComponent(path.slice('/v1/jobs/'.length));
    } catch {
      return sendJson(res, 400, { error: 'bad percent-escape in the job id' });
    }
    const view = jobs.view(id);
    return view ? sendJson(res, 200, view) : sendJson(res, 404, { error: 'no such job' });
  }
  if (get && path === '/v1/jobs') return sendJson(res, 200, jobs.active());
  if (get && path === '/v1/fetch')
    return fetchRoute(deps, u.searchParams.get('url'), req, res, u.searchParams.getAll('mirror'));
  const known = [
    '/v1/explain',
    '/v1/status',
    '/metrics',
    '/v1/cache/stats',
    '/v1/cache/ls',
    '/v1/cache/verify',
    '/v1/fetch',
    '/v1/jobs',
  ];
  if (known.includes(path) || path.startsWith('/v1/jobs/'))
    return sendJson(res, 405, { error: `method ${method} not allowed` });
  sendJson(res, 404, { error: `unknown endpoint ${path}` });
}

/**
 * GET /v1/fetch?url=URL[&mirror=URL...]: starts or joins a download and streams its bytes in
 * order. Mirrors name other origin nodes with the same content (get --mirror).
 */
async function fetchRoute(
  deps: AdminDeps,
  url: string | null,
  req: IncomingMessage,
  res: ServerResponse,
  mirrors: string[] = [],
): Promise<void> {
  const log = deps.logger ?? nullLogger;
  if (!url || !isHttpUrl(url)) return sendJson(res, 400, { error: 'url must be an absolute http:// or https:// URL' });
  const badMirror = mirrors.find((m) => !isHttpUrl(m));
  if (badMirror !== undefined)
    return sendJson(res, 400, { error: 'every mirror must be an absolute http:// or https:// URL' });
  let originHeaders: Record<string, string> | undefined;
  const oh = req.headers[ORIGIN_HEADERS_HEADER];
  if (typeof oh === 'string') {
    try {
      originHeaders = decodeOriginHeaders(oh);
    } catch (err) {
      return sendJson(res, 400, { error: (err as Error).message });
    }
  }
  const job = deps.jobs!.obtain(url, originHeaders, undefined, mirrors);
  let info: Awaited<typeof job.info>;
  try {
    info = await job.info;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return sendJson(res, upstreamStatus(err), {
      error: errorMessage(err),
      job: job.id,
      ...(typeof code === 'string' ? { code } : {}),
    });
  }
  if (req.destroyed) return;
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'x-peerdist-job': job.id,
    'cache-control': 'no-store',
  };
  if (Number.isSafeInteger(info.contentLength) && info.contentLength >= 0)
    headers['content-length'] = info.contentLength;
  res.writeHead(200, headers);
  // Sent now, not with the first byte: a job that fails before its first byte still gave the client
  // its id, so the client can ask /v1/jobs/<id> for the real failure instead of seeing a bare reset.
  res.flushHeaders();
  const ended = (err: unknown) => {
    if (err && !res.destroyed) res.destroy(err as Error);
    if (err) log.info('admin: fetch stream ended early', { job: job.id, err: errorMessage(err) });
  };
  if (job.readBatches) {
    const reader = job.readBatches();
    // The reader lets go of what it pinned as soon as the client goes, not at its next block.
    res.once('close', reader.close);
    writeBatches(reader.batches, res).then(() => ended(undefined), ended);
  } else pipeline(job.createReadStream(), res, ended);
}

/** A batch smaller than this waits up to FLUSH_MS for more blocks before it is written. */
const FLUSH_BYTES = 1024 * 1024;
const FLUSH_MS = 25;

/**
 * Writes the content to the response in large writes (issue 25: the stream to `get`): the blocks
 * that were ready together go out corked, as one writev; a small batch waits at most FLUSH_MS for
 * the next ones (one timer per write, none per block). Honours back-pressure; stops reading
 * (returning the generator, which ends the reader) when the client goes away.
 */
async function writeBatches(batches: AsyncGenerator<Buffer[]>, res: ServerResponse): Promise<void> {
  let pending: Buffer[] = [];
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0 || res.destroyed) return;
    res.cork();
    for (const b of pending) res.write(b);
    res.uncork();
    pending = [];
    bytes = 0;
  };
  try {
    for await (const batch of batches) {
      if (res.destroyed) throw new Error('the client went away');
      for (const b of batch) {
        pending.push(b);
        bytes += b.length;
      }
      if (bytes >= FLUSH_BYTES) flush();
      else timer ??= setTimeout(flush, FLUSH_MS);
      if (res.writableNeedDrain) await drained(res);
    }
    flush();
    res.end();
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** Resolves on 'drain'; rejects when the response closes first. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('the client went away'));
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

export interface AdminServer {
  address: string;
  close(): Promise<void>;
}

/** Listens on a loopback TCP address or a unix socket; refuses anything else. */
export async function startAdminServer(addr: AdminAddress, deps: AdminDeps): Promise<AdminServer> {
  if (addr.kind === 'tcp') {
    const handler = createAdminHandler(deps, 'tcp');
    if (!isLoopbackHost(addr.host)) throw new AddressError(`admin API must listen on loopback, not ${addr.host}`);
    const s = await listenHttp({ host: addr.host, port: addr.port }, handler);
    const a = s.address as { address: string; port: number };
    return { address: formatHostPort({ host: a.address, port: a.port }), close: s.close };
  }
  await removeStaleSocket(addr.path);
  const s = await listenHttp({ path: addr.path }, createAdminHandler(deps, 'socket'));
  if (process.platform !== 'win32')
    await chmod(addr.path, 0o660).catch(() => {
      /* best effort */
    });
  return {
    address: addr.path,
    close: async () => {
      await s.close();
      await unlink(addr.path).catch(() => {
        /* already gone */
      });
    },
  };
}

/**
 * Removes a socket file left by a crashed daemon. Refuses if a live daemon answers on it, and
 * never removes anything that is not a socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  if (process.platform === 'win32') return;
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new AddressError(`admin socket path ${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolveP) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolveP(true);
    });
    c.once('error', () => resolveP(false));
  });
  if (alive) throw new AddressError(`admin socket ${path} is in use by a running daemon`);
  await unlink(path).catch(() => {
    /* did not exist */
  });
}
