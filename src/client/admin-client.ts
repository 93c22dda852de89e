/**
 * Client side of the admin API (used by `peerdist get` / `peerdist status`): plain node:http so
 * both loopback TCP and unix sockets work.
 */
import type { IncomingMessage } from 'node:http';
import { type AdminAddress, parseAdminAddress } from '../util/address.js';
import { type ErrorCode, PeerdistError } from '../util/errors.js';
import { isErrorCode } from '../util/error-codes.js';

/**
 * The codes a client of the daemon raises (listed in src/util/error-codes.ts), plus the daemon's
 * own codes it relays (BLOCK_FAILED, ORIGIN_STATUS ...) when the daemon reports a failure.
 */
export type AdminClientCode = ErrorCode;

export class AdminClientError extends PeerdistError {
  declare readonly code: AdminClientCode;
  readonly status?: number;
  constructor(code: AdminClientCode, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

export const DEFAULT_DAEMON = '127.0.0.1:7171';

/** The daemon address from --daemon, else PEERDIST_DAEMON, else 127.0.0.1:7171. */
export function daemonAddress(
  flag: string | undefined,
  env: Record<string, string | undefined> = process.env,
): AdminAddress {
  return parseAdminAddress(flag ?? (env.PEERDIST_DAEMON || DEFAULT_DAEMON));
}

function describe(addr: AdminAddress): string {
  return addr.kind === 'socket' ? addr.path : `${addr.host}:${addr.port}`;
}

/**
 * What a failed connection to the daemon means for the user: NO_DAEMON (nothing listens),
 * DAEMON_GONE (reset), ADMIN_IO; an AbortError (the caller's signal) is passed on as it is, so the
 * caller can say "interrupted".
 */
export function connectionError(addr: AdminAddress, err: Error): Error {
  const code = (err as { code?: string }).code;
  if (err.name === 'AbortError') return err;
  if (code === 'ECONNREFUSED' || code === 'ENOENT')
    return new AdminClientError(
      'NO_DAEMON',
      `no peerdist daemon at ${describe(addr)} (start one with \`peerdist daemon\`, or pass --daemon)`,
      undefined,
      { cause: err },
    );
  if (code === 'ECONNRESET')
    return new AdminClientError(
      'DAEMON_GONE',
      `the daemon at ${describe(addr)} closed the connection (shutting down?)`,
      undefined,
      { cause: err },
    );
  return new AdminClientError('ADMIN_IO', `admin API at ${describe(addr)}: ${err.message}`, undefined, { cause: err });
}

/** Sends a request and resolves with the response head (body unread). */
export async function adminRequest(
  addr: AdminAddress,
  path: string,
  opts: { method?: string; signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<IncomingMessage> {
  // Loaded when first used: `peerdist get` never needs node:http (raw-http.ts).
  const { request } = await import('node:http');
  return new Promise((resolveP, reject) => {
    const target = addr.kind === 'socket' ? { socketPath: addr.path } : { host: addr.host, port: addr.port };
    const req = request(
      {
        ...target,
        path,
        method: opts.method ?? 'GET',
        signal: opts.signal,
        headers: { accept: 'application/json', ...opts.headers },
      },
      resolveP,
    );
    req.on('error', (err) => reject(connectionError(addr, err)));
    req.end();
  });
}

export async function readBody(res: IncomingMessage, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new AdminClientError('ADMIN_IO', 'admin response too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** The `error` field of a JSON error body, or the raw text. */
export async function errorFrom(res: IncomingMessage): Promise<AdminClientError> {
  const body = await readBody(res, 1024 * 1024).catch(() => Buffer.alloc(0));
  return errorFromBody(res.statusCode, res.statusMessage, body);
}

/** An error answer of the daemon (status, reason phrase, body) as the error the user sees. */
export function errorFromBody(
  status: number | undefined,
  statusText: string | undefined,
  body: Buffer,
): AdminClientError {
  const text = body.toString('utf8');
  let msg = text.trim();
  let code: ErrorCode = 'ADMIN_HTTP';
  try {
    const j = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof j.error === 'string') msg = j.error;
    // The daemon's own error code (ORIGIN_STATUS, BAD_SIGNATURE ...) when it sent one.
    if (isErrorCode(j.code)) code = j.code;
  } catch {
    /* not JSON */
  }
  return new AdminClientError(code, `daemon answered ${status}: ${msg || statusText}`, status);
}

export async function adminJson<T = unknown>(addr: AdminAddress, path: string, method = 'GET'): Promise<T> {
  const res = await adminRequest(addr, path, { method });
  if (res.statusCode !== 200) throw await errorFrom(res);
  const body = await readBody(res);
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch (err) {
    throw new AdminClientError('ADMIN_HTTP', `daemon sent invalid JSON for ${path}`, res.statusCode, { cause: err });
  }
}
