/**
 * Encrypted blocks kept for reuse (issue 25): a block that several peers ask for is read from the
 * cache, verified and encrypted once, and the same ciphertext with the same IV answers every
 * request for it while it stays in memory. MS-PCCRR lets the server choose the IV; why reusing a
 * (ciphertext, IV) pair for the same block under the same key is safe: protocol/pccrr.md, "Crypto".
 *
 * Bounded: at most `budgetBytes` of ciphertext (least recently used first out). Requests for a
 * block being sealed wait for it instead of reading it again. The caller still checks that the
 * store holds the block before asking (an evicted block is never answered from here).
 */
import type { CryptoAlgo } from '../protocol/pccrr/codec.js';
import type { Slot } from './seal-worker.js';

/** One block, encrypted: what a MSG_BLK carries. */
export interface Sealed {
  cipher: Buffer;
  iv: Buffer;
  /** Plaintext length. */
  length: number;
  /**
   * The whole encoded MSG_BLK response (transport header included) as [head, cipher, tail], sent
   * as it is to every request for this block whose NextBlockIndex is `next`; `cipher` is its
   * middle piece (held once).
   */
  parts?: Buffer[];
  next?: number;
  /**
   * The shared slot `cipher` is a view of (seal-worker.ts), when sealed by the worker: whoever
   * keeps or sends these bytes holds a reference to it.
   */
  slot?: Slot;
}

interface Entry {
  /** The key material it was sealed with (a segment re-added with another Kp is sealed again). */
  kp: Buffer;
  sealed?: Sealed;
  pending?: Promise<Sealed | undefined>;
  /** This memory's reference to the sealed block's slot, if it is in one. */
  release?: () => void;
}

/** Default budget: 16 MiB of ciphertext, about 110 v2 blocks of 148 KB or 256 v1 blocks. */
export const SEALED_BUDGET_BYTES = 16 * 1024 * 1024;

export class SealedBlocks {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** Requests answered from memory (or joined to a sealing in progress), and blocks sealed (kept or not). */
  hits = 0;
  sealedCount = 0;

  constructor(readonly budgetBytes: number = SEALED_BUDGET_BYTES) {
    if (!(budgetBytes >= 0)) throw new RangeError(`budgetBytes must be >= 0, got ${budgetBytes}`);
  }

  /** Bytes of ciphertext held now. */
  size(): number {
    return this.bytes;
  }

  /**
   * The sealed block `index` of `segmentId` under `algo` and `kp`: from memory, or made by `seal`
   * (read, verify, encrypt) and kept. `seal` resolving undefined (block not readable) keeps nothing.
   */
  get(
    segmentId: Buffer,
    index: number,
    algo: CryptoAlgo,
    kp: Buffer,
    seal: () => Promise<Sealed | undefined>,
  ): Promise<Sealed | undefined> {
    if (this.budgetBytes === 0)
      return seal().then((s) => {
        if (s) this.sealedCount++;
        return s;
      });
    const key = `${segmentId.toString('base64')}/${index}/${algo}`;
    const e = this.entries.get(key);
    if (e?.kp.equals(kp)) {
      if (e.sealed) {
        this.hits++;
        this.entries.delete(key); // most recently used last
        this.entries.set(key, e);
        // Its slot stays held until the caller, resuming after this promise, holds it itself
        // (an eviction meanwhile must not free it for another block).
        if (e.sealed.slot) setImmediate(e.sealed.slot.hold());
        return Promise.resolve(e.sealed);
      }
      if (e.pending) {
        this.hits++;
        return e.pending;
      }
    }
    if (e) this.drop(key, e);
    const fresh: Entry = { kp };
    const pending = seal().then(
      (s) => {
        if (fresh.pending !== pending) return s; // dropped meanwhile
        fresh.pending = undefined;
        if (!s) {
          this.entries.delete(key);
          return s;
        }
        this.sealedCount++;
        const n = s.cipher.length + s.iv.length;
        if (n > this.budgetBytes) {
          this.entries.delete(key);
          return s;
        }
        fresh.sealed = s;
        fresh.release = s.slot?.hold();
        this.bytes += n;
        this.entries.delete(key);
        this.entries.set(key, fresh);
        this.trim();
        return s;
      },
      (err: unknown) => {
        if (this.entries.get(key) === fresh) this.entries.delete(key);
        throw err;
      },
    );
    fresh.pending = pending;
    this.entries.set(key, fresh);
    return pending;
  }

  /** Forgets everything (memory back). */
  clear(): void {
    for (const e of this.entries.values()) e.release?.();
    this.entries.clear();
    this.bytes = 0;
  }

  private drop(key: string, e: Entry): void {
    this.entries.delete(key);
    if (e.sealed) this.bytes -= e.sealed.cipher.length + e.sealed.iv.length;
    e.pending = undefined;
    e.release?.();
    e.release = undefined;
  }

  /** Oldest sealed blocks out until within budget (sealings in progress hold no bytes yet). */
  private trim(): void {
    if (this.bytes <= this.budgetBytes) return;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.budgetBytes) break;
      if (e.sealed) this.drop(k, e);
    }
  }
}
