/** The origin's content-information signing key on disk (see protocol/pccrtp.md, "Signature"). */
import { createPrivateKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PeerdistError } from '../util/errors.js';
import { SIGNING_KEY_BITS } from '../protocol/pccrtp/signature.js';
import { ensureOriginDir, originDir } from './secret.js';

export function signingKeyPath(stateDir: string): string {
  return join(originDir(stateDir), 'signing-key.pem');
}

/** Reads a PEM private key shared by several origin nodes (`serve --signing-key-file`). */
export async function readSigningKeyFile(file: string): Promise<KeyObject> {
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(file, 'utf8'));
  } catch (err) {
    throw new PeerdistError('BAD_SIGNING_KEY', `signing key ${file}: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'rsa')
    throw new PeerdistError('BAD_SIGNING_KEY', `signing key ${file} is ${key.asymmetricKeyType}, not RSA`);
  return key;
}

const generateKeyPairP = promisify(generateKeyPair);

/** Loads `<stateDir>/origin/signing-key.pem` (PKCS#8 PEM, 0600), generating an RSA-3072 key on first use. */
export async function loadOrCreateSigningKey(stateDir: string): Promise<KeyObject> {
  await ensureOriginDir(stateDir);
  const file = signingKeyPath(stateDir);
  try {
    return createPrivateKey(await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = await generateKeyPairP('rsa', { modulusLength: SIGNING_KEY_BITS });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
    return privateKey;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return createPrivateKey(await readFile(file, 'utf8'));
    throw err;
  }
}
