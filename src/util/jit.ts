/**
 * V8 compiles hot code on the assumption that no ArrayBuffer has ever been detached (its
 * "ArrayBufferDetaching" protector). The first detach in the process (undici's llhttp growing its
 * WebAssembly memory, during a daemon's first origin request) breaks that assumption once and for
 * all, and every optimized function that relied on it (Buffer reads, subarray, the block path's
 * codecs, the scheduler) is thrown away at once and compiled again: tens of functions in the middle
 * of a fresh daemon's first download (BENCHMARKS.md, "where the receiving daemon's per-download cost
 * goes"). Detaching one empty buffer at start-up, before anything is hot, makes V8 compile the
 * detach checks in from the start, which is the state every running daemon ends up in anyway.
 */
export function settleArrayBufferDetaching(): void {
  const ab = new ArrayBuffer(0);
  structuredClone(ab, { transfer: [ab] });
}
