/** Test helpers for the cache: real segments built from bytes with the MS-PCCRC recipe (protocol/contentinfo.md, "Keys and identifiers"). */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { SEGMENT_ID_CONSTANT, V1_BLOCK_SIZE } from '../../src/protocol/pccrc/types.js';
import type { SegmentMeta } from '../../src/cache/meta.js';

export interface TestSegment {
  meta: SegmentMeta;
  blocks: Buffer[];
  data: Buffer;
}

const KS = createHash('sha256').update('test secret').digest();

/** A v1 SHA-256 segment over `data` (blocks of 64 KiB, last may be short). */
export function v1Segment(data: Buffer): TestSegment {
  const blocks: Buffer[] = [];
  for (let o = 0; o < data.length; o += V1_BLOCK_SIZE)
    blocks.push(data.subarray(o, Math.min(data.length, o + V1_BLOCK_SIZE)));
  const blockHashes = blocks.map((b) => createHash('sha256').update(b).digest());
  const hod = createHash('sha256').update(Buffer.concat(blockHashes)).digest();
  const kp = createHmac('sha256', KS).update(hod).digest();
  const segmentId = createHmac('sha256', kp).update(hod).update(SEGMENT_ID_CONSTANT).digest();
  return {
    meta: {
      segmentId,
      version: 1,
      hashAlgorithm: 'SHA-256',
      hod,
      kp,
      length: data.length,
      blockSize: V1_BLOCK_SIZE,
      blockHashes,
    },
    blocks,
    data,
  };
}

export function randomV1(nBlocks: number, lastLen = V1_BLOCK_SIZE): TestSegment {
  return v1Segment(randomBytes((nBlocks - 1) * V1_BLOCK_SIZE + lastLen));
}

/** A v2 segment: one block = the whole segment, hash = first32(SHA-512). */
export function randomV2(len: number): TestSegment {
  return v2Segment(randomBytes(len));
}

/** A v2 segment over `data` (at most 128 KiB). */
export function v2Segment(data: Buffer): TestSegment {
  const hod = createHash('sha512').update(data).digest().subarray(0, 32);
  const ks = createHash('sha512').update('test secret').digest().subarray(0, 32);
  const kp = createHmac('sha512', ks).update(hod).digest().subarray(0, 32);
  const segmentId = createHmac('sha512', kp).update(hod).update(SEGMENT_ID_CONSTANT).digest().subarray(0, 32);
  return {
    meta: {
      segmentId,
      version: 2,
      hashAlgorithm: 'SHA-512/256t',
      hod,
      kp,
      length: data.length,
      blockSize: data.length,
      blockHashes: [],
    },
    blocks: [data],
    data,
  };
}

export async function tempDir(t: Test, prefix = 'peerdist-cache-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

export async function putAll(
  store: { putBlock(id: Buffer, i: number, d: Buffer): Promise<void> },
  s: TestSegment,
): Promise<void> {
  for (let i = 0; i < s.blocks.length; i++) await store.putBlock(s.meta.segmentId, i, s.blocks[i]!);
}
