/**
 * The daemon's side of MS-PCHC: offers segments it holds to a hosted cache so clients on other
 * subnets (and later ones here) can get them without the WAN. Segments are queued as they
 * complete; one request at a time per hosted cache, a short batching delay, BATCHED_OFFER with
 * up to 128 v2 segments (v2.0 over HTTP) or INITIAL_OFFER then SEGMENT_INFO on INTERESTED per v1
 * segment (v1.0 over HTTPS). Each segment is offered once (recently offered IDs are remembered).
 * Rules and choices: protocol/pchc.md, "Client behaviour".
 */
import { Agent, request } from 'undici';
import type { SegmentMeta } from '../cache/meta.js';
import { originTrust } from '../util/origin-trust.js';
import {
  decodeResponse,
  encodeRequest,
  encodeSegmentInformation,
  MAX_BATCHED_DESCRIPTORS,
  PCHC_PATH_V1,
  PCHC_PATH_V2,
  BATCHED_HASH_ALGO_V2,
  type RequestMessage,
  type ResponseCode,
} from '../protocol/pchc/codec.js';
import { formatHostPort } from '../util/address.js';
import { type Logger, nullLogger } from '../util/log.js';

/** What we put in ContentTag (opaque to the hosted cache). */
export const PEERDIST_CONTENT_TAG = Buffer.concat([Buffer.from('peerdist'), Buffer.alloc(8)]);
/** Per-request timer (the 2012 spec's 5 s request timer). */
const REQUEST_TIMEOUT_MS = 5_000;
const REMEMBER_OFFERED = 16_384;
const MAX_QUEUED = 65_536;
/** Wait before offering again after a 503 without a usable Retry-After, and the longest wait we accept. */
const BUSY_RETRY_MS = 5_000;
const MAX_BUSY_RETRY_MS = 60_000;

/**
 * A PCHC request answered with another HTTP status than 200. A hosted cache that could not queue an
 * offer answers 503 with Retry-After (protocol/pchc.md): the segments are offered again after it.
 */
export class PchcHttpError extends Error {
  constructor(
    readonly status: number,
    /** From Retry-After (seconds), when present and numeric. */
    readonly retryAfterMs?: number,
  ) {
    super(`HTTP ${status}`);
  }
}

function retryAfterMs(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && /^\d{1,6}$/.test(s.trim()) ? Number(s.trim()) * 1000 : undefined;
}

export interface HostedCacheTarget {
  host: string;
  /** The MS-PCHC port (v2: HTTP, v1: HTTPS). */
  port: number;
  version: 1 | 2;
  /** Extra trusted CA certificates (PEM) for v1 HTTPS, e.g. an exported self-signed certificate. */
  ca?: string;
}

/** POSTs one PCHC request, resolves with the response body (HTTP 200 only). */
export type PchcPost = (url: string, body: Buffer, signal: AbortSignal) => Promise<Buffer>;

export interface OffererOptions {
  target: HostedCacheTarget;
  /** Our MS-PCCRR port (ConnectionInformation.Port): the hosted cache pulls from it. */
  localPort: number;
  /**
   * Source address of the offers. The hosted cache pulls from the address an offer came from, so a
   * retrieval server bound to one address must offer from it (unset: the system's choice).
   */
  localAddress?: string;
  /** Delay that gathers completed segments into one request (default 100 ms). */
  batchDelayMs?: number;
  post?: PchcPost;
  logger?: Logger;
}

export interface OffererStats {
  requests: number;
  segmentsOffered: number;
  ok: number;
  interested: number;
  failures: number;
  /** Requests answered 503 (the hosted cache could not queue the pulls): offered again later. */
  busy: number;
  queued: number;
}

function undiciPost(
  ca: string | undefined,
  localAddress: string | undefined,
): { post: PchcPost; close: () => Promise<void> } {
  const agent = new Agent({
    // The extra CA is added to Node's roots and the system bundle, never in place of them
    // (protocol/admin-api.md, `hostedCacheCa`).
    connect: ca ? { ca: originTrust([ca]) } : {},
    ...(localAddress ? { localAddress } : {}),
    keepAliveTimeout: 10_000,
    connections: 1,
  });
  return {
    post: async (url, body, signal) => {
      const res = await request(url, {
        method: 'POST',
        body,
        dispatcher: agent,
        signal,
        headers: { 'content-length': String(body.length) },
      });
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of res.body as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > 64) {
          res.body.destroy();
          throw new Error('response too long');
        }
        chunks.push(c);
      }
      if (res.statusCode !== 200) throw new PchcHttpError(res.statusCode, retryAfterMs(res.headers['retry-after']));
      return Buffer.concat(chunks, n);
    },
    close: () => agent.close(),
  };
}

export class Offerer {
  private readonly queue: SegmentMeta[] = [];
  private readonly offered = new Set<string>();
  private readonly url: string;
  private readonly post: PchcPost;
  private readonly closeTransport: () => Promise<void>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly ac = new AbortController();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  readonly stats: Omit<OffererStats, 'queued'> = {
    requests: 0,
    segmentsOffered: 0,
    ok: 0,
    interested: 0,
    failures: 0,
    busy: 0,
  };

