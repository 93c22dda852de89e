import { homedir } from 'node:os';
import { join } from 'node:path';

/** Default state directory: /var/lib/peerdist for root on Linux, else a per-user directory. */
export function defaultStateDir(): string {
  if (process.env.PEERDIST_STATE_DIR) return process.env.PEERDIST_STATE_DIR;
  if (process.platform === 'win32') return join(process.env.PROGRAMDATA ?? 'C:\\ProgramData', 'peerdist');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'peerdist');
  if (typeof process.getuid === 'function' && process.getuid() === 0) return '/var/lib/peerdist';
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'peerdist');
}
