/**
 * Reverse-proxy mode (`--upstream URL`). With the entity store (the default), GET requests are
 * answered from whole entities fetched once into the store (entity-store.ts): plain, ranged,
 * conditional and missing-data requests, and content information hashed from the stored bytes,
 * whatever the upstream does with `Range` and whether or not it sends validators. A stored entity
 * is revalidated with the upstream once it is older than `revalidateMs`. Without the store (limit
 * 0), or when an entity cannot be stored in time, requests are forwarded with undici and relayed;
 * then PeerDist is used only for entities with a validator and a Content-Length. See
 * protocol/pccrtp.md, "Upstream entity store".
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { open, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { request, type Dispatcher } from 'undici';
import { hashFile } from './hash-file.js';
import { hashStream } from '../protocol/pccrc/hash.js';
import { encodeContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { urlCacheKey, type Chunking, type UrlIdentity } from './hashcache.js';
import type { Producer } from './hashjobs.js';
import { makeHashRequestHeaders, type Negotiation } from '../protocol/pccrtp/headers.js';
import { tryPeerDist, type PeerDistContext } from './peerdist-response.js';
import { countBody, plainError, str } from './respond.js';
import { servedEtag, type EntityStore, type StoredEntity } from './entity-store.js';
import { isNotModified, ifRangeMatches } from './conditional.js';
import { parseRange } from './range.js';
import type { Logger } from '../util/log.js';

export interface UpstreamContext extends PeerDistContext {
  upstream: URL;
  dispatcher: Dispatcher;
  secret: Buffer;
  chunking: Chunking;
  /** Whole-entity store; undefined = relay only. */
  store?: EntityStore;
  /** A stored entity older than this is revalidated with the upstream before it is served (ms). */
  revalidateMs: number;
  /** How long a request waits for the entity to be fetched into the store before it is relayed instead (ms). */
  fillWaitMs: number;
  /** Fills in progress, by URL (concurrent requests share one upstream fetch). */
  fills: Map<string, Promise<StoredEntity | undefined>>;
  log: Logger;
}

/** Request headers forwarded to the upstream. */
const FORWARD = ['range', 'if-none-match', 'if-modified-since', 'if-range', 'if-match', 'if-unmodified-since'];
/** Response headers relayed from the upstream. */
const RELAY = [
  'content-type',
  'content-length',
  'content-range',
  'content-encoding',
  'content-disposition',
  'etag',
  'last-modified',
  'accept-ranges',
  'cache-control',
  'expires',
  'location',
  'retry-after',
];
const CANONICAL: Record<string, string> = { etag: 'ETag' };
const canon = (h: string) =>
  CANONICAL[h] ?? h.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());

/** Upstream URL for a request-target already validated by parseRequestPath. */
export function upstreamUrl(base: URL, target: string): string {
  const prefix = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
  return `${base.origin}${prefix}${target}`;
}

/**
 * The identity of an upstream 200 response, when it is versionable, has a known length and is not
 * content-coded (we never ask for a coding, but a misbehaving upstream might apply one anyway).
 */
export function upstreamIdentity(
  url: string,
  headers: Record<string, string | string[] | undefined>,
): UrlIdentity | undefined {
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
      if (!now || now.validator !== id.validator || now.length !== id.length)
        throw new Error(`upstream entity ${id.url} changed or unavailable`);
      return await hashBody(ctx, r.body, id, version, signal);
    } finally {
      discard(r.body);
    }
  };
}

async function hashBody(
  ctx: UpstreamContext,
  body: AsyncIterable<Buffer>,
  id: UrlIdentity,
  version: ContentVersion,
  signal: AbortSignal,
): Promise<Buffer> {
  const ci = await hashStream(body, { secret: ctx.secret, version, chunking: ctx.chunking, signal });
  if (ci.contentLength !== id.length)
    throw new Error(`upstream body of ${id.url} was ${ci.contentLength} bytes, expected ${id.length}`);
  return encodeContentInfo(ci);
}

