/**
 * Signed content information: our extension to MS-PCCRTP (protocol/pccrtp.md, "Signature").
 * The origin signs every PeerDist body with an RSA-PSS (SHA-256) key so a daemon that fetched the
 * content information can prove it came from that origin, for that path and entity version.
 *
 *   X-PeerDist-Signature: alg=rsa-pss-sha256, keyid=<32 hex>, sig=<base64>
 *
 * Signed message (UTF-8, fields joined by "\n", no trailing newline):
 *   peerdist-content-information-signature-v1
 *   <request path: the request-target as sent, origin-form, including any query>
 *   <ETag response header value, or empty>
 *   <ContentLength from the X-P2P-PeerDist response header (decimal), or empty>
 *   <lower-case hex SHA-256 of the response body>
 */
import { constants, createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { getHeader, parseParams, parsePeerDistResponse, HDR_PEERDIST, type HeaderBag } from './headers.js';

export const HDR_SIGNATURE = 'X-PeerDist-Signature';
export const SIGNATURE_LABEL = 'peerdist-content-information-signature-v1';
export const SIGNATURE_ALG = 'rsa-pss-sha256';
export const SIGNING_KEY_BITS = 3072;
const PSS_SALT_LENGTH = 32;

export interface SignedFields {
  path: string;
  etag: string | undefined;
  contentLength: number | undefined;
  body: Buffer;
}

/** The exact bytes that are signed. */
export function signatureMessage(f: SignedFields): Buffer {
  return Buffer.from(
    [
      SIGNATURE_LABEL,
      f.path,
      f.etag ?? '',
      f.contentLength === undefined ? '' : String(f.contentLength),
      createHash('sha256').update(f.body).digest('hex'),
    ].join('\n'),
    'utf8',
  );
}

/** Key identifier: first 16 bytes of SHA-256 over the DER SubjectPublicKeyInfo, hex. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest()
    .subarray(0, 16)
    .toString('hex');
}

export function publicKeyPem(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'pem' }).toString();
}

/** The X-PeerDist-Signature header value for a response. */
export function signContentInfo(privateKey: KeyObject, f: SignedFields): string {
  const sig = sign('sha256', signatureMessage(f), {
    key: privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: PSS_SALT_LENGTH,
  });
  return `alg=${SIGNATURE_ALG}, keyid=${keyId(privateKey)}, sig=${sig.toString('base64')}`;
}

export type VerifyResult =
  | { ok: true }
  | { ok: false; reason: 'missing' | 'malformed' | 'bad-signature' | 'wrong-key' };

/**
 * Checks a PeerDist response's signature. `path` is the request-target the client sent
 * (URL pathname + search); `headers` are the response headers; `body` the content information.
 */
export function verifyContentInfoSignature(opts: {
  publicKeyPem: string;
  path: string;
  headers: HeaderBag;
  body: Buffer;
}): VerifyResult {
  const raw = getHeader(opts.headers, HDR_SIGNATURE);
  if (raw === undefined || raw.trim() === '') return { ok: false, reason: 'missing' };
  const p = parseParams(raw);
  const alg = p.get('alg');
  const kid = p.get('keyid');
  const sigB64 = p.get('sig');
  if (
    alg !== SIGNATURE_ALG ||
    !kid ||
    !/^[0-9a-f]{32}$/i.test(kid) ||
    !sigB64 ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(sigB64)
  ) {
    return { ok: false, reason: 'malformed' };
  }
  let pub: KeyObject;
  try {
    pub = createPublicKey(opts.publicKeyPem);
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (pub.asymmetricKeyType !== 'rsa' && pub.asymmetricKeyType !== 'rsa-pss') return { ok: false, reason: 'wrong-key' };
  if (keyId(pub) !== kid.toLowerCase()) return { ok: false, reason: 'wrong-key' };
  const msg = signatureMessage({
    path: opts.path,
    etag: getHeader(opts.headers, 'etag'),
    contentLength:
      getHeader(opts.headers, HDR_PEERDIST) === undefined
        ? undefined
        : parsePeerDistResponse(opts.headers).contentLength,
    body: opts.body,
  });
  let good = false;
  try {
    good = verify(
      'sha256',
      msg,
      { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_LENGTH },
      Buffer.from(sigB64, 'base64'),
    );
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  return good ? { ok: true } : { ok: false, reason: 'bad-signature' };
}
