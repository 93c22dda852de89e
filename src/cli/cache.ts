import type { Command } from 'commander';

/** Registers the `cache` commands. (Filled in by the issue that owns them.) */
export function register(_program: Command): void {
  // not implemented yet
}
