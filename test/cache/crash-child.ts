/**
 * Child process for the crash test: opens the store, adds the segment from argv, writes blocks in a
 * loop forever and reports each stored block on stdout. The parent SIGKILLs it mid-write.
 */
import { BlockStore } from '../../src/cache/store.js';
import { v1Segment } from './make.js';
import { readFile } from 'node:fs/promises';

const [dir, dataPath] = process.argv.slice(2) as [string, string];
if (!dir) {
  process.stdout.write('1..0 # SKIP helper process for crash.test\n');
  process.exit(0);
}
const seg = v1Segment(await readFile(dataPath));
const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
await store.addSegment(seg.meta);
process.stdout.write('ready\n');
for (let i = 0; ; i = (i + 1) % seg.blocks.length) {
  await store.putBlock(seg.meta.segmentId, i, seg.blocks[i]!);
  process.stdout.write(`stored ${i}\n`);
}
