/**
 * What the local HTTP proxy may connect to, and who may use it (protocol/admin-api.md, "Local
 * HTTP proxy"). The proxy must not be a way into services that trust loopback: the daemon's and
 * the hosted cache's admin APIs, or any other 127.0.0.1 service.
 *
 * Targets: loopback, link-local and unspecified addresses (IPv4, IPv6, IPv4-mapped IPv6) and this
 * host's own interface addresses are refused. A host name is resolved and every address it
 * resolves to is checked; the connection itself goes through a lookup that checks again and
 * connects only to an address it checked, and the socket's remote address is checked once more
 * after connecting, so a name that resolves to a public address for the first check and to
 * 127.0.0.1 for the connection (DNS rebinding) is refused too.
 *
 * Clients: loopback always; any other address only inside a `--proxy-allow` CIDR.
 */
import { isIP, type LookupFunction } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { networkInterfaces } from 'node:os';
import { buildConnector } from 'undici';
import { PeerdistError } from '../util/errors.js';
import { bare, canonicalIp, reservedKind } from '../util/ip.js';

/** The proxy refused a request: a target it must not reach, or a client it must not serve. */
export class ProxyRefusedError extends PeerdistError {
  /** HTTP status for the client. */
  readonly status = 403;
  constructor(message: string) {
    super('PROXY_REFUSED', message);
  }
}

/** Finds a ProxyRefusedError in an error or its causes (the engine and undici wrap errors). */
export function proxyRefusal(err: unknown): ProxyRefusedError | undefined {
  for (let e = err, i = 0; e && i < 8; e = (e as { cause?: unknown }).cause, i++)
    if (e instanceof ProxyRefusedError) return e;
  return undefined;
}

export interface TargetGuardOptions {
  /** This host's interfaces (default os.networkInterfaces). */
  interfaces?: () => NodeJS.Dict<Array<{ address: string }>>;
  /** Name resolution (default dns.lookup); always called with `all: true`. */
  resolve?: (host: string) => Promise<LookupAddress[]>;
  /**
   * Exact `ip:port` targets let through anyway. For tests only (the daemon reads
   * PEERDIST_PROXY_TEST_TARGETS): a test's origin runs on loopback.
   */
  exempt?: string[];
}

function defaultResolve(host: string): Promise<LookupAddress[]> {
  return new Promise((resolveP, reject) =>
    dnsLookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolveP(addrs))),
  );
}

export class TargetGuard {
  private readonly exempt: Set<string>;
  constructor(private readonly o: TargetGuardOptions = {}) {
    this.exempt = new Set((o.exempt ?? []).map((e) => e.toLowerCase()));
  }

  private own(): Set<string> {
    const out = new Set<string>();
    for (const list of Object.values((this.o.interfaces ?? networkInterfaces)()))
      for (const a of list ?? []) out.add(canonicalIp(a.address));
    return out;
  }

  /** Why the proxy must not connect to `ip` (port `port`), or undefined when it may. */
  refusal(ip: string, port: number): string | undefined {
    const a = canonicalIp(ip);
    if (this.exempt.has(`${a}:${port}`) || this.exempt.has(`[${a}]:${port}`)) return undefined;
    const kind = reservedKind(a);
    if (kind) return `${bare(ip)} is ${kind}`;
    if (this.own().has(a)) return `${bare(ip)} is an address of this host`;
    return undefined;
  }

  /** Resolves `host` (a name or IP literal) and throws ProxyRefusedError when any address is refused. */
  async check(host: string, port: number): Promise<LookupAddress[]> {
    const h = bare(host);
    const addrs = isIP(h) ? [{ address: h, family: isIP(h) }] : await this.resolve(h);
    for (const a of addrs) {
      const why = this.refusal(a.address, port);
      if (why) throw refused(host, port, why);
    }
    return addrs;
  }

  resolve(host: string): Promise<LookupAddress[]> {
    return (this.o.resolve ?? defaultResolve)(host);
  }

  /**
   * A `lookup` for net/tls.connect: resolves, refuses the name when any of its addresses is
   * refused, and hands on only checked addresses (so the connection goes to one of them).
   */
  lookupFor(port: number): LookupFunction {
    return ((hostname: string, options: { all?: boolean }, callback: (...a: unknown[]) => void) => {
      this.check(hostname, port).then(
        (addrs) => {
          if (addrs.length === 0)
            callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }));
          else if (options?.all) callback(null, addrs);
          else callback(null, addrs[0]!.address, addrs[0]!.family);
        },
        (err: unknown) => callback(err),
      );
    }) as unknown as LookupFunction;
  }

  /**
   * An undici `connect` function: refuses IP literals before connecting, resolves names through
   * `lookupFor`, and checks the connected socket's remote address.
   */
  connector(timeoutMs = 10_000): buildConnector.connector {
    const plain = new Map<number, buildConnector.connector>();
    const forPort = (port: number) => {
      let c = plain.get(port);
      if (!c) {
        c = buildConnector({ timeout: timeoutMs, lookup: this.lookupFor(port) } as buildConnector.BuildOptions);
        plain.set(port, c);
      }
      return c;
    };
    return (opts, callback) => {
      const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
      const host = bare(opts.hostname);
      if (isIP(host)) {
        const why = this.refusal(host, port);
        if (why) {
          callback(refused(host, port, why), null);
          return;
        }
      }
      forPort(port)(opts, (err, socket) => {
        if (err || !socket) {
          callback(err ?? new Error('connect failed'), null);
          return;
        }
        const remote = socket.remoteAddress;
        const why = remote === undefined ? 'the connection has no remote address' : this.refusal(remote, port);
        if (why) {
          socket.destroy();
          callback(refused(opts.hostname, port, why), null);
          return;
        }
        callback(null, socket);
      });
    };
  }
}

function refused(host: string, port: number, why: string): ProxyRefusedError {
  return new ProxyRefusedError(
    `the proxy does not connect to ${host}:${port}: ${why} (loopback, link-local, unspecified and this host's own addresses are refused)`,
  );
}
