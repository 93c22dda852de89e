/**
 * Segment boundary finders for content information v2, as incremental state machines: feed buffers
 * in order with `findCut(buf, start)`; it returns the index in `buf` just after the last byte of the
 * current segment, or -1 when `buf` ended without completing one (state carries over).
 *
 * CdcChunker is our content-defined chunker (gear rolling hash, FastCDC-style normalised cut rule).
 * Cross-origin deduplication depends on every origin cutting at the same places, so the parameters,
 * gear table and cut rule below are fixed and specified in protocol/contentinfo.md; changing any of
 * them changes segment IDs.
 */
import { createHash } from 'node:crypto';
import { V2_MAX_SEGMENT_SIZE } from './types.js';

export const CDC_MIN_SIZE = 16 * 1024;
export const CDC_NORMAL_SIZE = 64 * 1024;
export const CDC_MAX_SIZE = V2_MAX_SEGMENT_SIZE;
/** Cut masks: the top 18 bits of the hash before CDC_NORMAL_SIZE, the top 14 bits after. */
export const CDC_MASK_SMALL = 0xffffc000 | 0;
export const CDC_MASK_LARGE = 0xfffc0000 | 0;
export const CDC_GEAR_LABEL = 'peerdist cdc gear v1';
export const FIXED_SEGMENT_SIZE = 64 * 1024;

/** GEAR[i] = first 4 bytes (big-endian, held as int32) of SHA-256(CDC_GEAR_LABEL || byte i). */
export const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    t[i] = createHash('sha256').update(CDC_GEAR_LABEL).update(Uint8Array.of(i)).digest().readInt32BE(0);
  }
  return t;
})();

export interface Chunker {
  /** Index in buf (> start) where the current segment ends, or -1 if buf[start..] does not end it. */
  findCut(buf: Uint8Array, start: number): number;
  /** Bytes of the current, unfinished segment consumed so far. */
  readonly pending: number;
}

export class CdcChunker implements Chunker {
  private pos = 0; // bytes of the current segment consumed so far
  private h = 0; // gear hash (int32), reset at every cut

  get pending(): number {
    return this.pos;
  }

  findCut(buf: Uint8Array, start: number): number {
    const len = buf.length;
    const base = start - this.pos; // index in buf where the current segment started (may be negative)
    let i = start;
    // The first CDC_MIN_SIZE bytes of a segment are never hashed.
    const minEnd = base + CDC_MIN_SIZE;
    if (i < minEnd) {
      if (len <= minEnd) {
        this.pos = len - base;
        return -1;
      }
      i = minEnd;
    }
    const gear = GEAR;
    let h = this.h;
    // The byte at segment position p may end a segment of p + 1 bytes: strict mask while that
    // length is below CDC_NORMAL_SIZE, loose mask after, forced cut at CDC_MAX_SIZE.
    // Both loops are unrolled by four (measured ~1.4x faster in V8); the tails finish byte by byte.
    const normEnd = Math.min(len, base + CDC_NORMAL_SIZE - 1);
    for (; i + 4 <= normEnd; i += 4) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & CDC_MASK_SMALL) === 0) return this.cut(i + 1);
      h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
      if ((h & CDC_MASK_SMALL) === 0) return this.cut(i + 2);
      h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
      if ((h & CDC_MASK_SMALL) === 0) return this.cut(i + 3);
      h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
      if ((h & CDC_MASK_SMALL) === 0) return this.cut(i + 4);
    }
    for (; i < normEnd; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & CDC_MASK_SMALL) === 0) return this.cut(i + 1);
    }
    const maxEnd = Math.min(len, base + CDC_MAX_SIZE);
    for (; i + 4 <= maxEnd; i += 4) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & CDC_MASK_LARGE) === 0) return this.cut(i + 1);
      h = ((h << 1) + gear[buf[i + 1]!]!) | 0;
      if ((h & CDC_MASK_LARGE) === 0) return this.cut(i + 2);
      h = ((h << 1) + gear[buf[i + 2]!]!) | 0;
      if ((h & CDC_MASK_LARGE) === 0) return this.cut(i + 3);
      h = ((h << 1) + gear[buf[i + 3]!]!) | 0;
      if ((h & CDC_MASK_LARGE) === 0) return this.cut(i + 4);
    }
    for (; i < maxEnd; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & CDC_MASK_LARGE) === 0) return this.cut(i + 1);
    }
    if (i === base + CDC_MAX_SIZE) return this.cut(i);
    this.pos = i - base;
    this.h = h;
    return -1;
  }

  private cut(end: number): number {
    this.pos = 0;
    this.h = 0;
    return end;
  }
}

/** Fixed-size segments (the layout Microsoft's test suite generates): every segment 64 KiB but the last. */
export class FixedChunker implements Chunker {
  private pos = 0;
  constructor(private readonly size = FIXED_SEGMENT_SIZE) {}
  get pending(): number {
    return this.pos;
  }
  findCut(buf: Uint8Array, start: number): number {
    const want = this.size - this.pos;
    if (buf.length - start >= want) {
      this.pos = 0;
      return start + want;
    }
    this.pos += buf.length - start;
    return -1;
  }
}

/** Segment lengths of a whole in-memory buffer (convenience for tests and tools). */
export function segmentLengths(chunker: Chunker, data: Uint8Array): number[] {
  const out: number[] = [];
  let start = 0;
  while (start < data.length) {
    const cut = chunker.findCut(data, start);
    if (cut < 0) {
      out.push(data.length - start);
      break;
    }
    out.push(cut - start);
    start = cut;
  }
  return out;
}
