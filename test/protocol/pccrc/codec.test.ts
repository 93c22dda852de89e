/** Parser hostility and range semantics for the content information codec. */
import t, { type Test } from 'tap';
import { ContentInfoError, encodeContentInfo, parseContentInfo } from '../../../src/protocol/pccrc/codec.js';
import { hashStream } from '../../../src/protocol/pccrc/hash.js';
import { ParseError } from '../../../src/util/errors.js';
import { V1_SEGMENT_SIZE, type ContentInfo } from '../../../src/protocol/pccrc/types.js';
import { contentM, hex, vectors } from './vectors.js';
import { plainSegment } from '../../../src/protocol/pccrc/packed.js';

const blobs = {
  'iis-85 v1': hex(vectors.iis85.v1.blob),
  'iis-85 v2': hex(vectors.iis85.v2.blob),
  'M v1': hex(vectors.synthetic.M.v1.blob),
  'M v2': hex(vectors.synthetic.M.v2.blob),
};
const v1 = blobs['iis-85 v1'];
const v2 = blobs['iis-85 v2'];

/** The ContentInfoError thrown by parsing `buf` (fails the test if it parses or throws anything else). */
function rejectField(t: Test, buf: Buffer, field: string | RegExp, msg: string): void {
  try {
    parseContentInfo(buf);
    t.fail(`${msg}: parsed`);
  } catch (err) {
    t.ok(err instanceof ContentInfoError && err instanceof ParseError, `${msg}: ContentInfoError`);
    const f = (err as ContentInfoError).field;
    if (typeof field === 'string') t.equal(f, field, `${msg}: field`);
    else t.match(f, field, `${msg}: field`);
  }
}

function patch(buf: Buffer, fn: (b: Buffer) => void): Buffer {
  const b = Buffer.from(buf);
  fn(b);
  return b;
}

t.test('truncation at every offset gives ContentInfoError', async (t) => {
  for (const [name, blob] of Object.entries(blobs)) {
    let bad = 0;
    for (let n = 0; n < blob.length; n++) {
      // v2 header + whole chunks is a valid shorter blob only at the exact header end (empty content).
      try {
        parseContentInfo(blob.subarray(0, n));
        if (!(name.endsWith('v2') && n === 31)) bad++;
      } catch (err) {
        if (!(err instanceof ContentInfoError)) bad++;
      }
    }
    t.equal(bad, 0, `${name}: all ${blob.length} truncations rejected with ContentInfoError`);
  }
});

t.test('every single-bit flip parses or gives ContentInfoError', async (t) => {
  for (const [name, blob] of Object.entries(blobs)) {
    let other = 0,
      rejected = 0;
    for (let bit = 0; bit < blob.length * 8; bit++) {
      const b = patch(blob, (x) => {
        x[bit >> 3]! ^= 1 << (bit & 7);
      });
      try {
        parseContentInfo(b);
      } catch (err) {
        if (err instanceof ContentInfoError) rejected++;
        else other++;
      }
    }
    t.equal(other, 0, `${name}: no other error type`);
    t.ok(rejected > 0, `${name}: ${rejected} flips rejected`);
  }
});

