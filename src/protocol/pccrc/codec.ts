/**
 * Binary codec for content information (MS-PCCRC 2.3 v1.0 little-endian, 2.4 v2.0 big-endian).
 * Pure: no I/O. Every read is bounds-checked; counts are checked against the bytes that remain
 * BEFORE anything is allocated; errors are ContentInfoError naming the field. Layouts, range rules
 * and our choices (empty content, encoder output form) are in protocol/contentinfo.md.
 */
import { WireReader } from '../wire.js';
import { ContentInfoError } from './errors.js';
import { segmentIdOf } from './keys.js';
import { SegmentColumns } from './packed.js';
import {
  V1_BLOCK_SIZE,
  V1_SEGMENT_SIZE,
  V2_MAX_SEGMENT_SIZE,
  digest,
  packedHashes,
  type ContentInfo,
  type HashAlgorithm,
  type SegmentInfo,
} from './types.js';

export { ContentInfoError } from './errors.js';

export const V1_HEADER_SIZE = 18;
export const V2_HEADER_SIZE = 31;
export const V2_SEGMENT_DESC_SIZE = 68;
const V2_CHUNK_HEADER_SIZE = 5;
const MAX_U32 = 0xffffffff;

const V1_ALGO_CODES: ReadonlyArray<[number, HashAlgorithm, number]> = [
  [0x800c, 'SHA-256', 32],
  [0x800d, 'SHA-384', 48],
  [0x800e, 'SHA-512', 64],
];

/** Reader over a blob of one version: v1 is little-endian, v2 big-endian (MS-PCCRC 2.3, 2.4). */
function reader(buf: Buffer, le: boolean): WireReader {
  return new WireReader(buf, le, (field, message) => new ContentInfoError(field, message));
}

/** Parses a content information blob of either version (dispatch on the first two bytes). */
export function parseContentInfo(buf: Buffer): ContentInfo {
  if (buf.length < 2) throw new ContentInfoError('Version', `truncated: ${buf.length} bytes`);
  const version = buf.readUInt16LE(0);
  if (version === 0x0100) return parseV1(buf);
  if (version === 0x0200) return parseV2(buf);
  throw new ContentInfoError('Version', `unsupported version bytes ${buf.subarray(0, 2).toString('hex')}`);
}

