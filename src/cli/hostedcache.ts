/**
 * `peerdist hosted-cache`: runs the MS-PCHC hosted cache server in the foreground (one JSON
 * "ready" line on stdout, logs on stderr, SIGTERM/SIGINT stop it), and
 * `peerdist hosted-cache export-cert` writes its TLS certificate for installing on clients.
 * See protocol/pchc.md.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAdminAddress, parseHostPort } from '../util/address.js';
import { parseSize } from '../util/size.js';
import { defaultStateDir } from '../util/paths.js';
import { createLogger } from '../util/log.js';

interface RunFlags {
  stateDir?: string;
  http: string;
  https: string;
  cert?: string;
  key?: string;
  tlsName?: string[];
  admin: string;
  adminSocket?: string;
  cacheLimit?: string;
  fetchConcurrency: string;
  fetchPerClient: string;
  fetchRate: string;
  maxUploads: string;
  maxConnections: string;
  maxConnectionsPerHost: string;
}

const SHUTDOWN_GRACE_MS = 5_000;

/** The hosted cache's default state directory: `hosted-cache` beside the daemon's. */
export function defaultHostedCacheStateDir(): string {
  return join(defaultStateDir(), 'hosted-cache');
}

function int(v: string, what: string, min: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min) throw new InvalidArgumentError(`${what} must be an integer >= ${min}`);
  return Number(v);
}

export function register(program: Command): void {
  const hc = program
    .command('hosted-cache')
    .description('run an MS-PCHC hosted cache (one branch cache server for many subnets)');
  hc.command('run', { isDefault: true })
    .description('run the hosted cache server (the default subcommand)')
    .option(
      '--state-dir <dir>',
      'state directory: cache in <dir>/cache, certificate in <dir>/tls (default <daemon state dir>/hosted-cache)',
    )
    .option('--http <host:port>', 'MS-PCHC v2.0 (HTTP) and MS-PCCRR listener', '0.0.0.0:80')
    .option('--https <host:port|off>', 'MS-PCHC v1.0 (HTTPS) listener, or off', '0.0.0.0:443')
    .option('--cert <file>', 'PEM certificate for HTTPS (with --key); default: self-signed, generated on first start')
    .option('--key <file>', 'PEM private key for --cert')
    .option(
      '--tls-name <name>',
      'DNS name or IP for a generated certificate (repeatable; default: host name, localhost, 127.0.0.1)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--admin <host:port>', 'admin API on a loopback address', '127.0.0.1:7172')
    .option('--admin-socket <path>', 'admin API on a unix socket instead')
    .option('--cache-limit <bytes>', 'cache size limit (e.g. 100G)')
    .option('--fetch-concurrency <n>', 'segment pulls from clients at once', '8')
    .option('--fetch-per-client <n>', 'segment pulls from one client at once', '4')
    .option('--fetch-rate <bytes/s>', 'pull rate cap over all clients (e.g. 32M; 0 = none)', '32M')
    .option('--max-uploads <n>', 'MS-PCCRR requests served at once', '1024')
    .option('--max-connections <n>', 'open connections at most (HTTP and HTTPS together)', '4096')
    .option('--max-connections-per-host <n>', 'open connections from one address (IPv6: one /64) at most', '64')
    .action(async (o: RunFlags) => {
      const size = (v: string, what: string) => {
        try {
          return parseSize(v);
        } catch (err) {
          throw new InvalidArgumentError(`${what}: ${(err as Error).message}`);
        }
      };
      const config = {
        stateDir: o.stateDir ?? defaultHostedCacheStateDir(),
        http: parseHostPort(o.http, '--http'),
        https: o.https === 'off' ? undefined : parseHostPort(o.https, '--https'),
        certFile: o.cert,
        keyFile: o.key,
        tlsNames: o.tlsName,
        admin: o.adminSocket ? { kind: 'socket' as const, path: o.adminSocket } : parseAdminAddress(o.admin),
        cacheLimitBytes: o.cacheLimit !== undefined ? size(o.cacheLimit, '--cache-limit') : undefined,
        fetchConcurrency: int(o.fetchConcurrency, '--fetch-concurrency', 1),
        fetchPerClient: int(o.fetchPerClient, '--fetch-per-client', 1),
        fetchRateBytesPerSec: size(o.fetchRate, '--fetch-rate'),
        maxUploads: int(o.maxUploads, '--max-uploads', 1),
        maxConnections: int(o.maxConnections, '--max-connections', 1),
        maxConnectionsPerSource: int(o.maxConnectionsPerHost, '--max-connections-per-host', 1),
      };
      const log = createLogger({ component: 'hosted-cache' });
      process.on('unhandledRejection', (err) => log.error('unhandled promise rejection', { err }));
      const { startHostedCache } = await import('../hostedcache/hosted-cache.js');
      const running = await startHostedCache(config, { logger: log });
      process.stdout.write(JSON.stringify(running.ready) + '\n');
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
          running.close().then(
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
      setTimeout(() => process.exit(), 200).unref();
    });

  hc.command('export-cert')
    .description('write the generated HTTPS certificate (install it as a trusted root on the clients)')
    .option('--state-dir <dir>', 'the hosted cache state directory')
    .option('-o, --output <file>', 'output file (default: stdout)')
    .option('--der', 'DER (.cer for Windows certutil / Import-Certificate) instead of PEM')
    .action(async (o: { stateDir?: string; output?: string; der?: boolean }) => {
      const { exportCertificate } = await import('../hostedcache/cert.js');
      const data = await exportCertificate(o.stateDir ?? defaultHostedCacheStateDir(), o.der ? 'der' : 'pem');
      if (o.output) await writeFile(o.output, data);
      else process.stdout.write(data);
    });
}
