/**
 * In-order reader of a download's content: yields verified blocks from the block store as they
 * land (waiting for the next one), or the buffered body of a plain download. Works while the job
 * runs and after it finished. The job keeps what a reader has yet to read (segment pins, blocks
 * the cache refused in memory) from the moment the reader is created (issue 27.1); the reader
 * reports where it is through its cursor.
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
  /** This reader's position, registered with the job when the reader was created. */
  cursor?: ReaderCursor;
  /** A promise settled at the next change (block landed, state changed). */
  waitChange(): Promise<void>;
  failure(): Error | undefined;
  finished(): boolean;
}

/** A reader's position as the job sees it. */
export interface ReaderCursor {
  /** The next block the reader needs, and one past the last block it will read. */
  at(block: number, end: number): void;
  /** The reader ended (idempotent). */
  done(): void;
}

const PLAIN_CHUNK = 256 * 1024;

export function blockReader(src: ReaderSource): Readable {
  checkRange(src);
  return Readable.from(single(generate(src, 0)), { objectMode: false });
}

/**
 * The same bytes in batches: every block that is ready when the reader gets to it (in memory or
 * in the cache) joins the batch, up to `maxBytes`, so that the stream to `get` writes them with
 * one system call (issue 25). A batch holds at least one buffer; it waits only for its first block.
 */
export function blockBatches(src: ReaderSource, maxBytes = BATCH_BYTES): AsyncGenerator<Buffer[]> {
  checkRange(src);
  return generate(src, maxBytes);
}

/** Batches of ready blocks end at this many bytes. */
export const BATCH_BYTES = 1024 * 1024;

function checkRange(src: ReaderSource): void {
  if (!Number.isSafeInteger(src.start) || src.start < 0) throw new RangeError('start must be a non-negative integer');
  if (src.end !== undefined && (!Number.isSafeInteger(src.end) || src.end < src.start - 1))
    throw new RangeError('end must be an integer >= start - 1');
}

async function* single(batches: AsyncGenerator<Buffer[]>): AsyncGenerator<Buffer> {
  for await (const batch of batches) yield* batch;
}

async function* generate(src: ReaderSource, maxBytes: number): AsyncGenerator<Buffer[]> {
  try {
    yield* generateTracked(src, src.cursor, maxBytes);
  } finally {
    src.cursor?.done();
  }
}

async function* generateTracked(
  src: ReaderSource,
  cursor: ReaderCursor | undefined,
  maxBytes: number,
): AsyncGenerator<Buffer[]> {
  const info = await src.info;
  const stop = src.end === undefined ? Infinity : src.end + 1;
  if (!info.peerdist) {
    for await (const chunk of plainChunks(src, stop)) yield [chunk];
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
  const endBlock = endAt >= layout.contentLength ? layout.blocks.length : firstBlockAt(layout.offsets, endAt - 1) + 1;
  // Memory first: during a download the next block is usually still there (a number lookup, not a
  // segment ID turned into hex for the store's map).
  const ready = (g: number) =>
    !!src.recent?.(g) || !!src.held?.(g) || src.store.hasBlock(layout.segmentId(g), layout.blocks.at(g)!.index);
  for (let g = firstBlockAt(layout.offsets, src.start); g < endBlock; ) {
    const b = layout.blocks.at(g)!;
    cursor?.at(g, endBlock);
    for (;;) {
      const change = src.waitChange();
      if (ready(g)) break;
      const f = src.failure();
      if (f) throw f;
      // Only a reader created after its job ended can get here: the job keeps every block of an
      // earlier reader until it has read it (pinned in the cache or in memory).
      if (src.finished())
        throw new DownloadError('LOCAL', `block ${b.index} of segment ${b.seg} is no longer in the cache`);
      await change;
    }
    const batch: Buffer[] = [];
    let bytes = 0;
    do {
      if (batch.length > 0) cursor?.at(g, endBlock);
      const data = await readOne(src, layout, g);
      const off = layout.offsets[g]!;
      const from = Math.max(src.start, off) - off;
      const to = Math.min(endAt, off + layout.blocks.at(g)!.length) - off;
      const piece = from === 0 && to === data.length ? data : data.subarray(from, to);
      batch.push(piece);
      bytes += piece.length;
      g++;
    } while (g < endBlock && bytes < maxBytes && ready(g));
    yield batch;
  }
}

/** Block g, which is ready: from memory, else from the cache (verified there). */
async function readOne(src: ReaderSource, layout: BlockLayout, g: number): Promise<Buffer> {
  const b = layout.blocks.at(g)!;
  const data =
    src.held?.(g) ??
    src.recent?.(g) ??
    (await src.store.readBlock(layout.segmentId(g), b.index, 'local')) ??
    src.held?.(g);
  if (!data) throw new DownloadError('LOCAL', `block ${b.index} of segment ${b.seg} could not be read from the cache`);
  return data;
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
