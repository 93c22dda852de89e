import t from 'tap';
import { readFileSync } from 'node:fs';
import { createCipheriv, createHash } from 'node:crypto';
import { fixture } from '../../helpers/paths.js';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  encodeBlkResponseParts,
  encodeMessage,
  protVerFromU32,
  protVerToU32,
  MAX_REQUEST_SIZE,
  MAX_RESPONSE_SIZE,
  RetrievalParseError,
  type Message,
  type ResponseMessage,
  type RequestMessage,
  type CryptoAlgo,
} from '../../../src/protocol/pccrr/codec.js';
import { decryptBlock, encryptBlock, encryptWithRoom, paddedLength } from '../../../src/protocol/pccrr/crypto.js';
import { intersectRanges, normalizeRanges, nextHeld } from '../../../src/protocol/pccrr/ranges.js';
import { ParseError } from '../../../src/util/errors.js';

const V = JSON.parse(readFileSync(fixture('retrieval', 'vectors.json'), 'utf8')) as Record<string, string>;
const hex = (k: string) => Buffer.from(V[k]!, 'hex');
const T = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
const IV = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

/** Strip the `size` field decoders add so a decoded message compares with what was encoded. */
function strip<M extends object>(m: M): Omit<M, 'size'> {
  const { size: _s, ...rest } = m as M & { size?: number };
  return rest;
}

t.test('ProtVer encoding: minor<<16 | major', async (t) => {
  t.equal(protVerToU32({ major: 1, minor: 0 }), 1);
  t.equal(protVerToU32({ major: 2, minor: 0 }), 2);
  t.equal(protVerToU32({ major: 1, minor: 3 }), 0x00030001);
  t.same(protVerFromU32(0x00030001), { major: 1, minor: 3 });
});

t.test('section 5 request vectors encode and decode byte for byte', async (t) => {
  for (const [k, id, index] of [
    ['getblks_iis85_v1_seg0_blk1', '491b217dbee2b5f12ca79b015e06f4bbe64f9745bad7867aef17de59927edce9', 1],
    ['getblks_iis85_v2_seg0', '3371bbeaddb62353adcef970a06fdf65001e0421f4c7108276b0c37a9f9ec10f', 0],
    ['t_getblks', V.t_v1_segment_id!, 0],
  ] as const) {
    const m = decodeRequest(hex(k));
    t.equal(m.type, 'GETBLKS', k);
    if (m.type !== 'GETBLKS') continue;
    t.same(m.version, { major: 1, minor: 0 });
    t.equal(m.cryptoAlgo, 1);
    t.equal(m.segmentId.toString('hex'), id);
    t.same(m.ranges, [[index, 1]]);
    t.equal(m.vrfData!.length, 0);
    const enc = encodeRequest({
      type: 'GETBLKS',
      cryptoAlgo: 1,
      segmentId: Buffer.from(id, 'hex'),
      ranges: [[index, 1]],
    });
    t.equal(enc.toString('hex'), V[k], `${k} re-encodes`);
  }
  const nego = decodeRequest(hex('nego_req_1_0_to_2_0'));
  t.same(strip(nego), {
    type: 'NEGO_REQ',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 0,
    min: { major: 1, minor: 0 },
    max: { major: 2, minor: 0 },
  });
  t.equal(
    encodeRequest({ type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } }).toString('hex'),
    V.nego_req_1_0_to_2_0,
  );
});

