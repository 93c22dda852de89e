/**
 * `peerdist daemon`: runs the peer cache daemon in the foreground. Prints one JSON "ready" line
 * on stdout when every listener is up; logs go to stderr. SIGTERM/SIGINT shut it down cleanly.
 */
import type { Command } from 'commander';
import { type RawConfig, configFromEnv, readConfigFile, resolveConfig } from '../daemon/config.js';
import { defaultStateDir } from '../util/paths.js';
import { createLogger } from '../util/log.js';
import { settleArrayBufferDetaching } from '../util/jit.js';

interface DaemonFlags {
  config?: string;
  stateDir?: string;
  listen?: string;
  interface?: string;
  admin?: string;
  adminSocket?: string;
  proxyPort?: string;
  proxyHost?: string;
  proxyAllow?: string[];
  discoveryPort?: string;
  cacheLimit?: string;
  originPublicKey?: string;
  maxContentVersion?: string;
  presence?: boolean;
  mdnsPort?: string;
  uploadRateLimit?: string;
  maxPeerConnections?: string;
  maxPeerRequests?: string;
  cacheMaxAge?: string;
  serveOnBattery?: boolean;
  sealWorker?: boolean;
  ipv6?: boolean | string;
  hostedCache?: string[];
  hostedCacheVersion?: string;
  hostedCacheCa?: string;
  hostedCacheRetrievalPort?: string;
  originCa?: string;
}

