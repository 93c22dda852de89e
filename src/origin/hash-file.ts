/**
 * Hashing a file on disk into content information (the I/O edge around the pure streaming
 * hasher in src/protocol/pccrc/hash.ts).
 */
import { open } from 'node:fs/promises';
import { hashChunks, type HashOptions } from '../protocol/pccrc/hash.js';
import type { ContentInfo } from '../protocol/pccrc/types.js';

/** Read size for hashFile; two buffers of this size are used alternately. */
export const READ_SIZE = 4 * 1024 * 1024;

/** Reads a file with two alternating buffers: the next read runs while the current one is hashed. */
async function* readFileChunks(path: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  const bufs = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)];
  let which = 0;
  let pending = fh.read(bufs[0]!, 0, READ_SIZE, null);
  try {
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) return;
      const cur = bufs[which]!;
      which ^= 1;
      // Safe to refill the other buffer: the consumer finished with it before asking for this one.
      pending = fh.read(bufs[which]!, 0, READ_SIZE, null);
      signal?.throwIfAborted();
      yield cur.subarray(0, bytesRead);
    }
  } finally {
    await pending.catch(() => undefined); // never close under an in-flight read
    await fh.close();
  }
}

/** Content information for a file, streaming (constant memory, any size up to 2^53 bytes). */
export async function hashFile(path: string, opts: HashOptions): Promise<ContentInfo> {
  return hashChunks(readFileChunks(path, opts.signal), opts);
}
