/**
 * Value codecs inside MS-PCCRD messages: hex segment IDs, the v2 Scopes payload, the v2
 * availability bit array, strict base64 and XAddrs entries. Pure.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { DiscoveryParseError, type DiscoveryErrorCode } from './errors.js';

/** Most segment IDs in one message (the v2 count field is one byte; v1 uses the same bound). */
export const MAX_SCOPES = 255;
/** v2 SegmentHashSize: HoHoDk is 32 bytes. */
export const V2_SEGMENT_HASH_SIZE = 32;

export interface Availability {
  partial: boolean;
  complete: boolean;
}

const fail = (code: DiscoveryErrorCode, field: string, msg: string): never => {
  throw new DiscoveryParseError(code, field, msg);
};

export function segmentIdHex(id: Buffer): string {
  return id.toString('hex').toUpperCase();
}

/** v2 Probe Scopes payload: u16 BE hash size (32), u8 count, the IDs. */
export function encodeV2Scopes(ids: Buffer[]): string {
  if (ids.length < 1 || ids.length > MAX_SCOPES) throw new RangeError(`v2 probe carries 1..${MAX_SCOPES} segment IDs`);
  for (const id of ids) if (id.length !== V2_SEGMENT_HASH_SIZE) throw new RangeError('v2 segment IDs are 32 bytes');
  const head = Buffer.alloc(3);
  head.writeUInt16BE(V2_SEGMENT_HASH_SIZE, 0);
  head.writeUInt8(ids.length, 2);
  return Buffer.concat([head, ...ids]).toString('base64');
}

export function decodeV2Scopes(b64: string): Buffer[] {
  const buf = decodeBase64(b64, 'Scopes');
  if (buf.length < 3) fail('PCCRD_INVALID', 'Scopes', 'v2 scopes shorter than 3 bytes');
  const size = buf.readUInt16BE(0);
  if (size !== V2_SEGMENT_HASH_SIZE) fail('PCCRD_INVALID', 'Scopes', `SegmentHashSize ${size}, expected 32`);
  const count = buf.readUInt8(2);
  if (count === 0) fail('PCCRD_INVALID', 'Scopes', 'SegmentHashCount is 0');
  if (buf.length !== 3 + count * size)
    fail('PCCRD_INVALID', 'Scopes', `length ${buf.length} does not match ${count} x ${size}`);
  // Views over the one decoded buffer (it holds nothing else): no copy per ID, and the IDs of a
  // probe stay contiguous, so a responder can hex them in one go (segmentKeys).
  const ids: Buffer[] = [];
  for (let k = 0; k < count; k++) ids.push(buf.subarray(3 + k * size, 3 + (k + 1) * size));
  return withPackedIds(ids, buf.subarray(3));
}

/**
 * Marks `ids` as the consecutive IDs in `packed` (a hidden property: the array is unchanged), so
 * that src/discovery/keys.ts can hex or compare them in one call without checking every view.
 */
export function withPackedIds(ids: Buffer[], packed: Buffer): Buffer[] {
  Object.defineProperty(ids, PACKED_IDS, { value: packed });
  return ids;
}

/** The hidden property of withPackedIds. */
export const PACKED_IDS: unique symbol = Symbol('packedIds');

/**
 * The availability pairs of a v2 ProbeMatch as numbers (0..3, high bit "has at least part", low
 * bit "has all"), four per byte MSB first, padding pairs included: decodeAvailability without an
 * object per pair, for the prober's hot path.
 */
export function availabilityPairs(buf: Buffer): Uint8Array {
  const out = new Uint8Array(buf.length * 4);
  for (let k = 0; k < out.length; k++) out[k] = (buf[k >> 2]! >> (6 - 2 * (k & 3))) & 3;
  return out;
}

/**
 * encodeAvailability from pair values (0..3 each, as availabilityPairs returns; bit 1 alone or
 * with bit 0, as encodeAvailability normalises {complete} to "partial and complete").
 */