t.test('v1 field validation', async (t) => {
  rejectField(t, Buffer.alloc(1), 'Version', 'one byte');
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt16LE(0x0300, 0)),
    'Version',
    'unknown version',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0x8004, 2)),
    'dwHashAlgo',
    'unknown algorithm',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0xffffffff, 14)),
    'cSegments',
    'huge cSegments',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(2, 14)),
    'cSegments',
    'cSegments one too many',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0, 14)),
    'trailer',
    'zero segments with data following',
  );
  rejectField(
    t,
    patch(v1.subarray(0, 18), (b) => {
      b.writeUInt32LE(0, 14);
      b.writeUInt32LE(5, 6);
    }),
    'dwOffsetInFirstSegment',
    'empty content with an offset',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeBigUInt64LE(1n << 60n, 18)),
    'segments[0].ullOffsetInContent',
    'offset > 2^53',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeBigUInt64LE(4096n, 18)),
    'segments[0].ullOffsetInContent',
    'unaligned first offset',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0, 26)),
    'segments[0].cbSegment',
    'zero cbSegment',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(V1_SEGMENT_SIZE + 1, 26)),
    'segments[0].cbSegment',
    'cbSegment > 32 MiB',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(4096, 30)),
    'segments[0].cbBlockSize',
    'cbBlockSize 4096',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0xffffffff, 98)),
    'segments[0].cBlocks',
    'huge cBlocks',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(3, 98)),
    'segments[0].cBlocks',
    'cBlocks > ceil(cbSegment/65536)',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(0, 98)),
    'segments[0].cBlocks',
    'zero cBlocks',
  );
  rejectField(
    t,
    patch(v1, (b) => {
      b[34]! ^= 1;
    }),
    'segments[0].SegmentHashOfData',
    'HoD does not match block hashes',
  );
  rejectField(
    t,
    patch(v1, (b) => {
      b[b.length - 1]! ^= 1;
    }),
    'segments[0].SegmentHashOfData',
    'block hash altered',
  );
  rejectField(t, Buffer.concat([v1, Buffer.from([0])]), 'trailer', 'one trailing byte');
  rejectField(t, Buffer.concat([v1, Buffer.alloc(100)]), 'trailer', 'trailing garbage');
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(99710, 6)),
    'dwOffsetInFirstSegment',
    'offset beyond the segment',
  );
  rejectField(
    t,
    patch(v1, (b) => b.writeUInt32LE(99711, 10)),
    'dwReadBytesInLastSegment',
    'read bytes beyond the segment',
  );
  // A partial block list is accepted (ranged content information): HoD cannot be checked then.
  const partial = Buffer.concat([
    patch(v1.subarray(0, 98), (b) => b.writeUInt32LE(0, 10)),
    Buffer.from([1, 0, 0, 0]),
    v1.subarray(102, 134),
  ]);
  t.equal(parseContentInfo(partial).segments[0]!.blockHashes.length, 1, 'partial block list accepted');
});

t.test('v1 multi-segment consistency', async (t) => {
  // Two segments: a full 32 MiB one (512 blocks) and a 1-byte one, built from the model.
  const ci = await hashStream(
    (async function* () {
      yield Buffer.alloc(V1_SEGMENT_SIZE + 1, 7);
    })(),
    { secret: Buffer.from('x'), version: 1 },
  );
  const blob = encodeContentInfo(ci);
  t.equal(parseContentInfo(blob).segments.length, 2);
  const seg1 = 18 + 80; // second SegmentDescription
  rejectField(
    t,
    patch(blob, (b) => b.writeUInt32LE(V1_SEGMENT_SIZE - 1, 26)),
    'segments[0].cbSegment',
    'non-last segment not 32 MiB',
  );
  rejectField(
    t,
    patch(blob, (b) => b.writeBigUInt64LE(BigInt(V1_SEGMENT_SIZE * 2), seg1)),
    'segments[1].ullOffsetInContent',
    'offset not contiguous',
  );
  rejectField(
    t,
    patch(blob, (b) => b.writeUInt32LE(4096, seg1 + 12)),
    'segments[1].cbBlockSize',
    'second block size',
  );
  // Multi-segment read-bytes counts from the last segment's start.
  const ranged = parseContentInfo(
    patch(blob, (b) => {
      b.writeUInt32LE(100, 6);
      b.writeUInt32LE(1, 10);
    }),
  );
  t.equal(ranged.rangeStart, 100);
  t.equal(ranged.rangeEnd, V1_SEGMENT_SIZE + 1);
  rejectField(
    t,
    patch(blob, (b) => b.writeUInt32LE(2, 10)),
    'dwReadBytesInLastSegment',
    'tail beyond the last segment',
  );
  let bad = 0;
  for (let n = 0; n < blob.length; n++) {
    try {
      parseContentInfo(blob.subarray(0, n));
      bad++;
    } catch (err) {
      if (!(err instanceof ContentInfoError)) bad++;
    }
  }
  t.equal(bad, 0, `all ${blob.length} truncations of a 2-segment blob rejected with ContentInfoError`);
});

