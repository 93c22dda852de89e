/** Test helpers: an in-memory BlockSource built from real content information, and raw HTTP. */
import { randomBytes } from 'node:crypto';
import { type Agent, request } from 'undici';
import { hashStream } from '../../src/protocol/pccrc/hash.js';
import {
  blockCount,
  blockRange,
  verifyBlock,
  type ContentInfo,
  type SegmentInfo,
} from '../../src/protocol/pccrc/types.js';
import type { BlockSource } from '../../src/retrieval/server.js';
import { PCCRR_PATH } from '../../src/protocol/pccrr/codec.js';

export interface Content {
  data: Buffer;
  info: ContentInfo;
  seg: SegmentInfo;
}

/** Random content of `length` bytes hashed into real content information (one segment). */
export async function makeContent(length: number, version: 1 | 2 = 1): Promise<Content> {
  const data = randomBytes(length);
  const info = await hashStream(
    (async function* () {
      yield data;
    })(),
    { secret: Buffer.from('no more secrets'), version, chunking: 'fixed' },
  );
  return { data, info, seg: info.segments[0]! };
}

export function blockOf(c: Content, index: number): Buffer {
  const [s, e] = blockRange(c.info.version, c.seg, index);
  return c.data.subarray(c.seg.offset + s, c.seg.offset + e);
}

/** In-memory source holding the given blocks of each content; `hold` makes readBlock wait on a promise. */
export class MemorySource implements BlockSource {
  readonly held = new Map<string, { c: Content; blocks: Set<number> }>();
  hold: Promise<void> | undefined;
  reads = 0;
  add(c: Content, blocks?: number[]): this {
    const all = Array.from({ length: blockCount(c.info.version, c.seg) }, (_, i) => i);
    this.held.set(c.seg.segmentId.toString('hex'), { c, blocks: new Set(blocks ?? all) });
    return this;
  }
  getSegment(id: Buffer) {
    const e = this.held.get(id.toString('hex'));
    return e && { version: e.c.info.version, kp: e.c.seg.kp, length: e.c.seg.length, blockSize: e.c.seg.blockSize };
  }
  hasBlock(id: Buffer, index: number) {
    return this.held.get(id.toString('hex'))?.blocks.has(index) ?? false;
  }
  presentBlocks(id: Buffer) {
    return [...(this.held.get(id.toString('hex'))?.blocks ?? [])].sort((a, b) => a - b);
  }
  async readBlock(id: Buffer, index: number): Promise<Buffer | undefined> {
    this.reads++;
    if (this.hold) await this.hold;
    const e = this.held.get(id.toString('hex'));
    if (!e?.blocks.has(index)) return undefined;
    const b = blockOf(e.c, index);
    if (!verifyBlock(e.c.info.version, e.c.seg, index, b)) throw new Error('test source corrupt');
    return Buffer.from(b);
  }
}

/**
 * The same source offering readBlockInto (as the cache's BlockStore does): blocks are copied into
 * the caller's buffer; the bytes after the block are scribbled over first, so a reader that relies
 * on them is caught.
 */
export class IntoSource extends MemorySource {
  intoReads = 0;
  async readBlockInto(id: Buffer, index: number, dest: Buffer): Promise<number | undefined> {
    this.intoReads++;
    const b = await this.readBlock(id, index);
    if (!b) return undefined;
    dest.fill(0xa5);
    b.copy(dest);
    return b.length;
  }
}

export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** One raw HTTP exchange; returns status and the whole body. */
export async function raw(
  agent: Agent,
  base: string,
  opts: { method?: string; path?: string; body?: Buffer; headers?: Record<string, string> } = {},
) {
  const res = await request(base + (opts.path ?? PCCRR_PATH), {
    dispatcher: agent,
    method: (opts.method ?? 'POST') as 'POST',
    body: opts.body,
    headers: opts.headers,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, body };
}
