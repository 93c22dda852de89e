/**
 * `peerdist` command-line entry point. Each area registers its own commands from src/cli/<area>.ts.
 * Exit codes: 0 success, 1 operation failed, 2 usage error (a bad option value, or options that
 * contradict each other: UsageError).
 */
import { Command, CommanderError } from 'commander';
import { register as registerHash } from './hash.js';
import { register as registerOrigin } from './origin.js';
import { register as registerCache } from './cache.js';
import { register as registerDaemon } from './daemon.js';
import { register as registerClient } from './client.js';
import { register as registerPeers } from './peers.js';
import { register as registerDoctor } from './doctor.js';
import { register as registerExplain } from './explain.js';
import { register as registerHostedCache } from './hostedcache.js';
import { PeerdistError, UsageError } from '../util/errors.js';
import { VERSION } from '../util/version.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('peerdist')
    .description('Peer-to-peer LAN cache daemon, wire-compatible with PeerDist (BranchCache)')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  registerHash(program);
  registerOrigin(program);
  registerCache(program);
  registerDaemon(program);
  registerClient(program);
  registerPeers(program);
  registerDoctor(program);
  registerExplain(program);
  registerHostedCache(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const msg =
      err instanceof PeerdistError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`peerdist: error: ${msg}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}