function parseV1(buf: Buffer): ContentInfo {
  const r = reader(buf, true);
  r.u16('Version');
  const algoCode = r.u32('dwHashAlgo');
  const algo = V1_ALGO_CODES.find(([code]) => code === algoCode);
  if (!algo) throw new ContentInfoError('dwHashAlgo', `unknown hash algorithm 0x${algoCode.toString(16)}`);
  const [, hashAlgorithm, d] = algo;
  const offsetInFirst = r.u32('dwOffsetInFirstSegment');
  const readBytesInLast = r.u32('dwReadBytesInLastSegment');
  const cSegments = r.u32('cSegments');
  // Each segment needs a description (16 + 2D) and at least a cBlocks field (4) plus one hash.
  const minPerSegment = 16 + 2 * d + 4 + d;
  if (cSegments > Math.floor(r.remaining / minPerSegment)) {
    throw new ContentInfoError('cSegments', `${cSegments} segments cannot fit in the ${r.remaining} bytes that remain`);
  }
  if (cSegments === 0) {
    if (offsetInFirst !== 0)
      throw new ContentInfoError('dwOffsetInFirstSegment', 'must be 0 when there are no segments');
    if (readBytesInLast !== 0)
      throw new ContentInfoError('dwReadBytesInLastSegment', 'must be 0 when there are no segments');
    r.end();
    return { version: 1, hashAlgorithm, rangeStart: 0, rangeEnd: 0, contentLength: 0, segments: [] };
  }
  const descs: Array<{ offset: number; length: number; hod: Buffer; kp: Buffer }> = [];
  for (let k = 0; k < cSegments; k++) {
    const f = `segments[${k}]`;
    const offset = r.u64(`${f}.ullOffsetInContent`);
    const length = r.u32(`${f}.cbSegment`);
    const blockSize = r.u32(`${f}.cbBlockSize`);
    if (length === 0 || length > V1_SEGMENT_SIZE)
      throw new ContentInfoError(`${f}.cbSegment`, `${length} is not in 1..${V1_SEGMENT_SIZE}`);
    if (k < cSegments - 1 && length !== V1_SEGMENT_SIZE)
      throw new ContentInfoError(`${f}.cbSegment`, `non-last segment must be ${V1_SEGMENT_SIZE} bytes, got ${length}`);
    if (blockSize !== V1_BLOCK_SIZE)
      throw new ContentInfoError(`${f}.cbBlockSize`, `must be ${V1_BLOCK_SIZE}, got ${blockSize}`);
    if (k === 0 && offset % V1_SEGMENT_SIZE !== 0)
      throw new ContentInfoError(`${f}.ullOffsetInContent`, `${offset} is not a multiple of ${V1_SEGMENT_SIZE}`);
    if (k > 0 && offset !== descs[k - 1]!.offset + V1_SEGMENT_SIZE)
      throw new ContentInfoError(`${f}.ullOffsetInContent`, `${offset} does not follow the previous segment`);
    if (offset + length > Number.MAX_SAFE_INTEGER)
      throw new ContentInfoError(`${f}.ullOffsetInContent`, 'segment end exceeds 2^53-1');
    descs.push({ offset, length, hod: r.bytes(d, `${f}.SegmentHashOfData`), kp: r.bytes(d, `${f}.SegmentSecret`) });
  }
  const segments: SegmentInfo[] = [];
  for (let k = 0; k < cSegments; k++) {
    const f = `segments[${k}]`;
    const desc = descs[k]!;
    const cBlocks = r.u32(`${f}.cBlocks`);
    const maxBlocks = Math.ceil(desc.length / V1_BLOCK_SIZE);
    if (cBlocks === 0 || cBlocks > maxBlocks)
      throw new ContentInfoError(`${f}.cBlocks`, `${cBlocks} is not in 1..${maxBlocks}`);
    r.need(cBlocks * d, `${f}.BlockHashes`);
    const packed = r.bytes(cBlocks * d, `${f}.BlockHashes`);
    const blockHashes = packedHashes(packed, d);
    if (cBlocks === maxBlocks && !digest(hashAlgorithm, packed).equals(desc.hod)) {
      throw new ContentInfoError(`${f}.SegmentHashOfData`, 'does not match the hash of the block hashes');
    }
    segments.push({
      index: desc.offset / V1_SEGMENT_SIZE,
      offset: desc.offset,
      length: desc.length,
      blockSize: V1_BLOCK_SIZE,
      hod: desc.hod,
      kp: desc.kp,
      segmentId: segmentIdOf(1, desc.kp, desc.hod),
      blockHashes,
    });
  }
  r.end();
  const first = segments[0]!;
  const last = segments[segments.length - 1]!;
  const contentLength = last.offset + last.length;
  if (offsetInFirst >= first.length)
    throw new ContentInfoError(
      'dwOffsetInFirstSegment',
      `${offsetInFirst} is beyond the first segment (${first.length} bytes)`,
    );
  const rangeStart = first.offset + offsetInFirst;
  let rangeEnd = contentLength;
  if (readBytesInLast !== 0) {
    rangeEnd = segments.length === 1 ? rangeStart + readBytesInLast : last.offset + readBytesInLast;
    if (rangeEnd > contentLength)
      throw new ContentInfoError(
        'dwReadBytesInLastSegment',
        `range end ${rangeEnd} is beyond the last segment end ${contentLength}`,
      );
  }
  return { version: 1, hashAlgorithm, rangeStart, rangeEnd, contentLength, segments };
}