t.test('section 6 MSG_BLK vectors decode, decrypt to T and re-encode byte for byte', async (t) => {
  const cases: Array<[string, CryptoAlgo, string]> = [
    ['t_blk_aes128', 1, 't_v1_kp'],
    ['t_blk_aes192', 2, 't_v1_kp'],
    ['t_blk_aes256', 3, 't_v1_kp'],
    ['t_blk_plain', 0, 't_v1_kp'],
    ['t_blk_v2_aes128', 1, 't_v2_kp'],
  ];
  for (const [k, algo, kpKey] of cases) {
    const wire = hex(k);
    const m = decodeResponse(wire);
    t.equal(m.type, 'BLK', k);
    if (m.type !== 'BLK') continue;
    t.equal(m.cryptoAlgo, algo, `${k} algo`);
    t.equal(m.blockIndex, 0);
    t.equal(m.nextBlockIndex, 0);
    t.equal(m.segmentId.toString('hex'), k.includes('v2') ? V.t_v2_segment_id : V.t_v1_segment_id);
    t.equal(m.iv.toString('hex'), algo === 0 ? '' : IV.toString('hex'));
    t.equal(m.block.length, algo === 0 ? 100 : 112);
    const kp = hex(kpKey);
    const plain = decryptBlock(algo, kp, m.block, m.iv, 100);
    t.ok(plain.equals(T), `${k} decrypts to T`);
    if (!k.includes('v2')) t.equal(createHash('sha256').update(plain).digest('hex'), V.t_v1_block0_hash);
    const { cipher, iv } = encryptBlock(algo, kp, T, IV);
    const enc = encodeResponse({
      type: 'BLK',
      cryptoAlgo: algo,
      segmentId: m.segmentId,
      blockIndex: 0,
      nextBlockIndex: 0,
      block: cipher,
      iv,
    });
    t.equal(enc.toString('hex'), V[k], `${k} re-encodes byte for byte`);
  }
  const na = decodeResponse(hex('t_blk_not_available'));
  t.equal(na.type, 'BLK');
  if (na.type === 'BLK') {
    t.equal(na.block.length, 0);
    t.equal(na.iv.length, 0);
    t.equal(na.segmentId.toString('hex'), V.t_v1_segment_id);
    const enc = encodeResponse({
      type: 'BLK',
      segmentId: na.segmentId,
      blockIndex: 0,
      nextBlockIndex: 0,
      block: Buffer.alloc(0),
      iv: Buffer.alloc(0),
    });
    t.equal(enc.toString('hex'), V.t_blk_not_available);
  }
});

const SID = Buffer.alloc(32, 0xab);
const SID48 = Buffer.alloc(48, 0xcd);
const samples: Message[] = [
  {
    type: 'NEGO_REQ',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 0,
    min: { major: 1, minor: 0 },
    max: { major: 2, minor: 5 },
  },
  {
    type: 'NEGO_RESP',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 0,
    min: { major: 1, minor: 0 },
    max: { major: 2, minor: 0 },
  },
  {
    type: 'GETBLKLIST',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 1,
    segmentId: SID,
    ranges: [
      [0, 4],
      [10, 2],
    ],
  },
  {
    type: 'BLKLIST',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 0,
    segmentId: SID48,
    ranges: [[1, 3]],
    nextBlockIndex: 7,
  },
  { type: 'BLKLIST', version: { major: 1, minor: 0 }, cryptoAlgo: 0, segmentId: SID, ranges: [], nextBlockIndex: 0 },
  {
    type: 'GETBLKS',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 3,
    segmentId: SID,
    ranges: [[5, 1]],
    vrfData: Buffer.from('abcde'),
  },
  {
    type: 'BLK',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 0,
    segmentId: SID,
    blockIndex: 2,
    nextBlockIndex: 3,
    block: Buffer.from('xyz'),
    vrfBlock: Buffer.from('v'),
    iv: Buffer.alloc(0),
  },
  {
    type: 'BLK',
    version: { major: 1, minor: 0 },
    cryptoAlgo: 3,
    segmentId: SID,
    blockIndex: 511,
    nextBlockIndex: 0,
    block: Buffer.alloc(65552, 7),
    vrfBlock: Buffer.alloc(0),
    iv: IV,
  },
  {
    type: 'GETSEGLIST',
    version: { major: 2, minor: 0 },
    cryptoAlgo: 0,
    requestId: Buffer.alloc(16, 1),
    segmentIds: [SID, SID48],
    extensibleBlob: Buffer.from('000103020060ea000260ea00', 'hex'),
  },
  {
    type: 'SEGLIST',
    version: { major: 2, minor: 0 },
    cryptoAlgo: 0,
    requestId: Buffer.alloc(16, 2),
    ranges: [
      [0, 1],
      [3, 2],
    ],
    extensibleBlob: Buffer.alloc(0),
  },
];
const isRequest = (m: Message) => ['NEGO_REQ', 'GETBLKLIST', 'GETBLKS', 'GETSEGLIST'].includes(m.type);
const enc = (m: Message) => (isRequest(m) ? encodeRequest(m as RequestMessage) : encodeResponse(m as ResponseMessage));
const dec = (m: Message, b: Buffer) => (isRequest(m) ? decodeRequest(b) : decodeResponse(b));

