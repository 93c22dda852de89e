/**
 * Block files on disk: one file per block at `<dir>/blocks/<id[0:2]>/<idHex>/<index>`, written to
 * `<dir>/tmp/` first, fsynced, then renamed into place (see BENCHMARKS.md "Block cache" for the
 * measurements behind one-file-per-block and the fsync).
 */
import { mkdir, open, readdir, rename, rm, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

export class BlockFiles {
  readonly blocksDir: string;
  readonly tmpDir: string;
  constructor(readonly root: string, private readonly fsync: boolean) {
    this.blocksDir = join(root, 'blocks');
    this.tmpDir = join(root, 'tmp');
  }

  /** Creates the directory tree (0700) and empties tmp/ (left-overs of interrupted writes). */
  async init(): Promise<void> {
    for (const d of [this.root, this.blocksDir]) { await mkdir(d, { recursive: true, mode: DIR_MODE }); await chmod(d, DIR_MODE); }
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { mode: DIR_MODE });
    await chmod(this.tmpDir, DIR_MODE);
  }

  segmentDir(idHex: string): string { return join(this.blocksDir, idHex.slice(0, 2), idHex); }
  blockPath(idHex: string, index: number): string { return join(this.segmentDir(idHex), String(index)); }

  /** Writes data to a fresh temp file (0600) and makes it durable; returns the temp path. */
  async writeTemp(data: Buffer): Promise<string> {
    const tmp = join(this.tmpDir, randomBytes(12).toString('hex'));
    const fh = await open(tmp, 'wx', FILE_MODE);
    try {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off, off)).bytesWritten;
      if (this.fsync) await fh.datasync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    return tmp;
  }

  /** Moves a finished temp file into place as block `index` (creating the segment directory on first use). */
  async commit(tmp: string, idHex: string, index: number): Promise<void> {
    const dest = this.blockPath(idHex, index);
    try {
      await rename(tmp, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(this.segmentDir(idHex), { recursive: true, mode: DIR_MODE });
      await rename(tmp, dest);
    }
  }

  async discard(tmp: string): Promise<void> { await rm(tmp, { force: true }); }

  /** Reads `length` bytes of a block file; undefined when it does not exist, a short buffer when truncated. */
  async read(idHex: string, index: number, length: number): Promise<Buffer | undefined> {
    const fh = await open(this.blockPath(idHex, index), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!fh) return undefined;
    try {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === length ? buf : buf.subarray(0, got);
    } finally { await fh.close(); }
  }

  async removePath(p: string): Promise<void> { await rm(p, { recursive: true, force: true }); }
  async removeBlock(idHex: string, index: number): Promise<void> { await rm(this.blockPath(idHex, index), { force: true }); }
  async removeSegment(idHex: string): Promise<void> { await rm(this.segmentDir(idHex), { recursive: true, force: true }); }

  /** Lists every segment directory and its block files: Map<idHex, fileNames>. Foreign entries are included verbatim. */
  async scan(): Promise<{ segments: Map<string, string[]>; strays: string[] }> {
    const segments = new Map<string, string[]>();
    const strays: string[] = [];
    for (const fan of await readdir(this.blocksDir, { withFileTypes: true })) {
      const fanPath = join(this.blocksDir, fan.name);
      if (!fan.isDirectory()) { strays.push(fanPath); continue; }
      for (const seg of await readdir(fanPath, { withFileTypes: true })) {
        const segPath = join(fanPath, seg.name);
        if (!seg.isDirectory() || !seg.name.startsWith(fan.name)) { strays.push(segPath); continue; }
        segments.set(seg.name, await readdir(segPath));
      }
    }
    return { segments, strays };
  }
}
