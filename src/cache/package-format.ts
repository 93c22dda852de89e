/**
 * Cache package records (protocol/cache-package.md). Pure encoders/decoders; no I/O.
 * All integers big-endian.
 */
import type { HashAlgorithm } from '../protocol/pccrc/types.js';
import { PackageError } from './errors.js';
import { type SegmentMeta, digestLength, validateMeta } from './meta.js';

export const PACKAGE_MAGIC = Buffer.from('PDPKG\r\n\x1a', 'latin1');
export const PACKAGE_VERSION = 1;
export const HEADER_LEN = 16;
export const REC_SEGMENT = 0x01;
export const REC_BLOCK = 0x02;
export const REC_END = 0xff;
/** type(1) + body length(4) */
export const SEGMENT_REC_HEAD = 5;
/** type(1) + block index(4) + data length(4) */
export const BLOCK_REC_HEAD = 9;
/** type(1) + segments(4) + blocks(4) + data bytes(8) */
export const END_REC_LEN = 17;
/** Largest valid SEGMENT body: fixed part + id + HoD (64 each) + Kp (64) + 512 v1 block hashes of 64 bytes. */
export const MAX_SEGMENT_BODY = 14 + 2 * 64 + 64 + 512 * 64;

const ALG_CODE: Record<HashAlgorithm, number> = { 'SHA-256': 1, 'SHA-384': 2, 'SHA-512': 3, 'SHA-512/256t': 4 };
const CODE_ALG = new Map(Object.entries(ALG_CODE).map(([k, v]) => [v, k as HashAlgorithm]));

export function encodeHeader(): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  PACKAGE_MAGIC.copy(b, 0);
  b.writeUInt16BE(PACKAGE_VERSION, 8);
  return b;
}

export function checkHeader(b: Buffer): void {
  if (b.length < HEADER_LEN || !b.subarray(0, 8).equals(PACKAGE_MAGIC))
    throw new PackageError('not a peerdist cache package (bad magic)');
  const v = b.readUInt16BE(8);
  if (v !== PACKAGE_VERSION) throw new PackageError(`unsupported package version ${v}`);
}

/** SEGMENT record: type, body length, then version, alg, D, kpLen, length(4), blockSize(4), nHashes(2), id, hod, kp, hashes. */
export function encodeSegmentRecord(m: SegmentMeta): Buffer {
  const d = digestLength(m.hashAlgorithm);
  const bodyLen = 14 + 2 * d + m.kp.length + m.blockHashes.length * d;
  const b = Buffer.alloc(SEGMENT_REC_HEAD + bodyLen);
  let o = 0;
  b[o++] = REC_SEGMENT;
  b.writeUInt32BE(bodyLen, o);
  o += 4;
  b[o++] = m.version;
  b[o++] = ALG_CODE[m.hashAlgorithm];
  b[o++] = d;
  b[o++] = m.kp.length;
  b.writeUInt32BE(m.length, o);
  o += 4;
  b.writeUInt32BE(m.blockSize, o);
  o += 4;
  b.writeUInt16BE(m.blockHashes.length, o);
  o += 2;
  for (const part of [m.segmentId, m.hod, m.kp, ...m.blockHashes]) {
    part.copy(b, o);
    o += part.length;
  }
  return b;
}

/** Decodes and validates a SEGMENT body (after type and length). */
export function decodeSegmentBody(b: Buffer): SegmentMeta {
  const need = (n: number, field: string) => {
    if (b.length < n) throw new PackageError(`segment record: ${field} truncated`);
  };
  need(14, 'header');
  const version = b[0]!,
    code = b[1]!,
    d = b[2]!,
    kpLen = b[3]!;
  const length = b.readUInt32BE(4),
    blockSize = b.readUInt32BE(8),
    n = b.readUInt16BE(12);
  const alg = CODE_ALG.get(code);
  if (version !== 1 && version !== 2) throw new PackageError(`segment record: version ${version}`);
  if (!alg || digestLength(alg) !== d) throw new PackageError(`segment record: hash algorithm ${code}/${d}`);
  if (b.length !== 14 + 2 * d + kpLen + n * d)
    throw new PackageError('segment record: length does not match its fields');
  let o = 14;
  const take = (len: number) => {
    const s = Buffer.from(b.subarray(o, o + len));
    o += len;
    return s;
  };
  const segmentId = take(d),
    hod = take(d),
    kp = take(kpLen);
  const blockHashes: Buffer[] = [];
  for (let i = 0; i < n; i++) blockHashes.push(take(d));
  const meta: SegmentMeta = { segmentId, version, hashAlgorithm: alg, hod, kp, length, blockSize, blockHashes };
  try {
    validateMeta(meta);
  } catch (err) {
    throw new PackageError(`segment record: ${(err as Error).message}`);
  }
  return meta;
}

export function encodeBlockHead(index: number, dataLength: number): Buffer {
  const b = Buffer.alloc(BLOCK_REC_HEAD);
  b[0] = REC_BLOCK;
  b.writeUInt32BE(index, 1);
  b.writeUInt32BE(dataLength, 5);
  return b;
}

export function encodeEnd(segments: number, blocks: number, bytes: number): Buffer {
  const b = Buffer.alloc(END_REC_LEN);
  b[0] = REC_END;
  b.writeUInt32BE(segments, 1);
  b.writeUInt32BE(blocks, 5);
  b.writeBigUInt64BE(BigInt(bytes), 9);
  return b;
}

export function decodeEnd(b: Buffer): { segments: number; blocks: number; bytes: number } {
  return { segments: b.readUInt32BE(1), blocks: b.readUInt32BE(5), bytes: Number(b.readBigUInt64BE(9)) };
}
