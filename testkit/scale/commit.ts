/**
 * What a block costs the cache when it arrives alone (issue 24 item 3): the block store commits
 * blocks in groups (src/cache/packs.ts: the bytes written, ONE fdatasync of the pack, ONE index
 * batch for every block that arrived meanwhile), so a daemon whose blocks arrive faster than a
 * commit takes (a loopback download) shares each commit among many blocks, while one whose blocks
 * trickle in (a WAN-bound or CPU-starved flash crowd: one block every 10-80 ms) pays a whole commit
 * per block. Measured in this process on a fresh store in the temp dir: `blocks` v2 blocks of
 * `size` bytes checked and stored with `concurrency` puts in flight, CPU (all threads) and wall
 * time; one in flight is one commit per block.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockStore, type SegmentMeta } from '../../src/cache/store.js';
import { SEGMENT_ID_CONSTANT } from '../../src/protocol/pccrc/types.js';

function v2Segment(data: Buffer): SegmentMeta {
  const hod = createHash('sha512').update(data).digest().subarray(0, 32);
  const kp = createHmac('sha512', 'scale commit').update(hod).digest().subarray(0, 32);
  const segmentId = createHmac('sha512', kp).update(hod).update(SEGMENT_ID_CONSTANT).digest().subarray(0, 32);
  return {
    segmentId,
    version: 2,
    hashAlgorithm: 'SHA-512/256t',
    hod,
    kp,
    length: data.length,
    blockSize: data.length,
    blockHashes: [],
  };
}

export interface StoreRun {
  concurrency: number;
  blocks: number;
  /** CPU ms per block (check + put), all threads of this process. */
  cpuMsPerBlock: number;
  /** Wall ms per block. */
  wallMsPerBlock: number;
}

export async function measureStore(blocks: number, size: number, concurrency: number): Promise<StoreRun> {
  const data = Array.from({ length: blocks }, () => randomBytes(size));
  const metas = data.map(v2Segment);
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-scale-commit-'));
  try {
    const store = await BlockStore.open({ dir, limitBytes: 4 * 2 ** 30, fsync: true });
    await store.addSegments(metas);
    let next = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < blocks) {
          const i = next++;
          if (!store.checkBlock(metas[i]!.segmentId, 0, data[i]!)) throw new Error('check failed');
          await store.putBlock(metas[i]!.segmentId, 0, data[i]!);
        }
      }),
    );
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    await store.close();
    return { concurrency, blocks, cpuMsPerBlock: (c.user + c.system) / 1000 / blocks, wallMsPerBlock: wall / blocks };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A commit's CPU and wall time: one block at a time against `concurrency` at a time, alternated `rounds` times (medians). */
export async function measureCommit(
  blocks = 512,
  size = 65536,
  concurrency = 16,
  rounds = 3,
  log: (m: string) => void = () => {},
): Promise<{ commitCpuMs: number; commitWallMs: number; alone: StoreRun[]; grouped: StoreRun[] }> {
  const alone: StoreRun[] = [];
  const grouped: StoreRun[] = [];
  // A warm-up run so that compilation does not fall on the first measured one.
  await measureStore(64, size, concurrency);
  for (let r = 0; r < rounds; r++) {
    const a = await measureStore(blocks, size, 1);
    const g = await measureStore(blocks, size, concurrency);
    alone.push(a);
    grouped.push(g);
    log(
      `store, ${blocks} blocks of ${size} bytes: one at a time ${a.cpuMsPerBlock.toFixed(3)} CPU ms / ${a.wallMsPerBlock.toFixed(2)} ms a block; ` +
        `${concurrency} at a time ${g.cpuMsPerBlock.toFixed(3)} CPU ms / ${g.wallMsPerBlock.toFixed(2)} ms`,
    );
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  return {
    commitCpuMs: med(alone.map((a, i) => a.cpuMsPerBlock - grouped[i]!.cpuMsPerBlock)),
    commitWallMs: med(alone.map((a) => a.wallMsPerBlock)),
    alone,
    grouped,
  };
}
