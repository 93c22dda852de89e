/**
 * Child process for the crash test: opens the store, adds the segment from argv, writes blocks in a
 * loop forever and reports each stored block on stdout. The parent SIGKILLs it mid-write. Mode `v2`:
 * v2 segments into pack files, 8 writes in flight, each evicted and stored again in turn.
 */
import { BlockStore } from '../../src/cache/store.js';
import { type TestSegment, v1Segment, v2Segment } from './make.js';
import { readFile } from 'node:fs/promises';

const [dir, dataPath, mode, packBytes] = process.argv.slice(2) as [string, string, string?, string?];
if (!dir) {
  process.stdout.write('1..0 # SKIP helper process for crash.test\n');
  process.exit(0);
}
const store = await BlockStore.open({
  dir,
  limitBytes: 1 << 30,
  ...(packBytes ? { packBytes: Number(packBytes) } : {}),
});
if (mode === 'v2') {
  // v2: one segment per 64 KiB of the data, written 8 at a time (group commits into packs), forever
  const data = await readFile(dataPath);
  const segs: TestSegment[] = [];
  for (let o = 0; o < data.length; o += 65536) segs.push(v2Segment(data.subarray(o, o + 65536)));
  await store.addSegments(segs.map((s) => s.meta));
  process.stdout.write('ready\n');
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (;;) {
        const i = next++ % segs.length;
        // a block already present returns at once: drop it now and then so writes keep coming
        await store.evictSegment(segs[i]!.meta.segmentId);
        await store.addSegment(segs[i]!.meta);
        await store.putBlock(segs[i]!.meta.segmentId, 0, segs[i]!.blocks[0]!);
        process.stdout.write(`stored ${i}\n`);
      }
    }),
  );
}
const seg = v1Segment(await readFile(dataPath));
await store.addSegment(seg.meta);
process.stdout.write('ready\n');
for (let i = 0; ; i = (i + 1) % seg.blocks.length) {
  await store.putBlock(seg.meta.segmentId, i, seg.blocks[i]!);
  process.stdout.write(`stored ${i}\n`);
}
