/** A counting semaphore for hash jobs: at most `limit` hold a slot, the rest wait in order. */
export class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  acquire(): Promise<void> {
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.running++;
        resolve();
      }),
    );
  }

  release(): void {
    this.running--;
    this.waiting.shift()?.();
  }

  /** Lets every waiter through (on close: they see the abort and release at once). */
  drain(): void {
    while (this.waiting.length) this.waiting.shift()!();
  }
}
