/**
 * Daemon configuration: merges a JSON config file, PEERDIST_* environment variables and command
 * line flags. Precedence (highest first): flags > environment > config file > defaults.
 * `resolveConfig` is pure; `readConfigFile` and `checkConfigFiles` touch the disk. See
 * protocol/admin-api.md.
 */
import { readCaFile } from '../util/origin-trust.js';
import { createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { makeDirs } from '../util/mkdirs.js';
import { dirname } from 'node:path';
import { PeerdistError } from '../util/errors.js';
import { parseSize as parseBytes } from '../util/size.js';
import {
  type AdminAddress,
  type HostPort,
  parseAdminAddress,
  parseHostPort,
  AddressError,
  isLoopbackHost,
} from '../util/address.js';
import { parseCidrList } from '../util/ip.js';

export class ConfigError extends PeerdistError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_CONFIG', message, options);
  }
}

/** One source of settings, all optional. Values are strings from env/flags or JSON values from the file. */
export interface RawConfig {
  stateDir?: string;
  listen?: string;
  interface?: string;
  admin?: string;
  adminSocket?: string;
  proxyPort?: number | string;
  proxyHost?: string;
  /** Networks whose clients may use the proxy (CIDR): a list (config file), or comma-separated. */
  proxyAllow?: string | string[];
  discoveryPort?: number | string;
  cacheLimit?: number | string;
  originPublicKey?: string;
  originCa?: string;
  maxContentVersion?: number | string;
  presence?: boolean | string;
  mdnsPort?: number | string;
  uploadRateLimit?: number | string;
  maxPeerConnections?: number | string;
  maxPeerRequests?: number | string;
  cacheMaxAge?: number | string;
  serveOnBattery?: boolean | string;
  sealWorker?: boolean | string;
  /** IPv6 discovery: true/false, or interface names (comma-separated string or JSON array). */
  ipv6?: boolean | string | string[];
  /** Hosted caches HOST[:PORT]: a list (config file), or comma-separated (env, repeated flags joined). */
  hostedCache?: string | string[];
  hostedCacheVersion?: number | string;
  hostedCacheCa?: string;
  hostedCacheRetrievalPort?: number | string;
}

/** A hosted cache the daemon offers to and fetches from (protocol/pchc.md, "Client behaviour"). */
export interface HostedCacheSetting {
  host: string;
  /** MS-PCHC port: default 80 (v2.0, HTTP) or 443 (v1.0, HTTPS). */
  port: number;
  version: 1 | 2;
  /** Its MS-PCCRR port: v2.0 the same port; v1.0 hostedCacheRetrievalPort, default 80. */
  retrievalPort: number;
  /** PEM file of extra CA certificates trusted for the v1.0 HTTPS offers. */
  caFile?: string;
}

export interface DaemonConfig {
  stateDir: string;
  /** Retrieval (MS-PCCRR) server address. */
  listen: HostPort;
  /** Interface name (eth0, lo) or IPv4 address for discovery; undefined = all interfaces. */
  interface?: string;
  admin: AdminAddress;
  /** Local HTTP forward proxy; undefined = disabled. */
  proxy?: HostPort;
  /**
   * CIDRs (or addresses) whose clients may use the proxy besides loopback; required when the
   * proxy listens off loopback (issue 27.2).
   */
  proxyAllow: string[];
  discoveryPort: number;
  /** Cache size limit in bytes; undefined = the store's default. */
  cacheLimitBytes?: number;
  /** PEM file with the origin's content-information signing key; undefined = no signature check. */
  originPublicKeyFile?: string;
  /** PEM file of CAs trusted for HTTPS origins besides the bundled and system ones. */
  originCaFile?: string;
  maxContentVersion: 1 | 2;
  /** Announce the daemon with DNS-SD (mDNS). */
  presence: boolean;
  /** mDNS UDP port (default 5353; tests use another). */
  mdnsPort?: number;
  /** Cap on what the retrieval server sends to peers, bytes/s; undefined = unlimited. */
  uploadRateLimit?: number;
  /** Open peer connections to the retrieval server at most. */
  maxPeerConnections: number;
  /** MS-PCCRR requests handled at once; more are answered busy. */
  maxPeerRequests: number;
  /** Cache entries older than this (ms since they were stored) are not served and are evicted. */
  cacheMaxAgeMs: number;
  /** Serve peers while the machine runs on battery. */
  serveOnBattery: boolean;
  /**
   * Encrypt served blocks on a worker thread (src/retrieval/seal-worker.ts) instead of the
   * retrieval server's main thread.
   */
  sealWorker: boolean;
  /**
   * Discovery over IPv6 too (ff02::c): false, true (the discovery interface when one is chosen,
   * else every interface with a non-internal IPv6 address) or these interface names.
   */
  ipv6: boolean | string[];
  /** Hosted caches (MS-PCHC); empty = distributed mode only. */
  hostedCaches: HostedCacheSetting[];
}

