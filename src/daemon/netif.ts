/**
 * Chooses the discovery interface and the addresses we advertise in ProbeMatch XAddrs.
 * Pure over an os.networkInterfaces()-shaped map (injected; the daemon passes the real one).
 */
import { isIP } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { PeerdistError } from '../util/errors.js';
import { formatHostPort, type HostPort } from '../util/address.js';

export type InterfaceMap = NodeJS.Dict<NetworkInterfaceInfo[]>;

export interface ChosenInterface { name?: string; address: string; netmask: string; loopback: boolean; }

export class InterfaceError extends PeerdistError {
  constructor(message: string) { super('BAD_INTERFACE', message); }
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

function isWildcard(host: string): boolean { return host === '0.0.0.0' || host === '::' || host === ''; }

/**
 * XAddrs for ProbeMatch: the retrieval server's own address when it is bound to one; when bound
 * to the wildcard, the chosen interface's address, else every non-internal IPv4 address.
 */
export function advertisedAddresses(bound: HostPort, iface: ChosenInterface | undefined, ifaces: InterfaceMap): string[] {
  if (!isWildcard(bound.host)) return [formatHostPort(bound)];
  if (iface) return [formatHostPort({ host: iface.address, port: bound.port })];
  const out: string[] = [];
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(formatHostPort({ host: a.address, port: bound.port }));
  }
  return out;
}

/** Local IPv4 subnets (for the ProbeMatch same-subnet check). */
export function localSubnets(iface: ChosenInterface | undefined, ifaces: InterfaceMap): Array<{ address: string; netmask: string }> {
  if (iface) return [{ address: iface.address, netmask: iface.netmask }];
  const out: Array<{ address: string; netmask: string }> = [];
  for (const list of Object.values(ifaces)) for (const a of list ?? []) if (a.family === 'IPv4') out.push({ address: a.address, netmask: a.netmask });
  return out;
}
