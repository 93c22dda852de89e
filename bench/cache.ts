/**
 * Block cache benchmark: write and read throughput of the BlockStore against plain sequential file I/O
 * of the same bytes on the same disk, plus the raw cost of the two candidate on-disk layouts.
 *   npm run build && node dist/bench/cache.js [--size MiB] [--dir DIR]
 * Default 1024 MiB of 64 KiB blocks (v1 segments of 32 MiB). Reads are page-cache warm for both sides.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { BlockStore } from '../src/cache/store.js';
import type { SegmentMeta } from '../src/cache/meta.js';
import { segmentIdOf, segmentSecret } from '../src/protocol/pccrc/keys.js';
import { V1_BLOCK_SIZE } from '../src/protocol/pccrc/types.js';

const { values } = benchArgs(import.meta.url, {
  options: { size: { type: 'string', default: '1024' }, dir: { type: 'string' } },
});
const SIZE_MIB = Number(values.size);
const BLOCK = V1_BLOCK_SIZE;
const PER_SEG = 512;
const totalBlocks = Math.max(1, Math.floor((SIZE_MIB * 1048576) / BLOCK));
const nSegs = Math.ceil(totalBlocks / PER_SEG);
const MiB = (totalBlocks * BLOCK) / 1048576;
const base = randomBytes(PER_SEG * BLOCK);
const ks = randomBytes(32);

/** Segment `s` = base with the segment number stamped into every block (distinct IDs and hashes). */
function segment(s: number): { meta: SegmentMeta; data: Buffer } {
  const n = Math.min(PER_SEG, totalBlocks - s * PER_SEG);
  const data = base.subarray(0, n * BLOCK);
  for (let i = 0; i < n; i++) data.writeUInt32BE(s, i * BLOCK);
  const blockHashes = Array.from({ length: n }, (_, i) =>
    createHash('sha256')
      .update(data.subarray(i * BLOCK, (i + 1) * BLOCK))
      .digest(),
  );
  const hod = createHash('sha256').update(Buffer.concat(blockHashes)).digest();
  const kp = segmentSecret(1, ks, hod);
  return {
    meta: {
      segmentId: segmentIdOf(1, kp, hod),
      version: 1,
      hashAlgorithm: 'SHA-256',
      hod,
      kp,
      length: data.length,
      blockSize: BLOCK,
      blockHashes,
    },
    data,
  };
}

const rate = (ms: number) => MiB / (ms / 1000);
const fmt = (x: number) => `${x.toFixed(0).padStart(6)} MiB/s`;

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function plainWrite(path: string): Promise<number> {
  let ms = 0;
  const fh = await open(path, 'w', 0o600);
  let pos = 0;
  for (let s = 0; s < nSegs; s++) {
    const { data } = segment(s);
    ms += await timed(async () => {
      for (let o = 0; o < data.length; o += BLOCK) {
        await fh.write(data, o, BLOCK, pos);
        pos += BLOCK;
      }
    });
  }
  ms += await timed(async () => {
    await fh.datasync();
    await fh.close();
  });
  return ms;
}

async function plainRead(path: string): Promise<number> {
  const buf = Buffer.alloc(BLOCK);
  return timed(async () => {
    const fh = await open(path, 'r');
    for (let pos = 0; pos < totalBlocks * BLOCK; pos += BLOCK) await fh.read(buf, 0, BLOCK, pos);
    await fh.close();
  });
}

async function storeWrite(
  dir: string,
  fsync: boolean,
  concurrency: number,
  segs: number,
): Promise<{ mibps: number; ids: Buffer[]; store: BlockStore }> {
  const store = await BlockStore.open({ dir, limitBytes: 2 ** 50, fsync });
  let ms = 0,
    bytes = 0;
  const ids: Buffer[] = [];
  for (let s = 0; s < segs; s++) {
    const { meta, data } = segment(s);
    ids.push(meta.segmentId);
    const n = meta.blockHashes.length;
    bytes += data.length;
    ms += await timed(async () => {
      await store.addSegment(meta);
      await pool(n, concurrency, (i) => store.putBlock(meta.segmentId, i, data.subarray(i * BLOCK, (i + 1) * BLOCK)));
    });
  }
  return { mibps: bytes / 1048576 / (ms / 1000), ids, store };
}

async function storeRead(store: BlockStore, ids: Buffer[], concurrency: number): Promise<number> {
  return timed(async () => {
    for (const id of ids) {
      const blocks = store.presentBlocks(id);
      await pool(blocks.length, concurrency, async (i) => {
        if (!(await store.readBlock(id, blocks[i]!))) throw new Error('missing block');
      });
    }
  });
}

