/**
 * MS-PCCRR message codec (pure, no I/O). Layouts, padding rules and limits: protocol/pccrr.md.
 *
 * All integers are u32 big-endian. Variable-length fields (SegmentID, Block, VrfBlock, DataForVrfBlock)
 * are followed by zero padding to a 4-byte boundary relative to the message start, except the last
 * field of a message. Responses travel behind a 4-byte TRANSPORT_RESPONSE_HEADER (encodeResponse /
 * decodeResponse); requests do not.
 */
import { WireReader, WireWriter, type FieldError } from '../wire.js';
import { RetrievalEncodeError, RetrievalParseError } from './errors.js';

export { RetrievalParseError, RetrievalEncodeError } from './errors.js';

/** Path of the PCCRR HTTP endpoint (compare case-insensitively). */
export const PCCRR_PATH = '/116B50EB-ECE2-41ac-8429-9F9E963361B7/';

export const HEADER_SIZE = 16;
export const TRANSPORT_HEADER_SIZE = 4;
export const MIN_MESSAGE_SIZE = 16;
export const MAX_REQUEST_SIZE = 98_304;
export const MAX_RESPONSE_SIZE = 393_216;
/** v1 segments hold at most 512 blocks (32 MiB / 64 KiB); BLOCK_RANGEs must stay inside. */
export const MAX_BLOCKS_PER_SEGMENT = 512;
/** NeededBlocksRangeCount upper bound in MSG_GETBLKLIST. */
export const MAX_GETBLKLIST_RANGES = 256;
export const REQUEST_ID_SIZE = 16;
export const AES_BLOCK = 16;

export const MSG_TYPE = {
  NEGO_REQ: 0,
  NEGO_RESP: 1,
  GETBLKLIST: 2,
  GETBLKS: 3,
  BLKLIST: 4,
  BLK: 5,
  GETSEGLIST: 6,
  SEGLIST: 7,
} as const;
export type MsgTypeName = keyof typeof MSG_TYPE;
const TYPE_NAMES: MsgTypeName[] = [
  'NEGO_REQ',
  'NEGO_RESP',
  'GETBLKLIST',
  'GETBLKS',
  'BLKLIST',
  'BLK',
  'GETSEGLIST',
  'SEGLIST',
];
const REQUEST_TYPES = new Set<MsgTypeName>(['NEGO_REQ', 'GETBLKLIST', 'GETBLKS', 'GETSEGLIST']);

/** CryptoAlgoId: 0 none, 1 AES-128-CBC, 2 AES-192-CBC, 3 AES-256-CBC. */
export type CryptoAlgo = 0 | 1 | 2 | 3;

export interface ProtVer {
  major: number;
  minor: number;
}
export const V1_0: ProtVer = { major: 1, minor: 0 };
export const V2_0: ProtVer = { major: 2, minor: 0 };
/** The protocol versions this implementation speaks (majors 1 and 2). */
export const SUPPORTED_MIN: ProtVer = V1_0;
export const SUPPORTED_MAX: ProtVer = V2_0;

/** [Index, Count] of a BLOCK_RANGE or SEGMENT_RANGE. */
export type Range = [index: number, count: number];

interface Common {
  /** ProtVer of the message; defaults on encode to the version that defined the type (1.0 or 2.0). */
  version?: ProtVer;
  /** CryptoAlgoId header field; defaults to 0 on encode. */
  cryptoAlgo?: CryptoAlgo;
}
export interface NegoReq extends Common {
  type: 'NEGO_REQ';
  min: ProtVer;
  max: ProtVer;
}
export interface NegoResp extends Common {
  type: 'NEGO_RESP';
  min: ProtVer;
  max: ProtVer;
}
export interface GetBlkList extends Common {
  type: 'GETBLKLIST';
  segmentId: Buffer;
  ranges: Range[];
}
export interface BlkList extends Common {
  type: 'BLKLIST';
  segmentId: Buffer;
  ranges: Range[];
  nextBlockIndex: number;
}
export interface GetBlks extends Common {
  type: 'GETBLKS';
  segmentId: Buffer;
  ranges: Range[];
  vrfData?: Buffer;
}
export interface Blk extends Common {
  type: 'BLK';
  segmentId: Buffer;
  blockIndex: number;
  nextBlockIndex: number;
  /** Ciphertext (or plaintext with algorithm 0); empty = "not available / busy". */
  block: Buffer;
  vrfBlock?: Buffer;
  /** IV used for `block`; 16 bytes for AES, empty for algorithm 0 or an empty block. */
  iv: Buffer;
}
export interface GetSegList extends Common {
  type: 'GETSEGLIST';
  requestId: Buffer;
  segmentIds: Buffer[];
  extensibleBlob?: Buffer;
}
export interface SegList extends Common {
  type: 'SEGLIST';
  requestId: Buffer;
  ranges: Range[];
  extensibleBlob?: Buffer;
}

