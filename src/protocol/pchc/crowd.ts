/**
 * The `PeerDist-Crowd` HTTP header: our extension to MS-PCCRR requests sent to a hosted cache
 * (beyond MS-PCHC; protocol/pchc.md, "Crowds across subnets"). Pure: no I/O.
 *
 * A peerdist client marks its MS-PCCRR requests to a hosted cache with `PeerDist-Crowd: 1`. A
 * peerdist hosted cache answers such a request with `PeerDist-Crowd: ADDR ADDR ...`: the IP
 * addresses of the other clients that sent marked requests naming any of the same segment IDs in
 * the last moments (possibly none: an empty value still says the hosted cache reports crowds).
 * Requests without the mark get the plain MS-PCCRR response, so Windows sees nothing new.
 */
import { isIP } from 'node:net';

/** Header name (HTTP header names are case-insensitive; node lower-cases them). */
export const CROWD_HEADER = 'peerdist-crowd';
/** The request's mark: the sender takes part in crowd sharing and wants the crowd back. */
export const CROWD_REQUEST_VALUE = '1';
/** Addresses one response names at most (a longer list is cut when encoding, refused when parsing). */
export const MAX_CROWD_ADDRESSES = 32;
/** Longest header value we parse: 32 IPv6 addresses of at most 45 characters, space-separated. */
const MAX_VALUE_LENGTH = MAX_CROWD_ADDRESSES * 46;

/** Normalizes a socket's remote address: an IPv4-mapped IPv6 address is the IPv4 address. */
export function crowdAddress(remote: string): string | undefined {
  const a = remote.toLowerCase().startsWith('::ffff:') && isIP(remote.slice(7)) === 4 ? remote.slice(7) : remote;
  return isIP(a) === 0 ? undefined : a.toLowerCase();
}

/** The response header value for `addresses` (the first MAX_CROWD_ADDRESSES; each must be an IP address). */
export function formatCrowd(addresses: readonly string[]): string {
  const out: string[] = [];
  for (const a of addresses) {
    if (out.length >= MAX_CROWD_ADDRESSES) break;
    const n = crowdAddress(a);
    if (n === undefined) throw new RangeError(`not an IP address: ${JSON.stringify(a)}`);
    out.push(n);
  }
  return out.join(' ');
}

/**
 * Parses a response's header value. Returns the addresses, or undefined when the value is not a
 * crowd list (too long, too many entries, an entry that is not an IP address): the caller then
 * treats the hosted cache as one that does not report crowds.
 */
export function parseCrowd(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined || Array.isArray(value)) return undefined;
  if (value.length > MAX_VALUE_LENGTH) return undefined;
  const parts = value.split(/[ \t]+/).filter((p) => p.length > 0);
  if (parts.length > MAX_CROWD_ADDRESSES) return undefined;
  const out = new Set<string>();
  for (const p of parts) {
    const a = crowdAddress(p);
    if (a === undefined) return undefined;
    out.add(a);
  }
  return [...out];
}
