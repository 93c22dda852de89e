/**
 * The serving path's synchronous reads (issue 25): SegmentFiles.readIntoNow / readPackIntoNow read
 * with one pread on a descriptor that is already open, and say "not open" otherwise (the caller then
 * reads through libuv's pool); BlockStore.readBlockInto, which uses them, still verifies every
 * block it returns: a bad block in a pack or a segment file is not served and is dropped.
 */
import t from 'tap';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SegmentFiles } from '../../src/cache/segfiles.js';
import { BlockStore } from '../../src/cache/store.js';
import { randomV1, randomV2, tempDir } from './make.js';

t.test('readPackIntoNow / readIntoNow: bytes from an open descriptor, undefined when none is open', async (t) => {
  const dir = await tempDir(t);
  const files = new SegmentFiles(dir, false);
  await files.init();
  const dest = Buffer.alloc(64, 0x55);
  t.equal(files.readPackIntoNow(1, 0, 10, dest), undefined, 'a pack never opened');
  const data = Buffer.from('0123456789abcdefghij');
  await files.writePack(1, 0, data);
  t.equal(files.readPackIntoNow(1, 5, 10, dest), 10, 'open after its write: read at once');
  t.same(dest.subarray(0, 10), data.subarray(5, 15));
  t.equal(dest[10], 0x55, 'nothing written past the count');
  t.equal(files.readPackIntoNow(1, 15, 10, dest), 5, 'the file ends early: the count read');
  t.throws(() => files.readPackIntoNow(1, 0, 10, Buffer.alloc(4)), RangeError, 'a buffer too small');
  await files.removePack(1);
  t.equal(files.readPackIntoNow(1, 0, 10, dest), undefined, 'removed: no descriptor');
  const id = 'ab'.repeat(32);
  t.equal(files.readIntoNow(id, 0, 4, dest), undefined, 'a segment file never opened');
  await files.write(id, 100, Buffer.from('wxyz'));
  t.equal(files.readIntoNow(id, 100, 4, dest), 4);
  t.same(dest.subarray(0, 4), Buffer.from('wxyz'));
  await files.close();
  t.equal(files.readIntoNow(id, 100, 4, dest), undefined, 'closed: no descriptor');
});

t.test('readBlockInto reads a v2 block from its open pack synchronously and still verifies it', async (t) => {
  const dir = await tempDir(t);
  const s = randomV2(9000);
  const other = randomV2(5000);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  await store.addSegment(other.meta);
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  await store.putBlock(other.meta.segmentId, 0, other.blocks[0]!);
  const dest = Buffer.alloc(9016);
  // Started synchronously: the whole read and check happen before the promise is first awaited.
  const first = store.readBlockInto(s.meta.segmentId, 0, dest, 'peer');
  t.same(dest.subarray(0, 9000), s.blocks[0], 'the bytes are in place before anything is awaited');
  t.equal(await first, 9000);
  // One byte of the block changed on disk, under the open descriptor.
  const [p] = (await readdir(join(dir, 'packs'))).sort();
  const fh = await open(join(dir, 'packs', p!), 'r+');
  await fh.write(Buffer.from([s.data[200]! ^ 0xff]), 0, 1, 200);
  await fh.close();
  const corrupt: string[] = [];
  store.on('corrupt', (id: string) => corrupt.push(id));
  t.equal(await store.readBlockInto(s.meta.segmentId, 0, dest, 'peer'), undefined, 'a bad block is not served');
  t.same(corrupt, [s.meta.segmentId.toString('hex')], 'dropped and reported');
  t.equal(store.hasBlock(s.meta.segmentId, 0), false);
  t.equal(await store.readBlockInto(other.meta.segmentId, 0, dest, 'peer'), 5000, 'the good block beside it');
  t.same(dest.subarray(0, 5000), other.blocks[0]);
});

t.test('readBlockInto of a v1 block from its open segment file: verified, a bad one dropped', async (t) => {
  const dir = await tempDir(t);
  const s = randomV1(2);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  await store.addSegment(s.meta);
  await store.putBlock(s.meta.segmentId, 0, s.blocks[0]!);
  await store.putBlock(s.meta.segmentId, 1, s.blocks[1]!);
  const dest = Buffer.alloc(65536 + 16);
  const first = store.readBlockInto(s.meta.segmentId, 1, dest, 'peer');
  t.same(dest.subarray(0, 65536), s.blocks[1], 'read before anything is awaited');
  t.equal(await first, 65536);
  const idHex = s.meta.segmentId.toString('hex');
  const fh = await open(join(dir, 'blocks', idHex.slice(0, 2), idHex), 'r+');
  await fh.write(Buffer.from([s.blocks[0]![7]! ^ 1]), 0, 1, 7);
  await fh.close();
  t.equal(await store.readBlockInto(s.meta.segmentId, 0, dest, 'peer'), undefined, 'a bad block is not served');
  t.same(store.presentBlocks(s.meta.segmentId), [1]);
});
