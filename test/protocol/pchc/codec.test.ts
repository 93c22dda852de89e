import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { fixture } from '../../helpers/paths.js';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  encodeSegmentInformation,
  parseSegmentInformation,
  decodeHeader,
  HostedCacheParseError,
  HostedCacheEncodeError,
  MAX_BATCHED_DESCRIPTORS,
  MAX_REQUEST_SIZE,
  type BatchedOffer,
  type SegmentDescriptor,
} from '../../../src/protocol/pchc/codec.js';
import { ParseError } from '../../../src/util/errors.js';
import { parseContentInfo } from '../../../src/protocol/pccrc/codec.js';

const V = JSON.parse(readFileSync(fixture('pchc', 'vectors.json'), 'utf8')) as Record<string, string>;
const hex = (k: string) => Buffer.from(V[k]!, 'hex');
const CI = JSON.parse(readFileSync(fixture('contentinfo', 'vectors.json'), 'utf8')) as {
  iis85: { v1: { blob: string }; v2: { segments: { length: number; segmentId: string }[] } };
};
const WININET = Buffer.concat([Buffer.from('WinINet'), Buffer.alloc(9)]);

function rejects(t: Test, f: () => unknown, field: string | RegExp, code = 'PCHC_MALFORMED'): void {
  try {
    f();
    t.fail(`expected a rejection naming ${String(field)}`);
  } catch (e) {
    t.ok(e instanceof HostedCacheParseError && e instanceof ParseError, `typed error (${(e as Error).message})`);
    const err = e as HostedCacheParseError;
    if (typeof field === 'string') t.equal(err.field, field);
    else t.match(err.field, field);
    t.equal(err.code, code);
  }
}

t.test('INITIAL_OFFER example: decodes and re-encodes byte for byte', async (t) => {
  const m = decodeRequest(hex('initial_offer_v1'));
  t.equal(m.type, 'INITIAL_OFFER');
  t.equal(m.version, 1);
  t.equal(m.port, 80);
  if (m.type !== 'INITIAL_OFFER') return;
  t.equal(m.hash.toString('hex'), V.segment_v1_hohodk);
  t.same(encodeRequest({ type: 'INITIAL_OFFER', port: 80, hash: m.hash }), hex('initial_offer_v1'));
  t.equal(hex('initial_offer_v1').length, 48);
});

t.test('SEGMENT_INFO example: tag, content information and the derived HoHoDk', async (t) => {
  const m = decodeRequest(hex('segment_info_v1'));
  t.equal(m.type, 'SEGMENT_INFO');
  t.equal(m.version, 1);
  t.equal(m.port, 80);
  if (m.type !== 'SEGMENT_INFO') return;
  t.same(m.contentTag, WININET);
  t.equal(m.segmentInformation.length, 166);
  // The Windows 166-byte blob with dwReadBytesInLastSegment = 99710 (Windows wrote 0 there).
  const windows = Buffer.from(CI.iis85.v1.blob, 'hex');
  const patched = Buffer.from(windows);
  patched.writeUInt32LE(99710, 10);
  t.same(m.segmentInformation, patched);
  const seg = parseSegmentInformation(m.segmentInformation);
  t.equal(seg.hashAlgorithm, 'SHA-256');
  t.equal(seg.length, 99710);
  t.equal(seg.blockSize, 65536);
  t.equal(seg.offsetInContent, 0);
  t.equal(seg.offsetInFirstSegment, 0);
  t.equal(seg.readBytesInLastSegment, 99710);
  t.equal(seg.blockHashes.length, 2);
  t.equal(seg.segmentId.toString('hex'), V.segment_v1_hohodk, 'HMAC(Kp, HoD || C) is the INITIAL_OFFER hash');
  // Our encoder builds the same bytes from the model, and the whole message too.
  const ci = parseContentInfo(windows).segments[0]!;
  const built = encodeSegmentInformation({
    hashAlgorithm: 'SHA-256',
    offsetInContent: 0,
    length: ci.length,
    hod: ci.hod,
    kp: ci.kp,
    blockHashes: ci.blockHashes,
  });
  t.same(built, m.segmentInformation);
  t.same(
    encodeRequest({ type: 'SEGMENT_INFO', port: 80, contentTag: WININET, segmentInformation: built }),
    hex('segment_info_v1'),
  );
  // The Windows original (0 in dwReadBytesInLastSegment) is accepted too.
  t.equal(parseSegmentInformation(windows).segmentId.toString('hex'), V.segment_v1_hohodk);
});

