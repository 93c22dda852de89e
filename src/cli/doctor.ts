/**
 * `peerdist doctor`: is this machine set up for peer caching? Checks pass / warn / fail with a
 * remedy each (src/client/doctor.ts); exit status 1 when something blocks peer caching.
 */
import type { Command } from 'commander';
import { type RawConfig, configFromEnv, readConfigFile, resolveConfig } from '../daemon/config.js';
import { defaultStateDir } from '../util/paths.js';
import { formatAdminAddress, parseAdminAddress } from '../util/address.js';
import { doctorText, runDoctor } from '../client/doctor.js';
import { jsonForTerminal } from '../util/terminal.js';

interface DoctorFlags {
  config?: string;
  stateDir?: string;
  listen?: string;
  interface?: string;
  admin?: string;
  discoveryPort?: string;
  cacheLimit?: string;
  originPublicKey?: string;
  daemon?: string;
  expectPeers?: boolean;
  origin?: string;
  timeout?: string;
  checkTimeout?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'check that this machine is set up for peer caching (daemon, state dir, ports, multicast, interface, clock, disk, origin key)',
    )
    .option(
      '--daemon <addr>',
      'daemon admin address HOST:PORT or socket path (default $PEERDIST_DAEMON, else the configured admin address)',
    )
    .option('--expect-peers', 'other daemons run on this subnet: fail when none answers our probe')
    .option('--origin <url>', 'an origin URL to compare the clock with (its Date header)')
    .option('--timeout <ms>', 'how long to listen for multicast answers (default 2500)')
    .option('--check-timeout <ms>', 'how long one check may take before it is reported failed (default 10000)')
    .option('--json', 'print {ok, checks: [{id, name, status, detail, remedy, blocking}]}')
    .option('--config <file>', "the daemon's JSON config file (default $PEERDIST_CONFIG)")
    .option('--state-dir <dir>', 'as for `peerdist daemon` (used when no daemon answers)')
    .option('--listen <host:port>', 'as for `peerdist daemon`')
    .option('--interface <if>', 'as for `peerdist daemon`')
    .option('--admin <host:port>', 'as for `peerdist daemon`')
    .option('--discovery-port <port>', 'as for `peerdist daemon`')
    .option('--cache-limit <bytes>', 'as for `peerdist daemon`')
    .option('--origin-public-key <file>', 'as for `peerdist daemon`')
    .action(async (o: DoctorFlags) => {
      const flags: RawConfig = {
        stateDir: o.stateDir,
        listen: o.listen,
        interface: o.interface,
        admin: o.admin,
        discoveryPort: o.discoveryPort,
        cacheLimit: o.cacheLimit,
        originPublicKey: o.originPublicKey,
      };
      const configPath = o.config ?? process.env.PEERDIST_CONFIG;
      const file = configPath ? await readConfigFile(configPath) : undefined;
      const config = resolveConfig({
        flags,
        env: configFromEnv(process.env),
        file,
        defaultStateDir: defaultStateDir(),
      });
      const daemon = parseAdminAddress(o.daemon ?? (process.env.PEERDIST_DAEMON || formatAdminAddress(config.admin)));
      const timeout = o.timeout === undefined ? undefined : Number(o.timeout);
      const checkTimeout = o.checkTimeout === undefined ? undefined : Number(o.checkTimeout);
      const report = await runDoctor({
        config,
        daemon,
        expectPeers: o.expectPeers,
        origin: o.origin,
        listenMs: timeout && timeout > 0 ? timeout : undefined,
        checkTimeoutMs: checkTimeout && checkTimeout > 0 ? checkTimeout : undefined,
      });
      const code = report.ok ? 0 : 1;
      // A check that timed out may have left work that never settles (a read of a FIFO, a hung
      // mount): it must not keep doctor from ending once the report is out (issue 27.10).
      process.stdout.write(o.json ? jsonForTerminal(report) + '\n' : doctorText(report) + '\n', () =>
        process.exit(code),
      );
    });
}