/** Raw layout candidates (no index, no hashing): one file per block vs one sparse file per segment. */
async function layout(dir: string, perBlock: boolean, fsync: boolean, concurrency: number): Promise<number> {
  const d = await mkdtemp(join(dir, 'layout-'));
  const blk = base.subarray(0, BLOCK);
  const fhs: Awaited<ReturnType<typeof open>>[] = [];
  const ms = await timed(async () => {
    if (perBlock) {
      for (let s = 0; s < nSegs; s++) await mkdir(join(d, `s${s}`));
      await pool(totalBlocks, concurrency, async (i) => {
        const tmp = join(d, `t${i}`);
        const fh = await open(tmp, 'wx', 0o600);
        await fh.write(blk, 0, BLOCK, 0);
        if (fsync) await fh.datasync();
        await fh.close();
        await rename(tmp, join(d, `s${Math.floor(i / PER_SEG)}`, String(i % PER_SEG)));
      });
    } else {
      for (let s = 0; s < nSegs; s++) fhs.push(await open(join(d, `s${s}`), 'w', 0o600));
      await pool(totalBlocks, concurrency, async (i) => {
        const fh = fhs[Math.floor(i / PER_SEG)]!;
        await fh.write(blk, 0, BLOCK, (i % PER_SEG) * BLOCK);
        if (fsync) await fh.datasync();
      });
      for (const fh of fhs) await fh.close();
    }
  });
  await rm(d, { recursive: true, force: true });
  return ms;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(values.dir ?? tmpdir(), 'peerdist-bench-cache-'));
  try {
    console.log(
      `block cache benchmark: ${MiB} MiB in ${totalBlocks} blocks of 64 KiB (${nSegs} segments), dir ${root}`,
    );
    const hashMs = await timed(async () => {
      for (let i = 0; i < PER_SEG; i++)
        createHash('sha256')
          .update(base.subarray(i * BLOCK, (i + 1) * BLOCK))
          .digest();
    });
    console.log(
      `SHA-256 verify: ${((hashMs * 1000) / PER_SEG).toFixed(0)} us per 64 KiB block (${fmt((PER_SEG * BLOCK) / 1048576 / (hashMs / 1000))})`,
    );

    const pw = rate(await plainWrite(join(root, 'plain.bin')));
    const pr = rate(await plainRead(join(root, 'plain.bin')));
    await rm(join(root, 'plain.bin'));
    console.log(`plain sequential file   write ${fmt(pw)}   read ${fmt(pr)}`);
    // c = blocks written concurrently (a download engine fetches several blocks of a segment at once).
    // The c=1 fsync row writes only the first 2 segments (64 MiB): it is bounded by fdatasync latency.
    for (const [fsync, c, segs] of [
      [true, 1, Math.min(2, nSegs)],
      [true, 8, nSegs],
      [true, 32, nSegs],
      [false, 8, nSegs],
    ] as const) {
      const dir = join(root, `store-${fsync}-${c}`);
      const w = await storeWrite(dir, fsync, c, segs);
      const r1 = await storeRead(w.store, w.ids, 1);
      const r8 = await storeRead(w.store, w.ids, 8);
      await w.store.close();
      await rm(dir, { recursive: true, force: true });
      const readMiB = (Math.min(segs * PER_SEG, totalBlocks) * BLOCK) / 1048576;
      const rr = (ms: number) => readMiB / (ms / 1000);
      console.log(
        `store fsync=${fsync ? 'on ' : 'off'} c=${String(c).padEnd(2)}    write ${fmt(w.mibps)} (${(w.mibps / pw).toFixed(2)}x plain)   read c=1 ${fmt(rr(r1))} (${(rr(r1) / pr).toFixed(2)}x)   read c=8 ${fmt(rr(r8))} (${(rr(r8) / pr).toFixed(2)}x)${segs < nSegs ? `   [first ${readMiB} MiB]` : ''}`,
      );
    }
    for (const fsync of [true, false]) {
      const b = rate(await layout(root, true, fsync, 8));
      const s = rate(await layout(root, false, fsync, 8));
      console.log(
        `raw layout c=8 fsync=${fsync ? 'on ' : 'off'}   file per block (temp+rename) ${fmt(b)}   file per segment (pwrite) ${fmt(s)}`,
      );
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
