/**
 * Which certificate authorities an HTTPS origin may chain to: Node's bundled roots, the system's
 * CA bundle (where the distribution keeps it), and PEM files the operator names (`--origin-ca`),
 * for origins with a private CA or a self-signed certificate.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { PeerdistError } from './errors.js';

/** Where Linux distributions keep the system CA bundle (the first that exists is used). */
export const SYSTEM_CA_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

let system: string[] | undefined;

function systemCas(): string[] {
  if (system) return system;
  system = [];
  for (const f of SYSTEM_CA_BUNDLES) {
    try {
      system = [readFileSync(f, 'utf8')];
      break;
    } catch {
      /* next */
    }
  }
  return system;
}

/** Reads an extra CA file: PEM with at least one certificate, else BAD_CONFIG naming the file. */
export async function readCaFile(file: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new PeerdistError('BAD_CONFIG', `origin CA ${file}: ${(err as Error).message}`);
  }
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  try {
    if (!first) throw new Error('no PEM certificate in it');
    new X509Certificate(first[0]);
  } catch (err) {
    throw new PeerdistError('BAD_CONFIG', `origin CA ${file}: ${(err as Error).message}`);
  }
  return pem;
}

/** The `ca` list for TLS connections to origins: bundled roots + system bundle + the given PEMs. */
export function originTrust(extraPems: string[]): string[] {
  return [...rootCertificates, ...systemCas(), ...extraPems];
}