export const DEFAULTS = {
  listen: '0.0.0.0:7170',
  admin: '127.0.0.1:7171',
  proxyHost: '127.0.0.1',
  discoveryPort: 3702,
  maxContentVersion: 2,
  maxPeerConnections: 256,
  maxPeerRequests: 64,
  /** 28 days, BranchCache's default maximum data cache entry age. */
  cacheMaxAge: '28d',
  serveOnBattery: false,
  sealWorker: false,
} as const;

/** Environment variable for each setting. PEERDIST_CONFIG names the config file itself. */
export const ENV_VARS: Record<keyof RawConfig, string> = {
  stateDir: 'PEERDIST_STATE_DIR',
  listen: 'PEERDIST_LISTEN',
  interface: 'PEERDIST_INTERFACE',
  admin: 'PEERDIST_ADMIN',
  adminSocket: 'PEERDIST_ADMIN_SOCKET',
  proxyPort: 'PEERDIST_PROXY_PORT',
  proxyHost: 'PEERDIST_PROXY_HOST',
  proxyAllow: 'PEERDIST_PROXY_ALLOW',
  discoveryPort: 'PEERDIST_DISCOVERY_PORT',
  cacheLimit: 'PEERDIST_CACHE_LIMIT',
  originPublicKey: 'PEERDIST_ORIGIN_PUBLIC_KEY',
  originCa: 'PEERDIST_ORIGIN_CA',
  maxContentVersion: 'PEERDIST_MAX_CONTENT_VERSION',
  presence: 'PEERDIST_PRESENCE',
  mdnsPort: 'PEERDIST_MDNS_PORT',
  uploadRateLimit: 'PEERDIST_UPLOAD_RATE_LIMIT',
  maxPeerConnections: 'PEERDIST_MAX_PEER_CONNECTIONS',
  maxPeerRequests: 'PEERDIST_MAX_PEER_REQUESTS',
  cacheMaxAge: 'PEERDIST_CACHE_MAX_AGE',
  serveOnBattery: 'PEERDIST_SERVE_ON_BATTERY',
  sealWorker: 'PEERDIST_SEAL_WORKER',
  ipv6: 'PEERDIST_IPV6',
  hostedCache: 'PEERDIST_HOSTED_CACHE',
  hostedCacheVersion: 'PEERDIST_HOSTED_CACHE_VERSION',
  hostedCacheCa: 'PEERDIST_HOSTED_CACHE_CA',
  hostedCacheRetrievalPort: 'PEERDIST_HOSTED_CACHE_RETRIEVAL_PORT',
};

const KEYS = Object.keys(ENV_VARS) as Array<keyof RawConfig>;

