/** Fixed-size presence bitmap with a population count. */
export class Bitmap {
  private readonly bits: Uint8Array;
  private n = 0;
  constructor(readonly size: number) {
    this.bits = new Uint8Array(Math.ceil(size / 8));
  }
  has(i: number): boolean {
    return Number.isInteger(i) && i >= 0 && i < this.size && (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }
  set(i: number): boolean {
    if (this.has(i) || !Number.isInteger(i) || i < 0 || i >= this.size) return false;
    this.bits[i >> 3]! |= 1 << (i & 7);
    this.n++;
    return true;
  }
  clear(i: number): boolean {
    if (!this.has(i)) return false;
    this.bits[i >> 3]! &= ~(1 << (i & 7));
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
