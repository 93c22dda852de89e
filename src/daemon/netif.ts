/**
 * Chooses the discovery interface and the addresses we advertise in ProbeMatch XAddrs.
 * Pure over an os.networkInterfaces()-shaped map (injected; the daemon passes the real one).
 */
import { isIP } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { PeerdistError } from '../util/errors.js';
import { formatHostPort, type HostPort } from '../util/address.js';

export type InterfaceMap = NodeJS.Dict<NetworkInterfaceInfo[]>;

export interface ChosenInterface {
  name?: string;
  address: string;
  netmask: string;
  loopback: boolean;
}

export class InterfaceError extends PeerdistError {
  constructor(message: string) {
    super('BAD_INTERFACE', message);
  }
}

/**
 * `spec` is an interface name (eth0, lo) or one of this host's IPv4 addresses. Any 127.x address
 * selects loopback mode (several daemons on one host share 127.0.0.1 for discovery).
 */
export function chooseInterface(spec: string, ifaces: InterfaceMap): ChosenInterface {
  if (isIP(spec) === 4) {
    if (spec.startsWith('127.')) return { name: 'lo', address: spec, netmask: '255.0.0.0', loopback: true };
    for (const [name, list] of Object.entries(ifaces)) {
      const hit = list?.find((a) => a.family === 'IPv4' && a.address === spec);
      if (hit) return { name, address: hit.address, netmask: hit.netmask, loopback: hit.internal };
    }
    throw new InterfaceError(`no local interface has the address ${spec}`);
  }
  const list = ifaces[spec];
  if (!list) throw new InterfaceError(`no network interface named ${spec} (have: ${Object.keys(ifaces).join(', ')})`);
  const v4 = list.find((a) => a.family === 'IPv4');
  if (!v4) throw new InterfaceError(`interface ${spec} has no IPv4 address`);
  return { name: spec, address: v4.address, netmask: v4.netmask, loopback: v4.internal };
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/**
 * XAddrs for ProbeMatch: the retrieval server's own address when it is bound to one; when bound
 * to the wildcard, the chosen interface's address, else every non-internal IPv4 address.
 */
export function advertisedAddresses(
  bound: HostPort,
  iface: ChosenInterface | undefined,
  ifaces: InterfaceMap,
  ipv6: string[] = [],
): string[] {
  if (!isWildcard(bound.host)) return [formatHostPort(bound)];
  const out: string[] = [];
  if (iface) out.push(formatHostPort({ host: iface.address, port: bound.port }));
  else
    for (const list of Object.values(ifaces)) {
      for (const a of list ?? [])
        if (a.family === 'IPv4' && !a.internal) out.push(formatHostPort({ host: a.address, port: bound.port }));
    }
  // Bound to [::] (both families) with IPv6 discovery: also the IPv6 addresses of those interfaces.
  // Link-local ones are left out: their scope (%eth0) means nothing on the receiving host.
  if (bound.host === '::') {
    for (const name of ipv6) {
      for (const a of ifaces[name] ?? []) {
        if (a.family === 'IPv6' && !a.internal && !/^fe[89ab]/i.test(a.address))
          out.push(formatHostPort({ host: a.address, port: bound.port }));
      }
    }
  }
  return out;
}

/**
 * Local subnets (for the same-subnet check on probes and ProbeMatches): IPv4 of the chosen
 * interface (or of all), plus every IPv6 address (link-local, ULA, global) of the interfaces IPv6
 * discovery runs on.
 */
export function localSubnets(
  iface: ChosenInterface | undefined,
  ifaces: InterfaceMap,
  ipv6: string[] = [],
): Array<{ address: string; netmask: string }> {
  const out: Array<{ address: string; netmask: string }> = [];
  if (iface) out.push({ address: iface.address, netmask: iface.netmask });
  else
    for (const list of Object.values(ifaces))
      for (const a of list ?? []) if (a.family === 'IPv4') out.push({ address: a.address, netmask: a.netmask });
  for (const name of ipv6)
    for (const a of ifaces[name] ?? []) if (a.family === 'IPv6') out.push({ address: a.address, netmask: a.netmask });
  return out;
}

/**
 * Interfaces for IPv6 discovery: none (false); the given names; or (true) the chosen discovery
 * interface when it is a real one, else every interface with a non-internal IPv6 address.
 */
export function ipv6Interfaces(
  setting: boolean | string[],
  iface: ChosenInterface | undefined,
  ifaces: InterfaceMap,
): string[] {
  if (setting === false) return [];
  if (Array.isArray(setting)) {
    for (const n of setting)
      if (!ifaces[n])
        throw new InterfaceError(`ipv6: no network interface named ${n} (have: ${Object.keys(ifaces).join(', ')})`);
    return setting;
  }
  if (iface && !iface.loopback && iface.name && (ifaces[iface.name] ?? []).some((a) => a.family === 'IPv6'))
    return [iface.name];
  const out: string[] = [];
  for (const [name, list] of Object.entries(ifaces))
    if ((list ?? []).some((a) => a.family === 'IPv6' && !a.internal)) out.push(name);
  return out;
}