t.test('random multi-byte corruption never escapes as another error type', async (t) => {
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  for (const [name, blob] of Object.entries(blobs)) {
    let other = 0;
    for (let iter = 0; iter < 3000; iter++) {
      const b = Buffer.from(blob);
      for (let k = 1 + rand(4); k > 0; k--) b[rand(b.length)] = rand(4) === 0 ? 0xff : rand(256);
      try {
        parseContentInfo(b);
      } catch (err) {
        if (!(err instanceof ContentInfoError)) other++;
      }
    }
    t.equal(other, 0, name);
  }
});

t.test('v1 ranges', async (t) => {
  // Spec form: read-bytes = the single segment's length means the whole segment.
  const specForm = patch(v1, (b) => b.writeUInt32LE(99710, 10));
  const ci = parseContentInfo(specForm);
  t.equal(ci.rangeStart, 0);
  t.equal(ci.rangeEnd, 99710);
  t.same(encodeContentInfo(ci), v1, 'normalised to the Windows whole-file form');
  // Single segment: read-bytes is measured from the start offset.
  const r = parseContentInfo(
    patch(v1, (b) => {
      b.writeUInt32LE(1000, 6);
      b.writeUInt32LE(500, 10);
    }),
  );
  t.equal(r.rangeStart, 1000);
  t.equal(r.rangeEnd, 1500);
  t.same(parseContentInfo(encodeContentInfo(r)), r, 'ranged form round-trips');
  rejectField(
    t,
    patch(v1, (b) => {
      b.writeUInt32LE(1000, 6);
      b.writeUInt32LE(99710 - 999, 10);
    }),
    'dwReadBytesInLastSegment',
    'range end past the content',
  );
});

t.test('v2 field validation', async (t) => {
  rejectField(
    t,
    patch(v2, (b) => {
      b[2] = 1;
    }),
    'bHashAlgo',
    'bHashAlgo 1',
  );
  rejectField(
    t,
    patch(v2, (b) => {
      b[31] = 1;
    }),
    'chunks[0].bChunkType',
    'chunk type 1',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(0, 32)),
    'chunks[0].dwChunkDataLength',
    'chunk length 0',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(67, 32)),
    'chunks[0].dwChunkDataLength',
    'chunk length not a multiple of 68',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(68 * 3, 32)),
    'chunks[0].dwChunkDataLength',
    'chunk longer than the data',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(0xffffffcc, 32)),
    'chunks[0].dwChunkDataLength',
    'huge chunk length',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(68, 32)),
    /^chunks\[1\]/,
    'chunk length 68: the second segment is read as a chunk',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(0, 36)),
    'segments[0].cbSegment',
    'cbSegment 0',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(128 * 1024 + 1, 36)),
    'segments[0].cbSegment',
    'cbSegment > 128 KiB',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeBigUInt64BE(1n << 53n, 3)),
    'ullStartInContent',
    'start > 2^53-1',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeBigUInt64BE(1n << 63n, 11)),
    'ullIndexOfFirstSegment',
    'index > 2^53-1',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeBigUInt64BE(99711n, 23)),
    'ullLengthOfRange',
    'range longer than the content',
  );
  rejectField(
    t,
    patch(v2, (b) => b.writeUInt32BE(39390, 19)),
    'dwOffsetInFirstSegment',
    'offset beyond the first segment',
  );
  rejectField(t, Buffer.concat([v2, Buffer.from([0])]), 'chunks[1].dwChunkDataLength', 'one trailing byte');
  rejectField(t, Buffer.concat([v2, Buffer.from([7, 0, 0, 0, 68])]), 'chunks[1].bChunkType', 'trailing garbage chunk');
  rejectField(
    t,
    Buffer.concat([v2.subarray(0, 31), Buffer.from([0])]),
    'chunks[0].dwChunkDataLength',
    'header + 1 byte',
  );
  rejectField(
    t,
    patch(v2.subarray(0, 31), (b) => b.writeBigUInt64BE(5n, 23)),
    'ullLengthOfRange',
    'empty content with a range',
  );
});

