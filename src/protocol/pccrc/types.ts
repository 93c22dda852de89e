/**
 * In-memory model of PeerDist content information (MS-PCCRC), shared by every module.
 * The binary codec lives in codec.ts, hashing/generation in hash.ts; see protocol/contentinfo.md.
 */
import { createHash } from 'node:crypto';

export type ContentVersion = 1 | 2;

/** v1 may use SHA-256/384/512 (we only generate SHA-256); v2 always uses SHA-512 truncated to 32 bytes. */
export type HashAlgorithm = 'SHA-256' | 'SHA-384' | 'SHA-512' | 'SHA-512/256t';

export const V1_SEGMENT_SIZE = 32 * 1024 * 1024;
export const V1_BLOCK_SIZE = 65536;
export const V2_MAX_SEGMENT_SIZE = 128 * 1024;

/** The segment-ID constant C: "MS_P2P_CACHING" in UTF-16LE with its terminator (30 bytes). */
export const SEGMENT_ID_CONSTANT = Buffer.from('MS_P2P_CACHING\0', 'utf16le');

export interface SegmentInfo {
  /** Zero-based index of the segment within the whole content. */
  index: number;
  /** Absolute byte offset of the segment in the content (a safe integer; files > 4 GiB are fine). */
  offset: number;
  /** cbSegment: full segment length in bytes. */
  length: number;
  /** v1: 65536. v2: equal to `length` (a v2 segment is retrieved as one block, index 0). */
  blockSize: number;
  /** SegmentHashOfData. */
  hod: Buffer;
  /** Segment secret Kp (the access and encryption key for this segment). */
  kp: Buffer;
  /** HoHoDk = HMAC(Kp, HoD || C): the public segment ID used in discovery and retrieval. */
  segmentId: Buffer;
  /** v1: one hash per block, in order. v2: empty (the single block's hash is `hod`). */
  blockHashes: Buffer[];
}

export interface ContentInfo {
  version: ContentVersion;
  hashAlgorithm: HashAlgorithm;
  /** Start of the described content range (absolute). 0 for whole-file content information. */
  rangeStart: number;
  /** End (exclusive) of the described content range. For whole-file information = contentLength. */
  rangeEnd: number;
  /** Length of the content covered by the listed segments (end of the last segment). */
  contentLength: number;
  segments: SegmentInfo[];
}

/** Number of retrievable blocks in a segment (v2: always 1). */
export function blockCount(version: ContentVersion, seg: Pick<SegmentInfo, 'length' | 'blockSize'>): number {
  if (version === 2) return 1;
  return Math.ceil(seg.length / seg.blockSize);
}

/** [start, end) of block `index` relative to the segment start. */
export function blockRange(
  version: ContentVersion,
  seg: Pick<SegmentInfo, 'length' | 'blockSize'>,
  index: number,
): [number, number] {
  if (version === 2) return [0, seg.length];
  const start = index * seg.blockSize;
  return [start, Math.min(seg.length, start + seg.blockSize)];
}

/** Digest function for an algorithm (v2 = first 32 bytes of SHA-512). */
export function digest(alg: HashAlgorithm, data: Buffer | Uint8Array): Buffer {
  switch (alg) {
    case 'SHA-256':
      return createHash('sha256').update(data).digest();
    case 'SHA-384':
      return createHash('sha384').update(data).digest();
    case 'SHA-512':
      return createHash('sha512').update(data).digest();
    case 'SHA-512/256t':
      return createHash('sha512').update(data).digest().subarray(0, 32);
  }
}

export function algorithmFor(version: ContentVersion, digestLength = 32): HashAlgorithm {
  if (version === 2) return 'SHA-512/256t';
  return digestLength === 48 ? 'SHA-384' : digestLength === 64 ? 'SHA-512' : 'SHA-256';
}

/** Expected hash of block `index`: v1 the listed block hash, v2 the segment HoD. */
export function expectedBlockHash(
  version: ContentVersion,
  seg: Pick<SegmentInfo, 'hod' | 'blockHashes'>,
  index: number,
): Buffer | undefined {
  return version === 2 ? (index === 0 ? seg.hod : undefined) : seg.blockHashes[index];
}

/** True when `data` is exactly block `index` of the segment (length and hash). */
export function verifyBlock(version: ContentVersion, seg: SegmentInfo, index: number, data: Buffer): boolean {
  const want = expectedBlockHash(version, seg, index);
  if (!want) return false;
  const [s, e] = blockRange(version, seg, index);
  if (data.length !== e - s) return false;
  return digest(algorithmFor(version, want.length), data).equals(want);
}

/** The empty, frozen block-hash list (v2 segments). */
const NO_HASHES = Object.freeze([]) as unknown as Buffer[];

/**
 * The block hashes of one v1 segment as a read-only `Buffer[]` over one packed buffer of
 * `digestLength`-byte hashes: element i is made on access (a subarray). A segment then costs two
 * small objects instead of up to 512 Buffers (issue 16.7: 81,920 Buffers for a 5 GiB file took
 * ~8 MiB of the 64 MiB heap the systemd unit allows). Indexing, `length`, iteration, spreading,
 * `map`/`some` and `Buffer.concat` work as on an array; writes are refused.
 */
export function packedHashes(packed: Buffer, digestLength: number): Buffer[] {
  const n = Math.floor(packed.length / digestLength);
  // v2 segments have no block hashes: one shared empty list, not a Proxy and its ten handler
  // closures per segment (about 1 KB each: 14 MB of heap for the ~14,400 segments of 1 GiB).
  if (n === 0) return NO_HASHES;
  const index = (k: string | symbol): number | undefined => {
    if (typeof k !== 'string' || k.length === 0 || k.length > 10 || !/^(0|[1-9]\d*)$/.test(k)) return undefined;
    const i = Number(k);
    return i < n ? i : undefined;
  };
  const item = (i: number) => packed.subarray(i * digestLength, (i + 1) * digestLength);
  return new Proxy<Buffer[]>([], {
    get(t, k, recv) {
      if (k === 'length') return n;
      const i = index(k);
      return i === undefined ? Reflect.get(t, k, recv) : item(i);
    },
    has(t, k) {
      return index(k) !== undefined || Reflect.has(t, k);
    },
    getOwnPropertyDescriptor(t, k) {
      const i = index(k);
      if (i === undefined)
        return k === 'length'
          ? { value: n, writable: true, enumerable: false, configurable: false }
          : Reflect.getOwnPropertyDescriptor(t, k);
      return { value: item(i), writable: false, enumerable: true, configurable: true };
    },
    ownKeys(t) {
      return [...Array.from({ length: n }, (_, i) => String(i)), ...Reflect.ownKeys(t)];
    },
    set() {
      return false;
    },
    defineProperty() {
      return false;
    },
    deleteProperty() {
      return false;
    },
  });
}
