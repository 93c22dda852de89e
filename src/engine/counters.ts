/** Byte accounting of one job, mirrored into the engine's totals. */
import type { ByteCounts, ByteSource } from './types.js';

/** A counted quantity: a ByteCounts field, or content bytes done (of any source). */
export type CountedField = keyof ByteCounts | 'bytesDone';
/** Counter deltas reported to the engine's totals. */
export type CounterSink = (field: CountedField, n: number) => void;

export class JobCounters {
  readonly counts: ByteCounts & { bytesDone: number } = {
    fromOrigin: 0,
    fromPeers: 0,
    fromCache: 0,
    contentInfoBytes: 0,
    bytesDone: 0,
  };

  constructor(private readonly sink: CounterSink) {}

  add(field: CountedField, n: number): void {
    this.counts[field] += n;
    this.sink(field, n);
  }

  /** `n` content bytes obtained from `source`: counted there and as done. */
  content(source: ByteSource, n: number): void {
    this.add(source, n);
    this.add('bytesDone', n);
  }
}
