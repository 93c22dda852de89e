/** Small bounded helpers for the discovery state machines; time is always injected. */

/** Token bucket: `rate` tokens per second, at most `burst` stored. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Per-key token buckets, at most `maxKeys` of them (the least recently used key is dropped). */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 1024,
  ) {}
  take(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (b) this.buckets.delete(key);
    else {
      b = new TokenBucket(this.rate, this.burst, now);
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    return b.take(now);
  }
}

/** Set of recently seen keys with expiry and a size bound (oldest evicted first). */
export class ExpiringSet {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
  ) {}
  /** True if `key` was already present (and not expired); records it either way. */
  checkAndAdd(key: string, now: number): boolean {
    this.sweep(now);
    const exp = this.seen.get(key);
    if (exp !== undefined && exp > now) return true;
    this.seen.delete(key);
    if (this.seen.size >= this.max) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, now + this.ttlMs);
    return false;
  }
  /** Records `key` (refreshing its expiry). */
  add(key: string, now: number): void {
    this.sweep(now);
    this.seen.delete(key);
    if (this.seen.size >= this.max) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, now + this.ttlMs);
  }
  has(key: string, now: number): boolean {
    const exp = this.seen.get(key);
    return exp !== undefined && exp > now;
  }
  get size(): number {
    return this.seen.size;
  }
  private sweep(now: number): void {
    // Entries are in insertion order, so expiry times are non-decreasing: stop at the first live one.
    for (const [k, exp] of this.seen) {
      if (exp > now) break;
      this.seen.delete(k);
    }
  }
}
