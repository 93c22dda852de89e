/**
 * JSON form of content information (used by `peerdist hash --json` / `peerdist info --json` and by
 * other tools): lower-case hex strings; v2 segments carry no blockHashes key.
 */
import { ContentInfoError } from './errors.js';
import { segmentIdOf } from './keys.js';
import { V1_BLOCK_SIZE, V1_SEGMENT_SIZE, type ContentInfo, type HashAlgorithm, type SegmentInfo } from './types.js';

export interface SegmentJson {
  offset: number;
  length: number;
  hod: string;
  kp: string;
  segmentId: string;
  blockHashes?: string[];
}

export interface ContentInfoJson {
  version: 1 | 2;
  hashAlgorithm: HashAlgorithm;
  contentLength: number;
  segments: SegmentJson[];
}

export function contentInfoToJson(ci: ContentInfo): ContentInfoJson {
  return {
    version: ci.version,
    hashAlgorithm: ci.hashAlgorithm,
    contentLength: ci.contentLength,
    segments: ci.segments.map((s) => {
      const j: SegmentJson = {
        offset: s.offset,
        length: s.length,
        hod: s.hod.toString('hex'),
        kp: s.kp.toString('hex'),
        segmentId: s.segmentId.toString('hex'),
      };
      if (ci.version === 1) j.blockHashes = s.blockHashes.map((h) => h.toString('hex'));
      return j;
    }),
  };
}

const HASH_ALGORITHMS: readonly HashAlgorithm[] = ['SHA-256', 'SHA-384', 'SHA-512', 'SHA-512/256t'];

function hex(v: unknown, field: string): Buffer {
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})+$/i.test(v))
    throw new ContentInfoError(field, 'expected a hex string');
  return Buffer.from(v, 'hex');
}

function safeInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new ContentInfoError(field, 'expected a non-negative safe integer');
  return v;
}

/**
 * Rebuilds the model from contentInfoToJson output (whole-content range). The segment ID is
 * recomputed from Kp and HoD and must match. Structural checks beyond that are left to the codec.
 */
export function contentInfoFromJson(value: unknown): ContentInfo {
  const o = value as Partial<ContentInfoJson> | null;
  if (!o || typeof o !== 'object') throw new ContentInfoError('json', 'expected an object');
  if (o.version !== 1 && o.version !== 2) throw new ContentInfoError('version', 'expected 1 or 2');
  const version = o.version;
  if (
    !HASH_ALGORITHMS.includes(o.hashAlgorithm as HashAlgorithm) ||
    (version === 2) !== (o.hashAlgorithm === 'SHA-512/256t')
  ) {
    throw new ContentInfoError('hashAlgorithm', `invalid for version ${version}`);
  }
  const contentLength = safeInt(o.contentLength, 'contentLength');
  if (!Array.isArray(o.segments)) throw new ContentInfoError('segments', 'expected an array');
  const segments: SegmentInfo[] = o.segments.map((sj: SegmentJson, k: number) => {
    const f = `segments[${k}]`;
    if (!sj || typeof sj !== 'object') throw new ContentInfoError(f, 'expected an object');
    const offset = safeInt(sj.offset, `${f}.offset`);
    const length = safeInt(sj.length, `${f}.length`);
    const hod = hex(sj.hod, `${f}.hod`);
    const kp = hex(sj.kp, `${f}.kp`);
    const segmentId = segmentIdOf(version, kp, hod);
    if (!segmentId.equals(hex(sj.segmentId, `${f}.segmentId`)))
      throw new ContentInfoError(`${f}.segmentId`, 'does not match HMAC(Kp, HoD || C)');
    let blockHashes: Buffer[] = [];
    if (version === 1) {
      if (!Array.isArray(sj.blockHashes)) throw new ContentInfoError(`${f}.blockHashes`, 'expected an array');
      blockHashes = sj.blockHashes.map((h, j) => hex(h, `${f}.blockHashes[${j}]`));
    }
    return {
      index: version === 1 ? Math.floor(offset / V1_SEGMENT_SIZE) : k,
      offset,
      length,
      blockSize: version === 1 ? V1_BLOCK_SIZE : length,
      hod,
      kp,
      segmentId,
      blockHashes,
    };
  });
  const last = segments[segments.length - 1];
  const end = last ? last.offset + last.length : 0;
  if (end !== contentLength)
    throw new ContentInfoError('contentLength', `${contentLength} does not match the end of the last segment (${end})`);
  return {
    version,
    hashAlgorithm: o.hashAlgorithm as HashAlgorithm,
    rangeStart: 0,
    rangeEnd: contentLength,
    contentLength,
    segments,
  };
}
