/**
 * MS-PCHC (hosted cache) message codec. Pure: no I/O. Layouts, limits and our choices are in
 * protocol/pchc.md.
 *
 * Every request is MESSAGE_HEADER (MinorVersion u8, MajorVersion u8, Type u16, 4 padding bytes)
 * + CONNECTION_INFORMATION (Port u16, 6 padding bytes) + a body; all PCHC integers are
 * big-endian. The SEGMENT_INFO body embeds a one-segment MS-PCCRC v1.0 content information blob,
 * which keeps its own little-endian layout (parseSegmentInformation / encodeSegmentInformation).
 * The response is Size u32 (always 1) + ResponseCode u8.
 */
import { WireReader, WireWriter, type FieldError } from '../wire.js';
import { segmentIdOf } from '../pccrc/keys.js';
import { V1_BLOCK_SIZE, V1_SEGMENT_SIZE, digest, type HashAlgorithm } from '../pccrc/types.js';
import { HostedCacheEncodeError, HostedCacheParseError } from './errors.js';

export { HostedCacheEncodeError, HostedCacheParseError } from './errors.js';

/** Request path of the v1.0 (HTTPS) endpoint; compared case-insensitively, trailing '/' optional. */
export const PCHC_PATH_V1 = '/C574AC30-5794-4AEE-B1BB-6651C5315029';
/** Request path of the v2.0 (HTTP) endpoint. */
export const PCHC_PATH_V2 = '/0131501b-d67f-491b-9a40-c4bf27bcb4d4';

/** MESSAGE_HEADER + CONNECTION_INFORMATION. */
export const REQUEST_HEADER_SIZE = 16;
export const CONTENT_TAG_SIZE = 16;
export const SEGMENT_ID_SIZE_V2 = 32;
/** BATCHED_OFFER carries at most this many SegmentDescriptors (Windows drops more). */
export const MAX_BATCHED_DESCRIPTORS = 128;
/** Our cap on a request body (a full BATCHED_OFFER is 16 + 128 × 59 = 7,568 bytes). */
export const MAX_REQUEST_SIZE = 65_536;
/** Size + ResponseCode. */
export const RESPONSE_SIZE = 5;
/** BATCHED_OFFER HashAlgorithm values: what Windows' test client sends (v2 truncated SHA-512) and what the spec text says. */
export const BATCHED_HASH_ALGO_V2 = 0x04;
export const BATCHED_HASH_ALGO_SHA256 = 0x01;

export const MSG_TYPE = { INITIAL_OFFER: 1, SEGMENT_INFO: 2, BATCHED_OFFER: 3 } as const;
export type MsgTypeName = keyof typeof MSG_TYPE;
const TYPE_NAMES: Record<number, MsgTypeName> = { 1: 'INITIAL_OFFER', 2: 'SEGMENT_INFO', 3: 'BATCHED_OFFER' };

/** MajorVersion of the header (MinorVersion is always 0). */
export type PchcVersion = 1 | 2;

/** 0x00 OK (the hosted cache has what it needs), 0x01 INTERESTED (send SEGMENT_INFO). */
export const RESPONSE_CODE = { OK: 0, INTERESTED: 1 } as const;
export type ResponseCode = 0 | 1;

interface Common {
  /** MajorVersion; defaults on encode to 1 for INITIAL_OFFER / SEGMENT_INFO, 2 for BATCHED_OFFER. */
  version?: PchcVersion;
  /** ConnectionInformation.Port: the offering client's MS-PCCRR listening port. */
  port: number;
}
export interface InitialOffer extends Common {
  type: 'INITIAL_OFFER' /** The segment's HoHoDk (32, 48 or 64 bytes). */;
  hash: Buffer;
}
export interface SegmentInfoMessage extends Common {
  type: 'SEGMENT_INFO';
  /** 16 opaque bytes (e.g. "WinINet" NUL-padded). */
  contentTag: Buffer;
  /** One-segment PCCRC v1.0 content information, carried opaque (parseSegmentInformation validates it). */
  segmentInformation: Buffer;
}
export interface SegmentDescriptor {
  blockSize: number;
  segmentSize: number;
  contentTag: Buffer;
  hashAlgorithm: number;
  /** SegmentHoHoDk (32 bytes). */
  segmentId: Buffer;
}
export interface BatchedOffer extends Common {
  type: 'BATCHED_OFFER';
  descriptors: SegmentDescriptor[];
}

export type RequestMessage = InitialOffer | SegmentInfoMessage | BatchedOffer;
export type Decoded<M extends RequestMessage = RequestMessage> = M & { version: PchcVersion };

// ---------------------------------------------------------------------------------------------
// Requests

