/**
 * Content-defined versus fixed v2 segmentation: how much of a file's content information survives
 * an edit. npm run build && node dist/bench/contentinfo-cdc.js [--size MiB]
 * For each edit, hashes the original and the edited content (v2, both chunkings) and reports the
 * share of the edited version's segments (and bytes) whose segment ID already existed in the original,
 * i.e. what a peer that cached the old version would not need to fetch again.
 */
import { CdcChunker, segmentLengths } from '../src/protocol/pccrc/chunker.js';
import { hashStream } from '../src/protocol/pccrc/hash.js';
import type { ContentInfo } from '../src/protocol/pccrc/types.js';
import { pseudoRandomBytes, withInsertion } from './contentinfo-data.js';
import { exitOnHelp } from './args.js';

exitOnHelp(import.meta.url, { size: { type: 'string', default: '64' } });

const i = process.argv.indexOf('--size');
const sizeMiB = i >= 0 ? Number(process.argv[i + 1]) : 64;
if (!Number.isFinite(sizeMiB) || sizeMiB <= 0) throw new Error('--size needs a positive number of MiB');
const original = pseudoRandomBytes(Math.round(sizeMiB * 1024 * 1024), 'bench cdc');
const mid = Math.floor(original.length / 2);

function overwrite(data: Buffer, at: number, n: number): Buffer {
  const out = Buffer.from(data);
  for (let k = 0; k < n; k++) out[at + k] = out[at + k]! ^ 0xff;
  return out;
}

const edits: Array<[string, Buffer]> = [
  ['insert 1 byte at offset 1000', withInsertion(original, 1000, Buffer.from([0x42]))],
  ['insert 100 bytes at offset 1000', withInsertion(original, 1000, pseudoRandomBytes(100, 'ins100'))],
  ['insert 4 KiB at offset 1000', withInsertion(original, 1000, pseudoRandomBytes(4096, 'ins4k'))],
  ['insert 100 bytes in the middle', withInsertion(original, mid, pseudoRandomBytes(100, 'mid100'))],
  ['overwrite 100 bytes in the middle', overwrite(original, mid, 100)],
  [
    'delete 10 KiB at offset 1 MiB',
    Buffer.concat([original.subarray(0, 1 << 20), original.subarray((1 << 20) + 10240)]),
  ],
];

async function hash(data: Buffer, chunking: 'cdc' | 'fixed'): Promise<ContentInfo> {
  async function* pieces() {
    for (let k = 0; k < data.length; k += 4 << 20) yield data.subarray(k, k + (4 << 20));
  }
  return hashStream(pieces(), { secret: Buffer.from('bench'), version: 2, chunking });
}

function shared(before: ContentInfo, after: ContentInfo): { segs: number; bytes: number } {
  const ids = new Set(before.segments.map((s) => s.segmentId.toString('hex')));
  const hit = after.segments.filter((s) => ids.has(s.segmentId.toString('hex')));
  return {
    segs: hit.length / after.segments.length,
    bytes: hit.reduce((n, s) => n + s.length, 0) / after.contentLength,
  };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const base = { cdc: await hash(original, 'cdc'), fixed: await hash(original, 'fixed') };
const lengths = segmentLengths(new CdcChunker(), original);
console.log(
  `original: ${sizeMiB} MiB pseudo-random; cdc ${base.cdc.segments.length} segments (mean ${(original.length / lengths.length / 1024).toFixed(1)} KiB, ${lengths.filter((n) => n === 131072).length} at the 128 KiB maximum); fixed ${base.fixed.segments.length} segments`,
);
console.log('| edit | cdc shared segments | cdc shared bytes | fixed shared segments | fixed shared bytes |');
console.log('|---|---:|---:|---:|---:|');
for (const [name, data] of edits) {
  const c = shared(base.cdc, await hash(data, 'cdc'));
  const f = shared(base.fixed, await hash(data, 'fixed'));
  console.log(`| ${name} | ${pct(c.segs)} | ${pct(c.bytes)} | ${pct(f.segs)} | ${pct(f.bytes)} |`);
}
