/**
 * In-order reader of a download's content: yields verified blocks from the block store as they
 * land (waiting for the next one), or the buffered body of a plain download. Works while the job
 * runs and after it finished; segments stay pinned while a reader streams.
 */
import { Readable } from 'node:stream';
import { DownloadError } from './errors.js';
import type { PlainBuffer } from './plain.js';
import type { BlockDesc, BlockTable } from './scheduler.js';
import type { JobInfo, StoreLike } from './types.js';

export interface BlockLayout {
  blocks: readonly BlockDesc[] | BlockTable;
  /** Absolute content offset of each block. */
  offsets: ArrayLike<number>;
  segmentId(block: number): Buffer;
  contentLength: number;
}

export interface ReaderSource {
  start: number;
  /** Inclusive, like fs.createReadStream. */
  end: number | undefined;
  info: Promise<JobInfo>;
  plain(): PlainBuffer | undefined;
  /** The plain body was dropped (the job finished and had no reader left). */
  plainReleased?(): boolean;
  layout(): BlockLayout | undefined;
  store: StoreLike;
  /** A verified block the download stored moments ago, still in memory (else it is read from the store). */
  recent?(block: number): Buffer | undefined;
  /** A verified block the cache could not take, kept in memory for readers (issue 16.4). */
  held?(block: number): Buffer | undefined;
  /** Registers this reader's position (the next block it needs) while it runs. */
  track?(): { at(block: number): void; done(): void };
  /** A promise settled at the next change (block landed, state changed). */
  waitChange(): Promise<void>;
  failure(): Error | undefined;
  finished(): boolean;
}

const PLAIN_CHUNK = 256 * 1024;

export function blockReader(src: ReaderSource): Readable {
  if (!Number.isSafeInteger(src.start) || src.start < 0) throw new RangeError('start must be a non-negative integer');
  if (src.end !== undefined && (!Number.isSafeInteger(src.end) || src.end < src.start - 1))
    throw new RangeError('end must be an integer >= start - 1');
  return Readable.from(generate(src), { objectMode: false });
}

async function* generate(src: ReaderSource): AsyncGenerator<Buffer> {
  const cursor = src.track?.();
  try {
    yield* generateTracked(src, cursor);
  } finally {
    cursor?.done();
  }
}

async function* generateTracked(
  src: ReaderSource,
  cursor: { at(block: number): void } | undefined,
): AsyncGenerator<Buffer> {
  const info = await src.info;
  const stop = src.end === undefined ? Infinity : src.end + 1;
  if (!info.peerdist) {
    yield* plainChunks(src, stop);
    return;
  }
  let layout = src.layout();
  while (!layout) {
    const change = src.waitChange();
    layout = src.layout();
    if (layout) break;
    const f = src.failure();
    if (f) throw f;
    await change;
  }
  const endAt = Math.min(stop, layout.contentLength);
  if (src.start >= endAt) return;
  const pins = new Map<string, () => void>();
  try {
    for (let g = firstBlockAt(layout.offsets, src.start); g < layout.blocks.length && layout.offsets[g]! < endAt; g++) {
      const id = layout.segmentId(g);
      const hex = id.toString('hex');
      if (!pins.has(hex)) pins.set(hex, src.store.pin(id));
      const b = layout.blocks.at(g)!;
      cursor?.at(g);
      for (;;) {
        const change = src.waitChange();
        if (src.store.hasBlock(id, b.index) || src.held?.(g)) break;
        const f = src.failure();
        if (f) throw f;
        if (src.finished())
          throw new DownloadError('LOCAL', `block ${b.index} of segment ${b.seg} is no longer in the cache`);
        await change;
      }
      const data =
        src.held?.(g) ?? src.recent?.(g) ?? (await src.store.readBlock(id, b.index, 'local')) ?? src.held?.(g);
      if (!data)
        throw new DownloadError('LOCAL', `block ${b.index} of segment ${b.seg} could not be read from the cache`);
      const off = layout.offsets[g]!;
      const from = Math.max(src.start, off) - off;
      const to = Math.min(endAt, off + b.length) - off;
      yield from === 0 && to === data.length ? data : data.subarray(from, to);
    }
  } finally {
    for (const unpin of pins.values()) unpin();
  }
}

async function* plainChunks(src: ReaderSource, stop: number): AsyncGenerator<Buffer> {
  let pos = src.start;
  for (;;) {
    const change = src.waitChange();
    const pb = src.plain();
    if (pos >= stop) return;
    if (pb && pos < pb.size) {
      const chunk = await pb.read(pos, Math.min(PLAIN_CHUNK, stop - pos));
      if (chunk.length === 0) throw new DownloadError('LOCAL', 'download buffer is gone');
      pos += chunk.length;
      yield chunk;
      continue;
    }
    if (pb?.finished) return;
    const f = src.failure();
    if (f) throw f;
    if (!pb && src.plainReleased?.())
      throw new DownloadError('LOCAL', 'the download finished and its buffered body was released; fetch it again');
    await change;
  }
}

/** Index of the block containing `pos` (offsets ascending). */
export function firstBlockAt(offsets: ArrayLike<number>, pos: number): number {
  let lo = 0,
    hi = offsets.length - 1,
    ans = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (offsets[mid]! <= pos) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}
