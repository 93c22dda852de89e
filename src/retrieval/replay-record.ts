/**
 * The record a hosted cache stores for a v2 segment it was offered without the key
 * (protocol/pchc.md, "v2 offers: replay"): the MSG_BLK payload exactly as the offering client sent
 * it, so it can be sent again verbatim. Layout: CryptoAlgoId u8, SizeOfIV u8, IV, Block. Pure.
 */
import { AES_BLOCK, type CryptoAlgo } from '../protocol/pccrr/codec.js';

export interface ReplayRecord {
  cryptoAlgo: CryptoAlgo;
  iv: Buffer;
  block: Buffer;
}

/**
 * Checks a received payload against the segment size the offer announced: plaintext exactly
 * SegmentSize with no IV; AES ciphertext a multiple of 16 in (SegmentSize, SegmentSize + 16] with a
 * 16-byte IV (PKCS#7 always adds 1..16 bytes). Returns why it is implausible, or undefined.
 */
export function replayImplausible(r: ReplayRecord, segmentSize: number): string | undefined {
  if (r.cryptoAlgo === 0) {
    if (r.iv.length !== 0) return 'IV with no encryption';
    if (r.block.length !== segmentSize) return `plaintext of ${r.block.length} bytes, segment is ${segmentSize}`;
    return undefined;
  }
  if (r.iv.length !== AES_BLOCK) return `IV of ${r.iv.length} bytes`;
  if (r.block.length % AES_BLOCK !== 0 || r.block.length <= segmentSize || r.block.length > segmentSize + AES_BLOCK) {
    return `ciphertext of ${r.block.length} bytes does not fit a ${segmentSize}-byte segment`;
  }
  return undefined;
}

export function encodeReplayRecord(r: ReplayRecord): Buffer {
  return Buffer.concat([Buffer.from([r.cryptoAlgo, r.iv.length]), r.iv, r.block]);
}

/** Undefined when the stored bytes are not a record (never expected: reads are hash-verified). */
export function decodeReplayRecord(b: Buffer): ReplayRecord | undefined {
  if (b.length < 2) return undefined;
  const algo = b[0]!;
  const ivLen = b[1]!;
  if (algo > 3 || (ivLen !== 0 && ivLen !== AES_BLOCK) || b.length < 2 + ivLen) return undefined;
  return {
    cryptoAlgo: algo as CryptoAlgo,
    iv: Buffer.from(b.subarray(2, 2 + ivLen)),
    block: Buffer.from(b.subarray(2 + ivLen)),
  };
}
