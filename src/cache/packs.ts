/**
 * Pack files: where the block store keeps v2 blocks (issue 25). A v2 segment is one block of at
 * most 128 KiB, and one file per segment cost an open, a write, an fdatasync, a close and an index
 * batch per block: in bench/store-path.ts most of the receiving daemon's cache CPU. Packs are
 * append-only files `<dir>/packs/<seq, 8 hex>` of about PACK_BYTES each; a block is appended at an
 * offset reserved for it, and the index records where (`p!<id>!0` = {k: seq, o: offset}).
 *
 * Crash safety, the same guarantee as the segment files:
 * - Group commit: a block's bytes are written, then ONE fdatasync of the pack covers every block
 *   written meanwhile, then ONE index batch marks them all present, then their putBlock calls
 *   resolve. A mark is never in the index before its bytes are on disk.
 * - Bytes are only ever appended at offsets nobody else holds, and after a restart writing goes to a
 *   new pack: the bytes of a present block are never rewritten, so a torn write can only hit bytes
 *   that no mark claims (dead bytes, never served).
 * - On open the index wins (store.ts load): a mark whose pack is missing or too short is dropped; a
 *   pack no mark points at is removed. Every read is verified against the block hash anyway.
 *
 * Space: a pack is removed once it is not the one being appended to and no present block and no
 * write in flight is in it. Evicted blocks of a pack that still holds others are dead bytes on disk
 * until the pack goes: `deadBytes()` counts them, and the store moves the live blocks of a mostly
 * dead pack into the current one (compaction) so that they stay bounded.
 */
import type { SegmentFiles } from './segfiles.js';

/** Bytes appended to one pack before the next one starts. */
export const PACK_BYTES = 16 * 1024 * 1024;

export interface PackLoc {
  pack: number;
  off: number;
}
/** How a packed present mark is stored in the index. */
export interface PackedMark {
  k: number;
  o: number;
}

export function isPackedMark(v: unknown): v is PackedMark {
  const m = v as PackedMark | undefined;
  return (
    typeof m === 'object' &&
    m !== null &&
    Number.isSafeInteger(m.k) &&
    m.k > 0 &&
    m.k <= 0xffffffff &&
    Number.isSafeInteger(m.o) &&
    m.o >= 0
  );
}

interface Waiter {
  key: string;
  loc: PackLoc;
  data: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface PackState {
  /** Bytes of present blocks in the pack. */
  live: number;
  /** Writes reserved in the pack and not yet settled. */
  pending: number;
  /** Bytes appended (or reserved). */
  size: number;
}

export class Packs {
  private readonly packs = new Map<number, PackState>();
  private active = 0;
  private nextSeq = 1;
  private waiting: Waiter[] = [];
  private committing = false;
  private closed = false;

  constructor(
    private readonly files: SegmentFiles,
    /** Writes the present marks of one commit to the index as one batch. */
    private readonly writeIndex: (ops: { type: 'put'; key: string; value: PackedMark }[]) => Promise<void>,
    private readonly onError: (err: unknown, seq: number) => void,
    /** Bytes appended to one pack before the next starts (PACK_BYTES; smaller in tests). */
    readonly packBytes = PACK_BYTES,
  ) {}

  /** At open: a pack found on disk with its size; the live bytes are added by claim(). */
  adopt(seq: number, size: number): void {
    this.packs.set(seq, { live: 0, pending: 0, size });
    if (seq >= this.nextSeq) this.nextSeq = seq + 1;
  }

  /** At open, after every mark was claimed: packs no present block is in (sequence numbers). */
  unused(): number[] {
    return [...this.packs].filter(([, p]) => p.live === 0 && p.pending === 0).map(([seq]) => seq);
  }

  forget(seq: number): void {
    this.packs.delete(seq);
  }

  /** Reserves room for `length` bytes at the end of the current pack (a new one when it is full). */
  private reserve(length: number): PackLoc {
    let cur = this.active ? this.packs.get(this.active) : undefined;
    if (!cur || (cur.size > 0 && cur.size + length > this.packBytes)) {
      const old = this.active;
      this.active = this.nextSeq++;
      cur = { live: 0, pending: 0, size: 0 };
      this.packs.set(this.active, cur);
      if (old) this.removeIfUnused(old);
    }
    const loc = { pack: this.active, off: cur.size };
    cur.size += length;
    cur.pending++;
    return loc;
  }