const encodeError: FieldError = (field, message) => new HostedCacheEncodeError(`${field}: ${message}`);
const parseError: FieldError = (field, message) => new HostedCacheParseError(field, message);

export function defaultVersion(type: MsgTypeName): PchcVersion {
  return type === 'BATCHED_OFFER' ? 2 : 1;
}

/** Encode one request (the HTTP POST body). */
export function encodeRequest(m: RequestMessage): Buffer {
  const version = m.version ?? defaultVersion(m.type);
  if (version !== 1 && version !== 2)
    throw new HostedCacheEncodeError(`MajorVersion: ${String(version)} is not 1 or 2`);
  const w = new WireWriter(false, encodeError);
  w.u8(0, 'MinorVersion').u8(version, 'MajorVersion').u16(MSG_TYPE[m.type], 'Type').bytes(Buffer.alloc(4));
  w.u16(m.port, 'ConnectionInformation.Port').bytes(Buffer.alloc(6));
  switch (m.type) {
    case 'INITIAL_OFFER':
      if (![32, 48, 64].includes(m.hash.length))
        throw new HostedCacheEncodeError(`Hash: ${m.hash.length} bytes is not a HoHoDk size`);
      w.bytes(m.hash);
      break;
    case 'SEGMENT_INFO':
      if (m.contentTag.length !== CONTENT_TAG_SIZE)
        throw new HostedCacheEncodeError(`ContentTag: must be ${CONTENT_TAG_SIZE} bytes`);
      w.bytes(m.contentTag).bytes(m.segmentInformation);
      break;
    case 'BATCHED_OFFER':
      if (m.descriptors.length < 1 || m.descriptors.length > MAX_BATCHED_DESCRIPTORS) {
        throw new HostedCacheEncodeError(
          `SegmentDescriptors: ${m.descriptors.length} outside 1..${MAX_BATCHED_DESCRIPTORS}`,
        );
      }
      m.descriptors.forEach((d, k) => {
        const f = `SegmentDescriptors[${k}]`;
        if (d.contentTag.length < 1) throw new HostedCacheEncodeError(`${f}.ContentTag: must not be empty`);
        if (d.segmentId.length !== SEGMENT_ID_SIZE_V2)
          throw new HostedCacheEncodeError(`${f}.SegmentHoHoDk: must be ${SEGMENT_ID_SIZE_V2} bytes`);
        w.u32(d.blockSize, `${f}.BlockSize`)
          .u32(d.segmentSize, `${f}.SegmentSize`)
          .u16(d.contentTag.length, `${f}.SizeOfContentTag`)
          .bytes(d.contentTag)
          .u8(d.hashAlgorithm, `${f}.HashAlgorithm`)
          .bytes(d.segmentId);
      });
      break;
  }
  const out = w.finish();
  if (out.length > MAX_REQUEST_SIZE)
    throw new HostedCacheEncodeError(`message of ${out.length} bytes exceeds ${MAX_REQUEST_SIZE}`);
  return out;
}

export interface RequestHeader {
  version: PchcVersion;
  type: MsgTypeName;
  port: number;
}

/** Parse and validate the 16-byte MESSAGE_HEADER + CONNECTION_INFORMATION. */
export function decodeHeader(body: Buffer): RequestHeader {
  const r = new WireReader(body, false, parseError);
  const minor = r.u8('MinorVersion');
  const major = r.u8('MajorVersion');
  const t = r.u16('Type');
  r.skip(4, 'MessageHeader.Padding');
  const port = r.u16('ConnectionInformation.Port');
  r.skip(6, 'ConnectionInformation.Padding');
  if (minor !== 0) throw new HostedCacheParseError('MinorVersion', `${minor} is not 0`, 'PCHC_VERSION');
  if (major !== 1 && major !== 2)
    throw new HostedCacheParseError('MajorVersion', `${major} is not 1 or 2`, 'PCHC_VERSION');
  const type = TYPE_NAMES[t];
  if (type === undefined) throw new HostedCacheParseError('Type', `unknown message type ${t}`);
  return { version: major, type, port };
}

/**
 * Decode one request body. Structural checks only (what Windows drops a request for): header
 * fields, the HoHoDk length of INITIAL_OFFER, a whole ContentTag in SEGMENT_INFO (its content
 * information stays opaque), 1..128 whole descriptors with a non-empty ContentTag in BATCHED_OFFER.
 */
