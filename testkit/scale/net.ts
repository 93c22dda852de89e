/**
 * Link model of the scale simulation (issue 24). A link has a capacity (bytes per ms, shared by
 * the flows crossing it, in one direction); a flow crosses one to three links (an uplink, a WAN, a
 * downlink) and moves at the smallest fair share among them: capacity / flows on the link ("per-link
 * flow counting", a cheap stand-in for max-min fairness that never over-commits a link). Whenever a
 * link gains or loses a flow, the flows on it get their new rate and a new finish event (the old
 * one becomes stale through the version number). Times are in ms; a flow's latency is spent before
 * its bytes start to move (request out, first byte back) and holds no bandwidth.
 */
import type { EventQueue } from './queue.js';

export interface FlowDone<T> {
  tag: T;
  bytes: number;
  /** When the request was made, and when the bytes started to move. */
  requestedAt: number;
  startedAt: number;
}

interface Flow<T> {
  links: number[];
  remaining: number;
  bytes: number;
  rate: number;
  last: number;
  version: number;
  requestedAt: number;
  startedAt: number;
  tag: T;
  active: boolean;
}

export class Network<T> {
  private readonly cap: number[] = [];
  private readonly onLink: Array<Set<number>> = [];
  private readonly flows: Array<Flow<T> | undefined> = [];
  private readonly free: number[] = [];
  /** Rate changes made (work done by the model, for the report). */
  rateUpdates = 0;
  active = 0;
  /**
   * Versions are unique over the whole run, not per flow: a flow id is reused once its flow ended,
   * and a stale finish event of the old flow must never match the new one.
   */
  private versions = 0;

  constructor(
    private readonly queue: EventQueue,
    /** Event kinds this network pushes: a flow's bytes start, a flow finishes. */
    private readonly kinds: { begin: number; finish: number },
    /** Bytes a flow moved between two times (called as its rate changes and when it ends). */
    private readonly moved?: (tag: T, from: number, to: number, bytes: number) => void,
  ) {}

  /** A link of `bytesPerMs` capacity (Infinity: never a bottleneck, not tracked). Returns its id. */
  addLink(bytesPerMs: number): number {
    if (!(bytesPerMs > 0)) throw new RangeError(`link capacity ${bytesPerMs}`);
    this.cap.push(bytesPerMs);
    this.onLink.push(new Set());
    return this.cap.length - 1;
  }

  flowsOn(link: number): number {
    return this.onLink[link]!.size;
  }

  /** Requests `bytes` over `links` at `now`; the bytes start moving after `latencyMs`. */
  start(links: number[], bytes: number, latencyMs: number, now: number, tag: T): number {
    const id = this.free.pop() ?? this.flows.length;
    const tracked = links.filter((l) => Number.isFinite(this.cap[l]!));
    this.flows[id] = {
      links: tracked,
      remaining: bytes,
      bytes,
      rate: 0,
      last: now,
      version: ++this.versions,
      requestedAt: now,
      startedAt: now + latencyMs,
      tag,
      active: false,
    };
    this.queue.push(now + latencyMs, this.kinds.begin, id, 0);
    return id;
  }

  /** Handles a `begin` event. */
  begin(id: number, now: number): void {
    const f = this.flows[id]!;
    f.active = true;
    f.last = now;
    this.active++;
    if (f.links.length === 0) {
      // Nothing limits it: the bytes arrive at once.
      f.rate = Infinity;
      this.queue.push(now, this.kinds.finish, id, f.version);
      return;
    }
    for (const l of f.links) this.onLink[l]!.add(id);
    this.reshare(f.links, now);
  }

  /** Handles a `finish` event: the flow's result, or undefined for a stale event. */
  finish(id: number, version: number, now: number): FlowDone<T> | undefined {
    const f = this.flows[id];
    if (!f?.active || f.version !== version) return undefined;
    f.active = false;
    this.active--;
    if (this.moved && f.remaining > 0) this.moved(f.tag, f.last, now, f.remaining);
    for (const l of f.links) this.onLink[l]!.delete(id);
    this.flows[id] = undefined;
    this.free.push(id);
    this.reshare(f.links, now);
    return { tag: f.tag, bytes: f.bytes, requestedAt: f.requestedAt, startedAt: f.startedAt };
  }

  /** Current rate of a flow in bytes/ms (0 while its latency runs). */
  rateOf(id: number): number {
    const f = this.flows[id];
    return f?.active ? f.rate : 0;
  }

  private share(f: Flow<T>): number {
    let r = Infinity;
    for (const l of f.links) {
      const s = this.cap[l]! / this.onLink[l]!.size;
      if (s < r) r = s;
    }
    return r;
  }

  /** New rates (and finish events) for the flows on `links`. */
  private reshare(links: number[], now: number): void {
    for (const l of links)
      for (const id of this.onLink[l]!) {
        const f = this.flows[id]!;
        const r = this.share(f);
        if (r === f.rate) continue;
        const moved = Math.min(f.remaining, f.rate * (now - f.last));
        if (this.moved && moved > 0) this.moved(f.tag, f.last, now, moved);
        f.remaining -= moved;
        f.last = now;
        f.rate = r;
        f.version = ++this.versions;
        this.rateUpdates++;
        this.queue.push(now + f.remaining / r, this.kinds.finish, id, f.version);
      }
  }
}