function parseV2(buf: Buffer): ContentInfo {
  const r = reader(buf, false);
  r.u8('bMinorVersion');
  r.u8('bMajorVersion');
  const algo = r.u8('bHashAlgo');
  if (algo !== 4)
    throw new ContentInfoError('bHashAlgo', `must be 0x04 (truncated SHA-512), got 0x${algo.toString(16)}`);
  const startInContent = r.u64('ullStartInContent');
  const firstIndex = r.u64('ullIndexOfFirstSegment');
  const offsetInFirst = r.u32('dwOffsetInFirstSegment');
  const lengthOfRange = r.u64('ullLengthOfRange');
  // Packed (packed.ts): at most one segment per descriptor of the bytes that remain.
  const most = Math.floor(r.remaining / V2_SEGMENT_DESC_SIZE);
  const offsets = new Float64Array(most);
  const lengths = new Uint32Array(most);
  const keys = Buffer.alloc(most * 64);
  let n = 0;
  let offset = startInContent;
  for (let c = 0; r.remaining > 0; c++) {
    const f = `chunks[${c}]`;
    const type = r.u8(`${f}.bChunkType`);
    if (type !== 0) throw new ContentInfoError(`${f}.bChunkType`, `unknown chunk type ${type}`);
    const len = r.u32(`${f}.dwChunkDataLength`);
    if (len === 0 || len % V2_SEGMENT_DESC_SIZE !== 0)
      throw new ContentInfoError(
        `${f}.dwChunkDataLength`,
        `${len} is not a non-zero multiple of ${V2_SEGMENT_DESC_SIZE}`,
      );
    r.need(len, `${f}.dwChunkDataLength`);
    for (let m = len / V2_SEGMENT_DESC_SIZE; m > 0; m--) {
      const k = n;
      const sf = `segments[${k}]`;
      const length = r.u32(`${sf}.cbSegment`);
      if (length === 0 || length > V2_MAX_SEGMENT_SIZE)
        throw new ContentInfoError(`${sf}.cbSegment`, `${length} is not in 1..${V2_MAX_SEGMENT_SIZE}`);
      if (offset + length > Number.MAX_SAFE_INTEGER || firstIndex + k > Number.MAX_SAFE_INTEGER)
        throw new ContentInfoError(`${sf}.cbSegment`, 'segment end exceeds 2^53-1');
      // SegmentHashOfData then SegmentSecret: copied out as they lie, 64 bytes.
      r.view(64, `${sf}.SegmentHashOfData`).copy(keys, k * 64);
      offsets[k] = offset;
      lengths[k] = length;
      n++;
      offset += length;
    }
  }
  if (n === 0) {
    for (const [name, v] of [
      ['ullStartInContent', startInContent],
      ['ullIndexOfFirstSegment', firstIndex],
      ['dwOffsetInFirstSegment', offsetInFirst],
      ['ullLengthOfRange', lengthOfRange],
    ] as const) {
      if (v !== 0) throw new ContentInfoError(name, 'must be 0 when there are no segments');
    }
    return { version: 2, hashAlgorithm: 'SHA-512/256t', rangeStart: 0, rangeEnd: 0, contentLength: 0, segments: [] };
  }
  const ids = Buffer.alloc(n * 32);
  for (let k = 0; k < n; k++)
    segmentIdOf(2, keys.subarray(k * 64 + 32, k * 64 + 64), keys.subarray(k * 64, k * 64 + 32)).copy(ids, k * 32);
  const cols = new SegmentColumns(
    firstIndex,
    offsets.slice(0, n),
    lengths.slice(0, n),
    n === most ? keys : Buffer.from(keys.subarray(0, n * 64)),
    ids,
  );
  const segments: SegmentInfo[] = new Array(n);
  for (let k = 0; k < n; k++) segments[k] = cols.segment(k);
  const contentLength = offset;
  if (offsetInFirst >= lengths[0]!)
    throw new ContentInfoError(
      'dwOffsetInFirstSegment',
      `${offsetInFirst} is beyond the first segment (${lengths[0]!} bytes)`,
    );
  const rangeStart = startInContent + offsetInFirst;
  const rangeEnd = lengthOfRange === 0 ? contentLength : rangeStart + lengthOfRange;
  if (rangeEnd > contentLength)
    throw new ContentInfoError(
      'ullLengthOfRange',
      `range end ${rangeEnd} is beyond the last segment end ${contentLength}`,
    );
  return { version: 2, hashAlgorithm: 'SHA-512/256t', rangeStart, rangeEnd, contentLength, segments };
}

/**
 * Encodes content information. A range covering all listed segments is written in the whole-file
 * form Windows emits (offset 0, read-bytes / length-of-range 0); a narrower range is written exactly.
 */
export function encodeContentInfo(ci: ContentInfo): Buffer {
  return ci.version === 1 ? encodeV1(ci) : encodeV2(ci);
}

