/**
 * Composes a running daemon: block store, MS-PCCRR retrieval server and client, MS-PCCRD
 * discovery answering from the store, DNS-SD presence, the download engine, the admin API and
 * the optional local HTTP proxy. `close()` shuts everything down in reverse order.
 */
import { readFile } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { BlockStore } from '../cache/store.js';
import { createRetrievalServer } from '../retrieval/server.js';
import { RetrievalClient } from '../retrieval/client.js';
import { Discovery } from '../discovery/discovery.js';
import { startPresence } from '../discovery/presence.js';
import { DownloadEngine, UndiciOriginClient } from '../engine/engine.js';
import { originTrust } from '../util/origin-trust.js';
import { clearStaleBuffers } from '../engine/plain.js';
import { type Logger, createLogger } from '../util/log.js';
import { PeerdistError } from '../util/errors.js';
import { VERSION } from '../util/version.js';
import { type DaemonConfig, checkConfigFiles } from './config.js';
import { formatAdminAddress, formatHostPort } from '../util/address.js';
import { type InterfaceMap, advertisedAddresses, chooseInterface, localSubnets, ipv6Interfaces } from './netif.js';
import { JobBook } from './jobs.js';
import { startAdminServer } from './admin.js';
import { startProxyServer } from './proxy.js';
import { TargetGuard } from './proxy-guard.js';
import { parseCidrList } from '../util/ip.js';
import { collectMetrics, statusDocument, type DaemonParts } from './status-report.js';
import { renderMetrics } from './metrics.js';
import { PeerTracker } from './peer-tracker.js';
import { HostedCacheSource } from '../hostedcache/peer-source.js';
import { Offerer } from '../hostedcache/offerer.js';
import { PowerMonitor } from './power.js';
import { ServePolicy } from './serve-policy.js';
import { isLivenessProbe } from '../discovery/liveness.js';
import { TraceBook, type TracedJob } from './traces.js';
import { ByteHistory, HISTORY_SAMPLE_MS, PeerHealth, type PeerStatLike } from './history.js';
import { makeDirs } from '../util/mkdirs.js';

const isWildcard = (h: string) => h === '0.0.0.0' || h === '::' || h === '';

/** What discovery's lookup says for a v2 segment held whole (shared: the responder only reads it). */
const V2_HELD = Object.freeze({ blockCount: 1, complete: true });

export const DAEMON_VERSION = VERSION;
/** How often the DNS-SD TXT record (cache size) is refreshed. */
const PRESENCE_REFRESH_MS = 60_000;
/** Connections per peer for block requests: matches the engine's per-peer request cap (16), well under a peer's 64-request server cap. */
const PEER_CONNECTIONS = 16;
/**
 * Connections one peer (an IPv4 address, an IPv6 /64) may hold to our retrieval server: twice what
 * our own client opens to a peer. Beyond --max-peer-connections, slots are shared fairly between
 * peers (src/retrieval/fair-share.ts; issue 27.7).
 */
const PEER_CONNECTIONS_PER_SOURCE = 2 * PEER_CONNECTIONS;
/** How long the advertised XAddrs are reused before the interfaces are listed again. */
const XADDRS_REFRESH_MS = 30_000;

/** The line printed on stdout once every listener is up (protocol/admin-api.md). */
export interface ReadyEvent {
  event: 'ready';
  retrieval: string;
  admin: string;
  proxy: string | null;
  pid: number;
}

export interface RunningDaemon {
  readonly ready: ReadyEvent;
  readonly engine: DownloadEngine;
  readonly store: BlockStore;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  networkInterfaces?: () => InterfaceMap;
  /** Where the power supplies are listed (default /sys/class/power_supply; tests use a fake tree). */
  powerSupplyDir?: string;
  /** Clock for the maximum cache entry age (default Date.now). */
  now?: () => number;
  /**
   * Exact `ip:port` targets the proxy may reach although they are local (tests only: their origin
   * runs on loopback; PEERDIST_PROXY_TEST_TARGETS).
   */
  proxyTestTargets?: string[];
}