t.test('BATCHED_OFFER example: both v2 segments', async (t) => {
  const m = decodeRequest(hex('batched_offer_v2'));
  t.equal(m.type, 'BATCHED_OFFER');
  t.equal(m.version, 2);
  t.equal(m.port, 80);
  if (m.type !== 'BATCHED_OFFER') return;
  t.equal(m.descriptors.length, 2);
  const segs = CI.iis85.v2.segments;
  m.descriptors.forEach((d, k) => {
    t.equal(d.blockSize, segs[k]!.length);
    t.equal(d.segmentSize, segs[k]!.length);
    t.same(d.contentTag, WININET);
    t.equal(d.hashAlgorithm, 4);
    t.equal(d.segmentId.toString('hex'), segs[k]!.segmentId);
  });
  t.equal(m.descriptors[1]!.segmentId.toString('hex'), V.segment_v2_hohodk_1);
  const descriptors: SegmentDescriptor[] = segs.map((s) => ({
    blockSize: s.length,
    segmentSize: s.length,
    contentTag: WININET,
    hashAlgorithm: 4,
    segmentId: Buffer.from(s.segmentId, 'hex'),
  }));
  t.same(encodeRequest({ type: 'BATCHED_OFFER', port: 80, descriptors }), hex('batched_offer_v2'));
  t.equal(hex('batched_offer_v2').length, 16 + 2 * 59);
});

t.test('responses', async (t) => {
  t.same(encodeResponse(0), hex('response_ok'));
  t.same(encodeResponse(1), hex('response_interested'));
  t.equal(decodeResponse(hex('response_ok')), 0);
  t.equal(decodeResponse(hex('response_interested')), 1);
  rejects(t, () => decodeResponse(Buffer.from('0000000102', 'hex')), 'ResponseCode');
  rejects(t, () => decodeResponse(Buffer.from('0000000200', 'hex')), 'Size');
  rejects(t, () => decodeResponse(Buffer.from('00000001', 'hex')), 'ResponseCode');
  rejects(t, () => decodeResponse(Buffer.from('000000010000', 'hex')), 'ResponseCode');
  t.throws(() => encodeResponse(2 as 0), HostedCacheEncodeError);
});

t.test('header validation: what Windows drops', async (t) => {
  const good = hex('initial_offer_v1');
  const mod = (off: number, byte: number) => {
    const b = Buffer.from(good);
    b[off] = byte;
    return b;
  };
  rejects(t, () => decodeRequest(good.subarray(0, 15)), /Padding|Port/);
  rejects(t, () => decodeRequest(Buffer.alloc(0)), 'MinorVersion');
  rejects(t, () => decodeRequest(mod(0, 1)), 'MinorVersion', 'PCHC_VERSION');
  rejects(t, () => decodeRequest(mod(1, 0)), 'MajorVersion', 'PCHC_VERSION');
  rejects(t, () => decodeRequest(mod(1, 3)), 'MajorVersion', 'PCHC_VERSION');
  rejects(t, () => decodeRequest(mod(3, 0)), 'Type');
  rejects(t, () => decodeRequest(mod(3, 4)), 'Type');
  rejects(t, () => decodeRequest(mod(2, 1)), 'Type');
  // Padding bytes are ignored.
  const padded = Buffer.from(good);
  padded.fill(0xff, 4, 8);
  padded.fill(0xee, 10, 16);
  t.equal(decodeRequest(padded).type, 'INITIAL_OFFER');
  t.same(decodeHeader(padded), { version: 1, type: 'INITIAL_OFFER', port: 80 });
  // HoHoDk sizes only.
  rejects(t, () => decodeRequest(good.subarray(0, 16 + 31)), 'Hash');
  rejects(t, () => decodeRequest(good.subarray(0, 16)), 'Hash');
  t.equal(decodeRequest(Buffer.concat([good.subarray(0, 16), Buffer.alloc(64, 7)])).type, 'INITIAL_OFFER');
  rejects(
    t,
    () => decodeRequest(Buffer.concat([good, Buffer.alloc(MAX_REQUEST_SIZE)])),
    'MessageSize',
    'PCHC_TOO_LARGE',
  );
  // SEGMENT_INFO needs a whole ContentTag; its content information is not judged by decodeRequest.
  const si = hex('segment_info_v1');
  rejects(t, () => decodeRequest(si.subarray(0, 31)), 'ContentTag');
  t.equal(decodeRequest(si.subarray(0, 32)).type, 'SEGMENT_INFO');
});

