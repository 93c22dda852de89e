/** The origin's HTTPS certificate (`serve --tls-cert FILE --tls-key FILE`, reloaded on SIGHUP). */
import { readFile } from 'node:fs/promises';
import { checkPair } from '../hostedcache/cert.js';

export interface TlsPair {
  cert: string;
  key: string;
}

/** Reads a PEM certificate (chain) and its key; throws BAD_CERTIFICATE when they do not belong together. */
export async function loadTlsPair(certFile: string, keyFile: string): Promise<TlsPair> {
  const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  checkPair(cert, key);
  return { cert, key };
}
