/**
 * Serving blobs from an object store (`peerdist serve --store URL`) like files: the blob's ETag and
 * Last-Modified as validators, conditional and single-range requests, the PeerDist answer with
 * content information shared through the store (shared-hash.ts). Bytes are read from the store
 * only while the blob keeps the ETag the response announced, so a blob replaced mid-download
 * ends the response early (the client sees a short body), never a mix of two versions.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { encodeContentInfo } from '../protocol/pccrc/codec.js';
import { hashChunks } from '../protocol/pccrc/hash.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { makeHashRequestHeaders, type Negotiation } from '../protocol/pccrtp/headers.js';
import type { Logger } from '../util/log.js';
import { relayCoalesced } from './coalesce.js';
import { isNotModified } from './conditional.js';
import type { Chunking } from './hashcache.js';
import type { Producer } from './hashjobs.js';
import { tryPeerDist, type PeerDistContext } from './peerdist-response.js';
import { planBody } from './range.js';
import { countBody, plainError, str } from './respond.js';
import { recordSpec, type SharedHashJobs } from './shared-hash.js';
import { ObjectChangedError, StoreUnavailableError, type ObjectInfo, type ObjectStore } from './store.js';

export interface BlobContext extends Omit<PeerDistContext, 'cache' | 'jobs'> {
  store: ObjectStore;
  shared: SharedHashJobs;
  secret: Buffer;
  chunking: Chunking;
  log: Logger;
  /** Seconds for Retry-After on 503. */
  retryAfterS: number;
  /** One log line per outage: set while the store is failing. */
  outage: { since?: number };
}

/** Hashes a blob version straight from the store (the read fails if the blob changes meanwhile). */
export function blobProducer(
  ctx: Pick<BlobContext, 'store' | 'secret' | 'chunking'>,
  blob: ObjectInfo,
  version: ContentVersion,
  onProgress?: (bytesDone: number) => void,
): Producer {
  return async (signal) => {
    const stream = await ctx.store.read(blob.name, blob.etag, 0, blob.size - 1);
    try {
      const ci = await hashChunks(stream, {
        secret: ctx.secret,
        version,
        chunking: ctx.chunking,
        signal,
        onProgress,
      });
      if (ci.contentLength !== blob.size)
        throw new Error(`${blob.name}: read ${ci.contentLength} bytes, expected ${blob.size}`);
      return encodeContentInfo(ci);
    } finally {
      stream.destroy();
    }
  };
}

/** Runs a store operation, turning an outage into a 503 (logged once per outage). */
async function guarded<T>(ctx: BlobContext, res: ServerResponse, op: () => Promise<T>): Promise<T | typeof FAILED> {
  try {
    const v = await op();
    if (ctx.outage.since !== undefined) {
      ctx.log.info('storage reachable again', {
        store: ctx.store.url,
        outageMs: Date.now() - ctx.outage.since,
      });
      ctx.outage.since = undefined;
    }
    return v;
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    if (ctx.outage.since === undefined) {
      ctx.outage.since = Date.now();
      ctx.log.error('storage unreachable; answering 503 until it is back', {
        store: ctx.store.url,
        err: err.message,
      });
    }
    ctx.stats.storeUnavailable = (ctx.stats.storeUnavailable ?? 0) + 1;
    if (!res.headersSent) plainError(res, 503, { 'Retry-After': String(ctx.retryAfterS) });
    return FAILED;
  }
}
const FAILED = Symbol('failed');

/** Largest single write of a relayed blob body to the client (see coalesce.ts). */
const RELAY_WRITE_BYTES = 256 * 1024;

export async function serveBlob(
  ctx: BlobContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
  segments: string[],
  attempt = 0,
): Promise<void> {
  if (segments.length === 0) return plainError(res, 404);
  const name = segments.join('/');
  const blob = await guarded(ctx, res, () => ctx.store.stat(name));
  if (blob === FAILED) return;
  if (blob === undefined) return plainError(res, 404);
  const lastModifiedMs = blob.lastModified.getTime();
  const headers: Record<string, string> = {
    ETag: blob.etag,
    'Last-Modified': blob.lastModified.toUTCString(),
    'Content-Type': 'application/octet-stream',
    Vary: 'Accept-Encoding',
  };
  if (
    isNotModified(str(req.headers['if-none-match']), str(req.headers['if-modified-since']), blob.etag, lastModifiedMs)
  ) {
    ctx.stats.notModified++;
    res.writeHead(304, headers).end();
    return;
  }
  const rangeHeader = str(req.headers.range);
  if (req.method === 'GET' && n.peerdist && n.contentVersion && blob.size > 0 && rangeHeader === undefined) {
    const spec = recordSpec(
      { ...blob, name: ctx.store.fullName(blob.name) },
      n.contentVersion,
      ctx.chunking,
      ctx.secret,
    );
    const produce = blobProducer(ctx, blob, n.contentVersion);
    const pctx: PeerDistContext = {
      ...ctx,
      cache: { get: () => ctx.shared.load(spec) },
      jobs: { run: () => ctx.shared.run(spec, produce), expectedMs: (l) => ctx.shared.expectedMs(l) },
    };
    const outcome = await guarded(ctx, res, () =>
      tryPeerDist(pctx, req, res, n, spec.name, produce, headers, blob.size),
    );
    if (outcome === FAILED || outcome === 'sent') return;
    Object.assign(headers, makeHashRequestHeaders());
    ctx.stats.makeHashRequests++;
  }
  const plan = planBody({ range: rangeHeader, 'if-range': str(req.headers['if-range']) }, headers, blob.size, res);
  if (!plan) return;
  const { status, start, end, length } = plan;
  if (req.method === 'HEAD' || length === 0) {
    res.writeHead(status, headers).end();
    return;
  }
  let stream: Awaited<ReturnType<ObjectStore['read']>>;
  try {
    stream = await ctx.store.read(blob.name, blob.etag, start, end);
  } catch (err) {
    if (err instanceof StoreUnavailableError) return void (await guarded(ctx, res, () => Promise.reject(err)));
    if (!(err instanceof ObjectChangedError)) throw err;
    // Replaced or deleted between the properties and the read: answer for the version there now.
    if (attempt === 0) return serveBlob(ctx, req, res, n, segments, 1);
    return plainError(res, 503, { 'Retry-After': '1' });
  }
  res.writeHead(status, headers);
  res.on('finish', () => countBody(ctx, n, length));
  // Fewer, larger writes to the client, no copies (coalesce.ts says why).
  await relayCoalesced(stream, res, RELAY_WRITE_BYTES).catch((err: unknown) => {
    if (!res.writableFinished) {
      ctx.log.info('blob read ended early', { name: blob.name, err: (err as Error).message });
      res.destroy();
    }
  });
}
