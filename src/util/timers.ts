/**
 * Timers injected into state machines (discovery, the download engine) so tests can drive them
 * with a fake clock instead of waiting on the wall clock.
 */
export interface Timers {
  /**
   * Calls `fn` once after `ms`. `weak`: the timer alone must not keep the process alive
   * (Node's unref); fakes may ignore it.
   */
  set(fn: () => void, ms: number, weak?: boolean): unknown;
  clear(handle: unknown): void;
}

export const realTimers: Timers = {
  set: (fn, ms, weak) => {
    const t = setTimeout(fn, ms);
    if (weak) t.unref();
    return t;
  },
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};
