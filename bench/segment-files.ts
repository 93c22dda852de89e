/**
 * What the cache's file layout costs for v2 content, without the rest of the daemon: N blocks of
 * one v2 segment each (148 KB, 128 MiB in all by default), written 16 at a time either as one file
 * per segment (open, write, fdatasync, close: the BlockStore layout) or into one shared file with
 * grouped fdatasync (the packed layout considered for issue 11). Prints wall and CPU time of each,
 * with and without fdatasync, side by side in one run.
 *   npm run build && node dist/bench/segment-files.js [--blocks 904] [--dir DIR]
 */
import { constants } from 'node:fs';
import { type FileHandle, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';

const { values } = benchArgs(import.meta.url, {
  options: { blocks: { type: 'string', default: '904' }, dir: { type: 'string' } },
});
const N = Number(values.blocks);
const SIZE = 148 * 1024;
const CONCURRENCY = 16;
const data = Buffer.alloc(SIZE, 7);
const dir = await mkdtemp(join(values.dir ?? tmpdir(), 'peerdist-bench-segfiles-'));

async function pool(fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await fn(next++);
    }),
  );
}

async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  process.stdout.write(
    `| ${name} | ${(performance.now() - t0).toFixed(0)} | ${((c.user + c.system) / 1000).toFixed(0)} |\n`,
  );
}

/** One fdatasync at a time per file; writers that finished before it starts share it. */
function groupSync(fh: FileHandle): () => Promise<void> {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  return () => {
    if (queued) return queued;
    const q: Promise<void> = (running ?? Promise.resolve()).then(() => {
      if (queued === q) queued = undefined;
      running = fh.datasync();
      return running;
    });
    queued = q;
    return q;
  };
}

try {
  for (let f = 0; f < 256; f++) await mkdir(join(dir, f.toString(16).padStart(2, '0')));
  process.stdout.write(`${N} blocks of ${SIZE} bytes, ${CONCURRENCY} in flight, in ${dir}\n`);
  process.stdout.write('| layout | wall ms | CPU ms |\n|---|---:|---:|\n');
  for (const sync of [true, false]) {
    const tag = sync ? 'with fdatasync' : 'no fdatasync';
    await measure(`file per segment, ${tag}`, () =>
      pool(async (i) => {
        const path = join(dir, (i % 256).toString(16).padStart(2, '0'), `s${i}-${tag}`);
        const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
        await fh.write(data, 0, SIZE, 0);
        if (sync) await fh.datasync();
        await fh.close();
      }),
    );
    await measure(`one shared file, grouped fdatasync, ${tag}`, async () => {
      const fh = await open(join(dir, `pack-${tag}`), constants.O_RDWR | constants.O_CREAT, 0o600);
      const dsync = groupSync(fh);
      await pool(async (i) => {
        await fh.write(data, 0, SIZE, i * SIZE);
        if (sync) await dsync();
      });
      await fh.close();
    });
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
