/**
 * Host:port and admin-address parsing plus loopback checks, shared by the daemon, its admin API
 * and the CLI client. Pure: no I/O.
 */
import { isIP } from 'node:net';
import { PeerdistError } from './errors.js';

export class AddressError extends PeerdistError {
  constructor(message: string) {
    super('BAD_ADDRESS', message);
  }
}

export interface HostPort {
  host: string;
  port: number;
}

/** An admin endpoint: TCP on loopback, or a unix socket (named pipe on Windows) path. */
export type AdminAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'socket'; path: string };

function parsePort(s: string, what: string): number {
  if (!/^\d{1,5}$/.test(s)) throw new AddressError(`${what}: port "${s}" is not a number`);
  const n = Number(s);
  if (n > 65535) throw new AddressError(`${what}: port ${n} is out of range`);
  return n;
}

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT` or a bare `PORT` (host = defaultHost). Port 0 is allowed
 * (ephemeral).
 */
export function parseHostPort(s: string, what = 'address', defaultHost = '0.0.0.0'): HostPort {
  const v = s.trim();
  if (/^\d+$/.test(v)) return { host: defaultHost, port: parsePort(v, what) };
  const m6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(v);
  if (m6) {
    if (isIP(m6[1]!) !== 6) throw new AddressError(`${what}: "${m6[1]}" is not an IPv6 address`);
    return { host: m6[1]!, port: parsePort(m6[2]!, what) };
  }
  const i = v.lastIndexOf(':');
  if (i <= 0 || v.indexOf(':') !== i) throw new AddressError(`${what}: expected HOST:PORT, got "${s}"`);
  const host = v.slice(0, i);
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new AddressError(`${what}: bad host "${host}"`);
  return { host, port: parsePort(v.slice(i + 1), what) };
}

/** `host:port`, with brackets around IPv6 hosts. */
export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** True for 127.0.0.0/8, ::1, IPv4-mapped 127/8 and the name `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.split('.')[0] === '127';
}

/**
 * Parses an admin address: `HOST:PORT` (must be loopback), `unix:PATH`, or anything that looks
 * like a path (contains `/` or `\`, or starts with `.`). Throws AddressError for a non-loopback host.
 */
export function parseAdminAddress(s: string): AdminAddress {
  const v = s.trim();
  if (v.startsWith('unix:')) return { kind: 'socket', path: v.slice(5) };
  if (v.includes('/') || v.includes('\\') || v.startsWith('.')) return { kind: 'socket', path: v };
  const hp = parseHostPort(v, 'admin address', '127.0.0.1');
  if (!isLoopbackHost(hp.host)) {
    throw new AddressError(
      `admin API must listen on loopback or a unix socket, not ${hp.host} (it can start downloads and reads cache state)`,
    );
  }
  return { kind: 'tcp', host: hp.host === 'localhost' ? '127.0.0.1' : hp.host, port: hp.port };
}

export function formatAdminAddress(a: AdminAddress): string {
  return a.kind === 'socket' ? a.path : formatHostPort(a);
}
