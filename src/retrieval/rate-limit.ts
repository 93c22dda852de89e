/**
 * Token bucket for the upload cap of the MS-PCCRR server (what this machine gives to peers).
 * Pure: the clock is injected, nothing sleeps here; the server waits the delay `reserve` returns.
 *
 * Reservations may drive the bucket into debt: a response of n bytes reserved now may be sent
 * after `(n - tokens) / rate` seconds, and later reservations queue behind it, so concurrent
 * responses share the cap first come, first served and the long-run rate never exceeds
 * `rate` bytes/s plus one burst.
 */
export interface TokenBucketOptions {
  /** Bytes per second; must be positive. */
  rate: number;
  /** Bucket size in bytes (what may go out at once after idling). Default: max(64 KiB + 1 KiB, rate / 10). */
  burst?: number;
  /** Milliseconds clock (default Date.now). */
  now?: () => number;
}

export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly now: () => number;

  constructor(opts: TokenBucketOptions) {
    if (!(opts.rate > 0) || !Number.isFinite(opts.rate))
      throw new RangeError(`rate must be a positive number of bytes/s, got ${opts.rate}`);
    this.rate = opts.rate;
    this.burst = opts.burst ?? Math.max(65536 + 1024, Math.round(opts.rate / 10));
    if (!(this.burst > 0)) throw new RangeError(`burst must be positive, got ${this.burst}`);
    this.now = opts.now ?? Date.now;
    this.tokens = this.burst;
    this.last = this.now();
  }

  private refill(): void {
    const t = this.now();
    if (t > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.rate) / 1000);
      this.last = t;
    }
  }

  /** How long (ms) a reservation of `n` bytes made now would wait, without making it. */
  waitFor(n: number): number {
    this.refill();
    const after = this.tokens - n;
    return after >= 0 ? 0 : Math.ceil((-after * 1000) / this.rate);
  }

  /** Takes `n` bytes from the bucket; returns how long (ms) to wait before sending them. */
  reserve(n: number): number {
    const wait = this.waitFor(n);
    this.tokens -= n;
    return wait;
  }

  /** The bucket's clock (ms). */
  time(): number {
    return this.now();
  }

  /** Bytes available right now (negative while in debt). */
  available(): number {
    this.refill();
    return this.tokens;
  }
}
