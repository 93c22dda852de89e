/**
 * What the status report needs over time, bounded: byte totals by source sampled once a minute
 * (the last day), for "share of bytes from peers over the last hour / day"; and the peers that
 * failed or were banned in downloads (the last 256 such peers). Pure: the clock is passed in.
 */
import type { ByteSource } from '../engine/types.js';

export interface WindowShare extends Record<ByteSource, number> {
  /** The window actually covered (shorter than asked while the daemon is younger), seconds. */
  seconds: number;
  bytes: number;
  /** fromPeers / bytes (null when nothing was downloaded in the window). */
  peerShare: number | null;
  /** (fromPeers + fromCache) / bytes: what did not cross the WAN. */
  offloadShare: number | null;
}

interface Sample extends Record<ByteSource, number> {
  t: number;
}

export const HISTORY_SAMPLE_MS = 60_000;
const DAY_MS = 86_400_000;

export class ByteHistory {
  private readonly samples: Sample[] = [];
  constructor(private readonly keepMs = DAY_MS + HISTORY_SAMPLE_MS) {}

  /** Records the cumulative totals at time t (call about once a minute, and at start). */
  record(t: number, totals: Record<ByteSource, number>): void {
    this.samples.push({ t, fromOrigin: totals.fromOrigin, fromPeers: totals.fromPeers, fromCache: totals.fromCache });
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.keepMs) this.samples.shift();
  }

  /** Bytes by source over the last `ms` (from the newest sample at or before now - ms, else the oldest). */
  window(now: number, current: Record<ByteSource, number>, ms: number): WindowShare {
    const cutoff = now - ms;
    let base: Sample | undefined;
    for (const s of this.samples) {
      if (s.t <= cutoff) base = s;
      else break;
    }
    base ??= this.samples[0] ?? { t: now, fromOrigin: 0, fromPeers: 0, fromCache: 0 };
    const d: Record<ByteSource, number> = {
      fromOrigin: Math.max(0, current.fromOrigin - base.fromOrigin),
      fromPeers: Math.max(0, current.fromPeers - base.fromPeers),
      fromCache: Math.max(0, current.fromCache - base.fromCache),
    };
    const bytes = d.fromOrigin + d.fromPeers + d.fromCache;
    return {
      ...d,
      seconds: Math.max(0, (now - base.t) / 1000),
      bytes,
      peerShare: bytes > 0 ? d.fromPeers / bytes : null,
      offloadShare: bytes > 0 ? (d.fromPeers + d.fromCache) / bytes : null,
    };
  }

  get size(): number {
    return this.samples.length;
  }
}

/** One peer's record in downloads where it failed at least once. */
export interface PeerTrouble {
  address: string;
  /** Downloads in which it was banned (sent a block that failed verification). */
  bans: number;
  /** Failed block requests (timeouts, errors, busy), all downloads. */
  failures: number;
  /** Block requests answered "not held". */
  notAvailable: number;
  /** Blocks it sent that failed verification. */
  badBlocks: number;
  /** Blocks it did deliver. */
  blocks: number;
  /** Last time it failed (ms since epoch). */
  lastFailure: number;
}

/** A per-job peer statistic as the engine reports it (src/engine/scheduler.ts PeerStat). */
export interface PeerStatLike {
  address: string;
  blocks: number;
  failures: number;
  notAvailable: number;
  badBlocks: number;
  banned: boolean;
}

export class PeerHealth {
  private readonly peers = new Map<string, PeerTrouble>();
  constructor(private readonly max = 256) {}

  /** Adds one finished download's per-peer statistics; peers that never failed are not kept. */
  addJob(now: number, stats: PeerStatLike[]): void {
    for (const s of stats) {
      if (s.failures === 0 && s.badBlocks === 0 && !s.banned) continue;
      let p = this.peers.get(s.address);
      if (!p) {
        p = { address: s.address, bans: 0, failures: 0, notAvailable: 0, badBlocks: 0, blocks: 0, lastFailure: now };
        this.peers.set(s.address, p);
      }
      p.bans += s.banned ? 1 : 0;
      p.failures += s.failures;
      p.notAvailable += s.notAvailable;
      p.badBlocks += s.badBlocks;
      p.blocks += s.blocks;
      p.lastFailure = now;
      // Most recent last (Map order): re-insert so the oldest trouble is dropped first.
      this.peers.delete(s.address);
      this.peers.set(s.address, p);
    }
    while (this.peers.size > this.max) this.peers.delete(this.peers.keys().next().value!);
  }

  /** Peers with failures, most recent first. */
  list(): PeerTrouble[] {
    return [...this.peers.values()].reverse().map((p) => ({ ...p }));
  }
  banned(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.bans > 0) n++;
    return n;
  }
  failed(): number {
    return this.peers.size;
  }
}