/** How long shutdown may take before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 5_000;

export function register(program: Command): void {
  const cmd = program
    .command('daemon')
    .description('run the peer cache daemon (retrieval server, discovery, downloads, admin API)')
    .option('--config <file>', 'JSON config file (default $PEERDIST_CONFIG)')
    .option('--state-dir <dir>', 'state directory (cache lives in <dir>/cache)')
    .option('--listen <host:port>', 'retrieval (MS-PCCRR) server address (default 0.0.0.0:7170)')
    .option('--interface <if>', 'interface name or IPv4 address for discovery (lo/127.x: loopback mode)')
    .option('--admin <host:port>', 'admin API on a loopback address (default 127.0.0.1:7171)')
    .option('--admin-socket <path>', 'admin API on a unix socket instead')
    .option('--proxy-port <port>', 'also run a local HTTP forward proxy on this port')
    .option('--proxy-host <host>', 'address for the proxy (default 127.0.0.1); off loopback it needs --proxy-allow')
    .option(
      '--proxy-allow <cidr>',
      "let clients in this network use the proxy besides loopback, e.g. 192.168.1.0/24 (repeatable); the proxy never connects to loopback, link-local or this host's own addresses",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--discovery-port <port>', 'WS-Discovery UDP port (default 3702)')
    .option('--cache-limit <bytes>', 'cache size limit (e.g. 10G)')
    .option('--origin-public-key <file>', 'PEM public key; content information must carry a valid origin signature')
    .option('--max-content-version <1|2>', 'highest content information version to request (default 2)')
    .option('--no-presence', 'do not announce the daemon with DNS-SD')
    .option('--mdns-port <port>', 'mDNS UDP port for DNS-SD presence (default 5353)')
    .option('--upload-rate-limit <bytes/s>', 'cap on what this machine serves to peers, e.g. 2M (default unlimited)')
    .option('--max-peer-connections <n>', 'open peer connections at most (default 256)')
    .option('--max-peer-requests <n>', 'peer block requests handled at once; more are answered busy (default 64)')
    .option(
      '--cache-max-age <duration>',
      'cache entries older than this are not served and are evicted, e.g. 28d, 12h (default 28d; 0 = no limit)',
    )
    .option(
      '--ipv6 [interfaces]',
      'discover over IPv6 too (ff02::c): on the discovery interface, or all interfaces with IPv6, or these (comma-separated)',
    )
    .option('--serve-on-battery', 'keep serving peers while the machine runs on battery (default: stop)')
    .option('--seal-worker', 'encrypt blocks served to peers on a worker thread (default: off)')
    .option('--no-seal-worker', 'encrypt blocks served to peers on the main thread')
    .option(
      '--hosted-cache <host[:port]>',
      'offer downloaded segments to this MS-PCHC hosted cache and fetch from it (repeatable; port default 80 for v2, 443 for v1)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--hosted-cache-version <1|2>',
      'MS-PCHC version: 2 = BATCHED_OFFER over HTTP (Windows 8+), 1 = INITIAL_OFFER/SEGMENT_INFO over HTTPS (Windows 7) (default 2)',
    )
    .option('--origin-ca <file>', 'PEM certificate(s) to trust for HTTPS origins, besides the bundled and system CAs')
    .option(
      '--hosted-cache-ca <file>',
      'PEM certificate(s) to trust for a v1 hosted cache (e.g. from peerdist hosted-cache export-cert)',
    )
    .option(
      '--hosted-cache-retrieval-port <port>',
      'MS-PCCRR port of a v1 hosted cache (default 80; v2 uses the --hosted-cache port)',
    )
    .action(async (o: DaemonFlags) => {
      const flags: RawConfig = {
        stateDir: o.stateDir,
        listen: o.listen,
        interface: o.interface,
        admin: o.admin,
        adminSocket: o.adminSocket,
        proxyPort: o.proxyPort,
        proxyHost: o.proxyHost,
        proxyAllow: o.proxyAllow,
        discoveryPort: o.discoveryPort,
        cacheLimit: o.cacheLimit,
        originPublicKey: o.originPublicKey,
        maxContentVersion: o.maxContentVersion,
        presence: cmd.getOptionValueSource('presence') === 'cli' ? o.presence : undefined,
        mdnsPort: o.mdnsPort,
        uploadRateLimit: o.uploadRateLimit,
        maxPeerConnections: o.maxPeerConnections,
        maxPeerRequests: o.maxPeerRequests,
        cacheMaxAge: o.cacheMaxAge,
        serveOnBattery: o.serveOnBattery ? true : undefined,
        sealWorker: cmd.getOptionValueSource('sealWorker') === 'cli' ? o.sealWorker : undefined,
        ipv6: o.ipv6,
        hostedCache: o.hostedCache,
        hostedCacheVersion: o.hostedCacheVersion,
        hostedCacheCa: o.hostedCacheCa,
        originCa: o.originCa,
        hostedCacheRetrievalPort: o.hostedCacheRetrievalPort,
      };
      const configPath = o.config ?? process.env.PEERDIST_CONFIG;
      const file = configPath ? await readConfigFile(configPath) : undefined;
      const config = resolveConfig({
        flags,
        env: configFromEnv(process.env),
        file,
        defaultStateDir: defaultStateDir(),
      });
      const log = createLogger({ component: 'daemon' });
      // A stray rejected promise in some component is logged, not fatal: one failed peer or
      // download must not take the whole daemon down.
      process.on('unhandledRejection', (err) => log.error('unhandled promise rejection', { err }));
      // Before any code is hot: the first ArrayBuffer detach otherwise deoptimizes the block path
      // mid-download (util/jit.ts).
      settleArrayBufferDetaching();
      // Loaded on demand: the daemon pulls in every subsystem, which other commands don't need.
      const { startDaemon } = await import('../daemon/daemon.js');
      // PEERDIST_POWER_SUPPLY_DIR: a fake /sys/class/power_supply tree (tests).
      const daemon = await startDaemon(config, {
        logger: log,
        powerSupplyDir: process.env.PEERDIST_POWER_SUPPLY_DIR || undefined,
        // PEERDIST_PROXY_TEST_TARGETS: ip:port targets on loopback the proxy may reach (tests).
        proxyTestTargets: (process.env.PEERDIST_PROXY_TEST_TARGETS ?? '')
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      });
      process.stdout.write(JSON.stringify(daemon.ready) + '\n');

      await new Promise<void>((resolveP) => {
        const onSignal = (sig: string) => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          log.info('shutting down', { signal: sig });
          const force = setTimeout(() => {
            log.error('shutdown timed out; exiting anyway');
            process.exit(1);
          }, SHUTDOWN_GRACE_MS);
          force.unref();
          daemon.close().then(
            () => {
              clearTimeout(force);
              resolveP();
            },
            (err) => {
              log.error('shutdown failed', { err });
              process.exitCode = 1;
              resolveP();
            },
          );
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      log.info('stopped');
      process.exitCode ??= 0;
      // Lingering keep-alive sockets or timers owned by dependencies must not hold the process.
      setTimeout(() => process.exit(), 200).unref();
    });
}