export type RequestMessage = NegoReq | GetBlkList | GetBlks | GetSegList;
export type ResponseMessage = NegoResp | BlkList | Blk | SegList;
export type Message = RequestMessage | ResponseMessage;
/** A decoded message: header fields always present. */
export type Decoded<M extends Message> = M & { version: ProtVer; cryptoAlgo: CryptoAlgo; size: number };

export interface MessageHeader {
  version: ProtVer;
  type: MsgTypeName;
  size: number;
  cryptoAlgo: CryptoAlgo;
}

// ---------------------------------------------------------------------------------------------
// ProtVer

/** ProtVer as the BE u32 minor × 65536 + major. */
export function protVerToU32(v: ProtVer): number {
  return (v.minor & 0xffff) * 0x10000 + (v.major & 0xffff);
}
export function protVerFromU32(n: number): ProtVer {
  return { major: n & 0xffff, minor: n >>> 16 };
}
export function protVerString(v: ProtVer): string {
  return `${v.major}.${v.minor}`;
}
export function isSupportedMajor(major: number): boolean {
  return major >= SUPPORTED_MIN.major && major <= SUPPORTED_MAX.major;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const encodeError: FieldError = (field, message) => new RetrievalEncodeError(`${field}: ${message}`);

/** PCCRR encoder: big-endian u32 fields, 4-byte alignment padding relative to the message start. */
class Writer extends WireWriter {
  constructor() {
    super(false, encodeError);
  }
  sized(b: Buffer, field: string, pad: boolean): this {
    this.u32(b.length, field).bytes(b);
    return pad ? this.pad(4) : this;
  }
  ranges(rs: Range[], field: string): this {
    this.u32(rs.length, `${field}Count`);
    for (const [i, c] of rs) this.u32(i, `${field}.Index`).u32(c, `${field}.Count`);
    return this;
  }
}

function defaultVersion(type: MsgTypeName): ProtVer {
  return type === 'GETSEGLIST' || type === 'SEGLIST' ? V2_0 : V1_0;
}

/** Encode any PCCRR message (without the transport header). */
export function encodeMessage(m: Message): Buffer {
  return writeMessage(m, 0);
}

/**
 * Encodes `m` after `prefix` zero bytes, in one buffer (a served block is copied once, not once
 * per framing layer). MsgSize is filled in; the prefix is the caller's. Padding is relative to the
 * writer's start, so the prefix must keep 4-byte alignment.
 */
function writeMessage(m: Message, prefix: number): Buffer {
  const w = new Writer();
  if (prefix) w.bytes(Buffer.alloc(prefix));
  const version = m.version ?? defaultVersion(m.type);
  const algo = m.cryptoAlgo ?? 0;
  if (![0, 1, 2, 3].includes(algo)) throw new RetrievalEncodeError(`CryptoAlgoId: ${algo} unknown`);
  w.u32(protVerToU32(version), 'ProtVer').u32(MSG_TYPE[m.type], 'MsgType').u32(0, 'MsgSize').u32(algo, 'CryptoAlgoId');
  switch (m.type) {
    case 'NEGO_REQ':
    case 'NEGO_RESP':
      w.u32(protVerToU32(m.min), 'MinSupportedProtocolVersion').u32(protVerToU32(m.max), 'MaxSupportedProtocolVersion');
      break;
    case 'GETBLKLIST':
      w.sized(m.segmentId, 'SizeOfSegmentID', true).ranges(m.ranges, 'NeededBlocksRange');
      break;
    case 'BLKLIST':
      w.sized(m.segmentId, 'SizeOfSegmentId', true)
        .ranges(m.ranges, 'BlockRange')
        .u32(m.nextBlockIndex, 'NextBlockIndex');
      break;
    case 'GETBLKS':
      w.sized(m.segmentId, 'SizeOfSegmentID', true)
        .ranges(m.ranges, 'ReqBlockRange')
        .sized(m.vrfData ?? Buffer.alloc(0), 'SizeOfDataForVrfBlock', false);
      break;
    case 'BLK':
      w.sized(m.segmentId, 'SizeOfSegmentId', true)
        .u32(m.blockIndex, 'BlockIndex')
        .u32(m.nextBlockIndex, 'NextBlockIndex')
        .sized(m.block, 'SizeOfBlock', true)
        .sized(m.vrfBlock ?? Buffer.alloc(0), 'SizeOfVrfBlock', true)
        .sized(m.iv, 'SizeOfIVBlock', false);
      break;
    case 'GETSEGLIST':
      if (m.requestId.length !== REQUEST_ID_SIZE) throw new RetrievalEncodeError('RequestID: must be 16 bytes');
      w.bytes(m.requestId).u32(m.segmentIds.length, 'CountOfSegmentIDs');
      for (const id of m.segmentIds) w.sized(id, 'SizeOfSegmentID', true);
      w.sized(m.extensibleBlob ?? Buffer.alloc(0), 'SizeOfExtensibleBlob', false);
      break;
    case 'SEGLIST':
      if (m.requestId.length !== REQUEST_ID_SIZE) throw new RetrievalEncodeError('RequestID: must be 16 bytes');
      w.bytes(m.requestId)
        .ranges(m.ranges, 'SegmentRange')
        .sized(m.extensibleBlob ?? Buffer.alloc(0), 'SizeOfExtensibleBlob', false);
      break;
  }
  const out = w.finish();
  const size = out.length - prefix;
  const limit = REQUEST_TYPES.has(m.type) ? MAX_REQUEST_SIZE : MAX_RESPONSE_SIZE;
  if (size > limit) throw new RetrievalEncodeError(`MsgSize: ${size} exceeds ${limit}`);
  out.writeUInt32BE(size, prefix + 8);
  return out;
}

/** Encode a request message (the HTTP POST body). */
export function encodeRequest(m: RequestMessage): Buffer {
  return encodeMessage(m);
}

/** Encode a response message with its 4-byte TRANSPORT_RESPONSE_HEADER (the HTTP response body). */
export function encodeResponse(m: ResponseMessage): Buffer {
  const out = writeMessage(m, TRANSPORT_HEADER_SIZE);
  out.writeUInt32BE(out.length - TRANSPORT_HEADER_SIZE, 0);
  return out;
}

/**
 * A MSG_BLK response with its TRANSPORT_RESPONSE_HEADER as three buffers [head, block, tail]
 * whose concatenation is exactly `encodeResponse(m)`: head = transport header, MESSAGE_HEADER,
 * SizeOfSegmentId, SegmentId and padding, BlockIndex, NextBlockIndex, SizeOfBlock; `m.block` itself
 * (not copied); tail = Block's padding, SizeOfVrfBlock, VrfBlock and padding, SizeOfIVBlock, IVBlock
 * (MS-PCCRR 2.2.4.2). A served block goes to the socket in one writev without a copy.
 */
export function encodeBlkResponseParts(m: Blk): [Buffer, Buffer, Buffer] {
  const algo = m.cryptoAlgo ?? 0;
  if (![0, 1, 2, 3].includes(algo)) throw new RetrievalEncodeError(`CryptoAlgoId: ${algo} unknown`);
  const head = new Writer()
    .bytes(Buffer.alloc(TRANSPORT_HEADER_SIZE))
    .u32(protVerToU32(m.version ?? defaultVersion('BLK')), 'ProtVer')
    .u32(MSG_TYPE.BLK, 'MsgType')
    .u32(0, 'MsgSize')
    .u32(algo, 'CryptoAlgoId')
    .sized(m.segmentId, 'SizeOfSegmentId', true)
    .u32(m.blockIndex, 'BlockIndex')
    .u32(m.nextBlockIndex, 'NextBlockIndex')
    .u32(m.block.length, 'SizeOfBlock')
    .finish();
  // Alignment is relative to the message start: the head ends aligned, so each pad follows from
  // the length of the field before it.
  const vrf = m.vrfBlock ?? Buffer.alloc(0);
  const tail = new Writer()
    .bytes(Buffer.alloc((4 - (m.block.length % 4)) % 4))
    .sized(vrf, 'SizeOfVrfBlock', false)
    .bytes(Buffer.alloc((4 - (vrf.length % 4)) % 4))
    .sized(m.iv, 'SizeOfIVBlock', false)
    .finish();
  const size = head.length - TRANSPORT_HEADER_SIZE + m.block.length + tail.length;
  if (size > MAX_RESPONSE_SIZE) throw new RetrievalEncodeError(`MsgSize: ${size} exceeds ${MAX_RESPONSE_SIZE}`);
  head.writeUInt32BE(size, 0);
  head.writeUInt32BE(size, TRANSPORT_HEADER_SIZE + 8);
  return [head, m.block, tail];
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** PCCRR decoder: big-endian u32 fields; byte fields are views into the request/response body. */
class Reader extends WireReader {
  constructor(buf: Buffer) {
    super(buf, false, (field, message) => new RetrievalParseError(field, message));
  }
  override bytes(n: number, field: string): Buffer {
    if (n > this.remaining) throw new RetrievalParseError(field, `${n} bytes declared, ${this.remaining} left`);
    return this.view(n, field);
  }
  /** Skip alignment padding; its content is ignored (protocol/pccrr.md: we tolerate non-zero padding). */
  pad(field: string): void {
    const p = (4 - (this.pos % 4)) % 4;
    if (p > this.remaining) throw new RetrievalParseError(field, 'padding truncated');
    this.pos += p;
  }
  sized(sizeField: string, field: string, pad: boolean, max = Infinity): Buffer {
    const n = this.u32(sizeField);
    if (n > max) throw new RetrievalParseError(sizeField, `${n} exceeds ${max}`);
    const b = this.bytes(n, field);
    if (pad) this.pad(`${field}.ZeroPad`);
    return b;
  }
  segmentId(sizeField: string): Buffer {
    const n = this.u32(sizeField);
    if (n !== 32 && n !== 48 && n !== 64)
      throw new RetrievalParseError(sizeField, `${n} is not a segment ID size (32, 48 or 64)`);
    const b = this.bytes(n, sizeField.replace(/^SizeOf/, ''));
    this.pad('SegmentID.ZeroPad');
    return Buffer.from(b);
  }
  /** A counted array of [Index, Count]; the count is checked against the bytes left before allocating. */
  ranges(field: string, min: number, max: number, blockRanges: boolean): Range[] {
    const count = this.u32(`${field}Count`);
    if (count < min || count > max) throw new RetrievalParseError(`${field}Count`, `${count} outside ${min}..${max}`);
    if (count * 8 > this.remaining)
      throw new RetrievalParseError(`${field}Count`, `${count} ranges declared, ${this.remaining} bytes left`);
    const out: Range[] = [];
    for (let k = 0; k < count; k++) {
      const index = this.u32(`${field}s[${k}].Index`);
      const c = this.u32(`${field}s[${k}].Count`);
      if (c < 1) throw new RetrievalParseError(`${field}s[${k}].Count`, 'must be at least 1');
      if (blockRanges && index + c > MAX_BLOCKS_PER_SEGMENT) {
        throw new RetrievalParseError(`${field}s[${k}]`, `[${index}, ${c}] exceeds ${MAX_BLOCKS_PER_SEGMENT} blocks`);
      }
      if (!blockRanges && index + c > 0xffffffff) throw new RetrievalParseError(`${field}s[${k}]`, 'overflows u32');
      out.push([index, c]);
    }
    return out;
  }
  /** The last field must end the message, allowing only alignment padding after it. */
  override end(): void {
    const slack = this.remaining;
    if (slack === 0) return;
    if (slack > 3 || (this.pos + slack) % 4 !== 0)
      throw new RetrievalParseError('MsgSize', `${slack} unexpected trailing bytes`);
  }
}

/** Parse and validate the 16-byte MESSAGE_HEADER (no check of the major version). */
export function decodeHeader(msg: Buffer): MessageHeader {
  const r = new Reader(msg);
  const version = protVerFromU32(r.u32('ProtVer'));
  const t = r.u32('MsgType');
  const size = r.u32('MsgSize');
  const algo = r.u32('CryptoAlgoId');
  const type = TYPE_NAMES[t];
  if (type === undefined) throw new RetrievalParseError('MsgType', `unknown message type ${t}`);
  if (algo > 3) throw new RetrievalParseError('CryptoAlgoId', `unknown algorithm ${algo}`);
  if (size !== msg.length) throw new RetrievalParseError('MsgSize', `${size} but message is ${msg.length} bytes`);
  return { version, type, size, cryptoAlgo: algo as CryptoAlgo };
}

export interface DecodeOptions {
  /**
   * MSG_BLK's Block, VrfBlock and IVBlock as views into the input instead of copies: for a caller
   * that owns the input buffer and hands it to nobody else (the retrieval client: one copy fewer
   * per block, issue 25).
   */
  views?: boolean;
}

/**
 * Decode one complete message (no transport header). Validates the header, the size limits for
 * its direction, the version (majors 1..2; segment-list types need 2.x) and every body field.
 */
export function decodeMessage(msg: Buffer, opts?: DecodeOptions): Decoded<Message> {
  if (msg.length < MIN_MESSAGE_SIZE)
    throw new RetrievalParseError('MsgSize', `message of ${msg.length} bytes is shorter than 16`);
  const h = decodeHeader(msg);
  const isRequest = REQUEST_TYPES.has(h.type);
  const limit = isRequest ? MAX_REQUEST_SIZE : MAX_RESPONSE_SIZE;
  if (h.size > limit) throw new RetrievalParseError('MsgSize', `${h.size} exceeds the ${limit}-byte limit`);
  if (!isSupportedMajor(h.version.major)) {
    throw new RetrievalParseError('ProtVer', `unsupported version ${protVerString(h.version)}`, 'PCCRR_VERSION');
  }
  if ((h.type === 'GETSEGLIST' || h.type === 'SEGLIST') && h.version.major < 2) {
    throw new RetrievalParseError('ProtVer', `${h.type} needs version 2.0, got ${protVerString(h.version)}`);
  }
  const r = new Reader(msg);
  r.pos = HEADER_SIZE;
  const base = { version: h.version, cryptoAlgo: h.cryptoAlgo, size: h.size };
  let out: Decoded<Message>;
  switch (h.type) {
    case 'NEGO_REQ':
    case 'NEGO_RESP': {
      const min = protVerFromU32(r.u32('MinSupportedProtocolVersion'));
      const max = protVerFromU32(r.u32('MaxSupportedProtocolVersion'));
      if (min.major > max.major || (min.major === max.major && min.minor > max.minor)) {
        throw new RetrievalParseError(
          'MaxSupportedProtocolVersion',
          `${protVerString(max)} below minimum ${protVerString(min)}`,
        );
      }
      out = { ...base, type: h.type, min, max };
      break;
    }
    case 'GETBLKLIST': {
      const segmentId = r.segmentId('SizeOfSegmentID');
      const ranges = r.ranges('NeededBlocksRange', 1, MAX_GETBLKLIST_RANGES, true);
      out = { ...base, type: 'GETBLKLIST', segmentId, ranges };
      break;
    }
    case 'BLKLIST': {
      const segmentId = r.segmentId('SizeOfSegmentId');
      const ranges = r.ranges('BlockRange', 0, MAX_BLOCKS_PER_SEGMENT, true);
      const nextBlockIndex = r.u32('NextBlockIndex');
      out = { ...base, type: 'BLKLIST', segmentId, ranges, nextBlockIndex };
      break;
    }
    case 'GETBLKS': {
      const segmentId = r.segmentId('SizeOfSegmentID');
      const ranges = r.ranges('ReqBlockRange', 1, MAX_BLOCKS_PER_SEGMENT, true);
      const vrfData = Buffer.from(r.sized('SizeOfDataForVrfBlock', 'DataForVrfBlock', false));
      out = { ...base, type: 'GETBLKS', segmentId, ranges, vrfData };
      break;
    }
    case 'BLK': {
      const segmentId = r.segmentId('SizeOfSegmentId');
      const blockIndex = r.u32('BlockIndex');
      const nextBlockIndex = r.u32('NextBlockIndex');
      const block = r.sized('SizeOfBlock', 'Block', true);
      const vrfBlock = r.sized('SizeOfVrfBlock', 'VrfBlock', true);
      const iv = r.sized('SizeOfIVBlock', 'IVBlock', false);
      if (block.length > 0 && h.cryptoAlgo !== 0) {
        if (iv.length !== AES_BLOCK) throw new RetrievalParseError('SizeOfIVBlock', `${iv.length} but AES needs 16`);
        if (block.length % AES_BLOCK !== 0)
          throw new RetrievalParseError('SizeOfBlock', `${block.length} is not a multiple of 16`);
      }
      if (block.length > 0 && h.cryptoAlgo === 0 && iv.length !== 0)
        throw new RetrievalParseError('SizeOfIVBlock', `${iv.length} with no encryption`);
      out = {
        ...base,
        type: 'BLK',
        segmentId,
        blockIndex,
        nextBlockIndex,
        block: opts?.views ? block : Buffer.from(block),
        vrfBlock: opts?.views ? vrfBlock : Buffer.from(vrfBlock),
        iv: opts?.views ? iv : Buffer.from(iv),
      };
      break;
    }
    case 'GETSEGLIST': {
      const requestId = Buffer.from(r.bytes(REQUEST_ID_SIZE, 'RequestID'));
      const count = r.u32('CountOfSegmentIDs');
      // each entry needs at least 4 + 32 bytes
      if (count * 36 > r.remaining)
        throw new RetrievalParseError('CountOfSegmentIDs', `${count} IDs declared, ${r.remaining} bytes left`);
      const segmentIds: Buffer[] = [];
      for (let k = 0; k < count; k++) segmentIds.push(r.segmentId(`SizeOfSegmentID[${k}]`));
      const extensibleBlob = Buffer.from(r.sized('SizeOfExtensibleBlob', 'ExtensibleBlob', false));
      out = { ...base, type: 'GETSEGLIST', requestId, segmentIds, extensibleBlob };
      break;
    }
    case 'SEGLIST': {
      const requestId = Buffer.from(r.bytes(REQUEST_ID_SIZE, 'RequestID'));
      const ranges = r.ranges('SegmentRange', 0, 0xffffffff, false);
      const extensibleBlob = Buffer.from(r.sized('SizeOfExtensibleBlob', 'ExtensibleBlob', false));
      out = { ...base, type: 'SEGLIST', requestId, ranges, extensibleBlob };
      break;
    }
  }
  r.end();
  return out;
}

/** Decode a request body (POST body): request types only, 16..98,304 bytes. */
export function decodeRequest(body: Buffer): Decoded<RequestMessage> {
  if (body.length > MAX_REQUEST_SIZE)
    throw new RetrievalParseError('MsgSize', `request of ${body.length} bytes exceeds ${MAX_REQUEST_SIZE}`);
  const m = decodeMessage(body);
  if (!REQUEST_TYPES.has(m.type)) throw new RetrievalParseError('MsgType', `${m.type} is not a request`);
  return m as Decoded<RequestMessage>;
}

/** Decode a response body: TRANSPORT_RESPONSE_HEADER (must equal the remaining length) + one response message. */
export function decodeResponse(body: Buffer, opts?: DecodeOptions): Decoded<ResponseMessage> {
  if (body.length < TRANSPORT_HEADER_SIZE)
    throw new RetrievalParseError('TransportSize', `body of ${body.length} bytes`);
  const size = body.readUInt32BE(0);
  const rest = body.length - TRANSPORT_HEADER_SIZE;
  if (size !== rest) throw new RetrievalParseError('TransportSize', `${size} but ${rest} bytes follow`);
  if (rest > MAX_RESPONSE_SIZE) throw new RetrievalParseError('TransportSize', `${rest} exceeds ${MAX_RESPONSE_SIZE}`);
  const m = decodeMessage(body.subarray(TRANSPORT_HEADER_SIZE), opts);
  if (REQUEST_TYPES.has(m.type)) throw new RetrievalParseError('MsgType', `${m.type} is not a response`);
  return m as Decoded<ResponseMessage>;
}

// ---------------------------------------------------------------------------------------------
// The retrieval client's per-block path (issue 25): the one request and the one answer of every
// block, encoded and decoded with direct reads and writes on one buffer (no field writer parts, no
// reader object, no per-field names built). Byte for byte and field for field what encodeRequest and
// decodeResponse give; anything out of the ordinary is handed to them, so every error stays theirs.

/**
 * encodeRequest({ type: 'GETBLKS', cryptoAlgo, segmentId, ranges: [[index, 1]] }) in one buffer:
 * MSG_GETBLKS for one block (MS-PCCRR 2.2.4.3), ProtVer 1.0 as encodeRequest defaults it.
 */
export function encodeGetBlock(segmentId: Buffer, index: number, cryptoAlgo: CryptoAlgo): Buffer {
  const sid = segmentId.length;
  if (!(cryptoAlgo >= 0 && cryptoAlgo <= 3) || !Number.isInteger(index) || index < 0 || index > 0xffffffff)
    return encodeRequest({ type: 'GETBLKS', cryptoAlgo, segmentId, ranges: [[index, 1]] });
  const pad = (4 - (sid % 4)) % 4;
  const size = HEADER_SIZE + 4 + sid + pad + 4 + 8 + 4;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(protVerToU32(V1_0), 0);
  out.writeUInt32BE(MSG_TYPE.GETBLKS, 4);
  out.writeUInt32BE(size, 8);
  out.writeUInt32BE(cryptoAlgo, 12);
  out.writeUInt32BE(sid, 16);
  segmentId.copy(out, 20);
  let p = 20 + sid;
  if (pad) out.fill(0, p, p + pad);
  p += pad;
  out.writeUInt32BE(1, p); // ReqBlockRangeCount
  out.writeUInt32BE(index, p + 4);
  out.writeUInt32BE(1, p + 8);
  out.writeUInt32BE(0, p + 12); // SizeOfDataForVrfBlock: no DataForVrfBlock
  return out;
}

/**
 * decodeResponse(body, { views: true }) for a well-formed MSG_BLK (MS-PCCRR 2.2.4.4) read in place:
 * Block, VrfBlock and IVBlock are views into `body`, SegmentId a copy. Any other message, and every
 * malformed one, goes through decodeResponse (the same result or the same error).
 */
export function decodeBlockResponse(body: Buffer): Decoded<ResponseMessage> {
  const n = body.length;
  const slow = () => decodeResponse(body, { views: true });
  if (n < TRANSPORT_HEADER_SIZE + HEADER_SIZE + 4) return slow();
  const rest = n - TRANSPORT_HEADER_SIZE;
  if (body.readUInt32BE(0) !== rest || rest > MAX_RESPONSE_SIZE) return slow();
  const M = TRANSPORT_HEADER_SIZE; // message start: field alignment is relative to it
  const ver = body.readUInt32BE(M);
  const major = ver & 0xffff;
  const algo = body.readUInt32BE(M + 12);
  if (body.readUInt32BE(M + 4) !== MSG_TYPE.BLK || body.readUInt32BE(M + 8) !== rest || algo > 3) return slow();
  if (!isSupportedMajor(major)) return slow();
  let p = M + HEADER_SIZE;
  const sid = body.readUInt32BE(p);
  p += 4;
  if ((sid !== 32 && sid !== 48 && sid !== 64) || p + sid + 12 > n) return slow();
  const segmentId = Buffer.from(body.subarray(p, p + sid));
  p += sid; // 32, 48 and 64 keep 4-byte alignment
  const blockIndex = body.readUInt32BE(p);
  const nextBlockIndex = body.readUInt32BE(p + 4);
  const blen = body.readUInt32BE(p + 8);
  p += 12;
  if (blen > n - p) return slow();
  const block = body.subarray(p, p + blen);
  p += blen;
  p += (4 - ((p - M) % 4)) % 4;
  if (p + 4 > n) return slow();
  const vlen = body.readUInt32BE(p);
  p += 4;
  if (vlen > n - p) return slow();
  const vrfBlock = body.subarray(p, p + vlen);
  p += vlen;
  p += (4 - ((p - M) % 4)) % 4;
  if (p + 4 > n) return slow();
  const ivlen = body.readUInt32BE(p);
  p += 4;
  if (ivlen > n - p) return slow();
  const iv = body.subarray(p, p + ivlen);
  p += ivlen;
  const slack = n - p;
  if (slack > 3 || (slack > 0 && (p - M + slack) % 4 !== 0)) return slow();
  if (blen > 0 && algo !== 0 && (ivlen !== AES_BLOCK || blen % AES_BLOCK !== 0)) return slow();
  if (blen > 0 && algo === 0 && ivlen !== 0) return slow();
  return {
    version: { major, minor: ver >>> 16 },
    cryptoAlgo: algo as CryptoAlgo,
    size: rest,
    type: 'BLK',
    segmentId,
    blockIndex,
    nextBlockIndex,
    block,
    vrfBlock,
    iv,
  };
}
