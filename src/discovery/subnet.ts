/**
 * Local-subnet test for discovery peers (MS-PCCRD: accept only local-subnet senders). The subnet
 * list is computed at the edge from os.networkInterfaces(); the check itself is pure.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

export interface Subnet {
  address: string;
  netmask: string;
}

function prefixLength(netmask: string): number | undefined {
  let bits = 0;
  if (isIPv4(netmask)) {
    for (const part of netmask.split('.')) bits += popcount(Number(part));
    return bits;
  }
  if (isIPv6(netmask)) {
    const [head = '', tail = ''] = netmask.split('::');
    const groups = [...head.split(':').filter(Boolean), ...tail.split(':').filter(Boolean)];
    for (const g of groups) bits += popcount(parseInt(g, 16));
    return bits;
  }
  return undefined;
}

function popcount(v: number): number {
  let c = 0;
  for (let x = v; x > 0; x >>>= 1) c += x & 1;
  return c;
}

/** Builds a predicate "is this address on one of our subnets (or loopback)?". */
export function localAddressFilter(subnets: Subnet[]): (address: string) => boolean {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4');
  list.addAddress('::1', 'ipv6');
  for (const s of subnets) {
    const prefix = prefixLength(s.netmask);
    const addr = s.address.replace(/%.*$/, '');
    if (prefix === undefined) continue;
    if (isIPv4(addr)) list.addSubnet(addr, prefix, 'ipv4');
    else if (isIPv6(addr)) list.addSubnet(addr, prefix, 'ipv6');
  }
  return (address: string) => {
    const a = address.replace(/%.*$/, '');
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
    if (mapped) return list.check(mapped[1]!, 'ipv4');
    if (isIPv4(a)) return list.check(a, 'ipv4');
    if (isIPv6(a)) return list.check(a, 'ipv6');
    return false;
  };
}

/**
 * Like localAddressFilter, but re-reads the subnets (default: this host's) at most every `ttlMs`,
 * so a daemon follows address changes (DHCP renewals, new interfaces) without a restart.
 */
export function refreshingLocalFilter(
  now: () => number,
  ttlMs = 30_000,
  source: () => Subnet[] = hostSubnets,
): (address: string) => boolean {
  let filter = localAddressFilter(source());
  let builtAt = now();
  return (address) => {
    if (now() - builtAt >= ttlMs) {
      filter = localAddressFilter(source());
      builtAt = now();
    }
    return filter(address);
  };
}

/** The subnets of this host's interfaces (edge: reads the OS). */
export function hostSubnets(): Subnet[] {
  const out: Subnet[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) out.push({ address: i.address, netmask: i.netmask });
  }
  return out;
}

/** Non-internal IPv4 interface addresses (the default set to probe and answer on). */
export function defaultIPv4Interfaces(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (i.family === 'IPv4' && !i.internal) out.push(i.address);
  }
  return out;
}

/**
 * Names of interfaces with a non-internal IPv6 address (where ff02::c is joined when IPv6 discovery
 * is enabled). Pure over the given table so it can be tested; defaults to this host's interfaces.
 */
export function ipv6InterfaceNames(table: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  const out: string[] = [];
  for (const [name, list] of Object.entries(table)) {
    if ((list ?? []).some((i) => i.family === 'IPv6' && !i.internal)) out.push(name);
  }
  return out;
}
