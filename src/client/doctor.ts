/**
 * `peerdist doctor`: checks what this machine needs for peer caching and says what to fix. Each
 * check is pass / warn / fail with a remedy; a failed check that stops peer caching is `blocking`
 * (the command then exits 1). Settings come from the running daemon's status (`endpoints`) when
 * it answers, else from the daemon's own configuration sources. See protocol/admin-api.md.
 */
import { randomUUID, createPublicKey, createHash } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { access, readFile, rm, stat, statfs, writeFile, constants } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import type { DaemonConfig } from '../daemon/config.js';
import { chooseInterface } from '../daemon/netif.js';
import { encodeProbe, parseDiscoveryMessage } from '../protocol/pccrd/codec.js';
import { encodeRequest, decodeResponse, PCCRR_PATH, SUPPORTED_MIN, SUPPORTED_MAX } from '../protocol/pccrr/codec.js';
import { LIVENESS_SEGMENT_ID } from '../discovery/liveness.js';
import { IPV4_GROUP } from '../discovery/discovery.js';
import { formatHostPort, type AdminAddress } from '../util/address.js';
import { formatBytes } from '../util/size.js';
import { adminJson } from './admin-client.js';
import { makeDirs } from '../util/mkdirs.js';
import { textForTerminal } from '../util/terminal.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface Check {
  id: string;
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warn/fail. */
  remedy?: string;
  /** A failure that stops peer caching (the command exits 1). */
  blocking?: boolean;
}

export interface DoctorReport {
  ok: boolean;
  checks: Check[];
}

export interface DoctorOptions {
  config: DaemonConfig;
  daemon: AdminAddress;
  /** Other daemons run on this subnet: not hearing any is a failure, not a warning. */
  expectPeers?: boolean;
  /** How long to listen for our own probe and other daemons' answers (default 2500 ms). */
  listenMs?: number;
  /** An origin URL whose Date header the clock is compared with. */
  origin?: string;
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  now?: () => number;
  /**
   * How long one check may take (default 10 s; the multicast check gets `listenMs` on top): a
   * check that has not finished by then is reported as failed, so doctor always ends (issue 27.10).
   */
  checkTimeoutMs?: number;
}

/** A check's work did not finish in time (a hung filesystem, a FIFO, an unanswering peer). */
class CheckTimeout extends Error {
  readonly code = 'ETIMEDOUT';
}

/** Runs `fn`, rejecting with CheckTimeout when it has not settled within `ms` (the work itself may go on). */
function within<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolveP, reject) => {
    const timer = setTimeout(() => reject(new CheckTimeout(`${what} did not finish within ${ms} ms`)), ms);
    fn().then(
      (v) => {
        clearTimeout(timer);
        resolveP(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** What to do about a state directory that cannot be used, by the error's code. */
function stateDirRemedy(e: unknown, dir: string): string {
  const other = 'choose another with --state-dir / PEERDIST_STATE_DIR';
  switch ((e as NodeJS.ErrnoException).code) {
    case 'ENOTDIR':
    case 'EEXIST':
      return `${dir} or one of its parents is a file, not a directory: ${other}`;
    case 'EROFS':
      return `the filesystem is read-only: ${other} on a writable filesystem`;
    case 'ENOENT':
    case 'EPERM':
    case 'EINVAL':
      return `it cannot be created there (a virtual filesystem such as /proc or /sys refuses it): ${other} on a real disk`;
    case 'ETIMEDOUT':
      return `the filesystem does not answer (a hung network mount?): fix the mount or ${other}`;
    default:
      return `make it writable by the daemon's user (\`chown peerdist: ${dir}\`), or ${other}`;
  }
}

/** What the daemon's /v1/status reports about itself (the parts doctor reads). */
interface DaemonStatus {
  version: string;
  pid: number;
  peersKnown: number;
  cache: { bytes: number; limitBytes: number };
  endpoints?: {
    retrieval: string;
    xaddrs: string[];
    discoveryPort: number;
    stateDir: string;
    originPublicKey: string | null;
    interface: { name: string | null; address: string; loopback: boolean } | null;
    power?: string;
    serving?: boolean;
  };
}

const check = (c: Check): Check => c;

async function bindTcp(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolveP) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolveP(e.code ?? e.message));
    s.listen(port, host, () => s.close(() => resolveP(undefined)));
  });
}

