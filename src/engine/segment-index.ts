/**
 * Segment numbers by segment ID for one download's content information, without a string per
 * segment (issue 25 target 6): an open-addressing table of segment numbers keyed by the ID's first
 * four bytes, each candidate checked against the whole ID in one packed buffer of IDs. A Map from
 * 64-character hex IDs cost about 110 bytes of heap per segment (1.6 MB for 1 GiB of v2 content);
 * this costs 8 bytes per segment plus the packed IDs (shared with pccrc/packed.ts when the content
 * information came packed). IDs are HMAC outputs, so their first bytes spread evenly.
 */
import { PackedSegment } from '../protocol/pccrc/packed.js';
import type { SegmentInfo } from '../protocol/pccrc/types.js';

export class SegmentIndex {
  /** Segment number + 1 per slot (0: empty); size a power of two at least twice the count. */
  private readonly slots: Int32Array;
  private readonly mask: number;

  private constructor(
    /** All IDs, `idLength` bytes each, in segment order. */
    private readonly ids: Buffer,
    private readonly idLength: number,
    /** Segment k's `index` is base + k (true of every content information we parse). */
    private readonly base: number,
    /** Otherwise each segment's `index`. */
    private readonly indexes?: Float64Array,
  ) {
    const n = idLength > 0 ? ids.length / idLength : 0;
    let size = 8;
    while (size < 2 * n) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    for (let k = 0; k < n; k++) {
      let s = this.hashAt(k * idLength) & this.mask;
      // A repeated ID names its last segment, as a Map's set() of the same key did.
      while (this.slots[s] !== 0 && !this.matches(this.slots[s]! - 1, ids, k * idLength)) s = (s + 1) & this.mask;
      this.slots[s] = k + 1;
    }
  }

  /** The index of `segments` (packed content information shares its IDs buffer). */
  static of(segments: readonly SegmentInfo[]): SegmentIndex {
    const first = segments[0];
    if (first === undefined) return new SegmentIndex(Buffer.alloc(0), 0, 0);
    const len = first.segmentId.length;
    if (first instanceof PackedSegment && first.columns.count === segments.length)
      return new SegmentIndex(first.columns.ids, len, first.index);
    const ids = Buffer.alloc(segments.length * len);
    let regular = true;
    for (const [k, s] of segments.entries()) {
      if (s.segmentId.length !== len) throw new RangeError('segment IDs of one content information differ in length');
      s.segmentId.copy(ids, k * len);
      if (s.index !== first.index + k) regular = false;
    }
    return regular
      ? new SegmentIndex(ids, len, first.index)
      : new SegmentIndex(
          ids,
          len,
          0,
          Float64Array.from(segments, (s) => s.index),
        );
  }

  /** The segment number (SegmentInfo.index) of the segment with this ID. */
  ofId(id: Buffer): number | undefined {
    if (id.length !== this.idLength || this.idLength === 0) return undefined;
    let s = id.readUInt32BE(0) & this.mask;
    for (;;) {
      const v = this.slots[s]!;
      if (v === 0) return undefined;
      if (this.matches(v - 1, id, 0)) return this.indexes ? this.indexes[v - 1] : this.base + v - 1;
      s = (s + 1) & this.mask;
    }
  }

  /** The segment number for a hex ID (either case). */
  get(hex: string): number | undefined {
    if (hex.length !== 2 * this.idLength) return undefined;
    return this.ofId(Buffer.from(hex, 'hex'));
  }

  has(hex: string): boolean {
    return this.get(hex) !== undefined;
  }

  private hashAt(off: number): number {
    return this.ids.readUInt32BE(off);
  }

  private matches(k: number, id: Buffer, at: number): boolean {
    const off = k * this.idLength;
    return this.ids.compare(id, at, at + this.idLength, off, off + this.idLength) === 0;
  }
}
