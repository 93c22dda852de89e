import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashFile } from '../../src/origin/hash-file.js';
import { addFile } from '../../src/cache/add.js';
import { BlockStore } from '../../src/cache/store.js';
import { tempDir } from './make.js';

t.test('addFile stores every v2 segment of a file and reports the ones that do not match', async (t) => {
  const dir = await tempDir(t);
  const data = randomBytes(1024 * 1024 + 123);
  const file = join(dir, 'f');
  await writeFile(file, data);
  const ci = await hashFile(file, { secret: Buffer.from('s'), version: 2, chunking: 'fixed' });
  t.ok(ci.segments.length > 10);
  const store = await BlockStore.open({ dir: join(dir, 'cache'), limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  const rep = await addFile(store, ci, file);
  t.match(rep, {
    segments: ci.segments.length,
    blocks: ci.segments.length,
    stored: ci.segments.length,
    bytes: data.length,
    mismatches: [],
  });
  for (const seg of ci.segments) {
    t.ok(store.isComplete(seg.segmentId));
    t.same(await store.readBlock(seg.segmentId, 0), data.subarray(seg.offset, seg.offset + seg.length));
  }
  // a copy with one byte changed in segment 3, and cut inside the last segment
  await store.clear();
  const changed = Buffer.from(data);
  changed[ci.segments[3]!.offset + 7]! ^= 1;
  await writeFile(file, changed.subarray(0, data.length - 50));
  const rep2 = await addFile(store, ci, file);
  const last = ci.segments.length - 1;
  t.same(
    rep2.mismatches.map((m) => [m.segment, m.block, m.reason]),
    [
      [3, 0, 'hash'],
      [last, 0, 'short file'],
    ],
  );
  t.equal(rep2.stored, ci.segments.length - 2);
  t.notOk(store.hasBlock(ci.segments[3]!.segmentId, 0));
  t.ok(store.hasBlock(ci.segments[4]!.segmentId, 0));
});
