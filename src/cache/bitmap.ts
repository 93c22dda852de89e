/**
 * Fixed-size presence bitmap with a population count. Up to 32 bits live in a number (a v2
 * segment is one block): no byte array per segment, which cost about 200 bytes of the ~14,400
 * v2 segments of a 1 GiB file (bench/segment-heap.ts, issue 25 target 6).
 */
export class Bitmap {
  /** Bits of a bitmap of up to 32 (bit i = 1 << i). */
  private word = 0;
  /** Bits of a larger one. */
  private readonly bits: Uint8Array | undefined;
  private n = 0;
  constructor(readonly size: number) {
    this.bits = size > 32 ? new Uint8Array(Math.ceil(size / 8)) : undefined;
  }
  has(i: number): boolean {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) return false;
    const b = this.bits;
    return b ? (b[i >> 3]! & (1 << (i & 7))) !== 0 : (this.word & (1 << i)) !== 0;
  }
  set(i: number): boolean {
    if (this.has(i) || !Number.isInteger(i) || i < 0 || i >= this.size) return false;
    if (this.bits) this.bits[i >> 3]! |= 1 << (i & 7);
    else this.word |= 1 << i;
    this.n++;
    return true;
  }
  clear(i: number): boolean {
    if (!this.has(i)) return false;
    if (this.bits) this.bits[i >> 3]! &= ~(1 << (i & 7));
    else this.word &= ~(1 << i);
    this.n--;
    return true;
  }
  get count(): number {
    return this.n;
  }
  list(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.has(i)) out.push(i);
    return out;
  }
}
