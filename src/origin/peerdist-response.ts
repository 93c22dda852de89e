/**
 * The PeerDist decision shared by the file and upstream handlers: answer with content information
 * when it is cached (or, for HashRequest=true, once hashing finishes within the wait bound),
 * otherwise start hashing in the background and tell the caller to send the normal body with
 * MakeHashRequest=true.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, type KeyObject } from 'node:crypto';
import type { Producer } from './hashjobs.js';
import { peerDistResponseHeaders, type Negotiation } from '../protocol/pccrtp/headers.js';
import { HDR_SIGNATURE, signatureMessage, signContentInfo, type SignedFields } from '../protocol/pccrtp/signature.js';
import type { OriginStats } from './stats.js';

/** Where finished content information is looked up (the local hash cache, or the shared store). */
export interface ContentInfoLookup {
  get(key: string): Promise<Buffer | undefined>;
}

/** Runs (or joins) the hash job for a key; see HashJobs. */
export interface HashRunner {
  run(key: string, produce: Producer, length?: number): Promise<Buffer | undefined>;
  expectedMs(length: number): number;
}

export interface PeerDistContext {
  cache: ContentInfoLookup;
  /** Recent X-PeerDist-Signature values by signed message digest (RSA signing costs milliseconds). */
  signatures: SignatureMemo;
  jobs: HashRunner;
  stats: OriginStats;
  signingKey: KeyObject;
  /** How long a HashRequest=true request waits for hashing. */
  hashWaitMs: number;
  /**
   * How long the first PeerDist request for an entity whose hashes are not ready waits for them
   * (0 = never: plain body and MakeHashRequest at once, the MS-PCCRTP behaviour).
   */
  firstWaitMs: number;
}

/** A small LRU of signature header values keyed by the SHA-256 of the signed message. */
export class SignatureMemo {
  private readonly map = new Map<string, string>();
  constructor(private readonly limit = 1024) {}

  sign(key: KeyObject, f: SignedFields): string {
    const id = createHash('sha256').update(signatureMessage(f)).digest('hex');
    const hit = this.map.get(id);
    if (hit !== undefined) {
      this.map.delete(id);
      this.map.set(id, hit);
      return hit;
    }
    const value = signContentInfo(key, f);
    this.map.set(id, value);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value!);
    return value;
  }
}

/** Resolves to the job's result, or undefined after `ms` (the job keeps running). */
function within<T>(p: Promise<T | undefined>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Returns 'sent' when a PeerDist response was written, 'pending' when the caller must send the
 * normal entity (and MakeHashRequest). `entityHeaders` carry ETag / Last-Modified / Content-Type.
 *
 * A request that finds no cached content information waits for the hash job: up to `hashWaitMs`
 * for HashRequest=true, up to `firstWaitMs` otherwise, unless the job's expected duration (entity
 * length over the hash rate measured on earlier jobs) is more than twice that bound, in which case
 * waiting would only delay the plain answer. See protocol/pccrtp.md, "First request".
 */
export async function tryPeerDist(
  ctx: PeerDistContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
  key: string,
  produce: Producer,
  entityHeaders: Record<string, string>,
  identityLength: number,
): Promise<'sent' | 'pending'> {
  let blob = await ctx.cache.get(key);
  const hit = blob !== undefined;
  if (!blob) {
    const job = ctx.jobs.run(key, produce, identityLength);
    const bound = n.hashRequest ? ctx.hashWaitMs : ctx.firstWaitMs;
    if (bound > 0 && ctx.jobs.expectedMs(identityLength) <= 2 * bound) {
      blob = await within(job, bound);
      if (!blob && !n.hashRequest) ctx.stats.firstWaitsExpired++;
    }
  }
  if (!blob) return 'pending';
  if (hit) ctx.stats.cacheHits++;
  const signature = ctx.signatures.sign(ctx.signingKey, {
    path: req.url ?? '/',
    etag: entityHeaders['ETag'],
    contentLength: identityLength,
    body: blob,
  });
  res.writeHead(200, {
    ...entityHeaders,
    ...peerDistResponseHeaders(n.responseVersion, identityLength),
    'Content-Length': String(blob.length),
    [HDR_SIGNATURE]: signature,
  });
  const size = blob.length;
  res.on('finish', () => {
    ctx.stats.peerdistResponses++;
    ctx.stats.bytesContentInfo += size;
  });
  res.end(blob);
  return 'sent';
}
