/** Entry points of this build that the simulation spawns, and address helpers. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** `node ${peerdistEntry} ...` runs the peerdist CLI of the same build as this module. */
export const peerdistEntry = join(here, '..', '..', 'src', 'cli', 'run.js');
/** `node ${agentEntry} ...` runs the simulation's helper programs (agent.ts). */
export const agentEntry = join(here, 'agent.js');

/** Splits "HOST:PORT" (IPv4 or name); throws on a malformed port. */
export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || s.slice(i + 1) === '' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`bad HOST:PORT ${s}`);
  return { host: s.slice(0, i), port };
}
