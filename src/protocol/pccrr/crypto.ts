/**
 * Block encryption for MS-PCCRR: AES-CBC keyed with the leading 16/24/32 bytes of the segment
 * secret Kp, PKCS#7 padding, IV sent beside the ciphertext. Algorithm 0 = no encryption. A second
 * reading keys AES with the whole secret whatever the algorithm says (decryptWholeSecret). See
 * protocol/pccrr.md, "Crypto".
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { RetrievalParseError } from './errors.js';
import type { CryptoAlgo } from './codec.js';

const KEY_BYTES: Record<CryptoAlgo, number> = { 0: 0, 1: 16, 2: 24, 3: 32 };
const CIPHER: Record<CryptoAlgo, string> = { 0: '', 1: 'aes-128-cbc', 2: 'aes-192-cbc', 3: 'aes-256-cbc' };

function keyFor(algo: CryptoAlgo, kp: Buffer): Buffer {
  const n = KEY_BYTES[algo];
  if (n === undefined) throw new RetrievalParseError('CryptoAlgoId', `unknown algorithm ${String(algo)}`);
  if (kp.length < n)
    throw new RetrievalParseError('CryptoAlgoId', `algorithm ${algo} needs a ${n}-byte key, Kp has ${kp.length}`);
  return kp.subarray(0, n);
}

/** Encrypt one block. Algorithm 0 returns the plaintext and an empty IV. */
export function encryptBlock(algo: CryptoAlgo, kp: Buffer, plain: Buffer, iv?: Buffer): { cipher: Buffer; iv: Buffer } {
  if (algo === 0) return { cipher: Buffer.from(plain), iv: Buffer.alloc(0) };
  const key = keyFor(algo, kp);
  const useIv = iv ?? randomBytes(16);
  if (useIv.length !== 16) throw new RetrievalParseError('IVBlock', `IV must be 16 bytes, got ${useIv.length}`);
  const c = createCipheriv(CIPHER[algo], key, useIv);
  return { cipher: Buffer.concat([c.update(plain), c.final()]), iv: Buffer.from(useIv) };
}

/** Bytes of AES-CBC ciphertext for `n` plaintext bytes with PKCS#7 padding (always 1-16 added). */
export function paddedLength(n: number): number {
  return (Math.floor(n / 16) + 1) * 16;
}

/**
 * encryptBlock for a plaintext held in `buf[0, length)` where `buf` has room for the padding
 * (at least paddedLength(length) bytes): the PKCS#7 padding is written into `buf` itself and the
 * whole is encrypted in one pass, so the ciphertext is one fresh buffer (no concatenation of
 * update() and final()). Byte for byte what encryptBlock gives with the same IV. The IV is used
 * as given (not copied).
 */
export function encryptWithRoom(algo: 1 | 2 | 3, kp: Buffer, buf: Buffer, length: number, iv: Buffer): Buffer {
  if (iv.length !== 16) throw new RetrievalParseError('IVBlock', `IV must be 16 bytes, got ${iv.length}`);
  const padded = paddedLength(length);
  if (!Number.isInteger(length) || length < 0 || buf.length < padded)
    throw new RangeError(`a ${length}-byte block needs a buffer of ${padded} bytes, got ${buf.length}`);
  buf.fill(padded - length, length, padded);
  const c = createCipheriv(CIPHER[algo], keyFor(algo, kp), iv);
  c.setAutoPadding(false);
  const out = c.update(buf.subarray(0, padded));
  c.final(); // nothing left: whole AES blocks, padding done above
  return out;
}

/**
 * Decrypt one block and return exactly `expectedLength` plaintext bytes. Padding is not checked
 * (like iPXE): everything is decrypted and the tail beyond the expected length ignored; the hash
 * check done by the caller is what proves the data. Throws if the result is too short. The result
 * is a view of one fresh buffer (algorithm 0: of `cipher`), never a further copy.
 */
export function decryptBlock(algo: CryptoAlgo, kp: Buffer, cipher: Buffer, iv: Buffer, expectedLength: number): Buffer {
  const plain = algo === 0 ? cipher : aesCbc(CIPHER[algo], keyFor(algo, kp), cipher, iv);
  return trimmed(plain, expectedLength);
}

/**
 * The second reading of an AES block (issue 27.11): AES-CBC keyed with the whole segment secret,
 * the key size taken from Kp's length (32 bytes: AES-256), whatever CryptoAlgoId the response
 * names. Microsoft's protocol test suite encrypts AES_128 blocks so; the caller tries it only
 * after the first reading failed the hash check.
 */
export function decryptWholeSecret(kp: Buffer, cipher: Buffer, iv: Buffer, expectedLength: number): Buffer {
  const algo = ({ 16: 1, 24: 2, 32: 3 } as Record<number, CryptoAlgo>)[kp.length];
  if (algo === undefined) throw new RetrievalParseError('CryptoAlgoId', `no AES key of ${kp.length} bytes`);
  return trimmed(aesCbc(CIPHER[algo], kp, cipher, iv), expectedLength);
}

function aesCbc(cipherName: string, key: Buffer, cipher: Buffer, iv: Buffer): Buffer {
  if (iv.length !== 16) throw new RetrievalParseError('IVBlock', `IV must be 16 bytes, got ${iv.length}`);
  if (cipher.length % 16 !== 0)
    throw new RetrievalParseError('Block', `ciphertext of ${cipher.length} bytes is not a multiple of 16`);
  const d = createDecipheriv(cipherName, key, iv);
  d.setAutoPadding(false);
  // Without padding and with whole cipher blocks, update() returns everything and final() nothing.
  const plain = d.update(cipher);
  const tail = d.final();
  return tail.length ? Buffer.concat([plain, tail]) : plain;
}

function trimmed(plain: Buffer, expectedLength: number): Buffer {
  if (plain.length < expectedLength) {
    throw new RetrievalParseError('SizeOfBlock', `${plain.length} bytes decrypted, ${expectedLength} expected`);
  }
  return plain.length === expectedLength ? plain : plain.subarray(0, expectedLength);
}
