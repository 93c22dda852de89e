/** Fake clock, timers and randomness for the discovery state machines (no sockets, no real time). */
import { nullLogger } from '../../src/util/log.js';
import { newStats, type Runtime, type Timers } from '../../src/discovery/runtime.js';

export class FakeClock implements Timers {
  t = 1_000_000;
  private seq = 0;
  private readonly queue = new Map<number, { at: number; fn: () => void }>();
  readonly delays: number[] = [];
  now = () => this.t;
  set(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.delays.push(ms);
    this.queue.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clear(h: unknown): void {
    this.queue.delete(h as number);
  }
  get pending(): number {
    return this.queue.size;
  }
  /** Advances time, firing due timers in order (timers scheduled meanwhile fire too if due). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 100_000; guard++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.queue) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.queue.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** Random numbers from a list (cycled), so tests pick exact delays and damping outcomes. */
export function sequence(values: number[]): () => number {
  let k = 0;
  return () => values[k++ % values.length]!;
}

export function fakeRuntime(clock: FakeClock, random: () => number = () => 0.5): Runtime & { ids: string[] } {
  let n = 0;
  const ids: string[] = [];
  return {
    now: clock.now,
    random,
    timers: clock,
    newMessageId: () => {
      const id = `urn:uuid:00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
      ids.push(id);
      return id;
    },
    logger: nullLogger,
    stats: newStats(),
    ids,
  };
}
