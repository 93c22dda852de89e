/**
 * Parsed v2 content information kept packed (issue 25 target 6, RELIABILITY.md "Found
 * 2026-12-07"): one buffer of segment IDs, one of HoD || Kp pairs and typed arrays of offsets and
 * lengths for all segments, and per segment one small object whose `hod`, `kp` and `segmentId` are
 * views made on access. A v2 segment held five objects with their own ArrayBuffers (the three
 * 32-byte Buffers, an empty block-hash array, the SegmentInfo): about 630 bytes of heap per segment,
 * 9 MB for the ~14,400 segments of 1 GiB; now about 40.
 *
 * Each access to `hod`, `kp` or `segmentId` makes a new view over the same bytes: compare IDs with
 * `equals()`, never with `===`, and do not write through them.
 */
import type { HashAlgorithm, SegmentInfo } from './types.js';

/** Shared, frozen: a v2 segment has no block hashes (its one block's hash is the HoD). */
const NO_HASHES = Object.freeze([]) as unknown as Buffer[];

/** The packed columns of one content information's segments. */
export class SegmentColumns {
  constructor(
    /** Index of the first segment in the content. */
    readonly firstIndex: number,
    readonly offsets: Float64Array,
    readonly lengths: Uint32Array,
    /** HoD then Kp, 64 bytes per segment. */
    readonly keys: Buffer,
    /** Segment IDs (HoHoDk), 32 bytes per segment. */
    readonly ids: Buffer,
  ) {}

  get count(): number {
    return this.lengths.length;
  }

  /** Segment `k` (0-based within this content information) as a SegmentInfo. */
  segment(k: number): SegmentInfo {
    return new PackedSegment(this, k);
  }
}

/**
 * A v2 SegmentInfo over SegmentColumns (two fields; the rest is read from the columns). It is also
 * the cache's SegmentMeta of the segment (version, hashAlgorithm): the index entry keeps this
 * object instead of copies of its three keys (cache/meta.ts segmentMetaFrom). The columns stay
 * alive while any of their segments is in the index: 108 bytes per segment of the content.
 */
export class PackedSegment implements SegmentInfo {
  constructor(
    private readonly cols: SegmentColumns,
    private readonly k: number,
  ) {}
  /** The columns this segment is read from (shared by every segment of its content information). */
  get columns(): SegmentColumns {
    return this.cols;
  }
  get version(): 2 {
    return 2;
  }
  get hashAlgorithm(): HashAlgorithm {
    return 'SHA-512/256t';
  }
  get index(): number {
    return this.cols.firstIndex + this.k;
  }
  get offset(): number {
    return this.cols.offsets[this.k]!;
  }
  get length(): number {
    return this.cols.lengths[this.k]!;
  }
  get blockSize(): number {
    return this.cols.lengths[this.k]!;
  }
  get hod(): Buffer {
    return this.cols.keys.subarray(this.k * 64, this.k * 64 + 32);
  }
  get kp(): Buffer {
    return this.cols.keys.subarray(this.k * 64 + 32, this.k * 64 + 64);
  }
  get segmentId(): Buffer {
    return this.cols.ids.subarray(this.k * 32, this.k * 32 + 32);
  }
  get blockHashes(): Buffer[] {
    return NO_HASHES;
  }
  /** The plain fields (what JSON.stringify of a SegmentInfo shows). */
  toJSON(): SegmentInfo {
    return plainSegment(this);
  }
}

/**
 * A SegmentInfo as a plain object (a packed segment's fields read out; a plain one copied), for
 * code that spreads or deep-compares segments: a packed segment's fields are getters.
 */
export function plainSegment(s: SegmentInfo): SegmentInfo {
  return {
    index: s.index,
    offset: s.offset,
    length: s.length,
    blockSize: s.blockSize,
    hod: s.hod,
    kp: s.kp,
    segmentId: s.segmentId,
    blockHashes: s instanceof PackedSegment ? [] : s.blockHashes,
  };
}
