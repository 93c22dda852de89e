/**
 * Azurite (Microsoft's Azure Storage emulator, the `azurite` npm package) for tests and the
 * simulation: the blob service on 127.0.0.1 with a port the OS picks, data in a fresh temp
 * directory, telemetry off; stop() ends the process and removes the directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { onProcessExit } from './sim/proc.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Azurite's well-known development account (public, documented by Microsoft for the emulator). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  port: number;
  /** Blob endpoint, http://127.0.0.1:PORT/devstoreaccount1 */
  endpoint: string;
  connectionString: string;
  /** Stops the emulator (SIGTERM, then SIGKILL) and removes its data. */
  stop(): Promise<void>;
  /** Stops the process but keeps its data, so start() can bring the same store back. */
  pause(): Promise<void>;
  /** Starts the emulator again on the same port and data. */
  resume(): Promise<void>;
}

function blobMain(): string {
  const req = createRequire(import.meta.url);
  return join(dirname(req.resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');
}

/** `node` arguments that run Azurite's blob service on 127.0.0.1:`port` (0: the OS picks) with data in `dir`. */
export function azuriteArgs(dir: string, port = 0): string[] {
  return [
    blobMain(),
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(port),
    '--location',
    dir,
    '--skipApiVersionCheck',
    '--silent',
    '--disableTelemetry',
  ];
}

/** The port in Azurite's "listens on" line, if `text` has it. */
export function azuriteListenPort(text: string): number | undefined {
  const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The connection string of Azurite's development account at `endpoint` (http://HOST:PORT/ACCOUNT). */
export function azuriteConnectionString(endpoint: string): string {
  return (
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
    `BlobEndpoint=${endpoint};`
  );
}

function launch(dir: string, port: number): Promise<{ proc: ChildProcess; port: number }> {
  const args = azuriteArgs(dir, port);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // A run ended by a test timeout or ^C must not leave Azurite behind (the sim's exit registry).
  const unhook = onProcessExit(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  proc.once('exit', unhook);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const p = azuriteListenPort(out);
      if (p !== undefined) {
        proc.stdout!.off('data', onData);
        proc.off('exit', onExit);
        proc.stdout!.resume();
        resolve({ proc, port: p });
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`azurite exited (${code}) before listening: ${out}${err}`));
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    proc.once('exit', onExit);
  });
}

function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    proc.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

export async function startAzurite(): Promise<Azurite> {
  const dir = await mkdtemp(join(tmpdir(), 'pd-azurite-'));
  let cur: ChildProcess;
  let port: number;
  try {
    ({ proc: cur, port } = await launch(dir, 0));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const unhookDir = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    port,
    endpoint,
    connectionString: azuriteConnectionString(endpoint),
    async stop() {
      await stopProc(cur);
      unhookDir();
      await rm(dir, { recursive: true, force: true });
    },
    async pause() {
      await stopProc(cur);
    },
    async resume() {
      ({ proc: cur } = await launch(dir, port));
    },
  };
}
