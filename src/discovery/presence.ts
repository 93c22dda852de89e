/**
 * DNS-SD presence over multicast DNS (RFC 6762/6763) with the multicast-dns package: each daemon
 * announces `<name>._peerdist._tcp.local` (PTR, SRV, TXT, A) and answers queries for it; a browser
 * lists the daemons it hears. This is our own addition, not part of MS-PCCRD (which only finds
 * content): it lets `peerdist peers` show which daemons are on the subnet and their cache sizes.
 */
import makeMdns from 'multicast-dns';
import type { RemoteInfo } from 'node:dgram';
import type { Answer } from 'dns-packet';
import { isIPv4 } from 'node:net';
import { defaultIPv4Interfaces } from './subnet.js';
import { type Logger, nullLogger } from '../util/log.js';

export const SERVICE_TYPE = '_peerdist._tcp.local';
export const MDNS_PORT = 5353;
const RECORD_TTL = 120;
const MAX_TXT_VALUE = 200;

type Mdns = ReturnType<typeof makeMdns>;

export interface PresenceOptions {
  /** Instance name (one DNS label; sanitised). */
  name: string;
  /** Retrieval (PCCRR) port announced in SRV. */
  port: number;
  /** Key/value pairs for TXT (e.g. version, cache bytes). */
  txt: Record<string, string>;
  mdnsPort?: number;
  /** IPv4 address to announce and to join the mDNS group on (default: all interfaces). */
  interface?: string;
  /** Receive our own packets (several daemons on one host, tests). */
  loopback?: boolean;
  /** Where malformed packets and socket errors are reported (rate-limited); default: nowhere. */
  logger?: Logger;
  /** Clock for the log rate limit (ms). */
  now?: () => number;
}

export interface Presence {
  readonly instance: string;
  /** Replaces the TXT data and re-announces. */
  update(txt: Record<string, string>): void;
  /** Sends a goodbye (TTL 0) and closes the socket. */
  close(): Promise<void>;
}

export interface PresenceSighting {
  name: string;
  host: string;
  port: number;
  txt: Record<string, string>;
}

function label(name: string): string {
  const l = name
    .replace(/[^A-Za-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return l || 'peerdist';
}

function txtStrings(txt: Record<string, string>): string[] {
  return Object.entries(txt).map(([k, v]) => `${k.replace(/[=\s]/g, '')}=${String(v).slice(0, MAX_TXT_VALUE)}`);
}

function mdnsOptions(o: { mdnsPort?: number; interface?: string; loopback?: boolean }): Parameters<typeof makeMdns>[0] {
  // Bind 0.0.0.0: a socket bound to an interface address does not receive multicast on Linux.
  return {
    port: o.mdnsPort ?? MDNS_PORT,
    interface: o.interface,
    bind: '0.0.0.0',
    multicast: true,
    loopback: o.loopback ?? false,
    ttl: o.interface?.startsWith('127.') ? 1 : 255,
    reuseAddr: true,
  };
}

function ready(m: Mdns): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      m.removeListener('ready', onReady);
      reject(err);
    };
    const onReady = () => {
      m.removeListener('error', onError);
      resolve();
    };
    m.once('ready', onReady);
    m.once('error', onError);
  });
}

/** One log line per kind per `intervalMs`; the next one says how many were held back meanwhile. */
export function rateLimitedWarn(
  log: Logger,
  intervalMs = 60_000,
  now: () => number = Date.now,
): (kind: string, msg: string, err: unknown) => void {
  const state = new Map<string, { at: number; held: number }>();
  return (kind, msg, err) => {
    const t = now();
    const s = state.get(kind);
    if (s && t - s.at < intervalMs) {
      s.held++;
      return;
    }
    log.warn(msg, { err, ...(s?.held ? { suppressed: s.held } : {}) });
    state.set(kind, { at: t, held: 0 });
  };
}

function destroy(m: Mdns): Promise<void> {
  return new Promise((resolve) => m.destroy(() => resolve()));
}

