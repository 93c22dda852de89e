/**
 * How late this process's own timers run, and how much that stretches a proven peer's first-byte
 * and between-reads limits (issue 25 target 4; protocol/pccrr.md "Our own lateness stretches a
 * proven peer's idle limits"). Pure: the caller passes the times (performance.now()).
 */

/** A late timer measures one wake-up of a starved process; an answer takes several on each side. */
export const IDLE_LAG_FACTOR = 8;
/** How long one late timer counts (the window of RecentLateness in the retrieval client). */
export const LATE_WINDOW_MS = 3000;

/**
 * The largest lateness recorded within the last `windowMs` (a sliding-window maximum: entries kept
 * in decreasing order of lateness, so the memory is bounded by the number of timers in a window).
 */
export class RecentLateness {
  private readonly at: number[] = [];
  private readonly late: number[] = [];
  private head = 0;

  constructor(readonly windowMs: number) {}

  /** A timer due at `now - lateMs` ran at `now`; negative or non-finite lateness counts as 0. */
  record(now: number, lateMs: number): void {
    const l = Number.isFinite(lateMs) && lateMs > 0 ? lateMs : 0;
    this.drop(now);
    // An entry no larger than the new one can never be the maximum again.
    while (this.late.length > this.head && this.late[this.late.length - 1]! <= l) {
      this.late.pop();
      this.at.pop();
    }
    this.at.push(now);
    this.late.push(l);
  }

  /** The largest lateness of the timers that ran in (now - windowMs, now]. */
  max(now: number): number {
    this.drop(now);
    return this.late.length > this.head ? this.late[this.head]! : 0;
  }

  private drop(now: number): void {
    while (this.head < this.at.length && this.at[this.head]! <= now - this.windowMs) this.head++;
    if (this.head > 32 && this.head * 2 > this.at.length) {
      this.at.splice(0, this.head);
      this.late.splice(0, this.head);
      this.head = 0;
    }
  }
}

/**
 * A proven peer's idle limit while our own timers run `lateMs` late: `baseMs + IDLE_LAG_FACTOR x
 * lateMs`, at most twice `baseMs`. Only our own lateness goes in, never anything a peer sends or
 * delays, so a peer cannot stretch it (short of loading our CPU, and then the cap holds).
 */
export function stretchedIdleMs(baseMs: number, lateMs: number): number {
  return baseMs + Math.min(baseMs, IDLE_LAG_FACTOR * Math.max(0, lateMs));
}
