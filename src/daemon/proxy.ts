/**
 * Local HTTP forward proxy (http_proxy=http://127.0.0.1:P). Absolute-form `GET http://...`
 * requests go through the download engine, so apt/curl downloads come from the peer cache when
 * the origin speaks PeerDist; a single byte range is served from the job's ordered stream. When
 * the engine fails before the first byte, the request is forwarded so the client sees the
 * origin's own status (404 ...).
 * Every other method, GET https:// in absolute form, and requests carrying Authorization or
 * Cookie headers are forwarded unchanged with undici, without caching. CONNECT is refused with 501: the proxy is not a general tunnel, and TLS
 * traffic could not be cached anyway. See protocol/admin-api.md.
 */
import type { IncomingMessage, ServerResponse, IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { errorMessage, listenHttp, sendText, upstreamStatus } from './http-util.js';
import type { JobBook } from './jobs.js';
import { type HostPort, formatHostPort, isLoopbackHost } from '../util/address.js';
import { type Logger, nullLogger } from '../util/log.js';

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
  dispatcher?: Dispatcher;
}

export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const log = deps.logger ?? nullLogger;
  return (req, res) => {
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
    // Requests with credentials are forwarded as-is: downloads are shared by URL, and one user's
    // authorised download must not be joined by another request.
    const credentials = req.headers.authorization !== undefined || req.headers.cookie !== undefined;
    const cacheable = req.method === 'GET' && target.protocol === 'http:' && !credentials;
    const work = cacheable ? viaEngine(deps, target, req, res) : forward(deps, target, req, res);
    work.catch((err) => {
      log.warn('proxy: request failed', { url: target.href, err: errorMessage(err) });
      if (!res.headersSent) sendText(res, upstreamStatus(err), `peerdist proxy: ${errorMessage(err)}\n`);
      else res.destroy();
    });
  };
}

async function viaEngine(deps: ProxyDeps, target: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const headers = dropHopByHop(req.headers, ENGINE_OWNED);
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) flat[k] = Array.isArray(v) ? v.join(', ') : v;
  const job = deps.jobs.obtain(target.href, Object.keys(flat).length ? flat : undefined);
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
    return forward(deps, target, req, res);
  }
  if (req.destroyed) return;
  // The length is unknown (-1) when the origin sent no Content-Length (chunked or close-delimited
  // plain body): then there is no Content-Length header (node frames the body chunked, or closes
  // the connection for HTTP/1.0 clients), ranges are answered with the whole body (200), and
  // Accept-Ranges is not advertised.
  const len = info.contentLength;
  const known = Number.isSafeInteger(len) && len >= 0;
  const out: Record<string, string | number> = { 'x-peerdist-job': job.id, via: '1.1 peerdist' };
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

async function forward(deps: ProxyDeps, target: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = (req.method ?? 'GET') as Dispatcher.HttpMethod;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  const up = await undiciRequest(target, {
    method,
    headers: dropHopByHop(req.headers),
    body: hasBody ? req : undefined,
    dispatcher: deps.dispatcher,
  });
  const headers = dropHopByHop(up.headers as Record<string, string | string[] | undefined>);
  res.writeHead(up.statusCode, { ...headers, via: '1.1 peerdist' });
  pipeline(up.body, res, (err) => {
    if (err && !res.destroyed) res.destroy(err);
  });
}

export interface ProxyServer {
  address: string;
  close(): Promise<void>;
}

export async function startProxyServer(where: HostPort, deps: ProxyDeps): Promise<ProxyServer> {
  const s = await listenHttp(where, createProxyHandler(deps));
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
  if (!isLoopbackHost(where.host))
    (deps.logger ?? nullLogger).warn('proxy listens on a non-loopback address', { host: where.host });
  return { address: formatHostPort({ host: a.address, port: a.port }), close: s.close };
}
