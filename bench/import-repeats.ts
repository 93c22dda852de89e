/**
 * `cache import` of a package whose records repeat (issue 27.12): one v1 segment with one 100-byte
 * block, its SEGMENT and BLOCK records written N times, imported into a fresh store. Prints the
 * report and the time.
 *   npm run build && node dist/bench/import-repeats.js [--records 200000]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { BlockStore } from '../src/cache/store.js';
import type { SegmentMeta } from '../src/cache/meta.js';
import { encodeBlockHead, encodeEnd, encodeHeader, encodeSegmentRecord } from '../src/cache/package-format.js';
import { segmentIdOf, segmentSecret } from '../src/protocol/pccrc/keys.js';

const { values } = benchArgs(import.meta.url, { options: { records: { type: 'string', default: '200000' } } });
const N = Number(values.records);

const block = randomBytes(100);
const blockHash = createHash('sha256').update(block).digest();
const hod = createHash('sha256').update(blockHash).digest();
const kp = segmentSecret(1, randomBytes(32), hod);
const meta: SegmentMeta = {
  segmentId: segmentIdOf(1, kp, hod),
  version: 1,
  hashAlgorithm: 'SHA-256',
  hod,
  kp,
  length: block.length,
  blockSize: 65536,
  blockHashes: [blockHash],
};
const dir = await mkdtemp(join(tmpdir(), 'pd-bench-import-'));
try {
  const pkg = join(dir, 'repeats.pdpkg');
  const seg = encodeSegmentRecord(meta);
  const blk = Buffer.concat([encodeBlockHead(0, block.length), block]);
  const parts: Buffer[] = [encodeHeader()];
  for (let i = 0; i < N; i++) parts.push(seg, blk);
  parts.push(encodeEnd(N, N, N * block.length));
  await writeFile(pkg, Buffer.concat(parts));
  const store = await BlockStore.open({ dir: join(dir, 'cache'), limitBytes: 1 << 30, fsync: false });
  const t0 = performance.now();
  const report = await store.importPackage(pkg);
  const s = (performance.now() - t0) / 1000;
  await store.close();
  console.log(`${N} repeated records: ${JSON.stringify(report)} in ${s.toFixed(2)} s`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
