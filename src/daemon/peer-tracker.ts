/**
 * Remembers the peers discovery reported to the engine, for status and metrics: wraps a
 * DiscoveryLike so every watch's 'peer' sightings are recorded (address -> last seen).
 */
import type { DiscoveryLike, SightingLike, WatchLike } from '../engine/types.js';

export class PeerTracker {
  private readonly seen = new Map<string, number>();
  /** Discovery attempts (one per watch: a set of segments probed for) and those that found a peer. */
  readonly discoveries = { attempts: 0, successes: 0 };
  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxAgeMs = 10 * 60_000,
  ) {}

  record(address: string): void {
    this.seen.set(address, this.now());
    if (this.seen.size > 4096) this.prune();
  }

  private prune(): void {
    const cutoff = this.now() - this.maxAgeMs;
    for (const [a, t] of this.seen) if (t < cutoff) this.seen.delete(a);
  }

  /** Peers sighted within the last maxAgeMs. */
  known(): string[] {
    this.prune();
    return [...this.seen.keys()].sort();
  }

  /** A DiscoveryLike that forwards to `inner` and records every sighting. */
  wrap(inner: DiscoveryLike): DiscoveryLike {
    const tracker = this;
    return {
      get initialWaitMs() {
        return inner.initialWaitMs;
      },
      onForeignProbe: inner.onForeignProbe ? (fn) => inner.onForeignProbe!(fn) : undefined,
      get bridged() {
        return inner.bridged;
      },
      announce: inner.announce ? (id) => inner.announce!(id) : undefined,
      watch(ids: Buffer[], version: 1 | 2): WatchLike {
        const w = inner.watch(ids, version);
        tracker.discoveries.attempts++;
        let found = false;
        w.on('peer', (p: SightingLike) => {
          tracker.record(p.address);
          if (!found) {
            found = true;
            tracker.discoveries.successes++;
          }
        });
        return w;
      },
    };
  }
}
