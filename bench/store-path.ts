/**
 * The receiving daemon's cache path alone (issue 25): N v2 segments of one block each (128 KiB, 128 MiB
 * in all by default) registered, then each block checked (checkBlock: the SHA-512 a download does as
 * the block arrives) and stored (putBlock) 16 at a time, then every block read back verified
 * (readBlock: what a serving daemon and a late reader do). Prints the CPU time of the process (all
 * threads: main, libuv pool, V8) per GiB for each phase. With `--base DIR` (a built tree of another
 * commit) the two builds alternate in one run, so the comparison holds on a busy machine.
 *   npm run build && node dist/bench/store-path.js [--blocks 1024] [--size 131072] [--base /tmp/base/dist]
 *     [--alternations 3] [--fsync false] [--dir DIR]
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchArgs } from './args.js';
import type { BlockStore as Store, SegmentMeta } from '../src/cache/store.js';
import { SEGMENT_ID_CONSTANT } from '../src/protocol/pccrc/types.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    blocks: { type: 'string', default: '1024' },
    size: { type: 'string', default: '131072' },
    base: { type: 'string' },
    alternations: { type: 'string', default: '3' },
    fsync: { type: 'string', default: 'true' },
    dir: { type: 'string' },
  },
});
const N = Number(values.blocks);
const SIZE = Number(values.size);
const CONCURRENCY = 16;
const GIB = 1024 ** 3;

function v2Segment(data: Buffer): SegmentMeta {
  const hod = createHash('sha512').update(data).digest().subarray(0, 32);
  const kp = createHmac('sha512', 'bench secret').update(hod).digest().subarray(0, 32);
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

const blocks = Array.from({ length: N }, () => randomBytes(SIZE));
const metas = blocks.map(v2Segment);
const here = dirname(fileURLToPath(import.meta.url));
const builds: [string, string][] = [['this', resolve(here, '..')]];
if (values.base) builds.unshift(['base', resolve(values.base)]);

async function pool(fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await fn(next++);
    }),
  );
}

function cpu(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

async function run(name: string, root: string): Promise<string> {
  const { BlockStore } = (await import(pathToFileURL(join(root, 'src/cache/store.js')).href)) as {
    BlockStore: typeof Store;
  };
  const dir = await mkdtemp(join(values.dir ?? tmpdir(), 'peerdist-bench-store-'));
  try {
    const store = await BlockStore.open({ dir, limitBytes: 4 * GIB, fsync: values.fsync !== 'false' });
    await store.addSegments(metas);
    const gib = (N * SIZE) / GIB;
    const load = loadavg()[0]!.toFixed(1);
    let c0 = process.cpuUsage();
    let t0 = performance.now();
    await pool(async (i) => {
      const id = metas[i]!.segmentId;
      if (!store.checkBlock(id, 0, blocks[i]!)) throw new Error('check failed');
      await store.putBlock(id, 0, blocks[i]!);
    });
    const put = cpu(c0) / gib;
    const putWall = performance.now() - t0;
    c0 = process.cpuUsage();
    t0 = performance.now();
    await pool(async (i) => {
      const got = await store.readBlock(metas[i]!.segmentId, 0, 'peer');
      if (!got?.equals(blocks[i]!)) throw new Error(`block ${i} read back wrong`);
    });
    const read = cpu(c0) / gib;
    const readWall = performance.now() - t0;
    await store.close();
    return `| ${name} | ${load} | ${put.toFixed(2)} | ${putWall.toFixed(0)} | ${read.toFixed(2)} | ${readWall.toFixed(0)} |`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

process.stdout.write(`${N} v2 blocks of ${SIZE} bytes, ${CONCURRENCY} in flight, fsync ${values.fsync}\n`);
process.stdout.write(
  '| build | load | check+put CPU s/GiB | put wall ms | read CPU s/GiB | read wall ms |\n|---|---:|---:|---:|---:|---:|\n',
);
for (let a = 0; a < Number(values.alternations); a++)
  for (const [name, root] of builds) process.stdout.write(`${await run(name, root)}\n`);
