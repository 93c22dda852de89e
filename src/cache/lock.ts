/** A minimal async mutex: runs critical sections one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
  /** Resolves once every section queued so far has finished. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