/** MS-PCCRR negotiation against a retrieval server: the answer must be a NEGO_RESP. */
function negotiate(hostPort: string, timeoutMs = 3000): Promise<string | undefined> {
  const i = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, i).replace(/^\[|\]$/g, '');
  const body = encodeRequest({ type: 'NEGO_REQ', min: SUPPORTED_MIN, max: SUPPORTED_MAX } as never);
  return new Promise((resolveP) => {
    const req = request(
      {
        host,
        port: Number(hostPort.slice(i + 1)),
        method: 'POST',
        path: PCCRR_PATH,
        timeout: timeoutMs,
        headers: { 'content-length': body.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const m = decodeResponse(Buffer.concat(chunks));
            resolveP(m.type === 'NEGO_RESP' ? undefined : `answered ${m.type}`);
          } catch (e) {
            resolveP(`HTTP ${res.statusCode}, not an MS-PCCRR answer (${(e as Error).message})`);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => resolveP(e.message));
    req.end(body);
  });
}

function bindUdp(sock: UdpSocket, port: number, address?: string): Promise<string | undefined> {
  return new Promise((resolveP) => {
    sock.once('error', (e: NodeJS.ErrnoException) => resolveP(e.code ?? e.message));
    sock.bind({ port, address, exclusive: false }, () => resolveP(undefined));
  });
}

interface MulticastResult {
  bindError?: string;
  joinError?: string;
  sendError?: string;
  heardOwn: boolean;
  /** XAddrs of daemons that answered the liveness probe (ours excluded by the caller). */
  answers: Array<{ from: string; xaddrs: string[]; ms: number }>;
}

/**
 * Joins the discovery group on the chosen interface, multicasts one MS-PCCRD v1 probe for the
 * liveness segment, and listens: for the probe itself on the group (multicast loop), and for
 * ProbeMatches from daemons (unicast to the sending socket).
 */
async function multicastProbe(
  port: number,
  ifaceAddress: string | undefined,
  loopback: boolean,
  listenMs: number,
): Promise<MulticastResult> {
  const out: MulticastResult = { heardOwn: false, answers: [] };
  const listener = createSocket({ type: 'udp4', reuseAddr: true });
  const sender = createSocket({ type: 'udp4' });
  listener.on('error', () => undefined);
  sender.on('error', () => undefined);
  const messageId = `urn:uuid:${randomUUID()}`;
  const t0 = Date.now();
  try {
    out.bindError = await bindUdp(listener, port);
    if (out.bindError) return out;
    try {
      listener.addMembership(IPV4_GROUP, ifaceAddress);
    } catch (e) {
      out.joinError = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      return out;
    }
    listener.on('message', (msg) => {
      try {
        const m = parseDiscoveryMessage(msg);
        if (m.kind === 'Probe' && m.messageId === messageId) out.heardOwn = true;
      } catch {
        /* other traffic */
      }
    });
    const err = await bindUdp(sender, 0, ifaceAddress);
    if (err) {
      out.sendError = err;
      return out;
    }
    if (ifaceAddress) sender.setMulticastInterface(ifaceAddress);
    sender.setMulticastTTL(1);
    sender.setMulticastLoopback(true);
    void loopback;
    sender.on('message', (msg, rinfo) => {
      try {
        const m = parseDiscoveryMessage(msg);
        if (m.kind === 'ProbeMatches' && m.relatesTo === messageId)
          out.answers.push({ from: rinfo.address, xaddrs: m.xaddrs, ms: Date.now() - t0 });
      } catch {
        /* not for us */
      }
    });
    const probe = Buffer.from(encodeProbe({ version: 1, messageId, segmentIds: [LIVENESS_SEGMENT_ID] }));
    out.sendError = await new Promise<string | undefined>((r) =>
      sender.send(probe, port, IPV4_GROUP, (e) => r(e ? ((e as NodeJS.ErrnoException).code ?? e.message) : undefined)),
    );
    if (out.sendError) return out;
    await new Promise((r) => setTimeout(r, listenMs));
    return out;
  } finally {
    listener.close();
    sender.close();
  }
}

function nonInternalV4(ifaces: NodeJS.Dict<NetworkInterfaceInfo[]>): Array<{ name: string; address: string }> {
  const out: Array<{ name: string; address: string }> = [];
  for (const [name, list] of Object.entries(ifaces))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push({ name, address: a.address });
  return out;
}

/** The Date header of the origin's answer to a one-byte range request (plain node:http, http:// only). */
function headDate(url: string, timeoutMs = 5000): Promise<number | undefined> {
  return new Promise((resolveP, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, headers: { range: 'bytes=0-0' } }, (res) => {
      const d = res.headers.date;
      res.destroy();
      resolveP(d ? Date.parse(d) : undefined);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const checks: Check[] = [];
  const now = opts.now ?? Date.now;
  const ifaces = (opts.interfaces ?? networkInterfaces)();
  const cfg = opts.config;
  const checkMs = opts.checkTimeoutMs ?? 10_000;

  // -- the daemon
  let st: DaemonStatus | undefined;
  try {
    st = await within(checkMs, 'the admin API', () => adminJson<DaemonStatus>(opts.daemon, '/v1/status'));
  } catch (e) {
    checks.push(
      check({
        id: 'daemon',
        name: 'daemon',
        status: 'fail',
        blocking: true,
        detail: (e as Error).message,
        remedy: 'start the daemon: `systemctl start peerdist` or `peerdist daemon` (or pass --daemon ADDR)',
      }),
    );
  }
  const ep = st?.endpoints;
  if (st)
    checks.push(
      check({
        id: 'daemon',
        name: 'daemon',
        status: 'pass',
        detail: `peerdist ${st.version} (pid ${st.pid}) answers on the admin API`,
      }),
    );
  const stateDir = ep?.stateDir ?? cfg.stateDir;
  const discoveryPort = ep?.discoveryPort ?? cfg.discoveryPort;

  // -- state directory
  try {
    await within(checkMs, `using ${stateDir}`, async () => {
      // Not mkdir's own recursive mode: it never returns under /proc.
      await makeDirs(stateDir);
      const probe = join(stateDir, `.doctor-${process.pid}-${randomUUID()}`);
      await writeFile(probe, 'x', { flag: 'wx' });
      await rm(probe);
      if (ep || st)
        await access(join(stateDir, 'cache'), constants.W_OK).catch(() => {
          throw Object.assign(new Error(`${join(stateDir, 'cache')} is not writable`), { code: 'EACCES' });
        });
    });
    checks.push(check({ id: 'state-dir', name: 'state directory', status: 'pass', detail: `${stateDir} is writable` }));
  } catch (e) {
    checks.push(
      check({
        id: 'state-dir',
        name: 'state directory',
        status: 'fail',
        blocking: true,
        detail: `${stateDir}: ${(e as Error).message}`,
        remedy: stateDirRemedy(e, stateDir),
      }),
    );
  }

  // -- ports
  if (ep) {
    const targets = [
      ...new Set(
        [ep.retrieval.startsWith('0.0.0.0:') ? undefined : ep.retrieval, ...ep.xaddrs].filter((x): x is string => !!x),
      ),
    ];
    const bad: string[] = [];
    for (const x of targets) {
      const why = await within(checkMs, `MS-PCCRR negotiation with ${x}`, () => negotiate(x)).catch(
        (e: Error) => e.message,
      );
      if (why) bad.push(`${x}: ${why}`);
    }
    if (targets.length === 0)
      checks.push(
        check({
          id: 'retrieval-port',
          name: 'retrieval port',
          status: 'fail',
          blocking: true,
          detail: `bound to ${ep.retrieval} but no address is advertised to peers`,
          remedy: 'give the machine an IPv4 address on the LAN, or set --interface',
        }),
      );
    else if (bad.length === 0)
      checks.push(
        check({
          id: 'retrieval-port',
          name: 'retrieval port',
          status: 'pass',
          detail: `MS-PCCRR answers on ${targets.join(', ')} (what peers are told)`,
        }),
      );
    else
      checks.push(
        check({
          id: 'retrieval-port',
          name: 'retrieval port',
          status: 'fail',
          blocking: true,
          detail: bad.join('; '),
          remedy: `allow TCP ${ep.retrieval.split(':').pop()} in the host firewall (e.g. \`ufw allow ${ep.retrieval.split(':').pop()}/tcp\`)`,
        }),
      );
    checks.push(
      check({
        id: 'admin-port',
        name: 'admin port',
        status: 'pass',
        detail: `admin API answers at ${opts.daemon.kind === 'socket' ? opts.daemon.path : `${opts.daemon.host}:${opts.daemon.port}`} (loopback only)`,
      }),
    );
  } else {
    const why = await bindTcp(cfg.listen.host, cfg.listen.port);
    checks.push(
      why
        ? check({
            id: 'retrieval-port',
            name: 'retrieval port',
            status: 'fail',
            blocking: true,
            detail: `cannot listen on ${formatHostPort(cfg.listen)}: ${why}`,
            remedy: 'stop what holds the port (`ss -ltnp`) or choose another with --listen',
          })
        : check({
            id: 'retrieval-port',
            name: 'retrieval port',
            status: 'pass',
            detail: `${formatHostPort(cfg.listen)} is free`,
          }),
    );
    if (cfg.admin.kind === 'tcp') {
      const w = await bindTcp(cfg.admin.host, cfg.admin.port);
      checks.push(
        w
          ? check({
              id: 'admin-port',
              name: 'admin port',
              status: 'fail',
              blocking: true,
              detail: `cannot listen on ${cfg.admin.host}:${cfg.admin.port}: ${w} (and no daemon answers there)`,
              remedy: 'stop what holds the port or choose another with --admin',
            })
          : check({
              id: 'admin-port',
              name: 'admin port',
              status: 'pass',
              detail: `${cfg.admin.host}:${cfg.admin.port} is free`,
            }),
      );
    }
  }

  // -- interface choice
  const v4 = nonInternalV4(ifaces);
  let ifaceAddress: string | undefined = ep?.interface?.address;
  let loopback = ep?.interface?.loopback ?? false;
  if (!ep?.interface && cfg.interface) {
    try {
      const c = chooseInterface(cfg.interface, ifaces);
      ifaceAddress = c.address;
      loopback = c.loopback;
    } catch (e) {
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'fail',
          blocking: true,
          detail: (e as Error).message,
          remedy: 'pass an existing interface name or IPv4 address to --interface',
        }),
      );
    }
  }
  if (!checks.some((c) => c.id === 'interface')) {
    if (loopback)
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'warn',
          detail: `loopback mode (${ifaceAddress}): only daemons on this machine can be peers`,
          remedy: 'for a real LAN, pass the LAN interface to --interface (e.g. eth0)',
        }),
      );
    else if (ifaceAddress)
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'pass',
          detail: `discovery on ${ep?.interface?.name ?? cfg.interface ?? ''} ${ifaceAddress}`.replace(/\s+/g, ' '),
        }),
      );
    else if (v4.length === 0)
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'fail',
          blocking: true,
          detail: 'only loopback interfaces have IPv4 addresses: no peer can reach this machine',
          remedy: 'connect the machine to the LAN (IPv4), then restart the daemon',
        }),
      );
    else if (v4.length > 1)
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'warn',
          detail: `several interfaces (${v4.map((a) => `${a.name} ${a.address}`).join(', ')}): discovery runs on all of them and peers may be told an address they cannot reach`,
          remedy: 'choose the LAN one with --interface (e.g. --interface eth0)',
        }),
      );
    else
      checks.push(
        check({
          id: 'interface',
          name: 'interface',
          status: 'pass',
          detail: `one LAN interface: ${v4[0]!.name} ${v4[0]!.address}`,
        }),
      );
  }

  // -- multicast
  const mc = await within((opts.listenMs ?? 2500) + checkMs, 'the multicast probe', () =>
    multicastProbe(
      discoveryPort,
      ifaceAddress ?? (v4.length === 1 ? v4[0]!.address : undefined),
      loopback,
      opts.listenMs ?? 2500,
    ),
  ).catch((e: Error): MulticastResult => ({ heardOwn: false, answers: [], bindError: e.message }));
  const mcRemedy = `allow UDP ${discoveryPort} multicast to and from ${IPV4_GROUP} in the host firewall, and make sure the network passes it (switch IGMP snooping without a querier, Wi-Fi client isolation and VPNs drop it)`;
  if (mc.bindError || mc.joinError || mc.sendError) {
    const what = mc.bindError
      ? `cannot bind UDP ${discoveryPort}: ${mc.bindError}`
      : mc.joinError
        ? `cannot join ${IPV4_GROUP}: ${mc.joinError}`
        : `cannot send to ${IPV4_GROUP}:${discoveryPort}: ${mc.sendError}`;
    checks.push(
      check({
        id: 'discovery-port',
        name: 'discovery port',
        status: 'fail',
        blocking: true,
        detail: what,
        remedy: mc.bindError
          ? `stop what holds UDP ${discoveryPort} without SO_REUSEADDR (\`ss -lunp\`)`
          : `add a multicast route (\`ip route add 224.0.0.0/4 dev eth0\`) or pass --interface; ${mcRemedy}`,
      }),
    );
  } else {
    checks.push(
      check({
        id: 'discovery-port',
        name: 'discovery port',
        status: 'pass',
        detail: `UDP ${discoveryPort} bound and ${IPV4_GROUP} joined${ifaceAddress ? ` on ${ifaceAddress}` : ''}`,
      }),
    );
    checks.push(
      mc.heardOwn
        ? check({
            id: 'multicast-self',
            name: 'multicast: own probe',
            status: 'pass',
            detail: 'our probe came back on the group',
          })
        : check({
            id: 'multicast-self',
            name: 'multicast: own probe',
            status: 'fail',
            blocking: true,
            detail: `our probe to ${IPV4_GROUP}:${discoveryPort} did not come back within ${opts.listenMs ?? 2500} ms`,
            remedy: mcRemedy,
          }),
    );
    const ours = new Set([...(ep?.xaddrs ?? []), ep?.retrieval ?? '']);
    const others = mc.answers.filter((a) => !a.xaddrs.some((x) => ours.has(x)));
    const ownAnswered = mc.answers.length > others.length;
    const knownPeers = (st?.peersKnown ?? 0) > 0;
    if (others.length > 0) {
      checks.push(
        check({
          id: 'multicast-peers',
          name: 'multicast: other daemons',
          status: 'pass',
          detail: `${others.length} other daemon${others.length === 1 ? '' : 's'} answered: ${others.map((a) => `${a.xaddrs[0] ?? a.from} in ${a.ms} ms`).join(', ')}`,
        }),
      );
    } else {
      const fail = opts.expectPeers === true;
      checks.push(
        check({
          id: 'multicast-peers',
          name: 'multicast: other daemons',
          status: fail ? 'fail' : 'warn',
          blocking: fail,
          detail: `no other daemon answered our probe within ${opts.listenMs ?? 2500} ms${ownAnswered ? ' (our own daemon did)' : ''}${knownPeers ? `; the daemon saw ${st!.peersKnown} peer(s) in the last 10 minutes` : ''}`,
          remedy: fail
            ? `other daemons run here, so multicast does not get through: ${mcRemedy}`
            : `if other machines run peerdist, ${mcRemedy}; pass --expect-peers to make this a failure`,
        }),
      );
    }
  }

  // -- clock
  const t = now();
  if (t < Date.UTC(2024, 0, 1)) {
    checks.push(
      check({
        id: 'clock',
        name: 'clock',
        status: 'fail',
        detail: `the clock says ${new Date(t).toISOString()}`,
        remedy: 'set the time and enable NTP (`timedatectl set-ntp true`): cache ages and logs depend on it',
      }),
    );
  } else if (opts.origin) {
    try {
      const origin = opts.origin;
      const d = await within(checkMs, `asking ${origin} for its Date`, () => headDate(origin));
      if (d === undefined)
        checks.push(
          check({
            id: 'clock',
            name: 'clock',
            status: 'warn',
            detail: `${opts.origin} sent no Date header to compare with`,
          }),
        );
      else {
        const skew = Math.round((t - d) / 1000);
        checks.push(
          Math.abs(skew) <= 60
            ? check({
                id: 'clock',
                name: 'clock',
                status: 'pass',
                detail: `within ${Math.abs(skew)} s of the origin's clock`,
              })
            : check({
                id: 'clock',
                name: 'clock',
                status: 'warn',
                detail: `${skew} s off the origin's clock`,
                remedy: 'enable NTP (`timedatectl set-ntp true`): cache entry ages are measured with this clock',
              }),
        );
      }
    } catch (e) {
      checks.push(
        check({
          id: 'clock',
          name: 'clock',
          status: 'warn',
          detail: `cannot read the origin's Date: ${(e as Error).message}`,
        }),
      );
    }
  } else
    checks.push(
      check({
        id: 'clock',
        name: 'clock',
        status: 'pass',
        detail: `${new Date(t).toISOString()} (pass --origin URL to compare with an origin's clock)`,
      }),
    );

  // -- cache limit against free disk
  try {
    const fs = await within(checkMs, `reading the free space of ${stateDir}`, () => statfs(stateDir));
    const free = fs.bavail * fs.bsize;
    const used = st?.cache.bytes ?? 0;
    const limit = st?.cache.limitBytes ?? cfg.cacheLimitBytes;
    if (limit === undefined)
      checks.push(
        check({
          id: 'cache-limit',
          name: 'cache limit',
          status: 'pass',
          detail: `default limit (5% of the filesystem); ${formatBytes(free)} free`,
        }),
      );
    else if (limit - used > free)
      checks.push(
        check({
          id: 'cache-limit',
          name: 'cache limit',
          status: 'warn',
          detail: `limit ${formatBytes(limit)} but only ${formatBytes(free)} free beside the ${formatBytes(used)} cached: the disk fills before the cache does`,
          remedy: `lower it to at most about ${formatBytes(Math.floor(used + free * 0.8))} (--cache-limit, or \`peerdist cache resize\`) or free disk space`,
        }),
      );
    else
      checks.push(
        check({
          id: 'cache-limit',
          name: 'cache limit',
          status: 'pass',
          detail: `limit ${formatBytes(limit)}, ${formatBytes(used)} used, ${formatBytes(free)} free on the disk`,
        }),
      );
  } catch (e) {
    checks.push(
      check({
        id: 'cache-limit',
        name: 'cache limit',
        status: 'warn',
        detail: `cannot read free space of ${stateDir}: ${(e as Error).message}`,
      }),
    );
  }

  // -- origin public key
  const keyFile = ep ? ep.originPublicKey : cfg.originPublicKeyFile;
  if (keyFile) {
    try {
      // A FIFO or device would block the read (and the daemon) forever: only regular files.
      const kst = await within(checkMs, `looking at ${keyFile}`, () => stat(keyFile));
      if (!kst.isFile()) throw new Error('not a regular file');
      const pem = await within(checkMs, `reading ${keyFile}`, () => readFile(keyFile, 'utf8'));
      const key = createPublicKey(pem);
      const fp = createHash('sha256')
        .update(key.export({ type: 'spki', format: 'der' }))
        .digest('hex')
        .slice(0, 16);
      checks.push(
        check({
          id: 'origin-key',
          name: 'origin public key',
          status: 'pass',
          detail: `${keyFile}: ${key.asymmetricKeyType} key, SHA-256 ${fp}…`,
        }),
      );
    } catch (e) {
      checks.push(
        check({
          id: 'origin-key',
          name: 'origin public key',
          status: 'fail',
          blocking: true,
          detail: `${keyFile}: ${(e as Error).message}`,
          remedy:
            "copy the origin's key (`peerdist secret public-key` on the origin) to this file; every download fails until it is readable and valid",
        }),
      );
    }
  }

  if (ep && ep.serving === false)
    checks.push(
      check({
        id: 'serving',
        name: 'serving peers',
        status: 'warn',
        detail: `not serving peers now (${ep.power === 'battery' ? 'on battery' : 'policy'})`,
        remedy: 'plug in, or set serveOnBattery',
      }),
    );

  return { ok: !checks.some((c) => c.status === 'fail' && c.blocking), checks };
}

export function doctorText(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.remedy && c.status !== 'pass') lines.push(`${' '.repeat(6 + width)}  fix: ${c.remedy}`);
  }
  const blocking = r.checks.filter((c) => c.status === 'fail' && c.blocking).length;
  lines.push(
    r.ok ? 'peer caching: ready' : `peer caching: BLOCKED (${blocking} problem${blocking === 1 ? '' : 's'} to fix)`,
  );
  // Details quote answers from the network (ProbeMatch addresses, origin errors; issue 27.8).
  return textForTerminal(lines.join('\n'));
}
