/**
 * Event queue of the scale simulation (issue 24): a binary min-heap over parallel typed arrays,
 * ordered by time and then by insertion (two events at the same time come out in the order they
 * were pushed, so a run depends on nothing but its inputs). An event is a kind, an int32 and a double;
 * the caller gives them meaning. Stale events (a flow whose finish moved) are dropped by the
 * caller, not removed from the heap.
 */
export class EventQueue {
  private time: Float64Array;
  private seq: Float64Array;
  private kind: Uint8Array;
  private a: Int32Array;
  private b: Float64Array;
  private n = 0;
  private counter = 0;
  /** Fields of the event popped last. */
  t = 0;
  k = 0;
  x = 0;
  y = 0;

  constructor(capacity = 1024) {
    this.time = new Float64Array(capacity);
    this.seq = new Float64Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.a = new Int32Array(capacity);
    this.b = new Float64Array(capacity);
  }

  get size(): number {
    return this.n;
  }

  /** Time of the earliest event (Infinity when empty). */
  peekTime(): number {
    return this.n > 0 ? this.time[0]! : Infinity;
  }

  push(time: number, kind: number, a = 0, b = 0): void {
    if (!(time >= 0) || !Number.isFinite(time)) throw new RangeError(`event time ${time}`);
    if (this.n === this.time.length) this.grow();
    let i = this.n++;
    const s = this.counter++;
    // Sift up: move parents down until the slot for the new event is found.
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.time[p]! < time || (this.time[p] === time && this.seq[p]! < s)) break;
      this.move(p, i);
      i = p;
    }
    this.time[i] = time;
    this.seq[i] = s;
    this.kind[i] = kind;
    this.a[i] = a;
    this.b[i] = b;
  }

  /** Removes the earliest event into t/k/x/y; false when empty. */
  pop(): boolean {
    if (this.n === 0) return false;
    this.t = this.time[0]!;
    this.k = this.kind[0]!;
    this.x = this.a[0]!;
    this.y = this.b[0]!;
    const last = --this.n;
    if (last === 0) return true;
    const time = this.time[last]!;
    const s = this.seq[last]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= last) break;
      const r = c + 1;
      if (r < last && (this.time[r]! < this.time[c]! || (this.time[r] === this.time[c] && this.seq[r]! < this.seq[c]!)))
        c = r;
      if (time < this.time[c]! || (time === this.time[c] && s < this.seq[c]!)) break;
      this.move(c, i);
      i = c;
    }
    this.move(last, i);
    return true;
  }

  private move(from: number, to: number): void {
    this.time[to] = this.time[from]!;
    this.seq[to] = this.seq[from]!;
    this.kind[to] = this.kind[from]!;
    this.a[to] = this.a[from]!;
    this.b[to] = this.b[from]!;
  }

  private grow(): void {
    const cap = this.time.length * 2;
    const t = new Float64Array(cap);
    t.set(this.time);
    this.time = t;
    const s = new Float64Array(cap);
    s.set(this.seq);
    this.seq = s;
    const k = new Uint8Array(cap);
    k.set(this.kind);
    this.kind = k;
    const a = new Int32Array(cap);
    a.set(this.a);
    this.a = a;
    const b = new Float64Array(cap);
    b.set(this.b);
    this.b = b;
  }
}
