/** Shared pieces of the hostile tests: temp dirs, a published origin, raw HTTP on loopback. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createOriginServer } from '../../src/origin/server.js';
import { publishDirectory } from '../../src/origin/publish.js';
import { loadOrCreateSecret } from '../../src/origin/secret.js';

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export async function tmpDir(t: Test, prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `pd-hostile-${prefix}-`));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Temp dirs holding a tmpfs mount (mountedTmpfs) start with this, then the owning process's pid. */
const TMPFS_PREFIX = 'pd-hostile-tmpfs-';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    /* not mounted, or already gone */
  }
}

/**
 * Removes what mountedTmpfs left behind in runs killed before their teardown: every
 * `<tmpdir>/pd-hostile-tmpfs-<pid>-*` whose process is gone is unmounted and deleted. Returns the
 * dirs removed.
 */
export function sweepStaleTmpfs(dir = tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  let mounts = '';
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    /* not Linux: nothing can be mounted by us either */
  }
  for (const name of names) {
    const m = new RegExp(`^${TMPFS_PREFIX}(\\d+)-`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    const root = join(dir, name);
    for (const line of mounts.split('\n')) {
      const at = line.split(' ')[1];
      if (at?.startsWith(`${root}/`)) unmount(at);
    }
    rmSync(root, { recursive: true, force: true });
    removed.push(root);
  }
  return removed;
}

/**
 * A tmpfs of `size` (mount's syntax: "3m") mounted at a fresh dir, unmounted and removed at
 * teardown; null where this process may not mount (not root). Its parent is named with our pid, so
 * a run killed before its teardown leaves a mount the next run's sweepStaleTmpfs removes.
 */
export async function mountedTmpfs(t: Test, size: string): Promise<string | null> {
  sweepStaleTmpfs();
  const root = await mkdtemp(join(tmpdir(), `${TMPFS_PREFIX}${process.pid}-`));
  const mnt = join(root, 'mnt');
  await mkdir(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    await rm(root, { recursive: true, force: true });
    return null;
  }
  t.teardown(async () => {
    unmount(mnt);
    await rm(root, { recursive: true, force: true });
  });
  return mnt;
}

/** A real origin serving `files`, hashed up front (v1 and v2) so every request gets content information. */
export async function publishedOrigin(
  t: Test,
  root: string,
  files: Record<string, Buffer>,
): Promise<{ base: string; stateDir: string; www: string }> {
  const www = join(root, 'www');
  await mkdir(www, { recursive: true });
  for (const [name, data] of Object.entries(files)) await writeFile(join(www, name), data);
  const stateDir = join(root, 'origin-state');
  await publishDirectory({ root: www, stateDir, secret: await loadOrCreateSecret(stateDir), versions: [1, 2] });
  const origin = await createOriginServer({ root: www, stateDir, host: '127.0.0.1', port: 0 });
  const { port } = await origin.listen();
  t.teardown(() => origin.close());
  return { base: `http://127.0.0.1:${port}`, stateDir, www };
}

/** Sends raw bytes to host:port and returns everything received until the peer closes (bounded). */
export function rawExchange(host: string, port: number, request: Buffer | string, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(Buffer.concat(parts));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    sock.on('connect', () => sock.write(request));
  });
}

/** Splits a raw HTTP/1.1 response: status, lower-cased headers, body (by Content-Length). */
export function splitResponse(raw: Buffer): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: raw };
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  const len = Number(headers['content-length'] ?? 0);
  return { status: Number(lines[0]!.split(' ')[1]), headers, body: raw.subarray(end + 4, end + 4 + len) };
}
