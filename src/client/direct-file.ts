/**
 * How `peerdist get` writes a regular output file (issue 25: `get` at most 1 CPU s per GiB):
 * bypassing the page cache (`O_DIRECT`) where the file system allows it.
 *
 * Why: a buffered write copies every byte into page-cache pages the kernel allocates for it; on the
 * machines measured (BENCHMARKS.md, "`get` at 1 CPU s per GiB") that copy into fresh pages was 60% of
 * `get`'s CPU and cost 0.2-2 CPU s per GiB depending on the state of the machine's memory, where
 * the same bytes written from one reused, aligned buffer with O_DIRECT cost about 0.05.
 *
 * How: the bytes received are staged in one buffer whose memory is page-aligned (a
 * WebAssembly.Memory: V8 maps it on a page boundary) and written from it in large aligned writes
 * through a second descriptor of the same file opened with O_DIRECT (reopened through
 * /proc/self/fd, so it is the very inode the exclusive create made: no path is looked up again).
 * The last partial 4 KiB of the file goes through the ordinary descriptor. `get` reads the socket
 * straight into the free part of the stage (readBuffer), so the body is not copied in user space. Wherever O_DIRECT is not
 * available (no /proc, a file system without it, a device with larger alignment rules: the open or
 * the first write fails with EINVAL), everything goes through the ordinary descriptor, as before.
 * The bytes are those the daemon streamed: verified by the daemon before it sends them.
 */
import { closeSync, constants, openSync, writeSync } from 'node:fs';

/** Alignment of direct writes (file offset, length, memory): the largest logical block size in use. */
export const DIRECT_ALIGN = 4096;
/** Staged bytes written at once. */
export const STAGE_BYTES = 4 * 1024 * 1024;
/** Room past the stage for one socket read straight into it (readBuffer). */
export const READ_ROOM = 1024 * 1024;
/**
 * A slow stream's bytes reach the file at least this often (at the next write after it): the
 * temporary file grows while the download runs, as it did before staging.
 */
export const VISIBLE_MS = 250;

/** The file-system calls used (tests inject failures). */
export interface DirectFs {
  openSync(path: string, flags: number): number;
  writeSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  closeSync(fd: number): void;
}
const realFs: DirectFs = {
  openSync: (p, f) => openSync(p, f),
  writeSync: (fd, b, o, l, p) => writeSync(fd, b, o, l, p),
  closeSync: (fd) => closeSync(fd),
};

/** The part of the WebAssembly API used here (this project's TypeScript lib has no WebAssembly types). */
declare const WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } };

/** A page-aligned buffer of `bytes` (WebAssembly memory is mapped on a page boundary). */
function alignedBuffer(bytes: number): Buffer {
  const mem = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) });
  return Buffer.from(mem.buffer, 0, bytes);
}

/**
 * Writes a file from its start, in order, through `fd` (the ordinary descriptor, kept by the caller)
 * and, when available, a direct descriptor of the same file. `write` copies; `finish` writes what
 * is staged and returns the byte count.
 */
export class StagedFileWriter {
  private readonly stage: Buffer;
  /** Staged bytes that trigger a write (the stage's length less READ_ROOM). */
  private readonly stageBytes: number;
  private fill = 0;
  /** File offset of stage[0]; always a multiple of DIRECT_ALIGN while direct writes are on. */
  private pos = 0;
  private directFd: number | undefined;
  /** Why direct writes are off (for tests and diagnostics); undefined while they are on. */
  directOff: string | undefined;

  constructor(
    private readonly fd: number,
    opts: { stageBytes?: number; fs?: DirectFs; procPath?: string; direct?: boolean; now?: () => number } = {},
  ) {
    this.fs = opts.fs ?? realFs;
    this.now = opts.now ?? (() => performance.now());
    this.lastFlush = this.now();
    const stageBytes = opts.stageBytes ?? STAGE_BYTES;
    if (stageBytes % DIRECT_ALIGN !== 0) throw new RangeError('stageBytes must be a multiple of DIRECT_ALIGN');
    this.stageBytes = stageBytes;
    this.stage = alignedBuffer(stageBytes + READ_ROOM);
    if (opts.direct === false) this.directOff = 'not asked for';
    else if (constants.O_DIRECT === undefined) this.directOff = 'O_DIRECT not on this platform';
    else {
      try {
        this.directFd = this.fs.openSync(
          opts.procPath ?? `/proc/self/fd/${fd}`,
          constants.O_WRONLY | constants.O_DIRECT,
        );
      } catch (err) {
        this.directOff = `open: ${(err as Error).message}`;
      }
    }
  }
  private readonly fs: DirectFs;
  private readonly now: () => number;
  private lastFlush: number;

