/**
 * Content information generation (origin side), streaming with constant memory:
 *   v1: 64 KiB blocks hashed in place (subarrays of the input, no copies), 32 MiB segments; only the
 *       32-byte block hashes of the current segment are kept.
 *   v2: segments chosen by a Chunker (content-defined by default, or fixed 64 KiB), each hashed
 *       incrementally with SHA-512 as its bytes stream past; no segment is buffered.
 */
import { createHash, type Hash } from 'node:crypto';
import { CdcChunker, FixedChunker, type Chunker } from './chunker.js';
import { segmentIdOf, segmentSecret, serverSecret } from './keys.js';
import {
  V1_BLOCK_SIZE,
  V1_SEGMENT_SIZE,
  algorithmFor,
  type ContentInfo,
  type ContentVersion,
  type SegmentInfo,
} from './types.js';

export interface HashOptions {
  /** The origin's secret key material; Ks is derived from it per version. */
  secret: Buffer;
  version: ContentVersion;
  /** v2 only: segment boundaries; default 'cdc'. */
  chunking?: 'cdc' | 'fixed';
  onProgress?: (bytesDone: number) => void;
  signal?: AbortSignal;
}

const BLOCKS_PER_SEGMENT = V1_SEGMENT_SIZE / V1_BLOCK_SIZE;

interface Hasher {
  update(buf: Buffer): void;
  finish(): SegmentInfo[];
}

class V1Hasher implements Hasher {
  private readonly ks: Buffer;
  private readonly segments: SegmentInfo[] = [];
  private block: Hash | null = null;
  private blockFill = 0;
  private blockHashes: Buffer[] = [];
  private segOffset = 0;
  private segLength = 0;

  constructor(secret: Buffer) {
    this.ks = serverSecret(1, secret);
  }

  update(buf: Buffer): void {
    const len = buf.length;
    let i = 0;
    while (i < len) {
      const n = Math.min(V1_BLOCK_SIZE - this.blockFill, len - i);
      if (n === V1_BLOCK_SIZE) {
        // Whole block inside this buffer: one-shot hash of a subarray, no copy.
        this.blockHashes.push(
          createHash('sha256')
            .update(buf.subarray(i, i + n))
            .digest(),
        );
        this.segLength += n;
        i += n;
        this.afterBlock();
        continue;
      }
      this.block ??= createHash('sha256');
      this.block.update(buf.subarray(i, i + n));
      this.blockFill += n;
      this.segLength += n;
      i += n;
      if (this.blockFill === V1_BLOCK_SIZE) this.endBlock();
    }
  }

  private endBlock(): void {
    this.blockHashes.push(this.block!.digest());
    this.block = null;
    this.blockFill = 0;
    this.afterBlock();
  }

  private afterBlock(): void {
    if (this.blockHashes.length === BLOCKS_PER_SEGMENT) this.endSegment();
  }

  private endSegment(): void {
    const hod = createHash('sha256').update(Buffer.concat(this.blockHashes)).digest();
    const kp = segmentSecret(1, this.ks, hod);
    this.segments.push({
      index: this.segments.length,
      offset: this.segOffset,
      length: this.segLength,
      blockSize: V1_BLOCK_SIZE,
      hod,
      kp,
      segmentId: segmentIdOf(1, kp, hod),
      blockHashes: this.blockHashes,
    });
    this.segOffset += this.segLength;
    this.segLength = 0;
    this.blockHashes = [];
  }

  finish(): SegmentInfo[] {
    if (this.blockFill > 0) this.endBlock();
    if (this.blockHashes.length > 0) this.endSegment();
    return this.segments;
  }
}

class V2Hasher implements Hasher {
  private readonly ks: Buffer;
  private readonly segments: SegmentInfo[] = [];
  private seg: Hash | null = null;
  private segOffset = 0;
  private segLength = 0;

  constructor(
    secret: Buffer,
    private readonly chunker: Chunker,
  ) {
    this.ks = serverSecret(2, secret);
  }

  update(buf: Buffer): void {
    let start = 0;
    while (start < buf.length) {
      const cut = this.chunker.findCut(buf, start);
      const end = cut < 0 ? buf.length : cut;
      this.seg ??= createHash('sha512');
      this.seg.update(buf.subarray(start, end));
      this.segLength += end - start;
      start = end;
      if (cut >= 0) this.endSegment();
    }
  }

  private endSegment(): void {
    const hod = this.seg!.digest().subarray(0, 32);
    const kp = segmentSecret(2, this.ks, hod);
    this.segments.push({
      index: this.segments.length,
      offset: this.segOffset,
      length: this.segLength,
      blockSize: this.segLength,
      hod,
      kp,
      segmentId: segmentIdOf(2, kp, hod),
      blockHashes: [],
    });
    this.seg = null;
    this.segOffset += this.segLength;
    this.segLength = 0;
  }

  finish(): SegmentInfo[] {
    if (this.segLength > 0) this.endSegment();
    return this.segments;
  }
}

function makeHasher(opts: HashOptions): Hasher {
  if (opts.version === 1) return new V1Hasher(opts.secret);
  if (opts.version === 2)
    return new V2Hasher(opts.secret, opts.chunking === 'fixed' ? new FixedChunker() : new CdcChunker());
  throw new RangeError(`unsupported content information version ${String(opts.version)}`);
}

/**
 * Hashes a sequence of buffers. Each buffer is fully consumed before the next is requested, so a
 * source may reuse a buffer once `next()` is called again (hashFile relies on this).
 */
export async function hashChunks(
  input: AsyncIterable<Buffer | string | Uint8Array>,
  opts: HashOptions,
): Promise<ContentInfo> {
  const hasher = makeHasher(opts);
  let done = 0;
  opts.signal?.throwIfAborted();
  for await (const chunk of input) {
    opts.signal?.throwIfAborted();
    const buf =
      typeof chunk === 'string'
        ? Buffer.from(chunk)
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (buf.length === 0) continue;
    hasher.update(buf);
    done += buf.length;
    opts.onProgress?.(done);
  }
  opts.signal?.throwIfAborted();
  const segments = hasher.finish();
  return {
    version: opts.version,
    hashAlgorithm: algorithmFor(opts.version),
    rangeStart: 0,
    rangeEnd: done,
    contentLength: done,
    segments,
  };
}

/** Content information for a stream of bytes (whole content, range [0, length)). */
export function hashStream(
  input: AsyncIterable<Buffer> | NodeJS.ReadableStream,
  opts: HashOptions,
): Promise<ContentInfo> {
  return hashChunks(input as AsyncIterable<Buffer | string | Uint8Array>, opts);
}