/** How often segments past the maximum cache entry age are evicted. */
const MAX_AGE_SWEEP_MS = 60_000;

/** A daemon component failed to start (port in use, unreadable key, ...). */
export class DaemonStartError extends PeerdistError {
  constructor(what: string, cause: unknown) {
    super('START_FAILED', `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** Runs one startup step, naming it in the error. PeerdistErrors already say what failed. */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PeerdistError) throw err;
    throw new DaemonStartError(what, err);
  }
}

export async function startDaemon(config: DaemonConfig, opts: StartOptions = {}): Promise<RunningDaemon> {
  const log = opts.logger ?? createLogger({ component: 'daemon' });
  const ifaces = (opts.networkInterfaces ?? networkInterfaces)();
  const iface = config.interface ? chooseInterface(config.interface, ifaces) : undefined;
  // Every file-valued setting is checked before anything starts (one-line BAD_CONFIG errors).
  const { originPublicKeyPem: signaturePublicKeyPem, originCaPem } = await checkConfigFiles(config);

  // Everything started so far, closed in reverse order if a later step fails or on shutdown.
  const closers: Array<{ name: string; close: () => Promise<void> | void }> = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c.close();
      } catch (err) {
        log.warn('shutdown step failed', { step: c.name, err });
      }
    }
  };

  try {
    await makeDirs(config.stateDir);
    const store = await BlockStore.open({
      dir: join(config.stateDir, 'cache'),
      limitBytes: config.cacheLimitBytes,
      logger: log.child({ component: 'cache' }),
      ...(opts.now ? { now: opts.now } : {}),
    });
    closers.push({ name: 'store', close: () => store.close() });
    // Plain (non-PeerDist) download bodies live in <state dir>/tmp, which only this daemon uses (the
    // store above holds the state dir's lock): bodies left by a killed daemon are cleared now.
    const tmpDir = join(config.stateDir, 'tmp');
    const stale = await clearStaleBuffers(tmpDir);
    if (stale > 0) log.info('removed stale download buffers', { dir: tmpDir, count: stale });
    await makeDirs(tmpDir);

    const power = new PowerMonitor(opts.powerSupplyDir);
    await power.start();
    closers.push({ name: 'power monitor', close: () => power.stop() });
    const policy = new ServePolicy({
      maxAgeMs: config.cacheMaxAgeMs,
      serveOnBattery: config.serveOnBattery,
      power: () => power.current(),
      now: opts.now,
    });
    if (config.cacheMaxAgeMs > 0) {
      const sweep = () =>
        store.evictOlderThan(config.cacheMaxAgeMs).then(
          (n) => {
            if (n > 0)
              log.info('evicted cache entries past the maximum age', { segments: n, maxAgeMs: config.cacheMaxAgeMs });
          },
          (err) => log.warn('maximum-age eviction failed', { err }),
        );
      await sweep();
      const t = setInterval(() => {
        void sweep();
      }, MAX_AGE_SWEEP_MS);
      t.unref();
      closers.push({ name: 'max-age sweep', close: () => clearInterval(t) });
    }

    const server = createRetrievalServer({
      source: policy.source(store),
      host: config.listen.host,
      port: config.listen.port,
      logger: log.child({ component: 'pccrr-server' }),
      uploadRateLimit: config.uploadRateLimit,
      maxConnections: config.maxPeerConnections,
      maxConnectionsPerSource: PEER_CONNECTIONS_PER_SOURCE,
      maxConcurrent: config.maxPeerRequests,
      notServing: () => policy.notServing(),
      sealWorker: config.sealWorker,
    });
    const bound = await step(`retrieval server on ${formatHostPort(config.listen)}`, () => server.listen());
    closers.push({ name: 'retrieval server', close: () => server.close() });
    // Re-read the interfaces now and then: with a wildcard bind the advertised addresses follow
    // DHCP changes.
    const listInterfaces = opts.networkInterfaces ?? networkInterfaces;
    const ipv6 = ipv6Interfaces(config.ipv6, iface, ifaces);
    let xaddrList = advertisedAddresses(bound, iface, ifaces, ipv6);
    let xaddrAt = Date.now();
    const xaddrs = (): string[] => {
      if (Date.now() - xaddrAt > XADDRS_REFRESH_MS) {
        xaddrAt = Date.now();
        xaddrList = advertisedAddresses(bound, iface, listInterfaces(), ipv6);
      }
      return xaddrList;
    };

    const discovery = new Discovery({
      port: config.discoveryPort,
      interfaces: iface ? [iface.address] : undefined,
      ipv6,
      loopback: iface?.loopback ?? false,
      xaddrs,
      // keys: each ID's hex, made once per datagram by discovery (src/discovery/keys.ts).
      lookup: (ids, version, keys) =>
        ids.map((id, i) => {
          if (version === 1 && isLivenessProbe(id)) return { blockCount: 1, complete: false }; // `peerdist doctor`
          const st = store.probeState(keys ? keys.lower(i) : id.toString('hex'));
          if (!st || policy.notServing() !== undefined || policy.tooOldAt(st.added)) return undefined;
          const complete = st.present === st.total;
          // v2 answers only for whole segments: one shared answer instead of an object per ID.
          if (version === 2) return complete ? V2_HELD : undefined;
          return st.present > 0 ? { blockCount: st.present, complete } : undefined;
        }),
      localSubnets: localSubnets(iface, ifaces, ipv6),
      logger: log.child({ component: 'discovery' }),
    });
    await step(`discovery on UDP port ${config.discoveryPort}`, () => discovery.start());
    closers.push({ name: 'discovery', close: () => discovery.close() });

    if (config.presence) {
      const txt = () => ({ version: DAEMON_VERSION, cache: String(store.stats().bytes) });
      try {
        const presence = await startPresence({
          name: `peerdist-${hostname()}-${bound.port}`,
          port: bound.port,
          txt: txt(),
          mdnsPort: config.mdnsPort,
          interface: iface?.address,
          loopback: iface?.loopback,
          logger: log.child({ component: 'presence' }),
        });
        const refresh = setInterval(() => presence.update(txt()), PRESENCE_REFRESH_MS);
        refresh.unref();
        closers.push({
          name: 'presence',
          close: () => {
            clearInterval(refresh);
            return presence.close();
          },
        });
      } catch (err) {
        log.warn('DNS-SD presence unavailable; continuing without it', { err });
      }
    }

    const retrieval = new RetrievalClient({
      connections: PEER_CONNECTIONS,
      logger: log.child({ component: 'pccrr-client' }),
    });
    closers.push({ name: 'retrieval client', close: () => retrieval.close() });
    const peers = new PeerTracker();
    // Hosted caches (MS-PCHC): one more peer source for every download, and where completed
    // segments are offered (protocol/pchc.md, "Client behaviour").
    const hcSource = new HostedCacheSource({
      caches: config.hostedCaches.map((h) => ({
        address: formatHostPort({ host: h.host, port: h.retrievalPort }),
        version: h.version,
      })),
      client: retrieval,
      logger: log.child({ component: 'hosted-cache-source' }),
    });
    const offerers: Offerer[] = [];
    for (const h of config.hostedCaches) {
      const ca = h.caFile
        ? await step(`hosted cache CA file ${h.caFile}`, () => readFile(h.caFile!, 'utf8'))
        : undefined;
      const o = new Offerer({
        target: { host: h.host, port: h.port, version: h.version, ca },
        localPort: bound.port,
        localAddress: isWildcard(config.listen.host) ? undefined : config.listen.host,
        logger: log.child({ component: 'offerer' }),
      });
      offerers.push(o);
      closers.push({ name: 'offerer', close: () => o.close() });
    }
    if (offerers.length > 0) {
      store.on('block', (idHex: string) => {
        const id = Buffer.from(idHex, 'hex');
        if (!store.isComplete(id)) return;
        const meta = store.getSegment(id);
        if (meta) for (const o of offerers) o.offer(meta);
      });
    }
    // HTTPS origins: Node's roots + the system bundle + --origin-ca (util/origin-trust.ts).
    const http = new UndiciOriginClient({ ca: originTrust(originCaPem ? [originCaPem] : []) });
    closers.push({ name: 'origin client', close: () => http.close() });
    const engine = new DownloadEngine({
      http,
      store,
      discovery: peers.wrap(hcSource.wrap(discovery)),
      retrieval,
      logger: log.child({ component: 'engine' }),
      signaturePublicKeyPem,
      maxContentVersion: config.maxContentVersion,
      selfAddresses: xaddrs,
      tmpDir,
    });
    closers.push({ name: 'engine', close: () => engine.close() });

    const jobs = new JobBook(engine);
    const clock = opts.now ?? Date.now;
    const started = clock();
    const history = new ByteHistory();
    const sample = () => {
      const t = engine.totals();
      history.record(clock(), t);
    };
    sample();
    const sampler = setInterval(sample, HISTORY_SAMPLE_MS);
    sampler.unref();
    closers.push({ name: 'history', close: () => clearInterval(sampler) });
    const health = new PeerHealth();
    const traces = new TraceBook(clock);
    engine.on('job', (job: TracedJob & { peerStats?: () => PeerStatLike[] }) => {
      traces.follow(job);
      const settle = () => {
        if (job.peerStats) health.addJob(clock(), job.peerStats());
      };
      job.done.then(settle, settle);
    });
    const endpoints = () => ({
      retrieval: formatHostPort(bound),
      xaddrs: xaddrs(),
      discoveryPort: config.discoveryPort,
      interface: iface ? { name: iface.name ?? null, address: iface.address, loopback: iface.loopback } : null,
      stateDir: config.stateDir,
      originPublicKey: config.originPublicKeyFile ?? null,
      uploadRateLimit: config.uploadRateLimit ?? null,
      power: power.current(),
      serving: policy.notServing() === undefined,
    });
    const parts: DaemonParts = {
      engine,
      jobs,
      store,
      server,
      discovery,
      retrievalClient: retrieval,
      peers,
      started,
      version: DAEMON_VERSION,
      history,
      health,
      now: clock,
      endpoints,
      ...(offerers.length
        ? {
            hostedCaches: () =>
              offerers.map((o) => ({
                host: o.target.host,
                port: o.target.port,
                version: o.target.version,
                offers: o.snapshot(),
                polls: hcSource.stats,
              })),
          }
        : {}),
    };
    const admin = await step(`admin API on ${formatAdminAddress(config.admin)}`, () =>
      startAdminServer(config.admin, {
        jobs,
        logger: log.child({ component: 'admin' }),
        status: () => statusDocument(parts),
        explain: (q) => traces.find(q),
        metrics: () => renderMetrics(collectMetrics(parts)),
        cache: { stats: () => store.stats(), list: () => store.list(), verifyAll: () => store.verifyAll() },
      }),
    );
    closers.push({ name: 'admin', close: () => admin.close() });

    let proxyAddr: string | null = null;
    if (config.proxy) {
      const exempt = opts.proxyTestTargets ?? [];
      if (exempt.length) log.warn('proxy: test hook lets these local targets through', { targets: exempt });
      const proxy = await step(`proxy on ${formatHostPort(config.proxy)}`, () =>
        startProxyServer(config.proxy!, {
          jobs,
          logger: log.child({ component: 'proxy' }),
          guard: new TargetGuard(exempt.length ? { exempt } : {}),
          ...(config.proxyAllow.length ? { allow: parseCidrList(config.proxyAllow) } : {}),
        }),
      );
      closers.push({ name: 'proxy', close: () => proxy.close() });
      proxyAddr = proxy.address;
    }

    const ready: ReadyEvent = {
      event: 'ready',
      retrieval: formatHostPort(bound),
      admin: admin.address || formatAdminAddress(config.admin),
      proxy: proxyAddr,
      pid: process.pid,
    };
    log.info('daemon ready', {
      ...ready,
      xaddrs: xaddrs(),
      interface: iface?.address ?? 'all',
      ipv6,
      stateDir: config.stateDir,
    });
    let closing: Promise<void> | undefined;
    return { ready, engine, store, close: () => (closing ??= closeAll()) };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
