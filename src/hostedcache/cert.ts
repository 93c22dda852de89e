/**
 * The hosted cache's TLS certificate for the v1.0 (HTTPS) listener: the admin's own certificate and
 * key, or a self-signed one generated on first start and kept in `<stateDir>/tls/` (the admin
 * exports it with `peerdist hosted-cache export-cert` and installs it as a trusted root on the
 * clients). Generated with node:crypto only: an RSA-2048 key and a minimal X.509 v3 certificate
 * (sha256WithRSAEncryption, subjectAltName, basicConstraints CA, serverAuth) assembled in DER here.
 */
import { type KeyObject, X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { PeerdistError } from '../util/errors.js';
import { makeDirs } from '../util/mkdirs.js';

export class CertificateError extends PeerdistError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_CERTIFICATE', message, options);
  }
}

// ---- minimal DER ----

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
const seq = (...p: Buffer[]) => tlv(0x30, Buffer.concat(p));
const set = (...p: Buffer[]) => tlv(0x31, Buffer.concat(p));
function uint(b: Buffer): Buffer {
  let v = b;
  while (v.length > 1 && v[0] === 0 && (v[1]! & 0x80) === 0) v = v.subarray(1);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}
function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const enc = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) enc.unshift((v & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}
const name = (cn: string) => seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand '::'
  const [head, tail] = ip.includes('::') ? (ip.split('::') as [string, string]) : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(
    groups.flatMap((g) => {
      const v = parseInt(g, 16);
      return [v >> 8, v & 0xff];
    }),
  );
}

export interface GeneratedCertificate {
  certPem: string;
  keyPem: string;
}

/** A self-signed certificate for `names` (DNS names and IP addresses; the first is the CN). */
export function generateSelfSigned(names: string[], opts: { days?: number; now?: Date } = {}): GeneratedCertificate {
  if (names.length === 0) throw new CertificateError('at least one name is needed');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const now = opts.now ?? new Date();
  const notBefore = new Date(now.getTime() - 3600_000);
  const notAfter = new Date(now.getTime() + (opts.days ?? 3650) * 86400_000);
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const sigAlg = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  const san = seq(...names.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, 'ascii')))));
  const ext = (id: string, critical: boolean, value: Buffer) =>
    seq(oid(id), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), tlv(0x04, value));
  const extensions = tlv(
    0xa3,
    seq(
      ext('2.5.29.17', false, san),
      ext('2.5.29.19', true, seq(Buffer.from([0x01, 0x01, 0xff]))),
      ext('2.5.29.15', true, tlv(0x03, Buffer.from([0x02, 0xa4]))), // digitalSignature, keyEncipherment, keyCertSign
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))),
    ),
  );
  const tbs = seq(
    tlv(0xa0, uint(Buffer.from([2]))),
    uint(serial),
    sigAlg,
    name(names[0]!),
    seq(time(notBefore), time(notAfter)),
    name(names[0]!),
    spki,
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = seq(tbs, sigAlg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** Checks that the PEM pair parses and belongs together; returns the parsed certificate. */
export function checkPair(certPem: string, keyPem: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new CertificateError(`certificate does not parse: ${(err as Error).message}`, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CertificateError(`private key does not parse: ${(err as Error).message}`, { cause: err });
  }
  if (!cert.checkPrivateKey(key)) throw new CertificateError('the private key does not belong to the certificate');
  return cert;
}

export const tlsDir = (stateDir: string) => join(stateDir, 'tls');
export const certPath = (stateDir: string) => join(tlsDir(stateDir), 'cert.pem');
const keyPath = (stateDir: string) => join(tlsDir(stateDir), 'key.pem');

export interface LoadedCertificate {
  certPem: string;
  keyPem: string;
  generated: boolean;
  fingerprint256: string;
  subjectAltName?: string;
  path: string;
}

/**
 * The admin's pair when both files are given; else the one generated earlier in `<stateDir>/tls/`;
 * else a new self-signed certificate for `names`, written there (key mode 0600).
 */
export async function loadOrCreateCertificate(
  stateDir: string,
  opts: { certFile?: string; keyFile?: string; names: string[] },
): Promise<LoadedCertificate> {
  if (!!opts.certFile !== !!opts.keyFile)
    throw new CertificateError('give both the certificate and the key file, or neither');
  if (opts.certFile && opts.keyFile) {
    const certPem = await readFile(opts.certFile, 'utf8').catch((e) => {
      throw new CertificateError(`cannot read ${opts.certFile}: ${(e as Error).message}`, { cause: e });
    });
    const keyPem = await readFile(opts.keyFile, 'utf8').catch((e) => {
      throw new CertificateError(`cannot read ${opts.keyFile}: ${(e as Error).message}`, { cause: e });
    });
    const c = checkPair(certPem, keyPem);
    return {
      certPem,
      keyPem,
      generated: false,
      fingerprint256: c.fingerprint256,
      subjectAltName: c.subjectAltName,
      path: opts.certFile,
    };
  }
  const cp = certPath(stateDir);
  const kp = keyPath(stateDir);
  const existing = await Promise.all([readFile(cp, 'utf8'), readFile(kp, 'utf8')]).catch(() => undefined);
  if (existing) {
    const c = checkPair(existing[0], existing[1]);
    return {
      certPem: existing[0],
      keyPem: existing[1],
      generated: false,
      fingerprint256: c.fingerprint256,
      subjectAltName: c.subjectAltName,
      path: cp,
    };
  }
  const g = generateSelfSigned(opts.names);
  await makeDirs(tlsDir(stateDir), 0o700);
  await chmod(tlsDir(stateDir), 0o700);
  // key first, then the certificate: a certificate on disk always has its key
  await writeFile(`${kp}.tmp`, g.keyPem, { mode: 0o600 });
  await rename(`${kp}.tmp`, kp);
  await writeFile(`${cp}.tmp`, g.certPem, { mode: 0o644 });
  await rename(`${cp}.tmp`, cp);
  const c = checkPair(g.certPem, g.keyPem);
  return { ...g, generated: true, fingerprint256: c.fingerprint256, subjectAltName: c.subjectAltName, path: cp };
}

/** The certificate a hosted cache uses (generated or supplied), PEM or DER, for export. */
export async function exportCertificate(stateDir: string, format: 'pem' | 'der'): Promise<Buffer> {
  let pem: string;
  try {
    pem = await readFile(certPath(stateDir), 'utf8');
  } catch (err) {
    throw new CertificateError(
      `no generated certificate in ${tlsDir(stateDir)} (start the hosted cache once, or use your own)`,
      { cause: err },
    );
  }
  const cert = new X509Certificate(pem);
  return format === 'der' ? cert.raw : Buffer.from(cert.toString());
}
