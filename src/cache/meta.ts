/**
 * Segment metadata as the cache stores it, and its validation. Pure: no I/O.
 */
import {
  type ContentVersion,
  type HashAlgorithm,
  type SegmentInfo,
  V1_BLOCK_SIZE,
  V2_MAX_SEGMENT_SIZE,
  V1_SEGMENT_SIZE,
  blockCount,
  digest,
  packedHashes,
} from '../protocol/pccrc/types.js';
import { segmentIdOf } from '../protocol/pccrc/keys.js';
import { PackedSegment } from '../protocol/pccrc/packed.js';
import { CacheError } from './errors.js';

export interface SegmentMeta {
  segmentId: Buffer;
  version: 1 | 2;
  hashAlgorithm: HashAlgorithm;
  hod: Buffer;
  kp: Buffer;
  /** Segment length in bytes. */
  length: number;
  /** v1: 65536; v2: equal to length. */
  blockSize: number;
  /** v1: one hash per block; v2: empty. */
  blockHashes: Buffer[];
  /**
   * A hosted cache's replay segment (protocol/pchc.md): a v2 segment offered without its key. The one
   * stored block is the MSG_BLK payload as received (CryptoAlgoId, IV, ciphertext; replayRecord), `hod`
   * is our own hash of that record (so reads are still verified against disk corruption), `kp` is
   * empty, `length`/`blockSize` are the record's length. Served verbatim, never decrypted.
   */
  replay?: boolean;
}

/** Longest replay record: 2 bytes of header, a 16-byte IV, a 128 KiB segment + one AES padding block. */
export const MAX_REPLAY_RECORD = 2 + 16 + V2_MAX_SEGMENT_SIZE + 16;

const DIGEST_LEN: Record<HashAlgorithm, number> = { 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64, 'SHA-512/256t': 32 };

export function digestLength(alg: HashAlgorithm): number {
  return DIGEST_LEN[alg];
}

export function segmentMetaFrom(version: ContentVersion, hashAlgorithm: HashAlgorithm, seg: SegmentInfo): SegmentMeta {
  // A packed v2 segment is its own metadata (no copies of its keys per index entry).
  if (seg instanceof PackedSegment && version === 2 && hashAlgorithm === seg.hashAlgorithm) return seg;
  return {
    segmentId: seg.segmentId,
    version,
    hashAlgorithm,
    hod: seg.hod,
    kp: seg.kp,
    length: seg.length,
    blockSize: version === 2 ? seg.length : seg.blockSize,
    blockHashes: version === 2 ? [] : seg.blockHashes,
  };
}

/** The SegmentInfo view verifyBlock/blockRange expect (index/offset are irrelevant to a cached segment). */
export function asSegmentInfo(m: SegmentMeta): SegmentInfo {
  return {
    index: 0,
    offset: 0,
    length: m.length,
    blockSize: m.blockSize,
    hod: m.hod,
    kp: m.kp,
    segmentId: m.segmentId,
    blockHashes: m.blockHashes,
  };
}

/** Fixed part of a segment's metadata cost: its index keys and usage record, its state in memory. */
const META_FIXED_COST = 512;

/**
 * What a segment's metadata counts against the cache's limit (issue 27.5): an estimate of its
 * index record (hashes in hex) and of its state in memory (packed hashes, bitmap, map entry).
 */
export function metaCost(m: SegmentMeta): number {
  let hashes = 0;
  for (const h of m.blockHashes) hashes += h.length;
  return META_FIXED_COST + 3 * (m.hod.length + m.kp.length + hashes);
}

export function metaBlockCount(m: SegmentMeta): number {
  return blockCount(m.version, m);
}

/** True when the segment ID is HMAC(Kp, HoD || C) (MS-PCCRC 2.2; protocol/contentinfo.md, "Keys and identifiers"), i.e. Kp and HoD belong together. */
export function segmentIdMatches(m: Pick<SegmentMeta, 'version' | 'kp' | 'hod' | 'segmentId'>): boolean {
  return segmentIdOf(m.version, m.kp, m.hod).equals(m.segmentId);
}

/**
 * Structural checks plus, for v1, H(concat(blockHashes)) == HoD. Throws CacheError naming the field.
 * Segment ID and Kp are taken as given (they come from content information).
 */
