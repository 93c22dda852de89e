/**
 * Headers `peerdist get -H` asks the daemon to send to the origin (and only to the origin: never to
 * peers or hosted caches, never logged). They travel from get to the daemon's loopback admin API
 * in one request header, `X-PeerDist-Origin-Headers: <base64url of a JSON object name -> value>`
 * (protocol/admin-api.md).
 */
import { PeerdistError } from './errors.js';

export const ORIGIN_HEADERS_HEADER = 'x-peerdist-origin-headers';

/** Headers the engine sets itself (negotiation, ranges, conditionals, framing): refused from -H. */
const RESERVED = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'range',
  'accept-encoding',
  'x-p2p-peerdist',
  'x-p2p-peerdistex',
  'if-range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MAX_ENCODED = 16 * 1024;

/** Checks one header; returns the reason it is refused, or undefined. */
function refuse(name: string, value: string): string | undefined {
  if (!TOKEN.test(name)) return `bad header name ${JSON.stringify(name)}`;
  if (RESERVED.has(name.toLowerCase())) return `${name} is set by peerdist itself`;
  if (/[\r\n\0]/.test(value)) return `bad value for ${name}`;
  return undefined;
}

/** Parses `-H 'Name: value'` (repeatable) into a header object. */
export function parseHeaderArgs(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf(':');
    if (i <= 0) throw new PeerdistError('USAGE', `-H expects 'Name: value', got ${JSON.stringify(a.slice(0, 40))}`);
    const name = a.slice(0, i).trim();
    const value = a.slice(i + 1).trim();
    const why = refuse(name, value);
    if (why) throw new PeerdistError('USAGE', `-H: ${why}`);
    out[name] = value;
  }
  return out;
}

export function encodeOriginHeaders(h: Record<string, string>): string {
  return Buffer.from(JSON.stringify(h)).toString('base64url');
}

/** Decodes and checks the admin request header; throws USAGE with the reason. */
export function decodeOriginHeaders(v: string): Record<string, string> {
  if (v.length > MAX_ENCODED) throw new PeerdistError('USAGE', 'origin headers too large');
  let obj: unknown;
  try {
    obj = JSON.parse(Buffer.from(v, 'base64url').toString('utf8'));
  } catch {
    throw new PeerdistError('USAGE', 'origin headers do not decode');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
    throw new PeerdistError('USAGE', 'origin headers must be an object');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(obj)) {
    if (typeof val !== 'string') throw new PeerdistError('USAGE', `origin header ${k} is not a string`);
    const why = refuse(k, val);
    if (why) throw new PeerdistError('USAGE', why);
    out[k] = val;
  }
  return out;
}
