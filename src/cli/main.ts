/**
 * `peerdist` command-line entry point. Each area registers its own commands from src/cli/<area>.ts.
 * Exit codes: 0 success, 1 operation failed, 2 usage error (a bad option value, or options that
 * contradict each other: UsageError).
 */
import { Command, CommanderError } from 'commander';
import { PeerdistError, UsageError } from '../util/errors.js';
import { VERSION } from '../util/version.js';
import { textForTerminal } from '../util/terminal.js';

type Area = { register: (program: Command) => void };

/**
 * The command areas, loaded on demand: `peerdist get` should not load the origin, the cache index
 * (level) and discovery to stream a file from the daemon (all of them took about 300 ms of CPU at
 * every start, against about 75 ms for node itself). `commands` are the top-level commands each
 * area registers (test/cli checks them against the areas).
 */
export const AREAS: ReadonlyArray<{ commands: readonly string[]; load: () => Promise<Area> }> = [
  { commands: ['hash', 'info'], load: () => import('./hash.js') },
  { commands: ['serve', 'publish', 'secret'], load: () => import('./origin.js') },
  { commands: ['cache'], load: () => import('./cache.js') },
  { commands: ['daemon'], load: () => import('./daemon.js') },
  { commands: ['get', 'status'], load: () => import('./client.js') },
  { commands: ['peers'], load: () => import('./peers.js') },
  { commands: ['doctor'], load: () => import('./doctor.js') },
  { commands: ['explain'], load: () => import('./explain.js') },
  { commands: ['hosted-cache'], load: () => import('./hostedcache.js') },
];

/**
 * The program with the area of `command` only, or with every area (no command, an option such as
 * --help or --version, or a name no area has: commander then lists them all or says it is unknown).
 */
export async function buildProgram(command?: string): Promise<Command> {
  const program = new Command();
  program
    .name('peerdist')
    .description('Peer-to-peer LAN cache daemon, wire-compatible with PeerDist (BranchCache)')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  const one = AREAS.find((a) => command !== undefined && a.commands.includes(command));
  for (const area of one ? [one] : AREAS) (await area.load()).register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv[2]);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const msg =
      err instanceof PeerdistError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
    // Messages quote remote data (URLs, origins' and peers' answers): no raw control characters (issue 27.8).
    process.stderr.write(`peerdist: error: ${textForTerminal(msg)}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}
