/**
 * Block data on disk: v1 in one sparse file per segment at `<dir>/blocks/<id[0:2]>/<idHex>`, block i
 * at byte offset i * blockSize; v2 blocks (one per segment) in shared append-only pack files under
 * `<dir>/packs/` (packs.ts has why and how; stores written before issue 25 keep their v2 blocks in
 * segment files, still read from there). For segment files: A block is written in place with pwrite and
 * fdatasync'd BEFORE the index marks it present, so a crash between the two leaves bytes that the
 * index does not claim (never served; overwritten by the next write of that block). Present blocks
 * are never rewritten, so a torn write can only hit bytes that are not being served.
 *
 * Why one file per segment and not one per block (temp file + fsync + rename): measured with
 * bench/cache.ts on the same disk, the per-segment layout writes 1.5-3x faster with fsync and 5-20x
 * without, reads are one pread on a cached descriptor, eviction is one unlink, and a full cache holds
 * 512x fewer inodes. See BENCHMARKS.md "Block cache".
 *
 * Descriptors are cached (at most MAX_OPEN, least recently used closed first).
 */
import { constants, type FileHandle, chmod, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirs } from '../util/mkdirs.js';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;
const MAX_OPEN = 64;
/** Descriptor-cache keys of pack files (segment IDs are lowercase hex, so they cannot collide). */
const PACK_KEY = 'P';
const packKey = (seq: number) => PACK_KEY + seq.toString(16).padStart(8, '0');

interface Handle {
  fh: Promise<FileHandle>;
  users: number;
  /** The fdatasync in progress (or last finished). */
  running?: Promise<void>;
  /** A fdatasync queued behind `running`; writes finished before it starts are covered by it. */
  queued?: Promise<void>;
}

export class SegmentFiles {
  readonly blocksDir: string;
  readonly packsDir: string;
  private readonly open = new Map<string, Handle>();

  constructor(
    readonly root: string,
    private readonly fsync: boolean,
  ) {
    this.blocksDir = join(root, 'blocks');
    this.packsDir = join(root, 'packs');
  }

  async init(): Promise<void> {
    for (const d of [this.root, this.blocksDir, this.packsDir]) {
      await makeDirs(d, DIR_MODE);
      await chmod(d, DIR_MODE);
    }
  }

  segmentPath(idHex: string): string {
    return join(this.blocksDir, idHex.slice(0, 2), idHex);
  }

  /**
   * Runs fn with the segment's descriptor (opened read-write, created 0600 on first use). Callers only
   * touch segments the index knows, so creating here never resurrects an evicted segment.
   */
  private async with<T>(idHex: string, fn: (fh: FileHandle, h: Handle) => Promise<T>, create = true): Promise<T> {
    let h = this.open.get(idHex);
    if (!h) {
      const fresh: Handle = { fh: this.openFile(idHex, create), users: 0 };
      fresh.fh.catch(() => {
        if (this.open.get(idHex) === fresh) this.open.delete(idHex);
      });
      this.open.set(idHex, fresh);
      this.trim();
      h = fresh;
    } else {
      this.open.delete(idHex);
      this.open.set(idHex, h); // most recently used last
    }
    h.users++;
    try {
      return await fn(await h.fh, h);
    } finally {
      h.users--;
      if (h.users === 0 && this.open.get(idHex) !== h) await this.closeHandle(h);
    }
  }

