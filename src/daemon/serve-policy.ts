/**
 * What this machine gives to peers: the maximum cache entry age (older segments are neither
 * announced nor served, and are evicted) and the power rule (nothing is served while on battery
 * unless configured). Pure over injected clock and power reading; the daemon composes it.
 */
import type { BlockSource } from '../retrieval/block-responder.js';
import type { PowerSource } from './power.js';

export interface ServePolicyOptions {
  /** 0 = no age limit. */
  maxAgeMs: number;
  serveOnBattery: boolean;
  power: () => PowerSource;
  now?: () => number;
}

export interface AgedStore extends BlockSource {
  addedAt(segmentId: Buffer): number | undefined;
}

export class ServePolicy {
  private readonly now: () => number;
  constructor(private readonly o: ServePolicyOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Why we do not serve peers right now, or undefined when we do. */
  notServing(): string | undefined {
    if (!this.o.serveOnBattery && this.o.power() === 'battery') return 'on battery';
    return undefined;
  }

  /** True when the segment entered the cache longer ago than the maximum age. */
  tooOld(store: AgedStore, segmentId: Buffer): boolean {
    if (!(this.o.maxAgeMs > 0)) return false;
    const t = store.addedAt(segmentId);
    return t !== undefined && this.tooOldAt(t);
  }

  /** The same for a segment that entered the cache at `added` (ms since epoch). */
  tooOldAt(added: number): boolean {
    return this.o.maxAgeMs > 0 && this.now() - added > this.o.maxAgeMs;
  }

  /** The store as the retrieval server sees it: segments past the maximum age are not there. */
  source(store: AgedStore): BlockSource {
    return {
      getSegment: (id) => (this.tooOld(store, id) ? undefined : store.getSegment(id)),
      hasBlock: (id, i) => !this.tooOld(store, id) && store.hasBlock(id, i),
      presentBlocks: (id) => (this.tooOld(store, id) ? [] : store.presentBlocks(id)),
      readBlock: async (id, i, purpose) => (this.tooOld(store, id) ? undefined : store.readBlock(id, i, purpose)),
      ...(store.readBlockInto
        ? {
            readBlockInto: async (id: Buffer, i: number, dest: Buffer, purpose?: 'local' | 'peer') =>
              this.tooOld(store, id) ? undefined : store.readBlockInto!(id, i, dest, purpose),
          }
        : {}),
    };
  }
}
