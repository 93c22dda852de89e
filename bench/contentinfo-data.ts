/**
 * Deterministic pseudo-random content for content-information tests and benchmarks: the AES-256-CTR
 * keystream under key SHA-256(seed) and a zero IV. Same seed and length, same bytes, on any machine.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

function keystream(seed: string): ReturnType<typeof createCipheriv> {
  return createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
}

/** `length` pseudo-random bytes derived from `seed`. */
export function pseudoRandomBytes(length: number, seed = 'peerdist'): Buffer {
  return keystream(seed).update(Buffer.alloc(length));
}

/** Writes `length` pseudo-random bytes (the same bytes as pseudoRandomBytes) to `path`, 4 MiB at a time. */
export async function writePseudoRandomFile(path: string, length: number, seed = 'peerdist'): Promise<void> {
  const ks = keystream(seed);
  const zeros = Buffer.alloc(4 << 20);
  const fh = await open(path, 'w');
  try {
    for (let done = 0; done < length; ) {
      const n = Math.min(zeros.length, length - done);
      await fh.write(ks.update(zeros.subarray(0, n)));
      done += n;
    }
  } finally {
    await fh.close();
  }
}

/** `data` with `insert` spliced in at `at`. */
export function withInsertion(data: Buffer, at: number, insert: Buffer): Buffer {
  return Buffer.concat([data.subarray(0, at), insert, data.subarray(at)]);
}
