/** Bounded, seeded mutation fuzz of package import: every outcome is a count or a PackageError. */
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { PackageError } from '../../src/cache/errors.js';
import { randomV1, randomV2, tempDir, putAll } from './make.js';

/** xorshift32: deterministic, so a failure names its iteration. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

t.test('mutated packages never crash import and never store unverified data', async (t) => {
  const dir = await tempDir(t);
  const segs = [randomV1(2, 4000), randomV2(3000)];
  const src = await BlockStore.open({ dir: join(dir, 'src'), limitBytes: 1 << 24 });
  t.teardown(() => src.close());
  for (const s of segs) {
    await src.addSegment(s.meta);
    await putAll(src, s);
  }
  const pkg = join(dir, 'p.pdpkg');
  await src.exportPackage(pkg);
  const good = await readFile(pkg);
  const dst = await BlockStore.open({ dir: join(dir, 'dst'), limitBytes: 1 << 24 });
  t.teardown(() => dst.close());
  const rand = rng(0x5eed);
  const outcomes = { ok: 0, rejectedBlocks: 0, packageErrors: 0 };
  for (let iter = 0; iter < 150; iter++) {
    const b = Buffer.from(good);
    const kind = iter % 3;
    const n = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < n; k++) {
      // bias half the mutations into the first 300 bytes, where the headers and metadata live
      const at = rand() < 0.5 ? Math.floor(rand() * 300) : Math.floor(rand() * b.length);
      b[at] = Math.floor(rand() * 256);
    }
    const data = kind === 2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
    await writeFile(pkg, data);
    try {
      const r = await dst.importPackage(pkg);
      outcomes.ok++;
      outcomes.rejectedBlocks += r.rejected;
    } catch (err) {
      if (!(err instanceof PackageError)) {
        t.fail(`iteration ${iter}: unexpected ${(err as Error).name}: ${(err as Error).message}`);
        continue;
      }
      outcomes.packageErrors++;
    }
  }
  t.comment(JSON.stringify(outcomes));
  t.ok(outcomes.packageErrors > 0 && outcomes.ok > 0, 'both outcomes exercised');
  // whatever got in is exactly the original data
  for (const s of segs)
    for (const i of dst.presentBlocks(s.meta.segmentId)) t.same(await dst.readBlock(s.meta.segmentId, i), s.blocks[i]);
  t.same((await dst.verifyAll()).bad, []);
  t.equal(dst.stats().corruptBlocks, 0);
});