  private async openFile(idHex: string, create: boolean): Promise<FileHandle> {
    if (idHex.startsWith(PACK_KEY)) {
      // A pack is created by its first write only: a read racing its removal must not bring it back.
      const seq = Number.parseInt(idHex.slice(PACK_KEY.length), 16);
      return open(this.packPath(seq), constants.O_RDWR | (create ? constants.O_CREAT : 0), FILE_MODE);
    }
    const path = this.segmentPath(idHex);
    const flags = constants.O_RDWR | constants.O_CREAT;
    try {
      return await open(path, flags, FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(join(this.blocksDir, idHex.slice(0, 2)), { recursive: true, mode: DIR_MODE });
      return open(path, flags, FILE_MODE);
    }
  }

  private async closeHandle(h: Handle): Promise<void> {
    try {
      await (await h.fh).close();
    } catch {
      /* already closed or never opened */
    }
  }

  /** Closes idle descriptors beyond MAX_OPEN, least recently used first. */
  private trim(): void {
    if (this.open.size <= MAX_OPEN) return;
    for (const [id, h] of this.open) {
      if (this.open.size <= MAX_OPEN) break;
      this.open.delete(id);
      if (h.users === 0) void this.closeHandle(h);
    }
  }

  /** Writes a block at `offset` and makes it durable (fdatasync) before returning. */
  async write(idHex: string, offset: number, data: Buffer): Promise<void> {
    await this.with(idHex, async (fh, h) => {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off, offset + off)).bytesWritten;
      if (this.fsync) await this.sync(h, fh);
    });
  }

  /**
   * Group commit: concurrent writers to one segment share fdatasync calls. A writer joins the queued
   * sync if there is one (it starts after every joined write finished), else queues a new one behind
   * the running sync.
   */
  private sync(h: Handle, fh: FileHandle): Promise<void> {
    if (h.queued) return h.queued;
    const q: Promise<void> = (h.running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        if (h.queued === q) h.queued = undefined;
        const run = fh.datasync();
        h.running = run;
        return run;
      });
    h.queued = q;
    return q;
  }

  /** Reads `length` bytes at `offset`; a short buffer if the file ends early. */
  async read(idHex: string, offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    const got = await this.readInto(idHex, offset, length, buf);
    return got === length ? buf : buf.subarray(0, got);
  }

  /** Reads `length` bytes at `offset` into `dest` (from its start); the count read (less if the file ends early). */
  async readInto(idHex: string, offset: number, length: number, dest: Buffer): Promise<number> {
    if (dest.length < length) throw new RangeError(`${length} bytes do not fit a ${dest.length}-byte buffer`);
    return this.with(idHex, (fh) => readFully(fh, dest, length, offset));
  }

  /** Deletes a segment's file; readers still holding the descriptor finish on the unlinked inode. */
  async removeSegment(idHex: string): Promise<void> {
    const h = this.open.get(idHex);
    if (h) {
      this.open.delete(idHex);
      if (h.users === 0) await this.closeHandle(h);
    }
    const path = idHex.startsWith(PACK_KEY)
      ? this.packPath(Number.parseInt(idHex.slice(PACK_KEY.length), 16))
      : this.segmentPath(idHex);
    await rm(path, { force: true });
  }

  async removePath(p: string): Promise<void> {
    await rm(p, { recursive: true, force: true });
  }

  /** Every segment file with its size, plus entries that do not belong (removed by the caller). */
  async scan(): Promise<{ segments: Map<string, number>; strays: string[] }> {
    const segments = new Map<string, number>();
    const strays: string[] = [];
    for (const fan of await readdir(this.blocksDir, { withFileTypes: true })) {
      const fanPath = join(this.blocksDir, fan.name);
      if (!fan.isDirectory() || !/^[0-9a-f]{2}$/.test(fan.name)) {
        strays.push(fanPath);
        continue;
      }
      for (const seg of await readdir(fanPath, { withFileTypes: true })) {
        const segPath = join(fanPath, seg.name);
        if (!seg.isFile() || !seg.name.startsWith(fan.name) || !/^[0-9a-f]+$/.test(seg.name)) {
          strays.push(segPath);
          continue;
        }
        segments.set(seg.name, (await stat(segPath)).size);
      }
    }
    return { segments, strays };
  }

  // ---- packs (packs.ts): append-only files shared by many v2 blocks ----

  packPath(seq: number): string {
    return join(this.packsDir, seq.toString(16).padStart(8, '0'));
  }

  /** Writes `data` at `offset` of pack `seq` (created on its first write); no fdatasync (syncPack). */
  async writePack(seq: number, offset: number, data: Buffer): Promise<void> {
    await this.with(packKey(seq), async (fh) => {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off, offset + off)).bytesWritten;
    });
  }

  /** Writes `bufs` end to end from `offset` of pack `seq` (one writev when the kernel takes it all); no fdatasync. */
  async writePackv(seq: number, offset: number, bufs: Buffer[]): Promise<void> {
    if (bufs.length === 1) return this.writePack(seq, offset, bufs[0]!);
    await this.with(packKey(seq), async (fh) => {
      let total = 0;
      for (const b of bufs) total += b.length;
      let done = (await fh.writev(bufs, offset)).bytesWritten;
      // A short writev (rare on a regular file): the rest buffer by buffer.
      let pos = 0;
      for (const b of bufs) {
        if (done >= total) break;
        const end = pos + b.length;
        while (done < end) done += (await fh.write(b, done - pos, end - done, offset + done)).bytesWritten;
        pos = end;
      }
    });
  }

  /** fdatasync of pack `seq` (a no-op when the store runs without fsync). */
  async syncPack(seq: number): Promise<void> {
    if (this.fsync) await this.with(packKey(seq), (fh) => fh.datasync());
  }

  /** Reads `length` bytes at `offset` of pack `seq` into `dest`; the count read. ENOENT when the pack is gone. */
  async readPackInto(seq: number, offset: number, length: number, dest: Buffer): Promise<number> {
    if (dest.length < length) throw new RangeError(`${length} bytes do not fit a ${dest.length}-byte buffer`);
    return this.with(packKey(seq), (fh) => readFully(fh, dest, length, offset), false);
  }

  async removePack(seq: number): Promise<void> {
    await this.removeSegment(packKey(seq));
  }

  /** Every pack file (by sequence number) with its size, plus entries that do not belong. */
  async scanPacks(): Promise<{ packs: Map<number, number>; strays: string[] }> {
    const packs = new Map<number, number>();
    const strays: string[] = [];
    for (const ent of await readdir(this.packsDir, { withFileTypes: true })) {
      const p = join(this.packsDir, ent.name);
      if (ent.isFile() && /^[0-9a-f]{8}$/.test(ent.name))
        packs.set(Number.parseInt(ent.name, 16), (await stat(p)).size);
      else strays.push(p);
    }
    return { packs, strays };
  }

  async close(): Promise<void> {
    const hs = [...this.open.values()];
    this.open.clear();
    await Promise.all(hs.map((h) => this.closeHandle(h)));
  }
}

/** Reads `length` bytes at `offset` into the start of `dest`; the count read (less if the file ends early). */
async function readFully(fh: FileHandle, dest: Buffer, length: number, offset: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(dest, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}
