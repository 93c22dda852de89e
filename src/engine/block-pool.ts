/**
 * Reused block-sized buffers for a download's blocks (issue 25 target 6; protocol/engine.md
 * "Block buffers"). A block that lives longer than a moment (kept for readers, waiting for its
 * group commit, written to `get`) used to be a fresh buffer each time: V8 frees such a buffer only
 * at a full collection once its wrapper was promoted, so up to ~80 MB of dead blocks piled up, and
 * malloc kept the freed 64-128 KiB pieces in its arenas. Here a buffer is reference counted: the
 * one who takes it holds one reference, everyone who keeps it beyond the current turn (the
 * Transfer's window for readers, a cache write, a reader until the socket took the bytes) adds one,
 * and it goes back to the pool only when the last is released. A reference that is never released
 * (a reader whose stream was dropped, a write that failed) only means that buffer is not reused: it
 * is then collected like any other. A buffer is never handed out while anyone holds it.
 *
 * Pure bookkeeping: no I/O, no timers.
 */

/** Capacities are multiples of this: a block of n bytes gets a buffer of at most n + 16 KiB - 1. */
const GRAIN = 16 * 1024;

export interface BlockPoolStats {
  /** Buffers handed out by take() that were reused from the pool. */
  reused: number;
  /** Buffers take() had to make. */
  made: number;
  /** Bytes (capacity) of the idle buffers kept for reuse. */
  idleBytes: number;
}

export class BlockPool {
  /**
   * Reference counts of the buffers handed out, by their ArrayBuffer. Weak: a buffer whose last
   * holder dropped it without releasing it is collected, not kept here.
   */
  private readonly refs = new WeakMap<ArrayBufferLike, number>();
  /** Idle buffers by capacity. */
  private readonly idle = new Map<number, ArrayBuffer[]>();
  private idleBytes = 0;
  private reused = 0;
  private made = 0;

  /**
   * @param maxIdleBytes idle buffers kept for reuse beyond this are let go (collected as garbage).
   * @param maxLength blocks longer than this get a plain fresh buffer (not pooled).
   */
  constructor(
    private readonly maxIdleBytes = 16 * 1024 * 1024,
    private readonly maxLength = 2 * 1024 * 1024,
  ) {}

  /** A buffer of exactly `length` bytes (contents undefined), held once by the caller. */
  take(length: number): Buffer {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad block length ${length}`);
    if (length === 0 || length > this.maxLength) return Buffer.allocUnsafeSlow(length);
    const cap = Math.ceil(length / GRAIN) * GRAIN;
    let ab = this.idle.get(cap)?.pop();
    if (ab) {
      this.idleBytes -= cap;
      this.reused++;
    } else {
      ab = new ArrayBuffer(cap);
      this.made++;
    }
    this.refs.set(ab, 1);
    return Buffer.from(ab, 0, length);
  }

  /** True when `buf` is a view of a buffer handed out by this pool and still held. */
  owns(buf: Uint8Array): boolean {
    return this.refs.has(buf.buffer);
  }

  /** One more holder of `buf` (any view of a pooled buffer); a no-op for other buffers. */
  retain(buf: Uint8Array): void {
    const n = this.refs.get(buf.buffer);
    if (n !== undefined) this.refs.set(buf.buffer, n + 1);
  }

  /**
   * A holder is done with `buf`: the bytes will not be read through it again (a write that used it
   * has completed). The last release returns the buffer to the pool. A no-op for other buffers.
   */
  release(buf: Uint8Array): void {
    const ab = buf.buffer;
    const n = this.refs.get(ab);
    if (n === undefined) return;
    if (n > 1) {
      this.refs.set(ab, n - 1);
      return;
    }
    this.refs.delete(ab);
    const cap = ab.byteLength;
    if (this.idleBytes + cap > this.maxIdleBytes || !(ab instanceof ArrayBuffer)) return;
    let list = this.idle.get(cap);
    if (!list) {
      list = [];
      this.idle.set(cap, list);
    }
    list.push(ab);
    this.idleBytes += cap;
  }

  /** Lets go of every idle buffer (memory back to the allocator once they are collected). */
  trim(): void {
    this.idle.clear();
    this.idleBytes = 0;
  }

  stats(): BlockPoolStats {
    return { reused: this.reused, made: this.made, idleBytes: this.idleBytes };
  }
}

/** The daemon's pool (one per process: the engine's downloads and their readers share it). */
export const blockPool = new BlockPool();