  /**
   * Appends a block at a place reserved now and marks it present in the index under `key`. `done`
   * resolves once its bytes were written, an fdatasync of its pack covered them, and the index
   * batch with its mark was written. Blocks that arrive while a group is being committed form the
   * next group: their adjacent bytes go out in one writev, then one fdatasync per pack and one
   * index batch serve them all. The caller calls settle(loc) when it is done with the place.
   */
  append(key: string, data: Buffer): { loc: PackLoc; done: Promise<void> } {
    const loc = this.reserve(data.length);
    if (this.closed) return { loc, done: Promise.reject(new Error('the pack files are closed')) };
    const done = new Promise<void>((resolve, reject) => {
      this.waiting.push({ key, loc, data, resolve, reject });
    });
    if (!this.committing) void this.runCommits();
    return { loc, done };
  }

  private async runCommits(): Promise<void> {
    this.committing = true;
    try {
      while (this.waiting.length > 0) {
        const group = this.waiting;
        this.waiting = [];
        try {
          // Reserved in order, so the group's blocks of one pack lie end to end: one writev a run.
          for (let i = 0; i < group.length; ) {
            const first = group[i]!.loc;
            let end = first.off;
            const bufs: Buffer[] = [];
            for (; i < group.length && group[i]!.loc.pack === first.pack && group[i]!.loc.off === end; i++) {
              bufs.push(group[i]!.data);
              end += group[i]!.data.length;
            }
            await this.files.writePackv(first.pack, first.off, bufs);
          }
          let last = 0;
          for (const w of group) {
            if (w.loc.pack === last) continue;
            last = w.loc.pack;
            await this.files.syncPack(last);
          }
          // (A group rarely spans two packs; syncing one twice is harmless.)
          await this.writeIndex(
            group.map((w) => ({ type: 'put', key: w.key, value: { k: w.loc.pack, o: w.loc.off } })),
          );
          for (const w of group) w.resolve();
        } catch (err) {
          for (const w of group) w.reject(err);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  /** The reservation is over (stored or failed): a pack left with nothing in it goes. */
  settle(loc: PackLoc): void {
    const p = this.packs.get(loc.pack);
    if (!p) return;
    p.pending--;
    this.removeIfUnused(loc.pack);
  }

  /** A present block lives at `loc`. */
  claim(loc: PackLoc, length: number): void {
    const p = this.packs.get(loc.pack);
    if (p) p.live += length;
  }

  /** A present block at `loc` is gone (evicted, dropped, moved). */
  release(loc: PackLoc, length: number): void {
    const p = this.packs.get(loc.pack);
    if (!p) return;
    p.live -= length;
    this.removeIfUnused(loc.pack);
  }

  /** Bytes on disk that no present block uses (evicted blocks, failed writes) in packs still kept. */
  deadBytes(): number {
    let n = 0;
    for (const [seq, p] of this.packs) if (seq !== this.active) n += p.size - p.live;
    return n;
  }

  /** The sealed pack with the smallest share of live bytes, when at most half of it is live. */
  mostlyDead(): number | undefined {
    let best: number | undefined;
    let bestShare = 0.5000001;
    for (const [seq, p] of this.packs) {
      if (seq === this.active || p.pending > 0 || p.size === 0) continue;
      const share = p.live / p.size;
      if (share < bestShare) {
        best = seq;
        bestShare = share;
      }
    }
    return best;
  }

  private removeIfUnused(seq: number): void {
    const p = this.packs.get(seq);
    if (!p || seq === this.active || p.live > 0 || p.pending > 0) return;
    this.packs.delete(seq);
    this.files.removePack(seq).catch((err) => this.onError(err, seq));
  }

  /** Stops commits (callers wait for their writes before closing). */
  close(): void {
    this.closed = true;
  }
}