export function decodeRequest(body: Buffer): Decoded {
  if (body.length > MAX_REQUEST_SIZE)
    throw new HostedCacheParseError(
      'MessageSize',
      `${body.length} bytes exceeds ${MAX_REQUEST_SIZE}`,
      'PCHC_TOO_LARGE',
    );
  const h = decodeHeader(body);
  const r = new WireReader(body, false, parseError);
  r.pos = REQUEST_HEADER_SIZE;
  const base = { version: h.version, port: h.port };
  switch (h.type) {
    case 'INITIAL_OFFER': {
      const n = r.remaining;
      if (n !== 32 && n !== 48 && n !== 64)
        throw new HostedCacheParseError('Hash', `${n} bytes is not a HoHoDk size (32, 48 or 64)`);
      return { ...base, type: 'INITIAL_OFFER', hash: r.bytes(n, 'Hash') };
    }
    case 'SEGMENT_INFO': {
      const contentTag = r.bytes(CONTENT_TAG_SIZE, 'ContentTag');
      return {
        ...base,
        type: 'SEGMENT_INFO',
        contentTag,
        segmentInformation: r.bytes(r.remaining, 'SegmentInformation'),
      };
    }
    case 'BATCHED_OFFER': {
      const descriptors: SegmentDescriptor[] = [];
      while (r.remaining > 0) {
        const f = `SegmentDescriptors[${descriptors.length}]`;
        if (descriptors.length === MAX_BATCHED_DESCRIPTORS)
          throw new HostedCacheParseError('SegmentDescriptors', `more than ${MAX_BATCHED_DESCRIPTORS} descriptors`);
        const blockSize = r.u32(`${f}.BlockSize`);
        const segmentSize = r.u32(`${f}.SegmentSize`);
        const tagLen = r.u16(`${f}.SizeOfContentTag`);
        if (tagLen === 0) throw new HostedCacheParseError(`${f}.SizeOfContentTag`, 'must not be 0');
        const contentTag = r.bytes(tagLen, `${f}.ContentTag`);
        const hashAlgorithm = r.u8(`${f}.HashAlgorithm`);
        const segmentId = r.bytes(SEGMENT_ID_SIZE_V2, `${f}.SegmentHoHoDk`);
        descriptors.push({ blockSize, segmentSize, contentTag, hashAlgorithm, segmentId });
      }
      if (descriptors.length === 0) throw new HostedCacheParseError('SegmentDescriptors', 'no descriptors');
      return { ...base, type: 'BATCHED_OFFER', descriptors };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Response

/** The HTTP 200 body for a response code: Size u32 = 1, then the code. */
export function encodeResponse(code: ResponseCode): Buffer {
  if (code !== 0 && code !== 1) throw new HostedCacheEncodeError(`ResponseCode: ${String(code)} is not 0 or 1`);
  return Buffer.from([0, 0, 0, 1, code]);
}

/** Decode a response body: exactly Size = 1 and a code of 0 or 1. */
export function decodeResponse(body: Buffer): ResponseCode {
  const r = new WireReader(body, false, parseError);
  const size = r.u32('Size');
  if (size !== 1) throw new HostedCacheParseError('Size', `${size} but a response carries 1 byte`);
  const code = r.u8('ResponseCode');
  r.end('ResponseCode');
  if (code !== 0 && code !== 1) throw new HostedCacheParseError('ResponseCode', `unknown code ${code}`);
  return code;
}

// ---------------------------------------------------------------------------------------------
// SegmentInformation: one-segment MS-PCCRC v1.0 content information (little-endian)

const V1_ALGOS: ReadonlyArray<[number, HashAlgorithm, number]> = [
  [0x800c, 'SHA-256', 32],
  [0x800d, 'SHA-384', 48],
  [0x800e, 'SHA-512', 64],
];

export interface OfferedSegment {
  hashAlgorithm: 'SHA-256' | 'SHA-384' | 'SHA-512';
  /** dwOffsetInFirstSegment. */
  offsetInFirstSegment: number;
  /** dwReadBytesInLastSegment as sent (not relied on: some senders write 0 there). */
  readBytesInLastSegment: number;
  /** ullOffsetInContent. */
  offsetInContent: number;
  /** cbSegment. */
  length: number;
  /** cbBlockSize (always 65536). */
  blockSize: number;
  hod: Buffer;
  kp: Buffer;
  blockHashes: Buffer[];
  /** HoHoDk = HMAC(Kp, HoD || C), derived (not on the wire). */
  segmentId: Buffer;
}

/**
 * Validate a SEGMENT_INFO's content information as the hosted cache must before fetching:
 * Version 0x0100, a v1 hash algorithm, exactly one segment, cbBlockSize 65536, 0 < cbSegment
 * <= 32 MiB, cBlocks = ceil(cbSegment / 65536), no trailing bytes, HoD = H(block hashes).
 */
export function parseSegmentInformation(buf: Buffer): OfferedSegment {
  const r = new WireReader(
    buf,
    true,
    (field, message) => new HostedCacheParseError(`SegmentInformation.${field}`, message),
  );
  const fail = (field: string, message: string): never => {
    throw new HostedCacheParseError(`SegmentInformation.${field}`, message);
  };
  const version = r.u16('Version');
  if (version !== 0x0100) fail('Version', `0x${version.toString(16).padStart(4, '0')} is not 0x0100`);
  const code = r.u32('dwHashAlgo');
  const algo = V1_ALGOS.find(([c]) => c === code);
  if (!algo) return fail('dwHashAlgo', `unknown hash algorithm 0x${code.toString(16)}`);
  const [, hashAlgorithm, d] = algo;
  const offsetInFirstSegment = r.u32('dwOffsetInFirstSegment');
  const readBytesInLastSegment = r.u32('dwReadBytesInLastSegment');
  const cSegments = r.u32('cSegments');
  if (cSegments !== 1) fail('cSegments', `${cSegments} but an offer describes exactly 1 segment`);
  const offsetInContent = r.u64('segments[0].ullOffsetInContent');
  const length = r.u32('segments[0].cbSegment');
  const blockSize = r.u32('segments[0].cbBlockSize');
  if (blockSize !== V1_BLOCK_SIZE) fail('segments[0].cbBlockSize', `${blockSize} is not ${V1_BLOCK_SIZE}`);
  if (length === 0 || length > V1_SEGMENT_SIZE)
    fail('segments[0].cbSegment', `${length} outside 1..${V1_SEGMENT_SIZE}`);
  if (offsetInFirstSegment >= length)
    fail('dwOffsetInFirstSegment', `${offsetInFirstSegment} is not inside the ${length}-byte segment`);
  const hod = r.bytes(d, 'segments[0].SegmentHashOfData');
  const kp = r.bytes(d, 'segments[0].SegmentSecret');
  const cBlocks = r.u32('blocks[0].cBlocks');
  const want = Math.ceil(length / blockSize);
  if (cBlocks !== want) fail('blocks[0].cBlocks', `${cBlocks} but a ${length}-byte segment has ${want} blocks`);
  r.need(cBlocks * d, 'blocks[0].BlockHashes');
  const blockHashes: Buffer[] = [];
  for (let i = 0; i < cBlocks; i++) blockHashes.push(r.bytes(d, `blocks[0].BlockHashes[${i}]`));
  r.end('blocks[0]');
  if (!digest(hashAlgorithm, Buffer.concat(blockHashes)).equals(hod))
    fail('segments[0].SegmentHashOfData', 'does not match the hash of the block hashes');
  return {
    hashAlgorithm: hashAlgorithm as OfferedSegment['hashAlgorithm'],
    offsetInFirstSegment,
    readBytesInLastSegment,
    offsetInContent,
    length,
    blockSize,
    hod,
    kp,
    blockHashes,
    segmentId: segmentIdOf(1, kp, hod),
  };
}

/**
 * Build the content information of one v1 segment for SEGMENT_INFO. dwReadBytesInLastSegment
 * defaults to cbSegment (the whole segment is described); dwOffsetInFirstSegment to 0.
 */
export function encodeSegmentInformation(
  s: Omit<OfferedSegment, 'segmentId' | 'offsetInFirstSegment' | 'readBytesInLastSegment' | 'blockSize'> &
    Partial<Pick<OfferedSegment, 'offsetInFirstSegment' | 'readBytesInLastSegment' | 'blockSize'>>,
): Buffer {
  const algo = V1_ALGOS.find(([, name]) => name === s.hashAlgorithm);
  if (!algo) throw new HostedCacheEncodeError(`dwHashAlgo: ${s.hashAlgorithm} is not a v1 algorithm`);
  const [code, , d] = algo;
  const blockSize = s.blockSize ?? V1_BLOCK_SIZE;
  for (const [name, b] of [
    ['SegmentHashOfData', s.hod],
    ['SegmentSecret', s.kp],
    ...s.blockHashes.map((h, i) => [`BlockHashes[${i}]`, h] as const),
  ] as const) {
    if (b.length !== d) throw new HostedCacheEncodeError(`${name}: must be ${d} bytes for ${s.hashAlgorithm}`);
  }
  const w = new WireWriter(true, encodeError);
  w.u16(0x0100, 'Version')
    .u32(code, 'dwHashAlgo')
    .u32(s.offsetInFirstSegment ?? 0, 'dwOffsetInFirstSegment')
    .u32(s.readBytesInLastSegment ?? s.length, 'dwReadBytesInLastSegment')
    .u32(1, 'cSegments')
    .u64(s.offsetInContent, 'ullOffsetInContent')
    .u32(s.length, 'cbSegment')
    .u32(blockSize, 'cbBlockSize')
    .bytes(s.hod)
    .bytes(s.kp)
    .u32(s.blockHashes.length, 'cBlocks');
  for (const h of s.blockHashes) w.bytes(h);
  return w.finish();
}
