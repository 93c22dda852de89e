/**
 * Reverse-proxy mode (`--upstream URL`): requests are forwarded to the upstream with undici and
 * relayed; the upstream entity is hashed (keyed by URL, validator and length) so PeerDist clients
 * get content information once it is known. PeerDist is used only for entities with a validator
 * (strong ETag or Last-Modified) and a Content-Length.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { request, type Dispatcher } from 'undici';
import { hashStream } from '../protocol/pccrc/hash.js';
import { encodeContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { urlCacheKey, type Chunking, type UrlIdentity } from './hashcache.js';
import type { Producer } from './hashjobs.js';
import { makeHashRequestHeaders, type Negotiation } from '../protocol/pccrtp/headers.js';
import { tryPeerDist, type PeerDistContext } from './peerdist-response.js';
import { countBody, plainError, str } from './respond.js';

export interface UpstreamContext extends PeerDistContext {
  upstream: URL;
  dispatcher: Dispatcher;
  secret: Buffer;
  chunking: Chunking;
}

/** Request headers forwarded to the upstream. */
const FORWARD = ['range', 'if-none-match', 'if-modified-since', 'if-range', 'if-match', 'if-unmodified-since'];
/** Response headers relayed from the upstream. */
const RELAY = ['content-type', 'content-length', 'content-range', 'content-encoding', 'content-disposition', 'etag', 'last-modified',
  'accept-ranges', 'cache-control', 'expires', 'location', 'retry-after'];
const CANONICAL: Record<string, string> = { etag: 'ETag' };
const canon = (h: string) => CANONICAL[h] ?? h.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());

/** Upstream URL for a request-target already validated by parseRequestPath. */
export function upstreamUrl(base: URL, target: string): string {
  const prefix = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
  return `${base.origin}${prefix}${target}`;
}

/**
 * The identity of an upstream 200 response, when it is versionable, has a known length and is not
 * content-coded (we never ask for a coding, but a misbehaving upstream might apply one anyway).
 */
export function upstreamIdentity(url: string, headers: Record<string, string | string[] | undefined>): UrlIdentity | undefined {
  const coding = str(headers['content-encoding'])?.trim().toLowerCase();
  if (coding && coding !== 'identity') return undefined;
  const etag = str(headers['etag']);
  const lm = str(headers['last-modified']);
  const validator = etag && !etag.startsWith('W/') ? etag : lm;
  const cl = str(headers['content-length']);
  if (!validator || cl === undefined || !/^\d{1,16}$/.test(cl)) return undefined;
  return { url, validator, length: Number(cl) };
}

function relayHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of RELAY) {
    const v = str(headers[h]);
    if (v !== undefined) out[canon(h)] = v;
  }
  return out;
}

/** Drops an upstream body we will not read (destroying an undici body emits an error: swallow it). */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Fetches the entity again and hashes it, checking it is still the same version. */
function refetchProducer(ctx: UpstreamContext, id: UrlIdentity, version: ContentVersion): Producer {
  return async (signal) => {
    const r = await request(id.url, { method: 'GET', dispatcher: ctx.dispatcher, signal });
    try {
      const now = r.statusCode === 200 ? upstreamIdentity(id.url, r.headers) : undefined;
      if (!now || now.validator !== id.validator || now.length !== id.length) throw new Error(`upstream entity ${id.url} changed or unavailable`);
      return await hashBody(ctx, r.body, id, version, signal);
    } finally {
      discard(r.body);
    }
  };
}

async function hashBody(ctx: UpstreamContext, body: AsyncIterable<Buffer>, id: UrlIdentity, version: ContentVersion, signal: AbortSignal): Promise<Buffer> {
  const ci = await hashStream(body, { secret: ctx.secret, version, chunking: ctx.chunking, signal });
  if (ci.contentLength !== id.length) throw new Error(`upstream body of ${id.url} was ${ci.contentLength} bytes, expected ${id.length}`);
  return encodeContentInfo(ci);
}

export async function serveUpstream(ctx: UpstreamContext, req: IncomingMessage, res: ServerResponse, n: Negotiation): Promise<void> {
  const url = upstreamUrl(ctx.upstream, req.url ?? '/');
  const fwd: Record<string, string> = {};
  for (const h of FORWARD) {
    const v = str(req.headers[h]);
    if (v !== undefined) fwd[h] = v;
  }
  const method = req.method === 'HEAD' ? 'HEAD' : 'GET';
  let up: Dispatcher.ResponseData;
  try {
    up = await request(url, { method, headers: fwd, dispatcher: ctx.dispatcher });
  } catch {
    return plainError(res, 502);
  }
  /** Upstream bodies nobody consumes yet (a hash job or the relay claims one by removing it). */
  const unclaimed = new Set<Dispatcher.ResponseData['body']>([up.body]);
  const firstBody = up.body;
  try {
    const headers = relayHeaders(up.headers);
    const id = up.statusCode === 200 ? upstreamIdentity(url, up.headers) : undefined;
    if (method === 'GET' && n.peerdist && n.contentVersion && id && id.length > 0 && fwd['range'] === undefined) {
      const version = n.contentVersion;
      const key = urlCacheKey(id, { version, chunking: ctx.chunking, secret: ctx.secret });
      const refetch = refetchProducer(ctx, id, version);
      // The job hashes the body we are already receiving (if still unclaimed when it starts);
      // otherwise it fetches the entity again.
      const produce: Producer = (signal) => {
        if (!unclaimed.delete(firstBody)) return refetch(signal);
        return hashBody(ctx, firstBody, id, version, signal);
      };
      const peerHeaders: Record<string, string> = { 'Vary': 'Accept-Encoding' };
      for (const h of ['ETag', 'Last-Modified', 'Content-Type']) if (headers[h] !== undefined) peerHeaders[h] = headers[h]!;
      const outcome = await tryPeerDist(ctx, req, res, n, key, produce, peerHeaders, id.length);
      if (outcome === 'sent') return;
      if (!unclaimed.has(firstBody)) {
        // The body went to the (slow) hash job: fetch the entity again for this client.
        up = await request(url, { method, headers: fwd, dispatcher: ctx.dispatcher });
        unclaimed.add(up.body);
        Object.assign(headers, relayHeaders(up.headers));
      }
      Object.assign(headers, makeHashRequestHeaders());
      ctx.stats.makeHashRequests++;
    }
    res.writeHead(up.statusCode, headers);
    if (method === 'HEAD' || up.statusCode === 304 || up.statusCode === 204) {
      if (up.statusCode === 304) ctx.stats.notModified++;
      res.end();
      return;
    }
    let sent = 0;
    const status = up.statusCode;
    res.on('finish', () => { if (status === 200 || status === 206) countBody(ctx, n, sent); });
    unclaimed.delete(up.body);
    const counter = async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) { sent += chunk.length; yield chunk; }
    };
    await pipeline(up.body, counter, res).catch(() => undefined);
  } catch {
    if (!res.headersSent) plainError(res, 502);
    else res.destroy();
  } finally {
    for (const b of unclaimed) discard(b);
    unclaimed.clear();
  }
}
