/**
 * IP literal helpers for the proxy's checks (issue 27.2): canonical forms, the address kinds a
 * proxy must not reach, and CIDR lists (`--proxy-allow`). Pure: no I/O.
 */
import { BlockList, isIP } from 'node:net';
import { isLoopbackHost } from './address.js';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6');
const UNSPECIFIED = new BlockList();
// 0.0.0.0/8 ("this network"): connecting to 0.0.0.0 reaches this host on Linux.
UNSPECIFIED.addSubnet('0.0.0.0', 8, 'ipv4');
// :: and the deprecated IPv4-compatible ::a.b.c.d (::/96, which also holds ::1).
UNSPECIFIED.addSubnet('::', 96, 'ipv6');

/** Strips brackets and an IPv6 zone (`fe80::1%eth0`). */
export function bare(ip: string): string {
  const s = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const pct = s.indexOf('%');
  return (pct >= 0 ? s.slice(0, pct) : s).toLowerCase();
}

/**
 * The canonical form of an IP literal; IPv4-mapped IPv6 (`::ffff:127.0.0.1`, `::ffff:7f00:1`)
 * as the IPv4 address. Anything else is returned bare.
 */
export function canonicalIp(ip: string): string {
  const s = bare(ip);
  if (isIP(s) !== 6) return s;
  let c: string;
  try {
    c = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return s;
  }
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c);
  if (!m) return c;
  const hi = parseInt(m[1]!, 16),
    lo = parseInt(m[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why an IP literal must not be a proxy target (loopback, link-local, unspecified), or undefined. */
export function reservedKind(ip: string): string | undefined {
  const a = canonicalIp(ip);
  const fam = isIP(a);
  if (fam === 0) return undefined;
  const type = fam === 4 ? 'ipv4' : 'ipv6';
  if (LOOPBACK.check(a, type)) return 'a loopback address';
  if (LINK_LOCAL.check(a, type)) return 'a link-local address';
  if (UNSPECIFIED.check(a, type)) return 'an unspecified address';
  return undefined;
}

/** Parses `--proxy-allow` entries: `ADDR/PREFIX` or a bare address. Throws on a bad entry. */
export function parseCidrList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const raw of entries) {
    const e = raw.trim();
    const [addr, prefix, extra] = e.split('/');
    const a = canonicalIp(addr ?? '');
    const fam = isIP(a);
    const max = fam === 4 ? 32 : 128;
    const p = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (fam === 0 || extra !== undefined || !(p >= 0 && p <= max))
      throw new Error(`"${raw}" is not an address or CIDR (examples: 192.168.1.0/24, 10.0.0.5, fd00::/8)`);
    list.addSubnet(a, p, fam === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** Whether a client at `remote` may use the proxy: loopback always, else only inside `allow`. */
export function clientAllowed(remote: string | undefined, allow: BlockList | undefined): boolean {
  if (remote === undefined) return false;
  const a = canonicalIp(remote);
  if (isLoopbackHost(a)) return true;
  if (!allow) return false;
  const fam = isIP(a);
  return fam !== 0 && allow.check(a, fam === 4 ? 'ipv4' : 'ipv6');
}
