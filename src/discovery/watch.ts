/**
 * One open discovery watch: the per-segment peer table filled from accepted ProbeMatches, its
 * 'peer' events and waiters. The probing itself is done by the Prober that created it.
 */
import { EventEmitter } from 'node:events';
import { segmentIdHex } from '../protocol/pccrd/values.js';
import { ownKey } from './keys.js';
import type { Timers } from './runtime.js';

export interface PeerSighting {
  /** Upper-case hex segment ID. */
  segmentId: string;
  /** `host:port` from XAddrs. */
  address: string;
  /** v1: blocks the peer announced; v2: 1 when it has the segment. */
  blockCount: number;
  complete: boolean;
  firstSeen: number;
  lastSeen: number;
  /** Failures reported by the engine through reportFailure(). */
  failures: number;
}

/**
 * What the engine holds while it needs segments. Events: 'peer' (PeerSighting) for a new peer or a
 * changed count; 'close'. Probing continues until close().
 */
export interface SegmentWatch extends EventEmitter {
  peers(segmentId: Buffer): PeerSighting[];
  reportFailure(address: string): void;
  waitForPeers(timeoutMs: number): Promise<void>;
  close(): void;
}

const MAX_PEERS_PER_SEGMENT = 64;

export class Watch<C = unknown> extends EventEmitter implements SegmentWatch {
  /** The prober's per-probe state for this watch. */
  readonly chunks: C[] = [];
  readonly timers = new Set<unknown>();
  closed = false;
  /**
   * Peers by segment (upper-case hex ID): the one sighting itself while a segment has one peer (the
   * usual case: a Map per segment cost about 150 bytes of heap for each of the ~14,400 segments of
   * 1 GiB of v2 content, issue 25 target 6), a Map by address from the second peer on.
   */
  private readonly table = new Map<string, PeerSighting | Map<string, PeerSighting>>();
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly onClose: (w: Watch<C>) => void,
    private readonly clock: Timers,
  ) {
    super();
  }

  /** `segmentId` is upper-case hex (may be a substring of a datagram's hex: it is copied when kept). */
  upsert(segmentId: string, address: string, blockCount: number, complete: boolean, now: number): void {
    const at = this.table.get(segmentId);
    const old =
      at === undefined ? undefined : at instanceof Map ? at.get(address) : at.address === address ? at : undefined;
    if (old) {
      old.lastSeen = now;
      if (old.blockCount === blockCount && old.complete === complete) return;
      old.blockCount = blockCount;
      old.complete = complete;
      this.announce({ ...old });
      return;
    }
    if (at instanceof Map && at.size >= MAX_PEERS_PER_SEGMENT) return;
    // One copy of the key per segment: the first sighting's, shared by the later ones.
    const key =
      at === undefined ? ownKey(segmentId) : at instanceof Map ? at.values().next().value!.segmentId : at.segmentId;
    const p: PeerSighting = {
      segmentId: key,
      address,
      blockCount,
      complete,
      firstSeen: now,
      lastSeen: now,
      failures: 0,
    };
    if (at === undefined) this.table.set(key, p);
    else if (at instanceof Map) at.set(address, p);
    else
      this.table.set(
        key,
        new Map([
          [at.address, at],
          [address, p],
        ]),
      );
    this.announce({ ...p });
  }

  private announce(p: PeerSighting): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    this.emit('peer', p);
  }

  /** Known peers for a segment: fewest failures first, then complete, more blocks, earliest seen. */
  peers(segmentId: Buffer): PeerSighting[] {
    const at = this.table.get(segmentIdHex(segmentId));
    if (!at) return [];
    if (!(at instanceof Map)) return [{ ...at }];
    return [...at.values()]
      .map((p) => ({ ...p }))
      .sort(
        (a, b) =>
          a.failures - b.failures ||
          Number(b.complete) - Number(a.complete) ||
          b.blockCount - a.blockCount ||
          a.firstSeen - b.firstSeen,
      );
  }

  reportFailure(address: string): void {
    for (const at of this.table.values()) {
      const p = at instanceof Map ? at.get(address) : at.address === address ? at : undefined;
      if (p) p.failures++;
    }
  }

  addresses(): string[] {
    const out: string[] = [];
    for (const at of this.table.values()) {
      if (at instanceof Map) out.push(...at.keys());
      else out.push(at.address);
    }
    return out;
  }

  private hasPeers(): boolean {
    return this.table.size > 0;
  }

  /** Resolves once any watched segment has a peer, or after timeoutMs (never rejects). */
  waitForPeers(timeoutMs: number): Promise<void> {
    if (this.closed || this.hasPeers() || !(timeoutMs > 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const timers = this.clock;
      let h: unknown;
      const wake = () => {
        timers.clear(h);
        this.timers.delete(h);
        this.waiters.delete(wake);
        resolve();
      };
      h = timers.set(wake, timeoutMs);
      this.timers.add(h);
      this.waiters.add(wake);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
    for (const wake of [...this.waiters]) wake();
    this.waiters.clear();
    this.emit('close');
  }
}