/** Picks the PEERDIST_* variables that configure the daemon (empty values are ignored). */
export function configFromEnv(env: Record<string, string | undefined>): RawConfig {
  const out: RawConfig = {};
  for (const k of KEYS) {
    const v = env[ENV_VARS[k]];
    if (v !== undefined && v !== '') (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** Validates the shape of a parsed config file: an object with known keys only. */
export function configFromJson(json: unknown, source = 'config file'): RawConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ConfigError(`${source}: expected a JSON object`);
  const out: RawConfig = {};
  for (const [k, v] of Object.entries(json)) {
    if (!(KEYS as string[]).includes(k))
      throw new ConfigError(`${source}: unknown setting "${k}" (known: ${KEYS.join(', ')})`);
    if (v === null || v === undefined) continue;
    if (k === 'ipv6' && Array.isArray(v) && v.every((x) => typeof x === 'string')) {
      out.ipv6 = v as string[];
      continue;
    }
    if (k === 'hostedCache' && Array.isArray(v) && v.every((x) => typeof x === 'string')) {
      out.hostedCache = v as string[];
      continue;
    }
    if (k === 'proxyAllow' && Array.isArray(v) && v.every((x) => typeof x === 'string')) {
      out.proxyAllow = v as string[];
      continue;
    }
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw new ConfigError(`${source}: "${k}" must be a string or number`);
    (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export async function readConfigFile(path: string): Promise<RawConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return configFromJson(json, `config file ${path}`);
}

/** Byte sizes: a number, or a string like `500M`, `10G`, `1.5GiB` (binary units). */
export function parseSize(v: number | string, what = 'size'): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${what}: ${v} is not a non-negative integer`);
    return v;
  }
  try {
    return parseBytes(v);
  } catch (err) {
    throw new ConfigError(`${what}: ${(err as Error).message}`);
  }
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Durations: a number of seconds, or a string like `90s`, `30m`, `12h`, `28d` (0 = no limit). Returns ms. */
export function parseDuration(v: number | string, what = 'duration'): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new ConfigError(`${what}: ${v} is not a non-negative number of seconds`);
    return Math.round(v * 1000);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/i.exec(v);
  if (!m) throw new ConfigError(`${what}: invalid duration "${v}" (examples: 3600, 90m, 12h, 28d)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** Rates: bytes per second as a size (`1048576`, `500K`, `10M`, optional `/s`); 0 = unlimited. */
export function parseRate(v: number | string, what = 'rate'): number {
  return parseSize(typeof v === 'string' ? v.replace(/\s*\/\s*s(ec)?\s*$/i, '') : v, what);
}

function parseIntSetting(v: number | string, what: string, min: number, max: number): number {
  const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(`${what}: "${v}" must be an integer in ${min}..${max}`);
  return n;
}

function parseBool(v: boolean | string, what: string): boolean {
  if (typeof v === 'boolean') return v;
  const s = v.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off'].includes(s)) return false;
  throw new ConfigError(`${what}: "${v}" is not a boolean`);
}

/** `ipv6`: a boolean (or its spelling), or interface names (comma-separated, or a JSON array). */
export function parseIPv6Setting(v: boolean | string | string[] | undefined): boolean | string[] {
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  let names: string[];
  if (Array.isArray(v)) names = v;
  else {
    const s = v.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on', ''].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    names = v
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean);
  }
  for (const n of names) {
    if (typeof n !== 'string' || !/^[A-Za-z0-9_.:@-]{1,15}$/.test(n))
      throw new ConfigError(`ipv6: "${String(n)}" is not an interface name`);
  }
  return names.length > 0 ? names : false;
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AddressError) throw new ConfigError(err.message, { cause: err });
    throw err;
  }
}

/**
 * Merges the sources (flags > env > file > defaults) and validates every value. `admin` and
 * `adminSocket` are one setting: the highest-precedence source that sets either decides; a
 * source that sets both is an error.
 */
export function resolveConfig(sources: {
  flags?: RawConfig;
  env?: RawConfig;
  file?: RawConfig;
  defaultStateDir: string;
}): DaemonConfig {
  const layers = [sources.flags ?? {}, sources.env ?? {}, sources.file ?? {}];
  const pick = <K extends keyof RawConfig>(k: K): RawConfig[K] => {
    for (const l of layers) if (l[k] !== undefined) return l[k];
    return undefined;
  };

  let admin: AdminAddress | undefined;
  for (const l of layers) {
    if (l.admin !== undefined && l.adminSocket !== undefined)
      throw new ConfigError('set either admin (HOST:PORT) or adminSocket (PATH), not both');
    if (l.adminSocket !== undefined) {
      admin = { kind: 'socket', path: String(l.adminSocket) };
      break;
    }
    if (l.admin !== undefined) {
      admin = wrap(() => parseAdminAddress(String(l.admin)));
      break;
    }
  }
  admin ??= wrap(() => parseAdminAddress(DEFAULTS.admin));
  if (admin.kind === 'socket' && admin.path === '') throw new ConfigError('adminSocket: empty path');

  const proxyPortRaw = pick('proxyPort');
  const proxy =
    proxyPortRaw === undefined
      ? undefined
      : {
          host: String(pick('proxyHost') ?? DEFAULTS.proxyHost),
          port: parseIntSetting(proxyPortRaw, 'proxyPort', 0, 65535),
        };
  const proxyAllow = proxyAllowSetting(pick('proxyAllow'));
  if (proxy && !isLoopbackHost(proxy.host) && proxyAllow.length === 0)
    throw new ConfigError(
      `proxyHost: the proxy would listen on ${proxy.host}, which is not loopback, and serve anyone who reaches it: name the networks whose clients may use it with --proxy-allow CIDR (PEERDIST_PROXY_ALLOW, proxyAllow), e.g. --proxy-allow 192.168.1.0/24`,
    );

  const cacheLimit = pick('cacheLimit');
  const mcv = parseIntSetting(pick('maxContentVersion') ?? DEFAULTS.maxContentVersion, 'maxContentVersion', 1, 2) as
    | 1
    | 2;
  const iface = pick('interface');
  const stateDir = pick('stateDir') ?? sources.defaultStateDir;
  if (stateDir === '') throw new ConfigError('stateDir: empty path');
  const presence = pick('presence');
  const mdnsPort = pick('mdnsPort');
  const upload = pick('uploadRateLimit');
  const uploadRateLimit = upload === undefined ? 0 : parseRate(upload, 'uploadRateLimit');
  const sob = pick('serveOnBattery');
  const seal = pick('sealWorker');

  return {
    stateDir,
    listen: wrap(() => parseHostPort(String(pick('listen') ?? DEFAULTS.listen), 'listen')),
    interface: iface === undefined || iface === '' ? undefined : String(iface),
    admin,
    proxy,
    proxyAllow,
    discoveryPort: parseIntSetting(pick('discoveryPort') ?? DEFAULTS.discoveryPort, 'discoveryPort', 0, 65535),
    cacheLimitBytes: cacheLimit === undefined ? undefined : parseSize(cacheLimit, 'cacheLimit'),
    originPublicKeyFile: pick('originPublicKey') === undefined ? undefined : String(pick('originPublicKey')),
    originCaFile: pick('originCa') === undefined ? undefined : String(pick('originCa')),
    maxContentVersion: mcv,
    presence: presence === undefined ? true : parseBool(presence, 'presence'),
    mdnsPort: mdnsPort === undefined ? undefined : parseIntSetting(mdnsPort, 'mdnsPort', 1, 65535),
    uploadRateLimit: uploadRateLimit > 0 ? uploadRateLimit : undefined,
    maxPeerConnections: parseIntSetting(
      pick('maxPeerConnections') ?? DEFAULTS.maxPeerConnections,
      'maxPeerConnections',
      1,
      100_000,
    ),
    maxPeerRequests: parseIntSetting(
      pick('maxPeerRequests') ?? DEFAULTS.maxPeerRequests,
      'maxPeerRequests',
      1,
      100_000,
    ),
    cacheMaxAgeMs: parseDuration(pick('cacheMaxAge') ?? DEFAULTS.cacheMaxAge, 'cacheMaxAge'),
    serveOnBattery: sob === undefined ? DEFAULTS.serveOnBattery : parseBool(sob, 'serveOnBattery'),
    sealWorker: seal === undefined ? DEFAULTS.sealWorker : parseBool(seal, 'sealWorker'),
    ipv6: parseIPv6Setting(pick('ipv6')),
    hostedCaches: hostedCaches(
      pick('hostedCache'),
      pick('hostedCacheVersion'),
      pick('hostedCacheCa'),
      pick('hostedCacheRetrievalPort'),
    ),
  };
}

const firstLine = (err: unknown) => String((err as Error)?.message ?? err).split('\n')[0]!;

/** What `checkConfigFiles` read: the origin public key's PEM text, when configured. */
export interface CheckedFiles {
  originPublicKeyPem?: string;
  /** The originCa file's PEM text, when configured. */
  originCaPem?: string;
}

/**
 * Checks every file-valued setting before anything starts, so a bad local file fails at startup
 * with one line naming the setting instead of failing every download later: the origin public
 * key must be a readable PEM public key; the state directory must be a directory (created if
 * missing); a unix admin socket's directory must exist. The config file itself is checked by
 * `readConfigFile`.
 */
export async function checkConfigFiles(config: DaemonConfig): Promise<CheckedFiles> {
  const out: CheckedFiles = {};
  if (config.originPublicKeyFile !== undefined) {
    const file = config.originPublicKeyFile;
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`originPublicKey: cannot read ${file}: ${firstLine(err)}`, { cause: err });
    }
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
      throw new ConfigError(
        `originPublicKey: ${file} holds a private key; give the daemon only the public key (peerdist secret public-key)`,
      );
    }
    try {
      createPublicKey(pem);
    } catch (err) {
      throw new ConfigError(`originPublicKey: ${file} is not a PEM public key (${firstLine(err)})`, { cause: err });
    }
    out.originPublicKeyPem = pem;
  }
  if (config.originCaFile !== undefined) {
    try {
      out.originCaPem = await readCaFile(config.originCaFile);
    } catch (err) {
      throw new ConfigError(`originCa: ${firstLine(err)}`, { cause: err });
    }
  }
  const st = await stat(config.stateDir).catch(() => undefined);
  if (st && !st.isDirectory()) throw new ConfigError(`stateDir: ${config.stateDir} exists and is not a directory`);
  if (!st) {
    try {
      // Not mkdir's own recursive mode: it never returns under /proc (issue 27.10).
      await makeDirs(config.stateDir);
    } catch (err) {
      throw new ConfigError(`stateDir: cannot create ${config.stateDir}: ${firstLine(err)}`, { cause: err });
    }
  }
  if (config.admin.kind === 'socket') {
    const dir = dirname(config.admin.path);
    const d = await stat(dir).catch((err: NodeJS.ErrnoException) => err);
    if (d instanceof Error) {
      if (d.code === 'ENOENT') throw new ConfigError(`adminSocket: directory ${dir} does not exist`);
      if (d.code === 'ENOTDIR')
        throw new ConfigError(`adminSocket: ${config.admin.path}: a component of ${dir} is not a directory`);
      throw new ConfigError(`adminSocket: cannot use ${dir}: ${firstLine(d)}`, { cause: d });
    }
    if (!d.isDirectory()) throw new ConfigError(`adminSocket: ${dir} is not a directory`);
  }
  return out;
}

