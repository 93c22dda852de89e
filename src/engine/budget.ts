/**
 * Memory budget for the block state of running downloads (issue 16.7). A 5 GiB v1 file has 81,921
 * blocks; its layout, scheduler state, packed block hashes and the cache's bitmap take about 100
 * bytes per block (measured: 7.9 MiB for 81,921 blocks). v2 content: BYTES_PER_V2_SEGMENT per
 * segment, from the state measured by bench/segment-heap.ts and test/engine/budget.test.ts (parsed
 * content information, cache index entry, segment pin, Transfer, discovery watch with a peer per
 * segment: about 1 KB of heap and ArrayBuffers per segment, BENCHMARKS.md "Per-segment state")
 * with half again for a few more peers per segment, the block state of the daemon's other tables
 * and garbage between collections. It was 700, while the daemon held about 1.9 KB per segment
 * (RELIABILITY.md "Found 2026-12-07"). A download whose estimate does not fit in what
 * is left of the budget is refused with TOO_LARGE before anything is fetched, instead of taking
 * the daemon (and every other download) down with a V8 out-of-memory crash. The budget is half the
 * V8 heap limit (the systemd unit sets --max-old-space-size=64), shared by running downloads.
 */
import { getHeapStatistics } from 'node:v8';
import { V1_BLOCK_SIZE, V2_MAX_SEGMENT_SIZE, type ContentInfo } from '../protocol/pccrc/types.js';

export const BYTES_PER_V1_BLOCK = 100;
export const BYTES_PER_V2_SEGMENT = 1500;

/** Estimated block-state bytes of a download of `ci`. */
export function stateBytes(ci: Pick<ContentInfo, 'version' | 'contentLength' | 'segments'>): number {
  return ci.version === 2
    ? ci.segments.length * BYTES_PER_V2_SEGMENT
    : Math.ceil(ci.contentLength / V1_BLOCK_SIZE) * BYTES_PER_V1_BLOCK;
}

/** The least block state any content information for `length` bytes can need (before it is read). */
export function minStateBytes(length: number): number {
  return Math.min(
    Math.ceil(length / V1_BLOCK_SIZE) * BYTES_PER_V1_BLOCK,
    Math.ceil(length / V2_MAX_SEGMENT_SIZE) * BYTES_PER_V2_SEGMENT,
  );
}

export class MemoryBudget {
  private used = 0;
  constructor(readonly total = Math.floor(getHeapStatistics().heap_size_limit / 2)) {}

  /** Whether `bytes` more would fit now. */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.total;
  }

  /** Takes `bytes` if they fit; returns the release function, or undefined. */
  reserve(bytes: number): (() => void) | undefined {
    if (!this.fits(bytes)) return undefined;
    this.used += bytes;
    let done = false;
    return () => {
      if (!done) {
        done = true;
        this.used -= bytes;
      }
    };
  }

  get inUse(): number {
    return this.used;
  }
}
