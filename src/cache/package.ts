/**
 * Streaming export/import of cache packages (format: protocol/cache-package.md; records in
 * package-format.ts). Import first walks the whole file checking its structure (without hashing), so
 * a truncated or garbled package imports nothing; then it imports, verifying every block.
 */
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { blockRange } from '../protocol/pccrc/types.js';
import { BadBlockError, CacheError, PackageError } from './errors.js';
import { FILE_MODE } from './segfiles.js';
import { Window } from './window.js';
import { type SegmentMeta, metaBlockCount, sameMeta, segmentIdMatches } from './meta.js';
import {
  BLOCK_REC_HEAD,
  END_REC_LEN,
  HEADER_LEN,
  MAX_SEGMENT_BODY,
  REC_BLOCK,
  REC_END,
  REC_SEGMENT,
  SEGMENT_REC_HEAD,
  checkHeader,
  decodeEnd,
  decodeSegmentBody,
  encodeBlockHead,
  encodeEnd,
  encodeHeader,
  encodeSegmentRecord,
} from './package-format.js';

/** Block writes kept in flight during import (they share fdatasync calls per segment). */
const WRITE_CONCURRENCY = 16;
/** The package is read in slices of this size (one read call per record took 77 s for 200,000 records). */
const READ_AHEAD = 1 << 20;

export interface ExportSource {
  meta(idHex: string): SegmentMeta | undefined;
  present(idHex: string): number[];
  pin(idHex: string): () => void;
  /** Verified block data, or undefined if it is gone or bad. */
  read(idHex: string, index: number): Promise<Buffer | undefined>;
}

export interface ImportTarget {
  addSegment(meta: SegmentMeta): Promise<void>;
  getSegment(segmentId: Buffer): SegmentMeta | undefined;
  hasBlock(segmentId: Buffer, index: number): boolean;
  pin(segmentId: Buffer): () => void;
  putBlock(segmentId: Buffer, index: number, data: Buffer): Promise<void>;
}

class Writer {
  private pos = 0;
  constructor(private readonly fh: FileHandle) {}
  async write(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off, this.pos);
      off += bytesWritten;
      this.pos += bytesWritten;
    }
  }
}

export async function exportPackage(
  outPath: string,
  ids: string[],
  src: ExportSource,
): Promise<{ segments: number; blocks: number; bytes: number }> {
  const partial = `${outPath}.partial`;
  const fh = await open(partial, 'w', FILE_MODE); // Kp inside: owner-only
  const out = { segments: 0, blocks: 0, bytes: 0 };
  try {
    const w = new Writer(fh);
    await w.write(encodeHeader());
    for (const id of ids) {
      const release = src.pin(id);
      try {
        const meta = src.meta(id);
        if (!meta) continue; // evicted since the call started
        await w.write(encodeSegmentRecord(meta));
        out.segments++;
        for (const i of src.present(id)) {
          const data = await src.read(id, i);
          if (!data) continue;
          await w.write(encodeBlockHead(i, data.length));
          await w.write(data);
          out.blocks++;
          out.bytes += data.length;
        }
      } finally {
        release();
      }
    }
    await w.write(encodeEnd(out.segments, out.blocks, out.bytes));
    await fh.datasync();
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
  await rename(partial, outPath);
  return out;
}

/** Sequential reads through a buffer of READ_AHEAD bytes (records are small and many). */
class Reader {
  pos = HEADER_LEN;
  private buf = Buffer.alloc(0);
  /** File offset of buf[0]. */
  private bufAt = 0;
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}
  /** The next `n` bytes, copied (block data outlives the buffer: writes stay in flight). */
  async read(n: number, what: string): Promise<Buffer> {
    if (this.pos + n > this.size)
      throw new PackageError(
        `truncated package: ${what} at offset ${this.pos} needs ${n} bytes, file ends at ${this.size}`,
      );
    if (this.pos < this.bufAt || this.pos + n > this.bufAt + this.buf.length) await this.fill(n, what);
    const off = this.pos - this.bufAt;
    this.pos += n;
    return Buffer.from(this.buf.subarray(off, off + n));
  }
  private async fill(n: number, what: string): Promise<void> {
    const len = Math.min(Math.max(n, READ_AHEAD), this.size - this.pos);
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(b, got, len - got, this.pos + got);
      if (bytesRead === 0) throw new PackageError(`truncated package: ${what} at offset ${this.pos}`);
      got += bytesRead;
    }
    this.buf = b;
    this.bufAt = this.pos;
  }
  skip(n: number, what: string): void {
    if (this.pos + n > this.size)
      throw new PackageError(
        `truncated package: ${what} at offset ${this.pos} needs ${n} bytes, file ends at ${this.size}`,
      );
    this.pos += n;
  }
}

type Visit = {
  segment(meta: SegmentMeta): Promise<void>;
  block(meta: SegmentMeta, index: number, r: Reader, len: number): Promise<void>;
};

