/**
 * Block encryption for served blocks on a worker thread, into memory shared with it (issue 25).
 *
 * Why: Node 20's cipher returns every ciphertext in a fresh buffer, 128 KiB per v2 block. V8 counts
 * such buffers as external memory of the isolate that made them, and the daemon's isolate starts a
 * full (mark-compact) collection whenever that memory grows by about a young generation's worth
 * between two scavenges: measured in bench/serve-crowd.ts, 35-43 mark-compacts per 256 MiB served,
 * each marking the daemon's whole heap (a third of the serving CPU on V8's helper threads;
 * BENCHMARKS.md, issue 25, "h-serve ... GC"). Here the main thread reads and verifies a block into a
 * slot of a SharedArrayBuffer (the store's readBlockInto), the worker encrypts it and copies the
 * ciphertext back into the same slot, and the response is written from the slot. The fresh
 * buffer is made, and collected, in the worker's own small heap; the daemon's heap sees no
 * per-block allocation of block size at all.
 *
 * Slots are reference counted: a slot is reused only once nothing holds it (the sealed-block memory
 * that keeps it, and every response being written from it). When no slot is free (more than
 * `maxSlots` in use) or the worker failed, the caller encrypts in place as before (crypto.ts).
 */
import { Worker } from 'node:worker_threads';
import { paddedLength } from '../protocol/pccrr/crypto.js';

/** One slot of shared memory: a block is read into it, padded, encrypted in place and sent from it. */
export interface Slot {
  /** The slot's whole memory (a view of the shared chunk). */
  readonly buf: Buffer;
  /** Takes a reference: the slot is not reused until every reference is released. */
  hold(): () => void;
}

interface SlotRec extends Slot {
  /** Its number: chunk * SLOTS_PER_CHUNK + place in the chunk. */
  n: number;
  trailer: Buffer;
  refs: number;
  /** The encryption in progress in it. */
  done?: (ok: boolean) => void;
}

/** Bytes of a slot's data: a 128 KiB block with its PKCS#7 padding (v2's largest block; v1's are 64 KiB). */
export const SLOT_BYTES = 131_072 + 16;
const SLOTS_PER_CHUNK = 8;
const CIPHERS = ['', 'aes-128-cbc', 'aes-192-cbc', 'aes-256-cbc'];

/**
 * Each slot ends in a trailer the worker reads its orders from (so a message is one number, the
 * slot's, with nothing to clone): the key (32 bytes, its first 16/24/32 used), the IV (16), then
 * the algorithm and the byte count to encrypt (two 32-bit words).
 */
const TRAILER = 64;

