import t, { type Test } from 'tap';
import { open, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { PackageError } from '../../src/cache/errors.js';
import {
  PACKAGE_MAGIC,
  HEADER_LEN,
  SEGMENT_REC_HEAD,
  BLOCK_REC_HEAD,
  encodeBlockHead,
  encodeEnd,
  encodeHeader,
  encodeSegmentRecord,
} from '../../src/cache/package-format.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

async function storeWith(t: Test, ...segs: ReturnType<typeof randomV1>[]) {
  const dir = await tempDir(t);
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30 });
  t.teardown(() => store.close());
  for (const s of segs) {
    await store.addSegment(s.meta);
    await putAll(store, s);
  }
  return { dir, store };
}

t.test('export/import round trip: byte-identical blocks in a fresh store', async (t) => {
  const a = randomV1(3, 12345),
    b = randomV2(100000),
    c = randomV1(2);
  const { dir, store } = await storeWith(t, a, b, c);
  const pkg = join(dir, 'out.pdpkg');
  const r = await store.exportPackage(pkg);
  t.same(r, { segments: 3, blocks: 6, bytes: a.data.length + b.data.length + c.data.length });
  t.equal((await stat(pkg)).mode & 0o777, 0o600, 'package holds Kp: owner-only');
  const head = await readFile(pkg);
  t.same(head.subarray(0, 8), PACKAGE_MAGIC);

  const { store: fresh } = await storeWith(t);
  t.same(await fresh.importPackage(pkg), { segments: 3, blocks: 6, rejected: 0, skipped: 0 });
  for (const s of [a, b, c]) {
    t.same(fresh.getSegment(s.meta.segmentId)?.kp, s.meta.kp);
    t.ok(fresh.isComplete(s.meta.segmentId));
    for (let i = 0; i < s.blocks.length; i++) t.same(await fresh.readBlock(s.meta.segmentId, i), s.blocks[i]);
  }

  // --segment subset, partial segment
  const { store: partial } = await storeWith(t);
  await partial.addSegment(a.meta);
  await partial.putBlock(a.meta.segmentId, 1, a.blocks[1]!);
  const pkg2 = join(dir, 'sub.pdpkg');
  t.same(await store.exportPackage(pkg2, [b.meta.segmentId]), { segments: 1, blocks: 1, bytes: b.data.length });
  t.same(await partial.importPackage(pkg2), { segments: 1, blocks: 1, rejected: 0, skipped: 0 });
  t.same(partial.presentBlocks(a.meta.segmentId), [1]);
  await t.rejects(store.exportPackage(join(dir, 'x.pdpkg'), [Buffer.alloc(32)]), { code: 'UNKNOWN_SEGMENT' });
});

t.test('a package with a bad block: rejected, counted, not stored', async (t) => {
  const a = randomV1(3);
  const { dir, store } = await storeWith(t, a);
  const pkg = join(dir, 'out.pdpkg');
  await store.exportPackage(pkg);
  // flip a byte inside block 1's data
  const off = HEADER_LEN + encodeSegmentRecord(a.meta).length + (BLOCK_REC_HEAD + 65536) + BLOCK_REC_HEAD + 500;
  const fh = await open(pkg, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, off);
  b[0]! ^= 0x55;
  await fh.write(b, 0, 1, off);
  await fh.close();
  const { store: fresh } = await storeWith(t);
  t.same(await fresh.importPackage(pkg), { segments: 1, blocks: 2, rejected: 1, skipped: 0 });
  t.same(fresh.presentBlocks(a.meta.segmentId), [0, 2]);
});

t.test('a segment whose Kp does not produce its ID is rejected with its blocks', async (t) => {
  const a = randomV1(1);
  const { dir, store } = await storeWith(t, a);
  const pkg = join(dir, 'out.pdpkg');
  await store.exportPackage(pkg);
  const buf = await readFile(pkg);
  const kpOff = HEADER_LEN + SEGMENT_REC_HEAD + 14 + 64; // after id and hod
  buf[kpOff]! ^= 1;
  await writeFile(pkg, buf);
  const { store: fresh } = await storeWith(t);
  t.same(await fresh.importPackage(pkg), { segments: 0, blocks: 0, rejected: 1, skipped: 0 });
  t.equal(fresh.getSegment(a.meta.segmentId), undefined);
});