/** `proxyAllow`: CIDRs or addresses (a list, or comma-separated), each checked. */
function proxyAllowSetting(v: string | string[] | undefined): string[] {
  const entries = (Array.isArray(v) ? v : (v ?? '').split(',')).map((e) => e.trim()).filter((e) => e !== '');
  try {
    parseCidrList(entries);
  } catch (err) {
    throw new ConfigError(`proxyAllow: ${(err as Error).message}`);
  }
  return entries;
}

function hostedCaches(
  list: string | string[] | undefined,
  version: number | string | undefined,
  ca: string | undefined,
  rport: number | string | undefined,
): HostedCacheSetting[] {
  const entries = (Array.isArray(list) ? list : (list ?? '').split(',')).map((e) => e.trim()).filter((e) => e !== '');
  const v = parseIntSetting(version ?? 2, 'hostedCacheVersion', 1, 2) as 1 | 2;
  const defaultPort = v === 2 ? 80 : 443;
  const retrieval = rport === undefined ? undefined : parseIntSetting(rport, 'hostedCacheRetrievalPort', 1, 65535);
  return entries.map((e) => {
    const hp = wrap(() =>
      (/:\d+$/.test(e) && !/^[^[]*:.*:/.test(e)) || (e.startsWith('[') && /]:\d+$/.test(e))
        ? parseHostPort(e, 'hostedCache')
        : { host: e.replace(/^\[(.*)\]$/, '$1'), port: defaultPort },
    );
    if (hp.host === '' || hp.host === '0.0.0.0') throw new ConfigError(`hostedCache: "${e}" names no host`);
    if (hp.port === 0) throw new ConfigError(`hostedCache: "${e}": port 0`);
    return {
      host: hp.host,
      port: hp.port,
      version: v,
      retrievalPort: v === 2 ? hp.port : (retrieval ?? 80),
      ...(ca ? { caFile: ca } : {}),
    };
  });
}
