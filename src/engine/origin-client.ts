/**
 * HTTP access to origins for the download engine: one undici Agent (a small connection pool per
 * origin) shared by every job. Injectable (OriginClient) so engine tests can fake the origin.
 */
import { createHash } from 'node:crypto';
import { Agent, type buildConnector, request } from 'undici';
import { DownloadError, type DownloadErrorCode } from './errors.js';

export type HeaderMap = Record<string, string | string[] | undefined>;

export interface OriginResponse {
  status: number;
  headers: HeaderMap;
  /** The body; consume it or call `discard()`. */
  body: AsyncIterable<Buffer>;
  discard(): void;
}

export interface OriginClient {
  /** GET `url`; rejects with DownloadError('ORIGIN_UNREACHABLE') when no answer arrives. */
  get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginResponse>;
  close(): Promise<void>;
}

export interface UndiciOriginOptions {
  /** Connections per origin (keep small: every job of the daemon shares them). Default 6. */
  connections?: number;
  /** Time to the response headers. Default 15 s. */
  headersTimeoutMs?: number;
  /** Maximum silence while receiving a body. Default 30 s. */
  bodyTimeoutMs?: number;
  /** How connections are made (default undici's); the proxy's checks which addresses it reaches. */
  connect?: buildConnector.connector;
  /** Headers added to every request (the proxy's `Via`). */
  extraHeaders?: Record<string, string>;
  /**
   * Certificate authorities HTTPS origins may chain to (PEM strings), replacing Node's default
   * list: see util/origin-trust.ts (bundled + system + --origin-ca). Default: Node's bundled roots.
   */
  ca?: string[];
}

export class UndiciOriginClient implements OriginClient {
  private readonly agent: Agent;
  private readonly o: Required<Omit<UndiciOriginOptions, 'connect' | 'extraHeaders' | 'ca'>>;
  private readonly extra: Record<string, string>;

  constructor(opts: UndiciOriginOptions = {}) {
    this.o = {
      connections: opts.connections ?? 6,
      headersTimeoutMs: opts.headersTimeoutMs ?? 15_000,
      bodyTimeoutMs: opts.bodyTimeoutMs ?? 30_000,
    };
    this.extra = opts.extraHeaders ?? {};
    this.agent = new Agent({
      connections: this.o.connections,
      headersTimeout: this.o.headersTimeoutMs,
      bodyTimeout: this.o.bodyTimeoutMs,
      // The proxy's connector (its own address checks) or undici's, with the trusted CAs.
      ...(opts.connect
        ? { connect: opts.connect }
        : { connectTimeout: 10_000, ...(opts.ca ? { connect: { ca: opts.ca } } : {}) }),
    });
  }

  async get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginResponse> {
    try {
      const res = await request(url, {
        method: 'GET',
        headers: { ...headers, ...this.extra },
        signal,
        dispatcher: this.agent,
      });
      const body = res.body;
      return {
        status: res.statusCode,
        headers: res.headers as HeaderMap,
        body: body as AsyncIterable<Buffer>,
        discard: () => {
          body.destroy();
        },
      };
    } catch (err) {
      if (signal?.aborted) throw new DownloadError('CANCELLED', 'download cancelled', { cause: err });
      throw new DownloadError('ORIGIN_UNREACHABLE', `origin unreachable: ${url}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

/** Reads a whole body, refusing more than `max` bytes (DownloadError with `code`). */
export async function readBody(
  res: OriginResponse,
  max: number,
  code: DownloadErrorCode = 'BAD_CONTENT_INFO',
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    n += chunk.length;
    if (n > max) {
      res.discard();
      throw new DownloadError(code, `response body larger than ${max} bytes`);
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts, n);
}

/**
 * What a download's credentials (Authorization, Cookie headers sent to the origin, e.g. from
 * `get -H`) look like for joining: '' without any, else a digest. Downloads are shared by URL only
 * between requests with the same credentials, so a request without a token never joins (and
 * receives the bytes of) another user's authorized download.
 */
export function credentialKey(headers: Record<string, string> | undefined): string {
  if (!headers) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    const n = k.toLowerCase();
    if (n === 'authorization' || n === 'cookie' || n === 'proxy-authorization') parts.push(`${n}:${v}`);
  }
  if (parts.length === 0) return '';
  return createHash('sha256').update(parts.sort().join('\n')).digest('hex');
}

/** Single header value (first when repeated). */
export function header(h: HeaderMap, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
