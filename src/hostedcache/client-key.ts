/**
 * The unit of fairness at a hosted cache (protocol/pchc.md, "Fair shares"): a client is its IPv4
 * address, or the /64 of its IPv6 address (a host on IPv6 is handed a whole /64 and can send from
 * any address in it). Pure.
 */
import { isIP } from 'node:net';

/** Eight 16-bit groups of an IPv6 address (embedded IPv4 tail and `::` expanded); undefined if not IPv6. */
function ipv6Groups(a: string): number[] | undefined {
  if (isIP(a) !== 6) return undefined;
  let s = a;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    tail.push((o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!);
    s = s.slice(0, -v4[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const parse = (p: string) => (p === '' ? [] : p.split(':').map((g) => Number.parseInt(g, 16)));
  const h = parse(head);
  const r = rest === undefined ? [] : parse(rest);
  const fill = 8 - tail.length - h.length - r.length;
  const groups = rest === undefined ? [...h, ...tail] : [...h, ...Array<number>(fill).fill(0), ...r, ...tail];
  return groups.length === 8 ? groups : undefined;
}

/**
 * The client key of a socket address: the IPv4 address (an IPv4-mapped IPv6 address counts as
 * IPv4), `xxxx:xxxx:xxxx:xxxx::/64` for IPv6 (zone index ignored), the string itself otherwise.
 */
export function clientKey(address: string): string {
  const a = address.split('%')[0]!.toLowerCase();
  if (isIP(a) === 4) return a;
  const g = ipv6Groups(a);
  if (!g) return a;
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff)
    return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** The client key of a `host:port` or `[v6]:port` pull target. */
export function clientKeyOfPeer(peer: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(peer) ?? /^(.*):\d+$/.exec(peer);
  return clientKey(m ? m[1]! : peer);
}
