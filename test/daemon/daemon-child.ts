/** Runs `peerdist daemon` from this build as a child process and waits for its ready line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import t from 'tap';
import { cliEntry } from '../helpers/paths.js';

/**
 * Every child still running. A test whose `Promise.all` of several starts rejects never gets the
 * others' handles, so the root test's teardown kills whatever is left (otherwise their pipes would
 * keep this test process alive until tap's own timeout).
 */
const live = new Set<ChildProcess>();
let reaperInstalled = false;
function track(proc: ChildProcess): void {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  if (reaperInstalled) return;
  reaperInstalled = true;
  t.teardown(() => {
    for (const p of live) p.kill('SIGKILL');
  });
}

/**
 * How long a daemon may take to print its ready line. This is a hang guard, not a timing
 * assertion: on a loaded 2-core machine (issue 27.13) a start took longer than 15 s.
 */
const READY_TIMEOUT_MS = 60_000;

export interface ReadyLine {
  event: 'ready';
  retrieval: string;
  admin: string;
  proxy: string | null;
  pid: number;
}

export interface DaemonChild {
  proc: ChildProcess;
  ready: ReadyLine;
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
}

export function startDaemonChild(
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<DaemonChild> {
  const proc = spawn(process.execPath, [cliEntry, 'daemon', ...args], {
    env: { ...process.env, PEERDIST_LOG: process.env.PEERDIST_LOG ?? 'warn', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc);
  let out = '',
    err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const stop = async (graceMs = 8000): Promise<number | null> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return new Promise((resolveP, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`daemon not ready in time; stderr:\n${err}`));
    }, opts.timeoutMs ?? READY_TIMEOUT_MS);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        const ready = JSON.parse(out.slice(0, nl)) as ReadyLine;
        resolveP({ proc, ready, stderr: () => err, stop });
      } catch (e) {
        proc.kill('SIGKILL');
        reject(new Error(`bad ready line ${out}: ${(e as Error).message}`));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before ready; stderr:\n${err}`));
    });
  });
}

/** A UDP port that was free a moment ago (for the shared discovery port). */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The arguments of a daemon alone on loopback: its state directory, MS-PCCRR on `listen`, the admin
 * API on an ephemeral loopback port, discovery and mDNS on ports of its own, no DNS-SD presence.
 */
export async function loopbackDaemonArgs(stateDir: string, listen = '127.0.0.2:0'): Promise<string[]> {
  return [
    '--state-dir',
    stateDir,
    '--listen',
    listen,
    '--interface',
    '127.0.0.1',
    '--admin',
    '127.0.0.1:0',
    '--discovery-port',
    String(await freeUdpPort()),
    '--mdns-port',
    String(await freeUdpPort()),
    '--no-presence',
  ];
}
