/**
 * SegmentIndex (src/engine/segment-index.ts): segment numbers by segment ID without a hex string
 * per segment, for packed v2 content information (IDs shared with the parsed columns) and for
 * plain segment lists (v1), against a Map of hex IDs as the Transfer used to keep.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import type { SegmentInfo } from '../../src/protocol/pccrc/types.js';
import { SegmentIndex } from '../../src/engine/segment-index.js';
import { syntheticV2ContentInfo } from '../../testkit/segment-state.js';

t.test('packed v2: every ID finds its segment, by Buffer and by hex of either case', async (t) => {
  const ci = parseContentInfo(syntheticV2ContentInfo(1000, 4096, 'idx'));
  const idx = SegmentIndex.of(ci.segments);
  let ok = 0;
  for (const s of ci.segments) {
    const hex = s.segmentId.toString('hex');
    if (idx.ofId(s.segmentId) === s.index && idx.get(hex) === s.index && idx.get(hex.toUpperCase()) === s.index) ok++;
  }
  t.equal(ok, 1000, 'all 1000 found');
  const other = createHash('sha512').update('not there').digest().subarray(0, 32);
  t.equal(idx.ofId(other), undefined, 'an unknown ID is not found');
  t.equal(idx.get(other.toString('hex')), undefined, 'nor its hex');
  t.equal(idx.ofId(ci.segments[3]!.segmentId.subarray(0, 31)), undefined, 'a short ID is not found');
  t.equal(idx.get('zz'.repeat(32)), undefined, 'nor a string that is not hex');
  t.equal(idx.has(ci.segments[999]!.segmentId.toString('hex')), true, 'has()');
});

t.test('plain segments: v1-sized IDs, indexes that do not start at 0, repeated IDs', async (t) => {
  const id = (k: number) => createHash('sha512').update(`v1 ${k}`).digest().subarray(0, 48);
  const seg = (index: number, segmentId: Buffer): SegmentInfo => ({
    index,
    offset: 0,
    length: 1,
    blockSize: 65536,
    hod: Buffer.alloc(48),
    kp: Buffer.alloc(48),
    segmentId,
    blockHashes: [],
  });
  const segs = [seg(5, id(0)), seg(6, id(1)), seg(7, id(2)), seg(8, id(1))];
  const idx = SegmentIndex.of(segs);
  const map = new Map(segs.map((s) => [s.segmentId.toString('hex').toUpperCase(), s.index]));
  for (const k of [0, 1, 2, 3]) {
    const hex = id(k).toString('hex').toUpperCase();
    t.equal(idx.get(hex), map.get(hex), `ID ${k}: ${map.get(hex)} as with a Map`);
  }
  const gaps = SegmentIndex.of([seg(2, id(7)), seg(9, id(8))]);
  t.equal(gaps.ofId(id(8)), 9, 'indexes that are not consecutive are kept');
  t.equal(SegmentIndex.of([]).get('00'), undefined, 'empty');
});
