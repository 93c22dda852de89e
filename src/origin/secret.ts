/**
 * The origin's server secret (protocol/pccrtp.md, "Hash cache and secret"): 32 random bytes kept raw at `<stateDir>/origin/secret`
 * (mode 0600, directories 0700). `peerdist hash` reads the same file. Export/import use lower-case
 * hex text so an operator can copy the secret between origins; import also accepts raw bytes.
 */
import { randomBytes } from 'node:crypto';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PeerdistError } from '../util/errors.js';
import { makeDirs } from '../util/mkdirs.js';

export const SECRET_LENGTH = 32;

export function originDir(stateDir: string): string {
  return join(stateDir, 'origin');
}

export function secretPath(stateDir: string): string {
  return join(originDir(stateDir), 'secret');
}

/** Creates `<stateDir>` and `<stateDir>/origin` (0700 when created; origin/ is forced to 0700). */
export async function ensureOriginDir(stateDir: string): Promise<string> {
  const dir = originDir(stateDir);
  await makeDirs(dir, 0o700);
  await chmod(dir, 0o700);
  return dir;
}

/** Reads a secret file; a zero-length file is an error (it would make every Ks the same public value). */
export async function readSecretFile(file: string): Promise<Buffer> {
  const buf = await readFile(file);
  if (buf.length === 0) throw new PeerdistError('BAD_SECRET', `secret file ${file} is empty`);
  return buf;
}

/** Loads the origin secret, creating 32 random bytes (0600) on first use. */
export async function loadOrCreateSecret(stateDir: string): Promise<Buffer> {
  await ensureOriginDir(stateDir);
  const file = secretPath(stateDir);
  try {
    return await readSecretFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(SECRET_LENGTH);
  try {
    await writeFile(file, secret, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readSecretFile(file);
    throw err;
  }
}

/** Replaces the stored secret (atomically, 0600). Content information hashed with the old one becomes stale. */
export async function storeSecret(stateDir: string, secret: Buffer): Promise<void> {
  if (secret.length === 0) throw new PeerdistError('BAD_SECRET', 'refusing to store an empty secret');
  await ensureOriginDir(stateDir);
  const file = secretPath(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, secret, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/** Export format: the secret as lower-case hex followed by a newline. */
export function formatSecretExport(secret: Buffer): string {
  return secret.toString('hex') + '\n';
}

/** Import: hex text (whitespace ignored, even length) or, failing that, the raw bytes as they are. */
export function parseSecretImport(data: Buffer): Buffer {
  const text = data.toString('latin1').replace(/\s+/g, '');
  if (text.length > 0 && text.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(text)) return Buffer.from(text, 'hex');
  if (data.length === 0) throw new PeerdistError('BAD_SECRET', 'secret file is empty');
  return Buffer.from(data);
}
