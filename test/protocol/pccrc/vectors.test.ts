import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { encodeContentInfo, parseContentInfo } from '../../../src/protocol/pccrc/codec.js';
import { segmentIdOf, segmentSecret, serverSecret } from '../../../src/protocol/pccrc/keys.js';
import { hashStream } from '../../../src/protocol/pccrc/hash.js';
import { SEGMENT_ID_CONSTANT, verifyBlock, type ContentInfo } from '../../../src/protocol/pccrc/types.js';
import { contentM, contentT, hex, vectors, type BlobVector } from './vectors.js';

function expectSegments(t: Test, ci: ContentInfo, v: BlobVector): void {
  t.equal(ci.segments.length, v.segments.length, 'segment count');
  v.segments.forEach((sv, k) => {
    const s = ci.segments[k]!;
    t.equal(s.index, k, `seg ${k} index`);
    t.equal(s.offset, sv.offset, `seg ${k} offset`);
    t.equal(s.length, sv.length, `seg ${k} length`);
    t.equal(s.hod.toString('hex'), sv.hod, `seg ${k} HoD`);
    t.equal(s.kp.toString('hex'), sv.kp, `seg ${k} Kp`);
    t.equal(s.segmentId.toString('hex'), sv.segmentId, `seg ${k} segment ID`);
    if (ci.version === 1) {
      t.equal(s.blockSize, 65536, `seg ${k} block size`);
      t.same(
        s.blockHashes.map((h) => h.toString('hex')),
        sv.blockHashes,
        `seg ${k} block hashes`,
      );
    } else {
      t.equal(s.blockSize, sv.length, `seg ${k} is one block`);
      t.same(s.blockHashes, [], `seg ${k} has no block list`);
    }
  });
}

t.test('constant C', async (t) => {
  t.equal(SEGMENT_ID_CONSTANT.toString('hex'), vectors.constantC);
});

t.test('iis-85 server secrets', async (t) => {
  const secret = hex(vectors.iis85.secret);
  t.equal(serverSecret(1, secret).toString('hex'), vectors.iis85.v1.ks);
  t.equal(serverSecret(2, secret).toString('hex'), vectors.iis85.v2.ks);
});

for (const version of [1, 2] as const) {
  t.test(`iis-85 v${version} Windows blob`, async (t) => {
    const v = version === 1 ? vectors.iis85.v1 : vectors.iis85.v2;
    const blob = hex(v.blob);
    const ci = parseContentInfo(blob);
    t.equal(ci.version, version);
    t.equal(ci.hashAlgorithm, version === 1 ? 'SHA-256' : 'SHA-512/256t');
    t.equal(ci.rangeStart, v.rangeStart);
    t.equal(ci.rangeEnd, v.rangeEnd);
    t.equal(ci.contentLength, vectors.iis85.contentLength);
    expectSegments(t, ci, v);
    // Kp and segment ID recomputed from the derived Ks and the listed HoD.
    const ks = hex(v.ks);
    for (const [k, sv] of v.segments.entries()) {
      const kp = segmentSecret(version, ks, hex(sv.hod));
      t.equal(kp.toString('hex'), sv.kp, `Kp ${k} from Ks`);
      t.equal(segmentIdOf(version, kp, hex(sv.hod)).toString('hex'), sv.segmentId, `segment ID ${k} from Kp`);
    }
    t.equal(encodeContentInfo(ci).toString('hex'), v.blob, 'encode(parse(blob)) == blob');
  });
}

t.test('iis-85 v2: HoD is the truncated SHA-512 of segment 0', async (t) => {
  const full = vectors.iis85.v2.segment0Sha512;
  t.equal(full.length, 128, 'untruncated digest is 64 bytes');
  t.equal(full.slice(0, 64), vectors.iis85.v2.segments[0]!.hod);
  t.equal(parseContentInfo(hex(vectors.iis85.v2.blob)).segments[0]!.hod.toString('hex'), full.slice(0, 64));
});

t.test('iis-85 v1: block hashes hash to HoD', async (t) => {
  const s = vectors.iis85.v1.segments[0]!;
  const hod = createHash('sha256')
    .update(Buffer.concat(s.blockHashes!.map(hex)))
    .digest('hex');
  t.equal(hod, s.hod);
});

const secret = Buffer.from(vectors.synthetic.secretAscii, 'ascii');
t.test('synthetic secret and Ks', async (t) => {
  t.equal(secret.toString('hex'), vectors.synthetic.secret);
  t.equal(serverSecret(1, secret).toString('hex'), vectors.synthetic.ksV1);
  t.equal(serverSecret(2, secret).toString('hex'), vectors.synthetic.ksV2);
});

for (const [name, make] of [
  ['T', contentT],
  ['M', contentM],
] as const) {
  const data = make();
  const vs = vectors.synthetic[name];
  t.test(`synthetic ${name}: content`, async (t) => {
    t.equal(data.length, vs.length);
    if (name === 'M') t.equal(createHash('sha256').update(data).digest('hex'), vectors.synthetic.M.sha256);
  });
  for (const version of [1, 2] as const) {
    const v = version === 1 ? vs.v1 : vs.v2;
    // Feed in uneven pieces so block/segment boundaries fall inside buffers.
    const pieces = (): AsyncIterable<Buffer> =>
      (async function* () {
        for (let i = 0; i < data.length; i += 7777) yield data.subarray(i, i + 7777);
      })();
    t.test(`synthetic ${name} v${version}: generated blob matches byte for byte`, async (t) => {
      const ci = await hashStream(pieces(), { secret, version, chunking: v.chunking ?? 'fixed' });
      expectSegments(t, ci, v);
      t.equal(ci.contentLength, data.length);
      t.equal(encodeContentInfo(ci).toString('hex'), v.blob, 'generated blob');
      const parsed = parseContentInfo(hex(v.blob));
      expectSegments(t, parsed, v);
      t.equal(encodeContentInfo(parsed).toString('hex'), v.blob, 'encode(parse(blob)) == blob');
      for (const s of parsed.segments) {
        const n = version === 1 ? s.blockHashes.length : 1;
        for (let j = 0; j < n; j++) {
          const start = s.offset + j * s.blockSize;
          t.ok(
            verifyBlock(version, s, j, data.subarray(start, Math.min(s.offset + s.length, start + s.blockSize))),
            `block ${j} of segment ${s.index} verifies`,
          );
        }
      }
    });
  }
}