function rangeFields(ci: ContentInfo): {
  offsetInFirst: number;
  first?: SegmentInfo;
  last?: SegmentInfo;
  whole: boolean;
} {
  const first = ci.segments[0];
  const last = ci.segments[ci.segments.length - 1];
  if (!first || !last) return { offsetInFirst: 0, whole: true };
  const end = last.offset + last.length;
  if (
    ci.rangeStart < first.offset ||
    ci.rangeStart >= first.offset + first.length ||
    ci.rangeEnd <= ci.rangeStart ||
    ci.rangeEnd > end
  ) {
    throw new RangeError(`content range [${ci.rangeStart}, ${ci.rangeEnd}) does not fit the listed segments`);
  }
  return { offsetInFirst: ci.rangeStart - first.offset, first, last, whole: ci.rangeEnd === end };
}

function encodeV1(ci: ContentInfo): Buffer {
  const algo = V1_ALGO_CODES.find(([, name]) => name === ci.hashAlgorithm);
  if (!algo) throw new RangeError(`hash algorithm ${ci.hashAlgorithm} is not valid for content information v1`);
  const d = algo[2];
  const { offsetInFirst, first, last, whole } = rangeFields(ci);
  let readBytes = 0;
  if (!whole && first && last)
    readBytes = ci.segments.length === 1 ? ci.rangeEnd - ci.rangeStart : ci.rangeEnd - last.offset;
  let size = V1_HEADER_SIZE;
  for (const s of ci.segments) size += 16 + 2 * d + 4 + s.blockHashes.length * d;
  const out = Buffer.alloc(size);
  let p = out.writeUInt16LE(0x0100, 0);
  p = out.writeUInt32LE(algo[0], p);
  p = out.writeUInt32LE(offsetInFirst, p);
  p = out.writeUInt32LE(readBytes, p);
  p = out.writeUInt32LE(ci.segments.length, p);
  for (const s of ci.segments) {
    p = out.writeBigUInt64LE(BigInt(s.offset), p);
    p = out.writeUInt32LE(s.length, p);
    p = out.writeUInt32LE(s.blockSize, p);
    p += checkedCopy(s.hod, out, p, d, 'hod');
    p += checkedCopy(s.kp, out, p, d, 'kp');
  }
  for (const s of ci.segments) {
    p = out.writeUInt32LE(s.blockHashes.length, p);
    for (const h of s.blockHashes) p += checkedCopy(h, out, p, d, 'block hash');
  }
  return out;
}

function encodeV2(ci: ContentInfo): Buffer {
  const { offsetInFirst, first, whole } = rangeFields(ci);
  const n = ci.segments.length;
  // One chunk per at most floor(2^32-1 / 68) segments (Windows uses a single chunk).
  const perChunk = Math.floor(MAX_U32 / V2_SEGMENT_DESC_SIZE);
  const chunks = Math.ceil(n / perChunk);
  const out = Buffer.alloc(V2_HEADER_SIZE + chunks * V2_CHUNK_HEADER_SIZE + n * V2_SEGMENT_DESC_SIZE);
  let p = out.writeUInt8(0, 0);
  p = out.writeUInt8(2, p);
  p = out.writeUInt8(4, p);
  p = out.writeBigUInt64BE(BigInt(first?.offset ?? 0), p);
  p = out.writeBigUInt64BE(BigInt(first?.index ?? 0), p);
  p = out.writeUInt32BE(offsetInFirst, p);
  p = out.writeBigUInt64BE(BigInt(whole ? 0 : ci.rangeEnd - ci.rangeStart), p);
  for (let k = 0; k < n; k++) {
    if (k % perChunk === 0) {
      p = out.writeUInt8(0, p);
      p = out.writeUInt32BE(Math.min(perChunk, n - k) * V2_SEGMENT_DESC_SIZE, p);
    }
    const s = ci.segments[k]!;
    p = out.writeUInt32BE(s.length, p);
    p += checkedCopy(s.hod, out, p, 32, 'hod');
    p += checkedCopy(s.kp, out, p, 32, 'kp');
  }
  return out;
}

function checkedCopy(src: Buffer, dst: Buffer, at: number, len: number, what: string): number {
  if (src.length !== len) throw new RangeError(`${what} must be ${len} bytes, got ${src.length}`);
  src.copy(dst, at);
  return len;
}
