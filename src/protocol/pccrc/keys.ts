/**
 * Key and identifier derivation for content information (MS-PCCRC 2.2; protocol/contentinfo.md, "Keys and identifiers").
 *   v1: Ks = SHA-256(secret), Kp = HMAC-H(Ks, HoD), HoHoDk = HMAC-H(Kp, HoD || C), H chosen by digest length.
 *   v2: every value is the first 32 bytes of SHA-512 / HMAC-SHA-512, keyed with 32-byte truncated keys.
 */
import { createHash, createHmac } from 'node:crypto';
import { SEGMENT_ID_CONSTANT, type ContentVersion } from './types.js';

function hmacName(version: ContentVersion, digestLength: number): string {
  if (version === 2) return 'sha512';
  return digestLength === 48 ? 'sha384' : digestLength === 64 ? 'sha512' : 'sha256';
}

function hmac(version: ContentVersion, key: Buffer, digestLength: number, ...parts: Buffer[]): Buffer {
  const h = createHmac(hmacName(version, digestLength), key);
  for (const p of parts) h.update(p);
  const out = h.digest();
  return version === 2 ? out.subarray(0, 32) : out;
}

/** Server secret Ks from the origin's secret key material (v1 SHA-256, v2 first32(SHA-512)). */
export function serverSecret(version: ContentVersion, secretKeyMaterial: Buffer): Buffer {
  if (version === 2) return createHash('sha512').update(secretKeyMaterial).digest().subarray(0, 32);
  return createHash('sha256').update(secretKeyMaterial).digest();
}

/** Segment secret Kp = HMAC(Ks, HoD). The v1 HMAC hash follows the HoD length (32 = SHA-256). */
export function segmentSecret(version: ContentVersion, ks: Buffer, hod: Buffer): Buffer {
  return hmac(version, ks, hod.length, hod);
}

/** Public segment ID HoHoDk = HMAC(Kp, HoD || C). */
export function segmentIdOf(version: ContentVersion, kp: Buffer, hod: Buffer): Buffer {
  return hmac(version, kp, hod.length, hod, SEGMENT_ID_CONSTANT);
}
