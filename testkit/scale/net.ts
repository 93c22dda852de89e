/**
 * Link models of the scale simulation (issue 24), chosen so that a run costs O(log n) per
 * transfer, not O(flows on a link):
 *
 * - WAN links share by processor sharing: the flows on a link each move at capacity / flows (per-
 *   link flow counting; the WAN is their only bottleneck, since the LAN is faster). A link keeps a
 *   virtual clock V (bytes each of its flows has received so far); a flow that joins at V0 with b
 *   bytes ends when V reaches V0 + b, so one event per link (its earliest end) is all the queue
 *   holds, whatever the number of flows. All WAN links share the origin's uplink the same way, by
 *   counting: a link's capacity is min(its own, origin uplink / links busy now).
 * - LAN NICs serve transfers in order at full rate (FifoLink): a transfer's bytes take their turn on
 *   the sender's uplink and on the receiver's downlink, and have arrived when both are through.
 *   Neither link is ever over-committed; a transfer's own time is FIFO rather than shared, which
 *   moves individual blocks, not the totals a download's completion depends on.
 * Times are ms, rates bytes per ms. A flow's latency is spent before its bytes start (request out,
 * first byte back) and holds no bandwidth.
 */
import type { EventQueue } from './queue.js';

export class FifoLink {
  /** When the bytes reserved so far are through. */
  free = 0;
  constructor(readonly bytesPerMs: number) {
    if (!(bytesPerMs > 0)) throw new RangeError(`link capacity ${bytesPerMs}`);
  }
  /** Reserves `bytes` from `at` (or once the link is free); returns when they are through. */
  reserve(at: number, bytes: number): number {
    this.free = Math.max(at, this.free) + bytes / this.bytesPerMs;
    return this.free;
  }
}

/** A LAN transfer of `bytes` requested at `now`: when its last byte has arrived. */
export function lanTransfer(up: FifoLink, down: FifoLink, bytes: number, latencyMs: number, now: number): number {
  const at = now + latencyMs;
  return Math.max(up.reserve(at, bytes), down.reserve(at, bytes));
}

/** Min-heap of (key, id) pairs (a link's flows by the virtual time they end at). */
class PairHeap {
  key: number[] = [];
  id: number[] = [];
  get size(): number {
    return this.key.length;
  }
  push(k: number, v: number): void {
    let i = this.key.length;
    this.key.push(k);
    this.id.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.key[p]! <= k) break;
      this.key[i] = this.key[p]!;
      this.id[i] = this.id[p]!;
      i = p;
    }
    this.key[i] = k;
    this.id[i] = v;
  }
  pop(): number {
    const top = this.id[0]!;
    const k = this.key.pop()!;
    const v = this.id.pop()!;
    const n = this.key.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.key[c + 1]! < this.key[c]!) c++;
      if (k <= this.key[c]!) break;
      this.key[i] = this.key[c]!;
      this.id[i] = this.id[c]!;
      i = c;
    }
    this.key[i] = k;
    this.id[i] = v;
    return top;
  }
}

export interface SharedDone<T> {
  tag: T;
  bytes: number;
  requestedAt: number;
  startedAt: number;
}

/** Processor-sharing links below one shared uplink (the origin's WAN side): see the file comment. */
export class SharedLinks<T> {
  private readonly cap: number[] = [];
  private readonly v: number[] = [];
  private readonly last: number[] = [];
  private readonly version: number[] = [];
  private readonly flows: PairHeap[] = [];
  private readonly rate: number[] = [];
  private busy = 0;
  private versions = 0;
  private readonly tags: Array<T | undefined> = [];
  private readonly bytes: number[] = [];
  private readonly requested: number[] = [];
  private readonly started: number[] = [];
  private readonly on: number[] = [];
  private readonly freeIds: number[] = [];
  /** Flows started, link events handled (the work done by the model, for the report). */
  starts = 0;