/** Resolves to the promise's value, or undefined after `ms` (the work goes on). */
function within<T>(p: Promise<T | undefined>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The stored version of `url`, fetched or revalidated first when missing or older than
 * `revalidateMs`. Undefined when the upstream has no storable entity there (not 200, a content
 * coding, larger than the store, or unreachable with nothing stored); the caller relays instead.
 */
export function obtainEntity(ctx: UpstreamContext, url: string): Promise<StoredEntity | undefined> {
  const store = ctx.store!;
  const e = store.get(url);
  if (e && Date.now() - e.validatedAt < ctx.revalidateMs) return Promise.resolve(e);
  let p = ctx.fills.get(url);
  if (!p) {
    p = fill(ctx, store, url, e)
      .catch((err: unknown) => {
        ctx.log.warn('upstream fetch into the entity store failed', { url, err: err as Error });
        return e; // unreachable or broken upstream: the stored copy (if any) is still one consistent version
      })
      .finally(() => ctx.fills.delete(url));
    ctx.fills.set(url, p);
  }
  return p;
}

/**
 * One upstream GET: conditional when the stored version has validators (304 confirms it),
 * otherwise a full fetch whose bytes are stored under their SHA-256, so a changed entity is a new
 * version even when the upstream's validators did not change or do not exist.
 */
async function fill(
  ctx: UpstreamContext,
  store: EntityStore,
  url: string,
  old: StoredEntity | undefined,
): Promise<StoredEntity | undefined> {
  const headers: Record<string, string> = {};
  if (old?.etag) headers['if-none-match'] = old.etag;
  if (old?.lastModified) headers['if-modified-since'] = old.lastModified;
  const up = await request(url, { method: 'GET', headers, dispatcher: ctx.dispatcher });
  try {
    if (up.statusCode === 304 && old) {
      ctx.stats.upstreamNotModified++;
      old.validatedAt = Date.now();
      return old;
    }
    if (up.statusCode >= 500) return old;
    if (up.statusCode !== 200) {
      await store.remove(url);
      return undefined;
    }
    const coding = str(up.headers['content-encoding'])?.trim().toLowerCase();
    const cl = str(up.headers['content-length']);
    const length = cl !== undefined && /^\d{1,16}$/.test(cl) ? Number(cl) : undefined;
    if ((coding && coding !== 'identity') || (length !== undefined && length > store.limit)) {
      await store.remove(url);
      return undefined;
    }
    const w = await store.begin();
    try {
      for await (const chunk of up.body) {
        if (!(await w.write(chunk as Buffer))) {
          await w.abort();
          await store.remove(url);
          return undefined;
        }
      }
      if (length !== undefined && w.bytes !== length) throw new Error(`upstream sent ${w.bytes} of ${length} bytes`);
    } catch (err) {
      await w.abort();
      throw err;
    }
    ctx.stats.upstreamFetches++;
    ctx.stats.upstreamBytes += w.bytes;
    const etag = str(up.headers['etag']);
    return await store.install(w, {
      url,
      etag: etag && !etag.startsWith('W/') ? etag : undefined,
      lastModified: str(up.headers['last-modified']),
      contentType: str(up.headers['content-type']),
    });
  } finally {
    discard(up.body);
  }
}

/** Content information for a stored entity: hashes its data file (immutable once in place). */
function storedProducer(ctx: UpstreamContext, e: StoredEntity, version: ContentVersion): Producer {
  return async (signal) => {
    const ci = await hashFile(ctx.store!.path(e), { secret: ctx.secret, version, chunking: ctx.chunking, signal });
    if (ci.contentLength !== e.length)
      throw new Error(`stored entity of ${e.url} is ${ci.contentLength} bytes, expected ${e.length}`);
    return encodeContentInfo(ci);
  };
}

/** Answers a GET or HEAD from the stored entity (`fh` is its open data file; this closes it). */
async function serveStored(
  ctx: UpstreamContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
  e: StoredEntity,
  fh: FileHandle,
): Promise<void> {
  let handedOff = false;
  try {
    ctx.stats.storeResponses++;
    const etag = servedEtag(e);
    const headers: Record<string, string> = {
      ETag: etag,
      'Content-Type': e.contentType ?? 'application/octet-stream',
      Vary: 'Accept-Encoding',
    };
    if (e.lastModified) headers['Last-Modified'] = e.lastModified;
    const lmMs = e.lastModified ? Date.parse(e.lastModified) : NaN;
    if (
      isNotModified(
        str(req.headers['if-none-match']),
        str(req.headers['if-modified-since']),
        etag,
        Number.isNaN(lmMs) ? undefined : lmMs,
      )
    ) {
      ctx.stats.notModified++;
      res.writeHead(304, headers).end();
      return;
    }
    const rangeHeader = str(req.headers.range);
    if (req.method === 'GET' && n.peerdist && n.contentVersion && e.length > 0 && rangeHeader === undefined) {
      // Keyed by the SHA-256 of the stored bytes: content information always describes exactly them.
      const key = urlCacheKey(
        { url: e.url, validator: `sha256:${e.sha256}`, length: e.length },
        { version: n.contentVersion, chunking: ctx.chunking, secret: ctx.secret },
      );
      const outcome = await tryPeerDist(
        ctx,
        req,
        res,
        n,
        key,
        storedProducer(ctx, e, n.contentVersion),
        headers,
        e.length,
      );
      if (outcome === 'sent') return;
      Object.assign(headers, makeHashRequestHeaders());
      ctx.stats.makeHashRequests++;
    }
    headers['Accept-Ranges'] = 'bytes';
    let status = 200,
      start = 0,
      end = e.length - 1;
    const range = ifRangeMatches(str(req.headers['if-range']), etag, e.lastModified)
      ? parseRange(rangeHeader, e.length)
      : { kind: 'none' as const };
    if (range.kind === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${e.length}`, 'Content-Length': '0' }).end();
      return;
    }
    if (range.kind === 'single') {
      status = 206;
      start = range.start;
      end = range.end;
      headers['Content-Range'] = `bytes ${start}-${end}/${e.length}`;
    }
    const length = end - start + 1;
    headers['Content-Length'] = String(length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    res.on('finish', () => countBody(ctx, n, length));
    handedOff = true;
    await pipeline(fh.createReadStream({ start, end, autoClose: true }), res).catch(() => undefined);
  } finally {
    if (!handedOff) await fh.close();
  }
}

export async function serveUpstream(
  ctx: UpstreamContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
): Promise<void> {
  const url = upstreamUrl(ctx.upstream, req.url ?? '/');
  if (ctx.store) {
    // HEAD never fills the store (it would fetch a whole entity); it is answered from a fresh copy or relayed.
    const fresh = ctx.store.get(url);
    const e =
      req.method === 'HEAD'
        ? fresh && Date.now() - fresh.validatedAt < ctx.revalidateMs
          ? fresh
          : undefined
        : await within(obtainEntity(ctx, url), ctx.fillWaitMs);
    if (e) {
      const fh = await open(ctx.store.path(e), 'r').catch(() => undefined); // evicted meanwhile: relay
      if (fh) return serveStored(ctx, req, res, n, e, fh);
    }
    return relay(ctx, req, res, n, url, false);
  }
  return relay(ctx, req, res, n, url, true);
}

/**
 * Forwards the request and relays the answer. `hashing`: hash versionable 200 entities for PeerDist
 * (relay-only mode); otherwise (the store could not answer in time) a PeerDist client gets the
 * plain answer with MakeHashRequest=true, as the store will have the entity shortly.
 */
async function relay(
  ctx: UpstreamContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
  url: string,
  hashing: boolean,
): Promise<void> {
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
    if (
      !hashing &&
      method === 'GET' &&
      n.peerdist &&
      n.contentVersion &&
      up.statusCode === 200 &&
      fwd['range'] === undefined
    ) {
      Object.assign(headers, makeHashRequestHeaders());
      ctx.stats.makeHashRequests++;
    } else if (
      hashing &&
      method === 'GET' &&
      n.peerdist &&
      n.contentVersion &&
      id &&
      id.length > 0 &&
      fwd['range'] === undefined
    ) {
      const version = n.contentVersion;
      const key = urlCacheKey(id, { version, chunking: ctx.chunking, secret: ctx.secret });
      const refetch = refetchProducer(ctx, id, version);
      // The job hashes the body we are already receiving (if still unclaimed when it starts);
      // otherwise it fetches the entity again.
      const produce: Producer = (signal) => {
        if (!unclaimed.delete(firstBody)) return refetch(signal);
        return hashBody(ctx, firstBody, id, version, signal);
      };
      const peerHeaders: Record<string, string> = { Vary: 'Accept-Encoding' };
      for (const h of ['ETag', 'Last-Modified', 'Content-Type'])
        if (headers[h] !== undefined) peerHeaders[h] = headers[h]!;
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
    res.on('finish', () => {
      if (status === 200 || status === 206) countBody(ctx, n, sent);
    });
    unclaimed.delete(up.body);
    const counter = async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        sent += chunk.length;
        yield chunk;
      }
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