  constructor(private readonly opts: OffererOptions) {
    const t = opts.target;
    const scheme = t.version === 1 ? 'https' : 'http';
    this.url = `${scheme}://${formatHostPort({ host: t.host, port: t.port })}${t.version === 1 ? PCHC_PATH_V1 : PCHC_PATH_V2}`;
    if (opts.post) {
      this.post = opts.post;
      this.closeTransport = async () => undefined;
    } else {
      const u = undiciPost(t.ca, opts.localAddress);
      this.post = u.post;
      this.closeTransport = u.close;
    }
    this.log = opts.logger ?? nullLogger;
  }

  get target(): HostedCacheTarget {
    return this.opts.target;
  }

  snapshot(): OffererStats {
    return { ...this.stats, queued: this.queue.length };
  }

  /** Queues a completed, verified segment. Segments of the other content version are not offerable and are ignored. */
  offer(meta: SegmentMeta): void {
    if (this.ac.signal.aborted || meta.replay || meta.version !== this.opts.target.version) return;
    const key = meta.segmentId.toString('hex');
    if (this.offered.has(key) || this.queue.length >= MAX_QUEUED) return;
    this.remember(key);
    this.queue.push(meta);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, this.opts.batchDelayMs ?? 100);
  }

  /** Sends everything queued now; resolves when the queue is empty. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.kick();
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    this.ac.abort();
    if (this.timer) clearTimeout(this.timer);
    for (const r of this.retryTimers) clearTimeout(r);
    this.retryTimers.clear();
    this.queue.length = 0;
    await this.running?.catch(() => undefined);
    await this.closeTransport();
  }

  private remember(key: string): void {
    this.offered.add(key);
    if (this.offered.size > REMEMBER_OFFERED) this.offered.delete(this.offered.values().next().value!);
  }

  private kick(): void {
    if (this.running || this.queue.length === 0) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.queue.length) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.ac.signal.aborted) {
      if (this.opts.target.version === 2) await this.batched(this.queue.splice(0, MAX_BATCHED_DESCRIPTORS));
      else await this.initial(this.queue.shift()!);
    }
  }

  /** Queues segments again after the hosted cache said it could not take them now (HTTP 503). */
  private later(segs: SegmentMeta[], ms: number | undefined): void {
    if (this.ac.signal.aborted) return;
    const r = setTimeout(
      () => {
        this.retryTimers.delete(r);
        for (const s of segs) if (this.queue.length < MAX_QUEUED) this.queue.push(s);
        this.kick();
      },
      Math.min(MAX_BUSY_RETRY_MS, ms ?? BUSY_RETRY_MS),
    );
    this.retryTimers.add(r);
  }

  /** The response code; 'busy' for a 503 (offer again later); undefined when the request failed. */
  private async send(m: RequestMessage): Promise<ResponseCode | { busy: number | undefined } | undefined> {
    this.stats.requests++;
    const signal = AbortSignal.any([this.ac.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    try {
      const code = decodeResponse(await this.post(this.url, encodeRequest(m), signal));
      if (code === 0) this.stats.ok++;
      else this.stats.interested++;
      return code;
    } catch (err) {
      if (err instanceof PchcHttpError && err.status === 503) {
        this.stats.busy++;
        this.log.info('hosted cache busy: offering again later', { url: this.url, type: m.type });
        return { busy: err.retryAfterMs };
      }
      this.stats.failures++;
      this.log.info('hosted cache offer failed', { url: this.url, type: m.type, err: (err as Error).message });
      return undefined;
    }
  }

  private async batched(segs: SegmentMeta[]): Promise<void> {
    const code = await this.send({
      type: 'BATCHED_OFFER',
      port: this.opts.localPort,
      descriptors: segs.map((s) => ({
        blockSize: s.length,
        segmentSize: s.length,
        contentTag: PEERDIST_CONTENT_TAG,
        hashAlgorithm: BATCHED_HASH_ALGO_V2,
        segmentId: s.segmentId,
      })),
    });
    if (typeof code === 'object') this.later(segs, code.busy);
    else if (code !== undefined) this.stats.segmentsOffered += segs.length;
    else for (const s of segs) this.offered.delete(s.segmentId.toString('hex')); // may be offered again later
  }

  private async initial(s: SegmentMeta): Promise<void> {
    const code = await this.send({ type: 'INITIAL_OFFER', port: this.opts.localPort, hash: s.segmentId });
    if (code === undefined) {
      this.offered.delete(s.segmentId.toString('hex'));
      return;
    }
    if (typeof code === 'object') return this.later([s], code.busy);
    this.stats.segmentsOffered++;
    if (code === 0) return;
    if (s.hashAlgorithm === 'SHA-512/256t') return;
    const segmentInformation = encodeSegmentInformation({
      hashAlgorithm: s.hashAlgorithm,
      offsetInContent: 0,
      length: s.length,
      hod: s.hod,
      kp: s.kp,
      blockHashes: s.blockHashes,
    });
    const r = await this.send({
      type: 'SEGMENT_INFO',
      port: this.opts.localPort,
      contentTag: PEERDIST_CONTENT_TAG,
      segmentInformation,
    });
    if (typeof r === 'object') this.later([s], r.busy);
    else if (r === 1) this.log.info('hosted cache answered SEGMENT_INFO with INTERESTED', { url: this.url });
  }
}
