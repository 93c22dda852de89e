/**
 * Local HTTP forward proxy (http_proxy=http://127.0.0.1:P). Absolute-form `GET http://...`
 * requests go through the download engine, so apt/curl downloads come from the peer cache when
 * the origin speaks PeerDist; a single byte range is served from the job's ordered stream. When
 * the engine fails before the first byte, the request is forwarded so the client sees the
 * origin's own status (404 ...).
 * Every other method, GET https:// in absolute form, and requests carrying Authorization or
 * Cookie headers are forwarded unchanged with undici, without caching. CONNECT is refused with 501: the proxy is not a general tunnel, and TLS
 * traffic could not be cached anyway.
 * It is no way into this host (issue 27.2, ./proxy-guard.ts): targets on loopback, link-local,
 * unspecified or this host's own addresses get 403, clients off loopback are served only inside
 * `--proxy-allow` networks, and what it forwards carries `Via: 1.1 peerdist`, which the admin APIs
 * refuse. See protocol/admin-api.md.
 */
import type { IncomingMessage, ServerResponse, IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import type { BlockList } from 'node:net';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { errorMessage, listenHttp, sendText, upstreamStatus } from './http-util.js';
import type { JobBook } from './jobs.js';
import { ProxyRefusedError, TargetGuard, proxyRefusal } from './proxy-guard.js';
import { clientAllowed } from '../util/ip.js';
import { UndiciOriginClient } from '../engine/origin-client.js';
import { AddressError, type HostPort, formatHostPort, isLoopbackHost } from '../util/address.js';
import { type Logger, nullLogger, rateLimited } from '../util/log.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);
/** Request headers the engine decides itself (negotiation, ranges, conditionals). */
const ENGINE_OWNED = new Set([
  'range',
  'if-range',
  'accept-encoding',
  'if-none-match',
  'if-modified-since',
  'if-match',
  'if-unmodified-since',
  'x-p2p-peerdist',
  'x-p2p-peerdistex',
  'content-length',
]);

function dropHopByHop(
  h: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
  extra?: Set<string>,
): Record<string, string | string[]> {
  const conn = String(h['connection'] ?? '')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) {
    const lk = k.toLowerCase();
    if (v === undefined || HOP_BY_HOP.has(lk) || conn.includes(lk) || extra?.has(lk)) continue;
    out[lk] = v;
  }
  return out;
}

/**
 * Parses a single `bytes=` range against a known length. Returns inclusive [start, end],
 * 'unsatisfiable', or undefined (absent, multi-range or malformed: serve the whole body).
 */
export function parseRange(header: string | undefined, length: number): [number, number] | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return length === 0 ? 'unsatisfiable' : [Math.max(0, length - n), length - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? length - 1 : Math.min(Number(m[2]), length - 1);
  if (start >= length) return 'unsatisfiable';
  if (end < start) return undefined;
  return [start, end];
}

export interface ProxyDeps {
  jobs: JobBook;
  logger?: Logger;
  /** Which targets the proxy may reach (default: loopback, link-local, unspecified and own addresses refused). */
  guard?: TargetGuard;
  /** Networks whose clients may use the proxy besides loopback (`--proxy-allow`). */
  allow?: BlockList;
}

/** The `Via` the proxy adds to what it forwards (RFC 9110 7.6.3); the admin APIs refuse requests carrying one. */
const VIA = '1.1 peerdist';

function withVia(v: string | string[] | undefined): string {
  const prev = Array.isArray(v) ? v.join(', ') : v;
  return prev ? `${prev}, ${VIA}` : VIA;
}

/** What one proxy uses: the request handler, and the connection pools it owns. */
interface ProxyParts {
  guard: TargetGuard;
  /** Forwarded requests: connections only to checked addresses. */
  dispatcher: Agent;
  /** The engine's origin requests for jobs started by the proxy: the same checks, plus `Via`. */
  origin: UndiciOriginClient;
}

function createParts(deps: ProxyDeps): ProxyParts {
  const guard = deps.guard ?? new TargetGuard();
  return {
    guard,
    dispatcher: new Agent({ connect: guard.connector(), keepAliveTimeout: 4_000 }),
    origin: new UndiciOriginClient({ connect: guard.connector(), extraHeaders: { via: VIA } }),
  };
}

function createProxyHandler(deps: ProxyDeps, parts: ProxyParts): (req: IncomingMessage, res: ServerResponse) => void {
  const log = rateLimited(deps.logger ?? nullLogger);
  const refuse = (res: ServerResponse, err: ProxyRefusedError, what: Record<string, unknown>) => {
    log.warn('proxy: refused', { ...what, reason: err.message });
    sendText(res, 403, `peerdist proxy: ${err.code}: ${err.message}\n`);
  };
  return (req, res) => {
    const remote = req.socket.remoteAddress;
    if (!clientAllowed(remote, deps.allow)) {
      refuse(
        res,
        new ProxyRefusedError(`client ${remote ?? '?'} is not on loopback nor in an allowed network (--proxy-allow)`),
        { remote },
      );
      return;
    }
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      sendText(res, 400, 'peerdist proxy: requests must use absolute-form URLs (http://host/path)\n');
      return;
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      sendText(res, 400, `peerdist proxy: unsupported scheme ${target.protocol}\n`);
      return;
    }
    const port = Number(target.port) || (target.protocol === 'https:' ? 443 : 80);
    // Requests with credentials are forwarded as-is: downloads are shared by URL, and one user's
    // authorised download must not be joined by another request.
    const credentials = req.headers.authorization !== undefined || req.headers.cookie !== undefined;
    const cacheable = req.method === 'GET' && target.protocol === 'http:' && !credentials;
    // The target is checked before anything starts (a clear 403); the connections themselves are
    // checked again (parts.guard.connector), against a name that resolves differently later.
    const work = parts.guard
      .check(target.hostname, port)
      .then(() => (cacheable ? viaEngine(deps, parts, target, req, res) : forward(parts, target, req, res)));
    work.catch((err) => {
      const refusal = proxyRefusal(err);
      if (refusal && !res.headersSent) {
        refuse(res, refusal, { url: target.href, remote });
        return;
      }
      log.warn('proxy: request failed', { url: target.href, err: errorMessage(err) });
      if (!res.headersSent) sendText(res, upstreamStatus(err), `peerdist proxy: ${errorMessage(err)}\n`);
      else res.destroy();
    });
  };
}