t.test('v2 ranges and chunks', async (t) => {
  // Spec form: ullLengthOfRange = content length.
  const spec = parseContentInfo(patch(v2, (b) => b.writeBigUInt64BE(99710n, 23)));
  t.equal(spec.rangeEnd, 99710);
  t.same(encodeContentInfo(spec), v2, 'normalised to the Windows whole-file form');
  const r = parseContentInfo(
    patch(v2, (b) => {
      b.writeUInt32BE(10, 19);
      b.writeBigUInt64BE(50000n, 23);
    }),
  );
  t.equal(r.rangeStart, 10);
  t.equal(r.rangeEnd, 50010, 'length of range is relative to the range start');
  t.same(parseContentInfo(encodeContentInfo(r)), r, 'ranged form round-trips');
  // Segments split over two chunks parse to the same segments.
  const split = Buffer.concat([
    v2.subarray(0, 31),
    Buffer.from([0, 0, 0, 0, 68]),
    v2.subarray(36, 104),
    Buffer.from([0, 0, 0, 0, 68]),
    v2.subarray(104),
  ]);
  t.same(parseContentInfo(split).segments, parseContentInfo(v2).segments, 'one segment per chunk');
  // A listing that starts mid-content (segment index 5 at offset 5 TiB-ish) keeps its index and offsets.
  const base = parseContentInfo(v2);
  const far = 5 * 2 ** 40;
  const moved: ContentInfo = {
    ...base,
    rangeStart: far,
    rangeEnd: far + 99710,
    contentLength: far + 99710,
    segments: base.segments.map((s, k) => ({ ...plainSegment(s), index: 5 + k, offset: far + (k === 0 ? 0 : 39390) })),
  };
  const back = parseContentInfo(encodeContentInfo(moved));
  t.same({ ...back, segments: back.segments.map(plainSegment) }, moved, 'start/index fields above 2^32 round-trip');
});

t.test('M blobs reproduce from content (sanity for the hostile-input corpus)', async (t) => {
  const ci = await hashStream(
    (async function* () {
      yield contentM();
    })(),
    { secret: Buffer.from('no more secrets'), version: 1 },
  );
  t.same(encodeContentInfo(ci), blobs['M v1']);
});

t.test('v1 SHA-384 / SHA-512 content information parses with matching HMACs', async (t) => {
  const { createHash, createHmac } = await import('node:crypto');
  const data = contentM();
  for (const [alg, name, code] of [
    ['sha384', 'SHA-384', 0x800d],
    ['sha512', 'SHA-512', 0x800e],
  ] as const) {
    const blockHashes = [0, 1, 2].map((j) =>
      createHash(alg)
        .update(data.subarray(j * 65536, (j + 1) * 65536))
        .digest(),
    );
    const hod = createHash(alg).update(Buffer.concat(blockHashes)).digest();
    const kp = createHmac(alg, 'ks').update(hod).digest();
    const segmentId = createHmac(alg, kp).update(hod).update(Buffer.from('MS_P2P_CACHING\0', 'utf16le')).digest();
    const ci: ContentInfo = {
      version: 1,
      hashAlgorithm: name,
      rangeStart: 0,
      rangeEnd: data.length,
      contentLength: data.length,
      segments: [{ index: 0, offset: 0, length: data.length, blockSize: 65536, hod, kp, segmentId, blockHashes }],
    };
    const blob = encodeContentInfo(ci);
    t.equal(blob.readUInt32LE(2), code, `${name} algorithm code`);
    t.equal(blob.length, 18 + 16 + 2 * hod.length + 4 + 3 * hod.length, `${name} size`);
    t.same(parseContentInfo(blob), ci, `${name} round trip, segment ID = HMAC-${name}(Kp, HoD || C)`);
  }
});