export function encodeAvailabilityPairs(pairs: Uint8Array): Buffer {
  const out = Buffer.alloc(Math.ceil(pairs.length / 4));
  for (let k = 0; k < pairs.length; k++) {
    const p = pairs[k]!;
    const v = p & 1 ? 3 : p & 2;
    out[k >> 2]! |= v << (6 - 2 * (k & 3));
  }
  return out;
}

/**
 * v2 ProbeMatch availability: two bits per probed segment in probe order, packed
 * most-significant-bits first (segment 0 = bits 7..6 of byte 0); in each pair the high bit is
 * "has at least part", the low bit "has all".
 */
export function encodeAvailability(pairs: Availability[]): Buffer {
  const out = Buffer.alloc(Math.ceil(pairs.length / 4));
  pairs.forEach((p, k) => {
    const v = (p.partial || p.complete ? 2 : 0) | (p.complete ? 1 : 0);
    out[k >> 2]! |= v << (6 - 2 * (k & 3));
  });
  return out;
}

export function decodeAvailability(buf: Buffer): Availability[] {
  const out: Availability[] = [];
  for (let k = 0; k < buf.length * 4; k++) {
    const v = (buf[k >> 2]! >> (6 - 2 * (k & 3))) & 3;
    out.push({ partial: (v & 2) !== 0, complete: (v & 1) !== 0 });
  }
  return out;
}

/** Any character that is not base64 (whitespace included). */
const BASE64_CHARS_RE = /[^A-Za-z0-9+/=]/;

/** The 6-bit value of a base64 digit (A-Z a-z 0-9 + /). */
function base64Value(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  return c === 0x2b ? 62 : 63;
}

/** Strict base64 (XML whitespace allowed and removed; canonical padding and trailing bits). */
export function decodeBase64(text: string, field: string): Buffer {
  // One scan of the text when it has no whitespace (what we and Windows send).
  const other = BASE64_CHARS_RE.test(text);
  const b64 = other ? text.replace(/[ \t\r\n]+/g, '') : text;
  if (b64.length === 0) fail('PCCRD_INVALID', field, 'empty base64');
  // A 255-ID v2 probe is 11 KB of base64: a grouped regular expression took a tenth of a daemon's
  // time in a 32-client flash crowd, its successor /[^A-Za-z0-9+/=]|=[^=]|={3}/ a fifth of parsing
  // a probe, and checking canonical form by encoding the result again a tenth. '=' only as one or
  // two final characters (that expression's rule, for a length divisible by 4); canonical means
  // the bits a padded final group leaves over are zero (RFC 4648 section 3.5).
  const eq = b64.indexOf('=');
  if (
    b64.length % 4 !== 0 ||
    (eq >= 0 && eq < b64.length - 2) ||
    (eq === b64.length - 2 && b64.charCodeAt(b64.length - 1) !== 0x3d) ||
    (other && BASE64_CHARS_RE.test(b64))
  )
    fail('PCCRD_INVALID', field, 'malformed base64');
  const pad = eq < 0 ? 0 : b64.length - eq;
  if (pad > 0 && (base64Value(b64.charCodeAt(b64.length - pad - 1)) & (pad === 2 ? 0x0f : 0x03)) !== 0)
    fail('PCCRD_INVALID', field, 'non-canonical base64');
  return Buffer.from(b64, 'base64');
}

/** Formats a transport address for XAddrs: `host:port`, IPv6 as `[addr]:port`. */
export function formatXAddr(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses one XAddrs entry (`host:port` or `[v6]:port`); undefined when malformed. */
export function parseXAddr(s: string): { host: string; port: number } | undefined {
  let host: string;
  let portText: string;
  const m6 = /^\[([0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]{1,32})?)\]:([0-9]{1,5})$/.exec(s);
  if (m6) {
    host = m6[1]!;
    portText = m6[2]!;
    if (!isIPv6(host.replace(/%.*$/, ''))) return undefined;
  } else {
    const m = /^([^:[\]\s]+):([0-9]{1,5})$/.exec(s);
    if (!m) return undefined;
    host = m[1]!;
    portText = m[2]!;
    if (!isIPv4(host) && (/^[0-9.]+$/.test(host) || !HOSTNAME_RE.test(host))) return undefined;
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}
