/**
 * Bounded concurrency for a sequential producer: `await w.run(task)` starts the task and returns
 * once fewer than `size` tasks are in flight; `drain()` waits for all and rethrows the first failure.
 * Lets package import and `cache add` overlap block writes (and share fdatasync calls).
 */
export class Window {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;
  constructor(private readonly size: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    this.check();
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => {
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
    while (this.inFlight.size >= this.size) await Promise.race(this.inFlight);
    this.check();
  }

  async drain(): Promise<void> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure.err;
  }
}