async function viaEngine(
  deps: ProxyDeps,
  parts: ProxyParts,
  target: URL,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const headers = dropHopByHop(req.headers, ENGINE_OWNED);
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (k !== 'via') flat[k] = Array.isArray(v) ? v.join(', ') : v;
  const job = deps.jobs.obtain(target.href, Object.keys(flat).length ? flat : undefined, parts.origin);
  let info: Awaited<typeof job.info>;
  try {
    info = await job.info;
  } catch (err) {
    // The engine could not start (404, server error, bad signature ...): let the client see the
    // origin's own answer, status and body included (apt relies on 404s to try other files).
    (deps.logger ?? nullLogger).debug('proxy: engine failed before the first byte; forwarding', {
      url: target.href,
      err: errorMessage(err),
    });
    if (req.destroyed) return;
    if (proxyRefusal(err)) throw err;
    return forward(parts, target, req, res);
  }
  if (req.destroyed) return;
  // The length is unknown (-1) when the origin sent no Content-Length (chunked or close-delimited
  // plain body): then there is no Content-Length header (node frames the body chunked, or closes
  // the connection for HTTP/1.0 clients), ranges are answered with the whole body (200), and
  // Accept-Ranges is not advertised.
  const len = info.contentLength;
  const known = Number.isSafeInteger(len) && len >= 0;
  const out: Record<string, string | number> = { 'x-peerdist-job': job.id, via: VIA };
  if (known) out['accept-ranges'] = 'bytes';
  if (info.contentType) out['content-type'] = info.contentType;
  if (info.etag) out['etag'] = info.etag;
  if (info.lastModified) out['last-modified'] = info.lastModified;
  const range = known && req.headers['if-range'] === undefined ? parseRange(req.headers.range, len) : undefined;
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...out, 'content-range': `bytes */${len}`, 'content-length': 0 });
    res.end();
    return;
  }
  let stream: NodeJS.ReadableStream;
  if (range) {
    res.writeHead(206, {
      ...out,
      'content-range': `bytes ${range[0]}-${range[1]}/${len}`,
      'content-length': range[1] - range[0] + 1,
    });
    stream = job.createReadStream(range[0], range[1]);
  } else {
    res.writeHead(200, known ? { ...out, 'content-length': len } : out);
    stream = job.createReadStream();
  }
  pipeline(stream, res, (err) => {
    if (!err) return;
    if (!res.destroyed) res.destroy(err);
    // The client only sees a cut connection: the log says why (the job's code and reason).
    const code = (err as { code?: unknown }).code;
    (deps.logger ?? nullLogger).warn('proxy: download failed mid-stream', {
      url: target.href,
      job: job.id,
      code: typeof code === 'string' ? code : undefined,
      err: errorMessage(err),
    });
  });
}

async function forward(parts: ProxyParts, target: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = (req.method ?? 'GET') as Dispatcher.HttpMethod;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  const headers = dropHopByHop(req.headers);
  headers['via'] = withVia(headers['via']);
  const up = await undiciRequest(target, {
    method,
    headers,
    body: hasBody ? req : undefined,
    dispatcher: parts.dispatcher,
  });
  const upHeaders = dropHopByHop(up.headers as Record<string, string | string[] | undefined>);
  res.writeHead(up.statusCode, { ...upHeaders, via: withVia(upHeaders['via']) });
  pipeline(up.body, res, (err) => {
    if (err && !res.destroyed) res.destroy(err);
  });
}

export interface ProxyServer {
  address: string;
  close(): Promise<void>;
}

export async function startProxyServer(where: HostPort, deps: ProxyDeps): Promise<ProxyServer> {
  // Off loopback the proxy would serve the whole LAN: only the networks named with --proxy-allow.
  if (!isLoopbackHost(where.host) && !deps.allow)
    throw new AddressError(
      `the proxy listens on ${where.host}, which is not loopback: name the networks whose clients may use it with --proxy-allow CIDR`,
    );
  const parts = createParts(deps);
  let s: Awaited<ReturnType<typeof listenHttp>>;
  try {
    s = await listenHttp(where, createProxyHandler(deps, parts));
  } catch (err) {
    await Promise.all([parts.dispatcher.close(), parts.origin.close()]).catch(() => undefined);
    throw err;
  }
  s.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {
      /* client went away */
    });
    const body = 'peerdist proxy: CONNECT tunnels are disabled\n';
    socket.end(
      `HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
  });
  const a = s.address as { address: string; port: number };
  return {
    address: formatHostPort({ host: a.address, port: a.port }),
    close: async () => {
      await s.close();
      await Promise.all([parts.dispatcher.close(), parts.origin.close()]).catch(() => undefined);
    },
  };
}