  /** True while writes go around the page cache. */
  get direct(): boolean {
    return this.directFd !== undefined;
  }

  /**
   * Where the next socket read may go: the free part of the stage (READ_ROOM bytes). Bytes read
   * there and then passed to `write` at that very place are staged without a copy. Valid until the
   * next `write` or `finish`: the caller reads into it and writes it before anything else is written.
   */
  readBuffer(): Buffer {
    return this.stage.subarray(this.fill, this.fill + READ_ROOM);
  }

  /** Stages buf[start, end) for the file (copied, unless it is already where readBuffer() put it). */
  write(buf: Uint8Array, start: number, end: number): void {
    if (
      start < end &&
      buf.buffer === this.stage.buffer &&
      buf.byteOffset + start === this.stage.byteOffset + this.fill &&
      end - start <= this.stage.length - this.fill
    ) {
      // Read straight into the stage (readBuffer): nothing to copy.
      this.fill += end - start;
      if (this.fill >= this.stageBytes) this.flush('full');
    } else {
      while (start < end) {
        const n = Math.min(end - start, this.stageBytes - this.fill);
        // TypedArray.set copies correctly even when buf is a later part of the stage itself.
        this.stage.set(buf.subarray(start, start + n), this.fill);
        this.fill += n;
        start += n;
        if (this.fill >= this.stageBytes) this.flush('full');
      }
    }
    if (this.fill > 0 && this.now() - this.lastFlush >= VISIBLE_MS) this.flush('visible');
  }

  /** Writes everything staged; returns the number of bytes written to the file in all. */
  finish(): number {
    this.flush('last');
    this.closeDirect();
    return this.pos;
  }

  /** Closes the direct descriptor (the ordinary one is the caller's). */
  closeDirect(): void {
    if (this.directFd === undefined) return;
    const fd = this.directFd;
    this.directFd = undefined;
    this.directOff ??= 'closed';
    try {
      this.fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }

  /**
   * Writes the stage's aligned part directly and consumes it. The unaligned rest (less than
   * DIRECT_ALIGN bytes): 'full' keeps it staged; 'last' writes it through the ordinary descriptor;
   * 'visible' writes it there too but keeps it staged (the next direct write covers it again), so
   * direct writes stay aligned. Without direct writes everything goes through the ordinary one.
   */
  private flush(mode: 'full' | 'visible' | 'last'): void {
    this.lastFlush = this.now();
    let from = 0;
    const aligned = this.fill - (this.fill % DIRECT_ALIGN);
    if (this.directFd !== undefined && aligned > 0) {
      try {
        from = this.writeAll(this.directFd, 0, aligned);
      } catch (err) {
        // EINVAL: this file system or device does not take these direct writes; anything else is a
        // real write error, and the ordinary descriptor will report it again below.
        this.directOff = `write: ${(err as Error).message}`;
        this.closeDirect();
      }
    }
    if (mode === 'last' || this.directFd === undefined) {
      this.writeAll(this.fd, from, this.fill);
      this.fill = 0;
      return;
    }
    if (mode === 'visible' && from < this.fill) {
      const pos = this.pos;
      this.writeAll(this.fd, from, this.fill);
      this.pos = pos; // still staged
    }
    // Keep the unaligned remainder (less than DIRECT_ALIGN bytes) at the stage's start.
    this.stage.copyWithin(0, from, this.fill);
    this.fill -= from;
  }

  /** Writes stage[from, to) at the file position of `from`; returns `to`. */
  private writeAll(fd: number, from: number, to: number): number {
    const base = this.pos - from; // file offset of stage[0] for this write
    let at = from;
    while (at < to) {
      const n = this.fs.writeSync(fd, this.stage, at, to - at, base + at);
      if (n <= 0) throw new Error(`write returned ${n}`);
      at += n;
    }
    this.pos = base + to;
    return to;
  }
}
