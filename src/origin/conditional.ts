/** Conditional request evaluation (RFC 9110 13) for GET/HEAD. Pure. */

function opaque(tag: string): string {
  const t = tag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/** If-None-Match (weak comparison) takes precedence over If-Modified-Since. */
export function isNotModified(
  ifNoneMatch: string | undefined,
  ifModifiedSince: string | undefined,
  etag: string | undefined,
  lastModifiedMs: number | undefined,
): boolean {
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return etag !== undefined;
    if (etag === undefined) return false;
    const want = opaque(etag);
    return ifNoneMatch.split(',').some((t) => opaque(t) === want);
  }
  if (ifModifiedSince !== undefined && lastModifiedMs !== undefined) {
    const since = Date.parse(ifModifiedSince);
    if (Number.isNaN(since)) return false;
    return Math.floor(lastModifiedMs / 1000) * 1000 <= since;
  }
  return false;
}

/** If-Range: a strong ETag must match exactly; a date must equal Last-Modified exactly. */
export function ifRangeMatches(
  ifRange: string | undefined,
  etag: string | undefined,
  lastModified: string | undefined,
): boolean {
  if (ifRange === undefined) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) return etag !== undefined && !etag.startsWith('W/') && v === etag;
  return lastModified !== undefined && v === lastModified;
}