t.test('BATCHED_OFFER validation', async (t) => {
  const good = hex('batched_offer_v2');
  rejects(t, () => decodeRequest(good.subarray(0, 16)), 'SegmentDescriptors');
  rejects(t, () => decodeRequest(good.subarray(0, good.length - 1)), 'SegmentDescriptors[1].SegmentHoHoDk');
  rejects(t, () => decodeRequest(good.subarray(0, 16 + 59 + 3)), 'SegmentDescriptors[1].BlockSize');
  rejects(t, () => decodeRequest(Buffer.concat([good, Buffer.alloc(1)])), 'SegmentDescriptors[2].BlockSize');
  const zeroTag = Buffer.from(good);
  zeroTag.writeUInt16BE(0, 16 + 8);
  rejects(t, () => decodeRequest(zeroTag), 'SegmentDescriptors[0].SizeOfContentTag');
  const longTag = Buffer.from(good);
  longTag.writeUInt16BE(0xffff, 16 + 8);
  rejects(t, () => decodeRequest(longTag), 'SegmentDescriptors[0].ContentTag');
  const d: SegmentDescriptor = {
    blockSize: 100,
    segmentSize: 100,
    contentTag: Buffer.from('x'),
    hashAlgorithm: 1,
    segmentId: Buffer.alloc(32, 1),
  };
  const max: BatchedOffer = { type: 'BATCHED_OFFER', port: 8282, descriptors: Array(MAX_BATCHED_DESCRIPTORS).fill(d) };
  const enc = encodeRequest(max);
  const back = decodeRequest(enc);
  t.equal(back.type === 'BATCHED_OFFER' && back.descriptors.length, MAX_BATCHED_DESCRIPTORS);
  t.equal(back.port, 8282);
  // One more descriptor than Windows accepts.
  const over = Buffer.concat([enc, enc.subarray(16, 16 + 44)]);
  rejects(t, () => decodeRequest(over), 'SegmentDescriptors');
  t.throws(() => encodeRequest({ ...max, descriptors: [...max.descriptors, d] }), HostedCacheEncodeError);
  t.throws(() => encodeRequest({ ...max, descriptors: [] }), HostedCacheEncodeError);
  t.throws(
    () => encodeRequest({ ...max, descriptors: [{ ...d, segmentId: Buffer.alloc(48) }] }),
    HostedCacheEncodeError,
  );
  t.throws(() => encodeRequest({ type: 'INITIAL_OFFER', port: 70000, hash: Buffer.alloc(32) }), HostedCacheEncodeError);
});

t.test('SegmentInformation validation names the field', async (t) => {
  const m = decodeRequest(hex('segment_info_v1'));
  if (m.type !== 'SEGMENT_INFO') return t.fail('type');
  const ci = m.segmentInformation;
  const mod = (f: (b: Buffer) => void) => {
    const b = Buffer.from(ci);
    f(b);
    return b;
  };
  rejects(t, () => parseSegmentInformation(mod((b) => b.writeUInt16LE(0x0200, 0))), 'SegmentInformation.Version');
  rejects(t, () => parseSegmentInformation(mod((b) => b.writeUInt32LE(0x8003, 2))), 'SegmentInformation.dwHashAlgo');
  rejects(t, () => parseSegmentInformation(mod((b) => b.writeUInt32LE(0, 14))), 'SegmentInformation.cSegments');
  rejects(t, () => parseSegmentInformation(mod((b) => b.writeUInt32LE(2, 14))), 'SegmentInformation.cSegments');
  rejects(
    t,
    () => parseSegmentInformation(mod((b) => b.writeUInt32LE(4096, 30))),
    'SegmentInformation.segments[0].cbBlockSize',
  );
  rejects(
    t,
    () => parseSegmentInformation(mod((b) => b.writeUInt32LE(32 * 1024 * 1024 + 1, 26))),
    'SegmentInformation.segments[0].cbSegment',
  );
  rejects(t, () => parseSegmentInformation(mod((b) => b.writeUInt32LE(3, 98))), 'SegmentInformation.blocks[0].cBlocks');
  rejects(
    t,
    () =>
      parseSegmentInformation(
        mod((b) => {
          b[34]! ^= 1;
        }),
      ),
    'SegmentInformation.segments[0].SegmentHashOfData',
  );
  rejects(
    t,
    () =>
      parseSegmentInformation(
        mod((b) => {
          b[120]! ^= 1;
        }),
      ),
    'SegmentInformation.segments[0].SegmentHashOfData',
  );
  rejects(t, () => parseSegmentInformation(ci.subarray(0, ci.length - 1)), /BlockHashes/);
  rejects(t, () => parseSegmentInformation(Buffer.concat([ci, Buffer.alloc(1)])), 'SegmentInformation.blocks[0]');
  rejects(t, () => parseSegmentInformation(Buffer.alloc(0)), 'SegmentInformation.Version');
  rejects(
    t,
    () => parseSegmentInformation(mod((b) => b.writeUInt32LE(99710, 6))),
    'SegmentInformation.dwOffsetInFirstSegment',
  );
});