/** Starts announcing this daemon; resolves once the mDNS socket is bound. */
export async function startPresence(opts: PresenceOptions): Promise<Presence> {
  const m = makeMdns(mdnsOptions(opts));
  const report = rateLimitedWarn(opts.logger ?? nullLogger, 60_000, opts.now);
  // Malformed packets and membership hiccups are not fatal, nor are late socket errors (presence
  // is best effort), but they are logged: at most one line a minute of each.
  m.on('warning', (err: unknown) =>
    report('warning', 'mDNS presence: ignored a malformed packet or a socket warning', err),
  );
  try {
    await ready(m);
  } catch (err) {
    await destroy(m);
    throw err;
  }
  m.on('error', (err: unknown) =>
    report('error', 'mDNS presence: socket error (presence is best effort; carrying on)', err),
  );
  const base = label(opts.name);
  const instance = `${base}.${SERVICE_TYPE}`;
  const host = `${base}.local`;
  const address =
    opts.interface && isIPv4(opts.interface) ? opts.interface : (defaultIPv4Interfaces()[0] ?? '127.0.0.1');
  let txt = txtStrings(opts.txt);
  let closed = false;

  const records = (ttl: number): Answer[] =>
    [
      { name: SERVICE_TYPE, type: 'PTR', ttl, data: instance },
      { name: instance, type: 'SRV', ttl, data: { port: opts.port, target: host, priority: 0, weight: 0 } },
      { name: instance, type: 'TXT', ttl, data: txt },
      { name: host, type: 'A', ttl, data: address },
    ] as Answer[];
  const announce = () => {
    if (!closed) m.respond({ answers: records(RECORD_TTL) });
  };

  m.on('query', (q) => {
    if (closed) return;
    const asked = q.questions.some((x) => {
      const n = x.name.toLowerCase();
      const type = x.type as string;
      return (
        (n === SERVICE_TYPE && ['PTR', 'ANY'].includes(type)) ||
        (n === instance.toLowerCase() && ['SRV', 'TXT', 'ANY'].includes(type)) ||
        (n === host.toLowerCase() && ['A', 'ANY'].includes(type))
      );
    });
    if (asked) announce();
  });

  announce();
  // RFC 6762 asks for at least two announcements, one second apart.
  const again = setTimeout(announce, 1000);
  again.unref();

  return {
    instance,
    update(next) {
      txt = txtStrings(next);
      announce();
    },
    async close() {
      if (closed) return;
      clearTimeout(again);
      await new Promise<void>((resolve) => m.respond({ answers: records(0) }, () => resolve()));
      closed = true;
      await destroy(m);
    },
  };
}

function parseTxt(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(data) ? data : [data];
  for (const item of items.slice(0, 64)) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : typeof item === 'string' ? item : '';
    const eq = s.indexOf('=');
    if (eq > 0) out[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return out;
}

/** Queries for `_peerdist._tcp.local` and lists the daemons that answer within timeoutMs. */
export async function browsePeers(opts: {
  timeoutMs: number;
  mdnsPort?: number;
  interface?: string;
  logger?: Logger;
}): Promise<PresenceSighting[]> {
  const m = makeMdns(mdnsOptions({ ...opts, loopback: true }));
  const report = rateLimitedWarn(opts.logger ?? nullLogger);
  m.on('warning', (err: unknown) =>
    report('warning', 'mDNS browse: ignored a malformed packet or a socket warning', err),
  );
  try {
    await ready(m);
  } catch (err) {
    await destroy(m);
    throw err;
  }
  const found = new Map<
    string,
    { instance: string; port?: number; target?: string; txt?: Record<string, string>; from: string }
  >();
  const addrs = new Map<string, string>();
  m.on('response', (res, rinfo: RemoteInfo) => {
    for (const a of [...res.answers, ...res.additionals]) {
      const name = a.name.toLowerCase();
      if (a.type === 'PTR' && name === SERVICE_TYPE && typeof a.data === 'string') {
        const inst = a.data.toLowerCase();
        if (a.ttl === 0) {
          found.delete(inst);
          continue;
        }
        if (!found.has(inst) && found.size < 1024) found.set(inst, { instance: a.data, from: rinfo.address });
      }
    }
    for (const a of [...res.answers, ...res.additionals]) {
      const name = a.name.toLowerCase();
      const entry = found.get(name);
      if (a.type === 'SRV' && entry && a.data && typeof a.data === 'object' && 'port' in a.data) {
        entry.port = a.data.port;
        entry.target = String(a.data.target).toLowerCase();
      } else if (a.type === 'TXT' && entry) {
        entry.txt = parseTxt(a.data);
      } else if (a.type === 'A' && typeof a.data === 'string' && isIPv4(a.data)) {
        addrs.set(name, a.data);
      }
    }
  });
  const ask = () => m.query({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] });
  ask();
  await new Promise((r) => setTimeout(r, Math.max(1, Math.floor(opts.timeoutMs / 2))));
  ask();
  await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(opts.timeoutMs / 2))));
  await destroy(m);
  const out: PresenceSighting[] = [];
  for (const e of found.values()) {
    if (e.port === undefined) continue;
    const inst = e.instance;
    const name = inst.toLowerCase().endsWith(`.${SERVICE_TYPE}`) ? inst.slice(0, -SERVICE_TYPE.length - 1) : inst;
    out.push({ name, host: (e.target && addrs.get(e.target)) ?? e.from, port: e.port, txt: e.txt ?? {} });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
