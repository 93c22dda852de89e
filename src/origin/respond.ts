/** Small response helpers shared by the file and upstream handlers. */
import type { ServerResponse } from 'node:http';
import type { Negotiation } from '../protocol/pccrtp/headers.js';
import type { OriginStats } from './stats.js';

/** Adds a sent identity body to the stats (missing-data requests are counted separately). */
export function countBody(ctx: { stats: OriginStats }, n: Negotiation, length: number): void {
  if (n.missingData) {
    ctx.stats.missingDataRequests++;
    ctx.stats.bytesMissingData += length;
  } else {
    ctx.stats.fullResponses++;
    ctx.stats.bytesFull += length;
  }
}

/** A short text/plain error response. */
export function plainError(res: ServerResponse, status: number, extra: Record<string, string> = {}): void {
  const body = `${status}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': String(body.length), ...extra }).end(body);
}

/** A header value as one string (repeated headers joined). */
export function str(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}
