/** Boundary sizes, hashed from real files: counts, lengths, every hash recomputed, round trips. */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pseudoRandomBytes, writePseudoRandomFile } from '../../../bench/contentinfo-data.js';
import { encodeContentInfo, parseContentInfo } from '../../../src/protocol/pccrc/codec.js';
import { hashStream } from '../../../src/protocol/pccrc/hash.js';
import { hashFile } from '../../../src/origin/hash-file.js';
import { contentInfoFromJson, contentInfoToJson } from '../../../src/protocol/pccrc/json.js';
import { segmentIdOf, segmentSecret, serverSecret } from '../../../src/protocol/pccrc/keys.js';
import { V1_SEGMENT_SIZE, V2_MAX_SEGMENT_SIZE, type ContentInfo } from '../../../src/protocol/pccrc/types.js';

const MiB = 1024 * 1024;
const SIZES = [0, 1, 65535, 65536, 65537, 32 * MiB, 32 * MiB + 1];
const secret = Buffer.from('boundary secret');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

function checkV1(t: Test, ci: ContentInfo, data: Buffer): void {
  const ks = serverSecret(1, secret);
  t.equal(ci.segments.length, Math.ceil(data.length / V1_SEGMENT_SIZE), 'v1 segment count');
  let blocks = 0;
  for (const [k, s] of ci.segments.entries()) {
    t.equal(s.offset, k * V1_SEGMENT_SIZE);
    const slice = data.subarray(s.offset, s.offset + V1_SEGMENT_SIZE);
    t.equal(s.length, slice.length, `segment ${k} length`);
    t.equal(s.blockHashes.length, Math.ceil(slice.length / 65536), `segment ${k} block count`);
    let ok = true;
    s.blockHashes.forEach((h, j) => {
      ok &&= h.equals(sha256(slice.subarray(j * 65536, (j + 1) * 65536)));
    });
    t.ok(ok, `segment ${k}: every block hash is SHA-256 of its slice`);
    t.same(s.hod, sha256(Buffer.concat(s.blockHashes)), `segment ${k}: HoD = H(block hashes)`);
    t.same(s.kp, segmentSecret(1, ks, s.hod), `segment ${k}: Kp`);
    t.same(s.segmentId, segmentIdOf(1, s.kp, s.hod), `segment ${k}: segment ID`);
    blocks += s.blockHashes.length;
  }
  t.equal(blocks, Math.ceil(data.length / 65536), 'total block count');
}

function checkV2(t: Test, ci: ContentInfo, data: Buffer, chunking: 'cdc' | 'fixed'): void {
  const ks = serverSecret(2, secret);
  let offset = 0;
  let ok = true;
  for (const [k, s] of ci.segments.entries()) {
    const slice = data.subarray(s.offset, s.offset + s.length);
    ok &&=
      s.offset === offset &&
      s.index === k &&
      s.length > 0 &&
      s.length <= V2_MAX_SEGMENT_SIZE &&
      s.blockSize === s.length &&
      s.blockHashes.length === 0;
    if (chunking === 'fixed' && k < ci.segments.length - 1) ok &&= s.length === 65536;
    ok &&= s.hod.equals(createHash('sha512').update(slice).digest().subarray(0, 32));
    ok &&= s.kp.equals(segmentSecret(2, ks, s.hod)) && s.segmentId.equals(segmentIdOf(2, s.kp, s.hod));
    offset += s.length;
  }
  t.ok(ok, `${ci.segments.length} segments: contiguous, sized, HoD/Kp/ID recomputed`);
  t.equal(offset, data.length, 'segments cover the content');
  if (chunking === 'fixed') t.equal(ci.segments.length, Math.ceil(data.length / 65536), 'fixed segment count');
}