t.test('every message type round-trips with 4-byte alignment', async (t) => {
  for (const m of samples) {
    const wire = enc(m);
    const msg = isRequest(m) ? wire : wire.subarray(4);
    t.equal(msg.readUInt32BE(8), msg.length, `${m.type} MsgSize`);
    if (!isRequest(m)) t.equal(wire.readUInt32BE(0), msg.length, `${m.type} transport size`);
    const back = dec(m, wire);
    t.same(strip(back), m, `${m.type} round-trips`);
    t.equal(back.size, msg.length);
  }
  // BLK with a 3-byte block (pad 1) and a 1-byte VRF (pad 3); no padding after the final IV field
  const blk = encodeMessage(samples[6]!);
  t.equal(blk.length, 16 + (4 + 32) + 4 + 4 + (4 + 3 + 1) + (4 + 1 + 3) + 4);
  t.equal(blk.subarray(64, 72).toString('hex'), '78797a0000000001', 'block, zero pad, then SizeOfVrfBlock');
});

t.test('truncation at every offset and corrupted lengths give RetrievalParseError only', async (t) => {
  let checks = 0;
  for (const m of samples) {
    const wire = enc(m);
    const step = wire.length > 2000 ? 97 : 1;
    for (let n = 0; n < wire.length; n += step) {
      try {
        dec(m, wire.subarray(0, n));
        t.fail(`${m.type} truncated to ${n} decoded`);
      } catch (e) {
        if (!(e instanceof RetrievalParseError)) t.fail(`${m.type}@${n}: ${String(e)}`);
        checks++;
      }
    }
    // corrupt each aligned u32 with large and small values; decoding must either succeed or throw RetrievalParseError
    for (let off = 0; off + 4 <= wire.length && off < 200; off += 4) {
      for (const v of [0, 1, 0x7fffffff, 0xffffffff, wire.length]) {
        const bad = Buffer.from(wire);
        bad.writeUInt32BE(v, off);
        try {
          dec(m, bad);
        } catch (e) {
          if (!(e instanceof RetrievalParseError)) t.fail(`${m.type} u32@${off}=${v}: ${String(e)}`);
          checks++;
        }
      }
    }
  }
  t.ok(checks > 1000, `${checks} rejections checked`);
});