t.test('truncated or garbage packages: clear error, nothing imported', async (t) => {
  const a = randomV1(2),
    b = randomV1(2);
  const { dir, store } = await storeWith(t, a, b);
  const pkg = join(dir, 'out.pdpkg');
  await store.exportPackage(pkg);
  const full = (await stat(pkg)).size;
  for (const cut of [full - 1, full - 17, full - 40000, HEADER_LEN + 3, 10]) {
    await store.exportPackage(pkg);
    await truncate(pkg, cut);
    const { store: fresh } = await storeWith(t);
    await t.rejects(fresh.importPackage(pkg), PackageError, `cut at ${cut}`);
    t.same(fresh.stats().segments, 0, `nothing imported (cut at ${cut})`);
  }
  await writeFile(pkg, Buffer.from('this is not a package at all, just some text'));
  const { store: fresh } = await storeWith(t);
  await t.rejects(fresh.importPackage(pkg), { code: 'BAD_PACKAGE', message: /bad magic/ });
  // a valid header then garbage
  await writeFile(
    pkg,
    Buffer.concat([
      (await readFile(pkg)).subarray(0, 0),
      PACKAGE_MAGIC,
      Buffer.from([0, 1]),
      Buffer.alloc(6),
      Buffer.from([0x42, 1, 2, 3]),
    ]),
  );
  await t.rejects(fresh.importPackage(pkg), { code: 'BAD_PACKAGE', message: /unknown record type/ });
  // trailing bytes after the end record
  await store.exportPackage(pkg);
  await writeFile(pkg, Buffer.concat([await readFile(pkg), Buffer.from([0])]));
  await t.rejects(fresh.importPackage(pkg), { code: 'BAD_PACKAGE', message: /trailing/ });
  t.equal(fresh.stats().segments, 0);
});

t.test('segment record codec: round trip and typed rejections', async (t) => {
  const { decodeSegmentBody } = await import('../../src/cache/package-format.js');
  for (const s of [randomV1(3, 10), randomV2(4096)]) {
    const rec = encodeSegmentRecord(s.meta);
    t.equal(rec[0], 1);
    t.equal(rec.readUInt32BE(1), rec.length - SEGMENT_REC_HEAD);
    t.same(decodeSegmentBody(rec.subarray(SEGMENT_REC_HEAD)), s.meta);
  }
  const body = encodeSegmentRecord(randomV1(2).meta).subarray(SEGMENT_REC_HEAD);
  const mut = (f: (b: Buffer) => void) => {
    const b = Buffer.from(body);
    f(b);
    return b;
  };
  t.throws(() => decodeSegmentBody(body.subarray(0, 10)), { code: 'BAD_PACKAGE', message: /truncated/ });
  t.throws(
    () =>
      decodeSegmentBody(
        mut((b) => {
          b[0] = 3;
        }),
      ),
    { code: 'BAD_PACKAGE', message: /version/ },
  );
  t.throws(
    () =>
      decodeSegmentBody(
        mut((b) => {
          b[1] = 9;
        }),
      ),
    { code: 'BAD_PACKAGE', message: /hash algorithm/ },
  );
  t.throws(
    () =>
      decodeSegmentBody(
        mut((b) => {
          b[2] = 48;
        }),
      ),
    { code: 'BAD_PACKAGE', message: /hash algorithm/ },
  );
  t.throws(() => decodeSegmentBody(body.subarray(0, body.length - 1)), {
    code: 'BAD_PACKAGE',
    message: /length does not match/,
  });
  t.throws(
    () =>
      decodeSegmentBody(
        mut((b) => {
          b[body.length - 1]! ^= 1;
        }),
      ),
    { code: 'BAD_PACKAGE', message: /hod/ },
    'v1 HoD check',
  );
  t.throws(
    () =>
      decodeSegmentBody(
        mut((b) => {
          b.writeUInt32BE(3 * 65536, 4);
        }),
      ),
    { code: 'BAD_PACKAGE', message: /blockHashes/ },
  );
});

t.test('repeated records: counted as skipped, not as imported, and not verified again (issue 27.12)', async (t) => {
  // One real segment, its record and its block record repeated N times (the report said
  // "imported 200000 segments" for 1 real one, after 77 s).
  const N = 20_000;
  const a = randomV1(1, 100);
  const seg = encodeSegmentRecord(a.meta);
  const blk = Buffer.concat([encodeBlockHead(0, a.blocks[0]!.length), a.blocks[0]!]);
  const { dir, store } = await storeWith(t);
  const pkg = join(dir, 'dup.pdpkg');
  const body: Buffer[] = [encodeHeader()];
  for (let i = 0; i < N; i++) body.push(seg, blk);
  body.push(encodeEnd(N, N, N * a.blocks[0]!.length));
  await writeFile(pkg, Buffer.concat(body));
  t.same(await store.importPackage(pkg), { segments: 1, blocks: 1, rejected: 0, skipped: 2 * (N - 1) });
  t.equal(store.stats().segments, 1);
  t.same(await store.readBlock(a.meta.segmentId, 0), a.blocks[0]);
  // Everything is already held the second time: nothing imported, every record skipped.
  t.same(await store.importPackage(pkg), { segments: 0, blocks: 0, rejected: 0, skipped: 2 * N });
  // A repeated record with other metadata under the same ID is a conflict: its blocks are rejected.
  const b = randomV1(2);
  const forged = { ...b.meta, segmentId: a.meta.segmentId };
  const mixed = join(dir, 'mixed.pdpkg');
  await writeFile(
    mixed,
    Buffer.concat([
      encodeHeader(),
      encodeSegmentRecord(forged),
      encodeBlockHead(1, b.blocks[1]!.length),
      b.blocks[1]!,
      encodeEnd(1, 1, b.blocks[1]!.length),
    ]),
  );
  t.same(await store.importPackage(mixed), { segments: 0, blocks: 0, rejected: 1, skipped: 0 });
});
