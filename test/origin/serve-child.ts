/** Runs `peerdist serve` from this build as a child process and waits for its listening line. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { cliEntry } from '../helpers/paths.js';
import type { Teardown } from './tmp.js';

export interface ServeChild {
  child: ChildProcessWithoutNullStreams;
  port: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Called with each stderr chunk. */
  onStderr(fn: (all: string) => void): void;
}

/** Starts `peerdist serve --port 0 ...args`; killed (SIGTERM) when the test ends. */
export async function startServeChild(t: Teardown, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeChild> {
  const child = spawn(process.execPath, [cliEntry, 'serve', '--port', '0', ...args], {
    env: { ...process.env, PEERDIST_LOG: 'silent', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  let out = '';
  let err = '';
  const listeners: Array<(all: string) => void> = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const f of listeners) f(err);
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on https?:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${out}${err}`)));
  });
  return { child, port, stderr: () => err, exited, onStderr: (fn) => listeners.push(fn) };
}