t.test('boundary sizes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-ci-sizes-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const size of SIZES) {
    const file = join(dir, `f${size}`);
    await writePseudoRandomFile(file, size, `size ${size}`);
    const data = pseudoRandomBytes(size, `size ${size}`);
    for (const [version, chunking] of [
      [1, 'cdc'],
      [2, 'cdc'],
      [2, 'fixed'],
    ] as const) {
      await t.test(`${size} bytes, v${version}${version === 2 ? ` ${chunking}` : ''}`, async (t) => {
        const ci = await hashFile(file, { secret, version, chunking });
        t.equal(ci.version, version);
        t.equal(ci.contentLength, size);
        t.equal(ci.rangeStart, 0);
        t.equal(ci.rangeEnd, size);
        if (version === 1) checkV1(t, ci, data);
        else checkV2(t, ci, data, chunking);
        // Same result whatever the read sizes (boundaries falling inside buffers).
        const streamed = await hashStream(pieces(data, 65536 * 3 + 17), { secret, version, chunking });
        t.same(contentInfoToJson(streamed), contentInfoToJson(ci), 'hashStream with odd pieces agrees');
        const blob = encodeContentInfo(ci);
        const back = parseContentInfo(blob);
        t.same(contentInfoToJson(back), contentInfoToJson(ci), 'parse(encode(ci)) == ci');
        t.equal(back.rangeEnd, size);
        t.same(encodeContentInfo(back), blob, 'encode(parse(blob)) == blob');
        t.same(
          contentInfoToJson(contentInfoFromJson(JSON.parse(JSON.stringify(contentInfoToJson(ci))))),
          contentInfoToJson(ci),
          'JSON round trip',
        );
        if (size === 0) t.equal(blob.length, version === 1 ? 18 : 31, 'empty content: header only');
      });
    }
  }
});

t.test('progress, abort, and streams', async (t) => {
  const data = pseudoRandomBytes(300000, 'progress');
  const seen: number[] = [];
  await hashStream(pieces(data, 100000), { secret, version: 1, onProgress: (n) => seen.push(n) });
  t.same(seen, [100000, 200000, 300000]);
  const ac = new AbortController();
  ac.abort();
  await t.rejects(hashStream(pieces(data, 100000), { secret, version: 2, signal: ac.signal }), { name: 'AbortError' });
  const ac2 = new AbortController();
  await t.rejects(
    hashStream(pieces(data, 100000), { secret, version: 1, signal: ac2.signal, onProgress: () => ac2.abort() }),
    { name: 'AbortError' },
  );
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-ci-abort-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'big');
  await writePseudoRandomFile(file, 12 * MiB, 'abort');
  const ac3 = new AbortController();
  const progress: number[] = [];
  await t.rejects(
    hashFile(file, {
      secret,
      version: 2,
      signal: ac3.signal,
      onProgress: (n) => {
        progress.push(n);
        ac3.abort();
      },
    }),
    { name: 'AbortError' },
  );
  t.same(progress, [4 * MiB], 'hashFile stops after the read that saw the abort');
  const fileProgress: number[] = [];
  await hashFile(file, { secret, version: 1, onProgress: (n) => fileProgress.push(n) });
  t.same(fileProgress, [4 * MiB, 8 * MiB, 12 * MiB], 'hashFile reports progress per 4 MiB read');
  await t.rejects(hashFile(join(dir, 'missing'), { secret, version: 1 }), { code: 'ENOENT' });
  const { Readable } = await import('node:stream');
  const fromReadable = await hashStream(Readable.from([data.subarray(0, 5), data.subarray(5)]), { secret, version: 1 });
  const direct = await hashStream(pieces(data, data.length), { secret, version: 1 });
  t.same(contentInfoToJson(fromReadable), contentInfoToJson(direct), 'node Readable input');
});

t.test('content over 4 GiB (v1, streamed zeros)', async (t) => {
  const piece = Buffer.alloc(8 * MiB);
  const total = 4 * 1024 * MiB + 8 * MiB;
  async function* zeros() {
    for (let i = 0; i < total; i += piece.length) yield piece;
  }
  const ci = await hashStream(zeros(), { secret, version: 1 });
  t.equal(ci.contentLength, total);
  t.equal(ci.segments.length, 129);
  const last = ci.segments[128]!;
  t.equal(last.offset, 128 * V1_SEGMENT_SIZE, 'offset beyond 2^32');
  t.equal(last.length, 8 * MiB);
  t.same(ci.segments[0]!.hod, ci.segments[127]!.hod, 'identical full segments share HoD');
  const back = parseContentInfo(encodeContentInfo(ci));
  t.equal(back.segments[128]!.offset, 128 * V1_SEGMENT_SIZE);
  t.equal(back.contentLength, total);
});