export function validateMeta(m: SegmentMeta): void {
  const bad = (field: string, msg: string): never => {
    throw new CacheError('BAD_SEGMENT', `${field}: ${msg}`);
  };
  if (m.version !== 1 && m.version !== 2) bad('version', `unsupported ${String(m.version)}`);
  if (m.replay) {
    if (m.version !== 2 || m.hashAlgorithm !== 'SHA-512/256t') bad('replay', 'replay segments are v2 (SHA-512/256t)');
    if (!Buffer.isBuffer(m.segmentId) || m.segmentId.length !== 32) bad('segmentId', 'must be 32 bytes');
    if (!Buffer.isBuffer(m.hod) || m.hod.length !== 32) bad('hod', 'must be 32 bytes');
    if (!Buffer.isBuffer(m.kp) || m.kp.length !== 0) bad('kp', 'must be empty for a replay segment');
    if (!Number.isSafeInteger(m.length) || m.length <= 2 || m.length > MAX_REPLAY_RECORD)
      bad('length', `must be 3..${MAX_REPLAY_RECORD}`);
    if (m.blockSize !== m.length) bad('blockSize', 'must equal length');
    if (m.blockHashes.length !== 0) bad('blockHashes', 'must be empty');
    return;
  }
  if (!(m.hashAlgorithm in DIGEST_LEN)) bad('hashAlgorithm', `unknown ${String(m.hashAlgorithm)}`);
  if (m.version === 2 && m.hashAlgorithm !== 'SHA-512/256t') bad('hashAlgorithm', 'v2 requires SHA-512/256t');
  if (m.version === 1 && m.hashAlgorithm === 'SHA-512/256t') bad('hashAlgorithm', 'SHA-512/256t is v2 only');
  const d = DIGEST_LEN[m.hashAlgorithm];
  if (!Buffer.isBuffer(m.segmentId) || m.segmentId.length !== d) bad('segmentId', `must be ${d} bytes`);
  if (!Buffer.isBuffer(m.hod) || m.hod.length !== d) bad('hod', `must be ${d} bytes`);
  if (!Buffer.isBuffer(m.kp) || m.kp.length === 0 || m.kp.length > 64) bad('kp', 'must be 1..64 bytes');
  if (!Number.isSafeInteger(m.length) || m.length <= 0) bad('length', 'must be a positive integer');
  if (m.version === 1) {
    if (m.length > V1_SEGMENT_SIZE) bad('length', `exceeds ${V1_SEGMENT_SIZE}`);
    if (m.blockSize !== V1_BLOCK_SIZE) bad('blockSize', `must be ${V1_BLOCK_SIZE}`);
    const n = blockCount(1, m);
    if (m.blockHashes.length !== n) bad('blockHashes', `expected ${n}, got ${m.blockHashes.length}`);
    for (const h of m.blockHashes)
      if (!Buffer.isBuffer(h) || h.length !== d) bad('blockHashes', `each must be ${d} bytes`);
    if (!digest(m.hashAlgorithm, Buffer.concat(m.blockHashes)).equals(m.hod))
      bad('hod', 'does not match H(block hashes)');
  } else {
    if (m.length > V2_MAX_SEGMENT_SIZE) bad('length', `exceeds ${V2_MAX_SEGMENT_SIZE}`);
    if (m.blockSize !== m.length) bad('blockSize', 'must equal length for v2');
    if (m.blockHashes.length !== 0) bad('blockHashes', 'must be empty for v2');
  }
}

export function sameMeta(a: SegmentMeta, b: SegmentMeta): boolean {
  return (
    a.segmentId.equals(b.segmentId) &&
    a.version === b.version &&
    a.hashAlgorithm === b.hashAlgorithm &&
    a.hod.equals(b.hod) &&
    a.kp.equals(b.kp) &&
    a.length === b.length &&
    a.blockSize === b.blockSize &&
    !!a.replay === !!b.replay
  );
}

/** JSON record stored under the segment's index key. */
export interface MetaRecord {
  v: 1 | 2;
  alg: HashAlgorithm;
  hod: string;
  kp: string;
  len: number;
  bs: number;
  bh: string;
  added: number;
  rp?: 1;
}

export function toRecord(m: SegmentMeta, added: number): MetaRecord {
  const r: MetaRecord = {
    v: m.version,
    alg: m.hashAlgorithm,
    hod: m.hod.toString('hex'),
    kp: m.kp.toString('hex'),
    len: m.length,
    bs: m.blockSize,
    bh: Buffer.concat(m.blockHashes).toString('hex'),
    added,
  };
  if (m.replay) r.rp = 1;
  return r;
}

export function fromRecord(idHex: string, r: MetaRecord): SegmentMeta {
  const d = DIGEST_LEN[r.alg];
  const blockHashes = packedHashes(Buffer.from(r.bh, 'hex'), d);
  const m: SegmentMeta = {
    segmentId: Buffer.from(idHex, 'hex'),
    version: r.v,
    hashAlgorithm: r.alg,
    hod: Buffer.from(r.hod, 'hex'),
    kp: Buffer.from(r.kp, 'hex'),
    length: r.len,
    blockSize: r.bs,
    blockHashes,
  };
  if (r.rp === 1) m.replay = true;
  return m;
}