t.test('specific rejections name the field', async (t) => {
  const getblks = hex('t_getblks');
  const expectField = (b: Buffer, field: RegExp, fn: (b: Buffer) => unknown = decodeRequest) => {
    try {
      fn(b);
      t.fail(`accepted, expected ${field}`);
    } catch (e) {
      t.ok(e instanceof RetrievalParseError && e instanceof ParseError, 'RetrievalParseError');
      t.match((e as RetrievalParseError).field, field);
    }
  };
  const mut = (b: Buffer, off: number, v: number) => {
    const c = Buffer.from(b);
    c.writeUInt32BE(v, off);
    return c;
  };
  expectField(mut(getblks, 4, 9), /MsgType/);
  expectField(mut(getblks, 8, 67), /MsgSize/);
  expectField(mut(getblks, 12, 4), /CryptoAlgoId/);
  expectField(mut(getblks, 0, 3), /ProtVer/);
  expectField(mut(getblks, 16, 31), /SizeOfSegmentID/);
  expectField(mut(getblks, 52, 0), /ReqBlockRangeCount/);
  expectField(mut(getblks, 52, 0x10000000), /ReqBlockRangeCount/);
  expectField(mut(getblks, 60, 0), /Count/);
  expectField(mut(getblks, 56, 512), /ReqBlockRange/);
  expectField(mut(getblks, 64, 4), /DataForVrfBlock/);
  expectField(
    Buffer.concat([getblks.subarray(0, 8), Buffer.from([0, 0, 0, 72]), getblks.subarray(12), Buffer.alloc(4)]),
    /MsgSize/,
  );
  expectField(getblks, /TransportSize/, decodeResponse); // a request has no transport header
  const blk = hex('t_blk_aes128');
  expectField(blk.subarray(4), /TransportSize/, decodeResponse);
  expectField(mut(blk, 0, 1000), /TransportSize/, decodeResponse);
  expectField(
    Buffer.concat([Buffer.from([0, 0, 0, 200]), blk.subarray(4)]).subarray(0, 100),
    /TransportSize/,
    decodeResponse,
  );
  // IV size must be 16 for AES
  const badIv = Buffer.from(blk);
  badIv.writeUInt32BE(15, 4 + 16 + 4 + 32 + 12 + 112 + 4);
  expectField(badIv, /IVBlock/, decodeResponse);
  // BLK sent to a request decoder
  expectField(blk.subarray(4), /MsgType/);
  // oversized request
  const big = Buffer.alloc(MAX_REQUEST_SIZE + 4);
  getblks.copy(big);
  big.writeUInt32BE(big.length, 8);
  expectField(big, /MsgSize/);
  t.throws(() =>
    encodeResponse({
      type: 'BLK',
      segmentId: SID,
      blockIndex: 0,
      nextBlockIndex: 0,
      block: Buffer.alloc(MAX_RESPONSE_SIZE),
      iv: IV,
      cryptoAlgo: 3,
    }),
  );
});

t.test('range helpers', async (t) => {
  t.same(
    normalizeRanges([
      [5, 2],
      [0, 1],
      [1, 2],
      [6, 4],
      [20, 0],
    ]),
    [
      [0, 3],
      [5, 5],
    ],
  );
  t.same(
    intersectRanges(
      [
        [0, 3],
        [10, 5],
      ],
      [1, 2, 4, 10, 11, 14, 15],
    ),
    [
      [1, 2],
      [10, 2],
      [14, 1],
    ],
  );
  t.same(intersectRanges([[0, 1]], [5]), []);
  t.equal(nextHeld([0, 3, 9], 0), 3);
  t.equal(nextHeld([9, 3, 0], 3), 9);
  t.equal(nextHeld([0, 3, 9], 9), 0);
  t.equal(nextHeld([], 0), 0);
});

t.test('crypto: key = leading bytes of Kp, padding tolerated, short plaintext rejected', async (t) => {
  const kp = hex('t_v1_kp');
  const { cipher, iv } = encryptBlock(1, kp, T);
  t.equal(iv.length, 16);
  t.equal(cipher.length, 112);
  t.ok(
    decryptBlock(1, Buffer.concat([kp.subarray(0, 16), Buffer.alloc(16)]), cipher, iv, 100).equals(T),
    'only Kp[0..15] matters for AES-128',
  );
  const { cipher: c2 } = encryptBlock(3, kp, T);
  t.not(c2.toString('hex'), encryptBlock(3, kp, T).cipher.toString('hex'), 'random IV per call');
  // corrupt padding: decryption still returns the expected length
  const c = createCipheriv('aes-128-cbc', kp.subarray(0, 16), iv).setAutoPadding(false);
  const badPad = Buffer.concat([c.update(Buffer.concat([T, Buffer.alloc(12, 0xee)])), c.final()]);
  t.ok(decryptBlock(1, kp, badPad, iv, 100).equals(T), 'invalid PKCS#7 padding ignored, expected length returned');
  t.throws(() => decryptBlock(1, kp, cipher, iv, 113), RetrievalParseError);
  t.throws(() => decryptBlock(1, kp, cipher.subarray(0, 100), iv, 100), RetrievalParseError);
  t.throws(() => decryptBlock(2, kp, cipher, iv.subarray(0, 8), 100), RetrievalParseError);
  t.throws(() => encryptBlock(3, kp.subarray(0, 16), T), RetrievalParseError);
});

