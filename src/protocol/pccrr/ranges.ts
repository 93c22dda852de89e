/** Pure helpers over [index, count] block/segment ranges (MS-PCCRR BLOCK_RANGE / SEGMENT_RANGE). */
import type { Range } from './codec.js';

/** Sort, drop empty and merge overlapping/adjacent [index, count] ranges. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const rs = ranges
    .filter(([, c]) => c > 0)
    .map(([i, c]) => [i, i + c] as [number, number])
    .sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, e] of rs) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out.map(([s, e]) => [s, e - s]);
}

/** Ranges covering exactly the given indexes (merged, sorted). */
export function rangesFromIndexes(indexes: Iterable<number>): Range[] {
  return normalizeRanges([...indexes].map((i) => [i, 1] as Range));
}

/** Intersection of requested ranges with a set of held indexes, merged. */
export function intersectRanges(requested: readonly Range[], held: Iterable<number>): Range[] {
  const want = normalizeRanges(requested);
  const inside = (i: number) => want.some(([s, c]) => i >= s && i < s + c);
  return rangesFromIndexes([...held].filter(inside));
}

/** Smallest index in `held` strictly greater than `after`, or 0 when there is none (NextBlockIndex). */
export function nextHeld(held: readonly number[], after: number): number {
  let best = 0;
  for (const i of held) if (i > after && (best === 0 || i < best)) best = i;
  return best;
}