// The worker: encrypts [0, n) of a slot in place (n whole AES blocks, the padding written by the
// main thread), the cipher's output copied back, and answers with the slot's number (-1 - it on
// failure). CommonJS source, evaluated.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createCipheriv } = require('node:crypto');
const chunks = [];
const CIPHERS = ${JSON.stringify(CIPHERS)};
const KEYS = [0, 16, 24, 32];
const SLOT = ${SLOT_BYTES + TRAILER}, PER = ${SLOTS_PER_CHUNK}, DATA = ${SLOT_BYTES};
parentPort.on('message', (m) => {
  if (typeof m !== 'number') { chunks[m[0]] = m[1]; return; }
  try {
    const off = (m % PER) * SLOT;
    const sab = chunks[Math.floor(m / PER)];
    const t = Buffer.from(sab, off + DATA, ${TRAILER});
    const algo = t.readUInt32LE(48), n = t.readUInt32LE(52);
    const v = Buffer.from(sab, off, n);
    const c = createCipheriv(CIPHERS[algo], t.subarray(0, KEYS[algo]), t.subarray(32, 48));
    c.setAutoPadding(false);
    const out = c.update(v);
    c.final();
    out.copy(v);
    parentPort.postMessage(m);
  } catch (e) {
    parentPort.postMessage(-1 - m);
  }
});
`;

export interface SealWorkerOptions {
  /** Slots in use at most (default 256: 32 MiB); beyond it take() says none (the caller seals inline). */
  maxSlots?: number;
}

export class SealWorker {
  private worker: Worker | undefined;
  private online = false;
  private broken = false;
  private readonly chunks: SharedArrayBuffer[] = [];
  private readonly free: SlotRec[] = [];
  private readonly slots: SlotRec[] = [];
  private inFlight = 0;
  private made = 0;
  readonly maxSlots: number;
  /** Blocks encrypted by the worker (for stats and tests). */
  encrypted = 0;

  /** Resolves once the worker runs (started if needed); false when it cannot. */
  ready(): Promise<boolean> {
    if (this.online) return Promise.resolve(true);
    const w = this.start();
    if (!w) return Promise.resolve(false);
    w.ref(); // the caller waits for it: keep the process up until it runs
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        w.unref();
        resolve(ok && this.worker === w);
      };
      w.once('online', () => done(true));
      w.once('exit', () => done(false));
    });
  }

  constructor(opts: SealWorkerOptions = {}) {
    this.maxSlots = opts.maxSlots ?? 256;
    if (!Number.isInteger(this.maxSlots) || this.maxSlots < 0)
      throw new RangeError(`maxSlots must be a non-negative integer, got ${this.maxSlots}`);
  }

  /** Slots held by someone now. */
  get inUse(): number {
    return this.made - this.free.length;
  }

  /**
   * A free slot with room for a block of `length` bytes and its padding, or undefined (too large,
   * none free, or the worker failed): the caller then encrypts on its own thread. The slot comes with
   * one reference, the caller's (release it with the function hold() gives, or `drop`).
   */
  take(length: number): { slot: Slot; release: () => void } | undefined {
    if (this.broken || this.maxSlots === 0 || paddedLength(length) > SLOT_BYTES) return undefined;
    // Until the worker runs (starting a thread takes a while on a busy machine), blocks are sealed
    // inline: a request never waits for the worker to start.
    if (!this.online) {
      this.start();
      return undefined;
    }
    let s = this.free.pop();
    if (!s) {
      if (this.made + SLOTS_PER_CHUNK > this.maxSlots) return undefined;
      this.grow();
      s = this.free.pop()!;
    }
    return { slot: s, release: s.hold() };
  }

  /**
   * Pads the plaintext in `slot.buf[0, length)` (PKCS#7) and has the worker encrypt it in place:
   * resolves with the ciphertext (a view of the slot, paddedLength(length) bytes), byte for byte
   * what encryptWithRoom gives. Rejects when the worker failed (the caller then seals inline).
   */
  encrypt(slot: Slot, algo: 1 | 2 | 3, key: Buffer, length: number, iv: Buffer): Promise<Buffer> {
    const s = slot as SlotRec;
    const padded = paddedLength(length);
    s.buf.fill(padded - length, length, padded);
    const w = this.start();
    if (!w) return Promise.reject(new Error('seal worker unavailable'));
    if (s.done || key.length > 32 || iv.length !== 16) return Promise.reject(new Error('seal worker: bad order'));
    key.copy(s.trailer, 0);
    iv.copy(s.trailer, 32);
    s.trailer.writeUInt32LE(algo, 48);
    s.trailer.writeUInt32LE(padded, 52);
    // An encryption in progress keeps the process up (the worker is unref'd while idle).
    if (this.inFlight++ === 0) w.ref();
    return new Promise<Buffer>((resolve, reject) => {
      s.done = (ok) => {
        s.done = undefined;
        if (--this.inFlight === 0) this.worker?.unref();
        if (!ok) return reject(new Error('seal worker failed to encrypt'));
        this.encrypted++;
        resolve(s.buf.subarray(0, padded));
      };
      w.postMessage(s.n);
    });
  }

  /**
   * Stops the worker (pending encryptions reject; a later one starts it again). Slots stay valid
   * memory for their holders.
   */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.online = false;
    this.failAll();
    if (w) await w.terminate();
  }

  /** Starts the worker if it is not running (a server starts it as it begins to listen). */
  start(): Worker | undefined {
    if (this.worker) return this.worker;
    if (this.broken) return undefined;
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.once('online', () => {
      if (this.worker === w) this.online = true;
    });
    w.on('message', (m: number) => {
      const ok = m >= 0;
      this.slots[ok ? m : -1 - m]?.done?.(ok);
    });
    const fail = () => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.online = false;
      this.broken = true;
      this.failAll();
    };
    w.on('error', fail);
    w.on('exit', fail);
    w.unref(); // a server that is never closed does not keep the process alive (after the listeners: they ref)
    for (let i = 0; i < this.chunks.length; i++) w.postMessage([i, this.chunks[i]]);
    this.worker = w;
    return w;
  }

  private failAll(): void {
    for (const s of this.slots) s.done?.(false);
  }

  private grow(): void {
    const chunk = this.chunks.length;
    const stride = SLOT_BYTES + TRAILER;
    const sab = new SharedArrayBuffer(stride * SLOTS_PER_CHUNK);
    this.chunks.push(sab);
    this.worker?.postMessage([chunk, sab]);
    for (let k = SLOTS_PER_CHUNK - 1; k >= 0; k--) {
      const off = k * stride;
      const rec: SlotRec = {
        n: chunk * SLOTS_PER_CHUNK + k,
        refs: 0,
        buf: Buffer.from(sab, off, SLOT_BYTES),
        trailer: Buffer.from(sab, off + SLOT_BYTES, TRAILER),
        hold: () => {
          rec.refs++;
          let done = false;
          return () => {
            if (done) return;
            done = true;
            if (--rec.refs === 0) this.free.push(rec);
          };
        },
      };
      this.slots[rec.n] = rec;
      this.free.push(rec);
    }
    this.made += SLOTS_PER_CHUNK;
  }
}