t.test('encryptWithRoom: the padding written in place, byte for byte what encryptBlock gives', async (t) => {
  const kp = createHash('sha256').update('kp').digest();
  for (const n of [0, 1, 15, 16, 17, 100, 65536, 148_480, 148_483]) {
    const plain = createHash('sha512').update(String(n)).digest();
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i += plain.length) plain.copy(data, i);
    const room = Buffer.alloc(paddedLength(n) + 7, 0x5a); // larger than needed: the rest untouched
    data.copy(room);
    for (const algo of [1, 2, 3] as const) {
      const got = encryptWithRoom(algo, kp, room, n, IV);
      t.ok(got.equals(encryptBlock(algo, kp, data, IV).cipher), `${n} bytes, algorithm ${algo}`);
      t.equal(got.length, paddedLength(n));
      t.ok(decryptBlock(algo, kp, got, IV, n).equals(data), 'decrypts to the block');
    }
    t.equal(room[paddedLength(n)], 0x5a, 'nothing written past the padding');
  }
  t.equal(paddedLength(0), 16);
  t.equal(paddedLength(15), 16);
  t.equal(paddedLength(16), 32);
  t.throws(() => encryptWithRoom(1, kp, Buffer.alloc(100), 100, IV), RangeError, 'no room for the padding');
  t.throws(() => encryptWithRoom(1, kp, Buffer.alloc(112), 100, IV.subarray(0, 8)), RetrievalParseError, 'short IV');
  t.throws(() => encryptWithRoom(3, kp.subarray(0, 16), Buffer.alloc(112), 100, IV), RetrievalParseError, 'short key');
  t.throws(() => encryptWithRoom(1, kp, Buffer.alloc(112), -1, IV), RangeError);
});

t.test(
  'encodeBlkResponseParts: [head, block, tail] join to encodeResponse exactly; the block not copied',
  async (t) => {
    const cases: ResponseMessage[] = [];
    for (const len of [0, 1, 2, 3, 16, 100, 65552])
      for (const segLen of [32, 33, 35])
        cases.push({
          type: 'BLK',
          cryptoAlgo: len % 2 ? 0 : 3,
          segmentId: Buffer.alloc(segLen, 7),
          blockIndex: len,
          nextBlockIndex: len + 1,
          block: Buffer.alloc(len, 0xc3),
          iv: len ? IV : Buffer.alloc(0),
          ...(segLen === 33 ? { vrfBlock: Buffer.alloc(5, 1) } : {}),
          ...(len === 3 ? { version: { major: 1, minor: 5 } } : {}),
        });
    cases.push(decodeResponse(hex('t_blk_aes128')) as ResponseMessage);
    for (const m of cases) {
      if (m.type !== 'BLK') throw new Error(m.type);
      const parts = encodeBlkResponseParts(m);
      t.ok(Buffer.concat(parts).equals(encodeResponse(m)), `block ${m.block.length}, segment ID ${m.segmentId.length}`);
      t.equal(parts[1], m.block, 'the block itself is the middle piece');
    }
    t.ok(
      Buffer.concat(encodeBlkResponseParts(decodeResponse(hex('t_blk_aes128')) as never)).equals(hex('t_blk_aes128')),
    );
    const big = { type: 'BLK', cryptoAlgo: 3, segmentId: Buffer.alloc(32), blockIndex: 0, nextBlockIndex: 0, iv: IV };
    t.throws(
      () => encodeBlkResponseParts({ ...big, block: Buffer.alloc(MAX_RESPONSE_SIZE) } as never),
      /MsgSize/,
      'over MAX_RESPONSE_SIZE refused as encodeResponse refuses it',
    );
    t.throws(() => encodeBlkResponseParts({ ...big, cryptoAlgo: 9, block: Buffer.alloc(16) } as never), /CryptoAlgoId/);
    t.throws(() => encodeBlkResponseParts({ ...big, blockIndex: -1, block: Buffer.alloc(16) } as never), /BlockIndex/);
  },
);