  constructor(
    private readonly queue: EventQueue,
    /** Event kinds pushed: a flow's bytes start (a = flow), a link's earliest flow ends (a = link, b = version). */
    private readonly kinds: { begin: number; finish: number },
    /** The shared uplink above all links (Infinity: none). */
    private readonly uplink: number,
    /** Bytes a link moved between two times (all its flows together). */
    private readonly moved?: (link: number, from: number, to: number, bytes: number) => void,
  ) {}

  addLink(bytesPerMs: number): number {
    if (!(bytesPerMs > 0)) throw new RangeError(`link capacity ${bytesPerMs}`);
    this.cap.push(bytesPerMs);
    this.v.push(0);
    this.last.push(0);
    this.version.push(0);
    this.flows.push(new PairHeap());
    this.rate.push(0);
    return this.cap.length - 1;
  }

  flowsOn(link: number): number {
    return this.flows[link]!.size;
  }

  /** Requests `bytes` over `link` at `now`; they start to move after `latencyMs`. */
  start(link: number, bytes: number, latencyMs: number, now: number, tag: T): number {
    const id = this.freeIds.pop() ?? this.tags.length;
    this.tags[id] = tag;
    this.bytes[id] = bytes;
    this.requested[id] = now;
    this.started[id] = now + latencyMs;
    this.on[id] = link;
    this.starts++;
    this.queue.push(now + latencyMs, this.kinds.begin, id);
    return id;
  }

  /** Handles a `begin` event. */
  begin(id: number, now: number): void {
    const l = this.on[id]!;
    const heap = this.flows[l]!;
    this.advance(l, now);
    heap.push(this.v[l]! + this.bytes[id]!, id);
    if (heap.size === 1) this.busyChanged(1, now, l);
    else this.schedule(l, now);
  }

  /** Handles a `finish` event: the flows that ended (none for a stale event). */
  finish(link: number, version: number, now: number): Array<SharedDone<T>> {
    if (this.version[link] !== version) return [];
    this.advance(link, now);
    const heap = this.flows[link]!;
    const out: Array<SharedDone<T>> = [];
    // Flows due now, up to rounding of the virtual clock (a thousandth of a byte, or 1e-9 of it:
    // large enough that what is left is due strictly later than `now` in double precision).
    const due = this.v[link]! + Math.max(1e-3, 1e-9 * this.v[link]!);
    while (heap.size > 0 && heap.key[0]! <= due) {
      const id = heap.pop();
      out.push({
        tag: this.tags[id]!,
        bytes: this.bytes[id]!,
        requestedAt: this.requested[id]!,
        startedAt: this.started[id]!,
      });
      this.tags[id] = undefined;
      this.freeIds.push(id);
    }
    if (heap.size === 0) this.busyChanged(-1, now, link);
    else this.schedule(link, now);
    return out;
  }

  /** Capacity of a link now (its own, or its share of the uplink). */
  capacity(link: number): number {
    return Math.min(this.cap[link]!, this.uplink / Math.max(1, this.busy));
  }

  private advance(l: number, now: number): void {
    const n = this.flows[l]!.size;
    const dt = now - this.last[l]!;
    if (n > 0 && dt > 0) {
      const r = this.rate[l]!;
      this.v[l]! += (r / n) * dt;
      this.moved?.(l, this.last[l]!, now, r * dt);
    }
    this.last[l] = now;
  }

  /** Pushes the event of the link's earliest end at its current rate (older events go stale). */
  private schedule(l: number, now: number): void {
    const heap = this.flows[l]!;
    this.rate[l] = this.capacity(l);
    this.version[l] = ++this.versions;
    if (heap.size === 0) return;
    const dueIn = ((heap.key[0]! - this.v[l]!) * heap.size) / this.rate[l]!;
    this.queue.push(now + Math.max(0, dueIn), this.kinds.finish, l, this.version[l]!);
  }

  /** A link became busy or idle: with a finite uplink every busy link's share changes. */
  private busyChanged(delta: number, now: number, l: number): void {
    this.busy += delta;
    if (!Number.isFinite(this.uplink)) {
      this.schedule(l, now);
      return;
    }
    for (let k = 0; k < this.cap.length; k++)
      if (this.flows[k]!.size > 0 || k === l) {
        this.advance(k, now);
        this.schedule(k, now);
      }
  }
}