/** Walks every record, checking structure; calls the visitor for segments and blocks. */
async function walk(fh: FileHandle, size: number, v: Visit): Promise<void> {
  if (size < HEADER_LEN) throw new PackageError('not a peerdist cache package (file too short)');
  const head = Buffer.alloc(HEADER_LEN);
  await fh.read(head, 0, HEADER_LEN, 0);
  checkHeader(head);
  const r = new Reader(fh, size);
  let current: SegmentMeta | undefined;
  let segments = 0,
    blocks = 0,
    bytes = 0;
  for (;;) {
    const type = (await r.read(1, 'record type'))[0];
    if (type === REC_SEGMENT) {
      const len = (await r.read(SEGMENT_REC_HEAD - 1, 'segment record length')).readUInt32BE(0);
      if (len > MAX_SEGMENT_BODY)
        throw new PackageError(`segment record at offset ${r.pos - SEGMENT_REC_HEAD} too long (${len})`);
      current = decodeSegmentBody(await r.read(len, 'segment record'));
      segments++;
      await v.segment(current);
    } else if (type === REC_BLOCK) {
      const h = await r.read(BLOCK_REC_HEAD - 1, 'block record header');
      const index = h.readUInt32BE(0),
        len = h.readUInt32BE(4);
      if (!current)
        throw new PackageError(`block record at offset ${r.pos - BLOCK_REC_HEAD} before any segment record`);
      if (index >= metaBlockCount(current))
        throw new PackageError(`block record at offset ${r.pos - BLOCK_REC_HEAD}: index ${index} out of range`);
      const [s, e] = blockRange(current.version, current, index);
      if (len !== e - s)
        throw new PackageError(`block record at offset ${r.pos - BLOCK_REC_HEAD}: length ${len}, expected ${e - s}`);
      blocks++;
      bytes += len;
      await v.block(current, index, r, len);
    } else if (type === REC_END) {
      const end = decodeEnd(Buffer.concat([Buffer.from([REC_END]), await r.read(END_REC_LEN - 1, 'end record')]));
      if (end.segments !== segments || end.blocks !== blocks || end.bytes !== bytes)
        throw new PackageError('end record counts do not match the package contents');
      if (r.pos !== size) throw new PackageError(`trailing data after end record at offset ${r.pos}`);
      return;
    } else {
      throw new PackageError(`unknown record type ${type} at offset ${r.pos - 1}`);
    }
  }
}

/**
 * What an import did: segments it registered and blocks it stored (new to the cache), blocks
 * rejected (bad hash, or their segment was), and records skipped because they added nothing (a
 * segment or block already in the cache, or repeated in the package): those are not hashed again.
 */
export interface ImportReport {
  segments: number;
  blocks: number;
  rejected: number;
  skipped: number;
}

export async function importPackage(path: string, store: ImportTarget): Promise<ImportReport> {
  const fh = await open(path, 'r');
  const window = new Window(WRITE_CONCURRENCY);
  let release = () => {};
  try {
    const { size } = await fh.stat();
    // Pass 1: structure only (no hashing, no allocation of block data).
    await walk(fh, size, {
      segment: async () => undefined,
      block: async (_m, _i, r, len) => r.skip(len, 'block data'),
    });
    // Pass 2: import, verifying every block. The segment being imported is pinned so that the
    // import's own writes cannot evict it; earlier ones are released once their writes are done.
    const out: ImportReport = { segments: 0, blocks: 0, rejected: 0, skipped: 0 };
    let accepted = false;
    /** Block indexes of the current segment written in this import (duplicates are skipped). */
    let written = new Set<number>();
    /** Each segment ID seen in this package, with its record and whether it was accepted. */
    const seen = new Map<string, { meta: SegmentMeta; accepted: boolean }>();
    await walk(fh, size, {
      segment: async (meta) => {
        await window.drain();
        release();
        release = store.pin(meta.segmentId);
        written = new Set();
        const idHex = meta.segmentId.toString('hex');
        const prior = seen.get(idHex);
        if (prior && sameMeta(prior.meta, meta)) {
          // A repeated record: judged once, not hashed or registered again.
          accepted = prior.accepted;
          if (accepted) out.skipped++;
          return;
        }
        // A new record, or other metadata under an ID seen before: judged on its own (a forged
        // record must not shadow the genuine one, and a conflict with an accepted one is refused).
        accepted = segmentIdMatches(meta);
        const known = store.getSegment(meta.segmentId) !== undefined;
        if (accepted) {
          try {
            await store.addSegment(meta);
          } catch (err) {
            if (!(err instanceof CacheError)) throw err;
            accepted = false;
          }
        }
        if (!prior || accepted) seen.set(idHex, { meta, accepted });
        if (accepted && known) out.skipped++;
        else if (accepted) out.segments++;
      },
      block: async (meta, index, r, len) => {
        if (!accepted) {
          r.skip(len, 'block data');
          out.rejected++;
          return;
        }
        if (written.has(index) || store.hasBlock(meta.segmentId, index)) {
          r.skip(len, 'block data');
          out.skipped++;
          return;
        }
        written.add(index);
        const data = await r.read(len, 'block data');
        await window.run(async () => {
          try {
            await store.putBlock(meta.segmentId, index, data);
            out.blocks++;
          } catch (err) {
            if (!(err instanceof BadBlockError)) throw err;
            written.delete(index); // a good copy later in the package is still taken
            out.rejected++;
          }
        });
      },
    });
    await window.drain();
    return out;
  } finally {
    await window.drain().catch(() => undefined);
    release();
    await fh.close();
  }
}
