/**
 * Maps an HTTP request-target to path segments under the served directory, refusing anything that
 * could escape it. Pure (no I/O); the server still realpath-checks the result (symlinks).
 * Rules (protocol/pccrtp.md, "Paths"): origin-form only; the path is percent-decoded exactly once;
 * encoded '/', '\' and NUL, backslashes, NUL, anything still percent-encoded after one decoding
 * (double encoding) and '.' / '..' segments are refused.
 */
export type RequestPath =
  | { ok: true; segments: string[]; reserved: boolean }
  | { ok: false; status: 400 | 403; reason: string };

/** URL prefix owned by the server itself (never mapped to files). */
export const RESERVED_PREFIX = '/.peerdist/';

export function parseRequestPath(target: string | undefined): RequestPath {
  if (target?.[0] !== '/') return { ok: false, status: 400, reason: 'not origin-form' };
  const end = target.search(/[?#]/);
  const raw = end < 0 ? target : target.slice(0, end);
  if (raw.includes('\\')) return { ok: false, status: 403, reason: 'backslash' };
  if (/%(2f|5c|00)/i.test(raw)) return { ok: false, status: 403, reason: 'encoded separator or NUL' };
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return { ok: false, status: 400, reason: 'bad percent-encoding' };
  }
  if (decoded.includes('\0')) return { ok: false, status: 403, reason: 'NUL' };
  if (decoded.includes('\\')) return { ok: false, status: 403, reason: 'backslash' };
  if (/%[0-9a-f]{2}/i.test(decoded)) return { ok: false, status: 403, reason: 'double encoding' };
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..')) return { ok: false, status: 403, reason: 'dot segment' };
  return {
    ok: true,
    segments,
    reserved: decoded.startsWith(RESERVED_PREFIX) || decoded === RESERVED_PREFIX.slice(0, -1),
  };
}

/**
 * Directory mode: whether a parsed request names something that is never served (answered 404 like
 * a missing file): a trailing slash (`/FILE/`, `/DIR/`: only files are served, never listings),
 * or, unless `allowDotfiles`, a segment starting with '.' (`/.env`, `/.git/config`, `/a/.secret`),
 * so a `.git/` or `.env` left in the served directory is not exposed.
 */
export function isHiddenTarget(target: string, segments: string[], allowDotfiles: boolean): boolean {
  const end = target.search(/[?#]/);
  const raw = end < 0 ? target : target.slice(0, end);
  if (segments.length > 0 && raw.endsWith('/')) return true;
  return !allowDotfiles && segments.some((s) => s.startsWith('.'));
}
