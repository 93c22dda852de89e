/**
 * The retrieval client's per-block codec path (issue 25): encodeGetBlock and decodeBlockResponse
 * must give exactly what encodeRequest and decodeResponse give, and fail exactly where they fail,
 * on well-formed messages and on every mutation of them tried here.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import {
  decodeBlockResponse,
  decodeResponse,
  encodeGetBlock,
  encodeRequest,
  encodeResponse,
  type CryptoAlgo,
  type ProtVer,
} from '../../../src/protocol/pccrr/codec.js';

/** A deterministic byte generator (no Math.random: the same cases on every run). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}
const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

/** What a decoder did: the fields it returned (buffers as hex), or the error's class and message. */
function outcome(f: () => unknown): unknown {
  try {
    const m = f() as Record<string, unknown>;
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(m))
      o[k] = Buffer.isBuffer(v) ? `${v.length}:${createHash('sha1').update(v).digest('hex')}` : v;
    return o;
  } catch (e) {
    return { error: (e as Error).constructor.name, message: (e as Error).message };
  }
}

t.test('encodeGetBlock is encodeRequest for one block, byte for byte', async (t) => {
  const differ: string[] = [];
  for (const sidLen of [32, 48, 64, 31, 33])
    for (const algo of [0, 1, 2, 3] as CryptoAlgo[])
      for (const index of [0, 1, 511, 0xffffffff]) {
        const segmentId = bytes(sidLen, sidLen);
        const want = encodeRequest({ type: 'GETBLKS', cryptoAlgo: algo, segmentId, ranges: [[index, 1]] });
        if (!encodeGetBlock(segmentId, index, algo).equals(want))
          differ.push(`sid ${sidLen} algo ${algo} index ${index}`);
      }
  t.same(differ, [], 'the same bytes for 80 requests');
  // Out-of-range fields: the same error as encodeRequest's.
  for (const [index, algo] of [
    [-1, 1],
    [2 ** 32, 1],
    [1.5, 1],
    [3, 7],
  ] as const) {
    const segmentId = bytes(32, 1);
    t.same(
      outcome(() => encodeGetBlock(segmentId, index, algo as CryptoAlgo)),
      outcome(() =>
        encodeRequest({ type: 'GETBLKS', cryptoAlgo: algo as CryptoAlgo, segmentId, ranges: [[index, 1]] }),
      ),
      `index ${index} algo ${algo}`,
    );
  }
});

t.test('decodeBlockResponse decodes what decodeResponse decodes, and refuses what it refuses', async (t) => {
  const versions: ProtVer[] = [
    { major: 2, minor: 0 },
    { major: 3, minor: 0 }, // unsupported: refused
  ];
  const wellFormed: Buffer[] = [];
  for (const version of versions)
    for (const sidLen of [32, 64])
      for (const [algo, blockLen, ivLen, vrfLen] of [
        [1, 4096, 16, 0],
        [3, 48, 16, 0],
        [3, 0, 0, 0], // not available
        [0, 37, 0, 0],
        [0, 37, 0, 5],
        [2, 16, 16, 3],
      ] as const)
        wellFormed.push(
          encodeResponse({
            type: 'BLK',
            version,
            cryptoAlgo: algo,
            segmentId: bytes(sidLen, 7),
            blockIndex: 3,
            nextBlockIndex: 4,
            block: bytes(blockLen, 9),
            vrfBlock: bytes(vrfLen, 5),
            iv: bytes(ivLen, 1),
          }),
        );
  // Other response types go the general way.
  wellFormed.push(encodeResponse({ type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } }));
  wellFormed.push(encodeResponse({ type: 'BLKLIST', segmentId: bytes(32, 2), ranges: [[0, 4]], nextBlockIndex: 0 }));
  let accepted = 0;
  let refused = 0;
  const differ: string[] = [];
  const check = (body: Buffer, what: string) => {
    const want = outcome(() => decodeResponse(body, { views: true }));
    if (JSON.stringify(outcome(() => decodeBlockResponse(body))) !== JSON.stringify(want)) differ.push(what);
    if ((want as { error?: string }).error) refused++;
    else accepted++;
  };
  for (const [i, body] of wellFormed.entries()) {
    check(body, `well-formed ${i}`);
    // Every truncation and extension by up to 8 bytes.
    for (const cut of [1, 2, 3, 4, 7]) check(body.subarray(0, body.length - cut), `${i} cut ${cut}`);
    for (const add of [1, 2, 3, 4, 7]) {
      const longer = Buffer.concat([body, Buffer.alloc(add)]);
      check(longer, `${i} + ${add} zero bytes`);
      const fixed = Buffer.from(longer);
      fixed.writeUInt32BE(fixed.length - 4, 0); // transport size follows, MsgSize does not
      check(fixed, `${i} + ${add}, transport size fixed`);
      fixed.writeUInt32BE(fixed.length - 4, 12); // both follow: trailing bytes after the last field
      check(fixed, `${i} + ${add}, both sizes fixed`);
    }
    // Random overwrites of each aligned u32 of the headers and size fields (and of a few bytes).
    const rnd = lcg(i + 1);
    // Every aligned u32 of the heads (transport, message, SegmentId, indexes, SizeOfBlock) and of
    // the tail (Block padding, SizeOfVrfBlock, VrfBlock, SizeOfIVBlock, IVBlock).
    const words = new Set<number>();
    for (let w = 0; w < Math.min(body.length >> 2, 24); w++) words.add(w);
    for (let w = Math.max(0, (body.length >> 2) - 10); w < body.length >> 2; w++) words.add(w);
    for (const w of words)
      for (const v of [0, 16, 0xffffffff, rnd()]) {
        const m = Buffer.from(body);
        m.writeUInt32BE(v >>> 0, w * 4);
        check(m, `${i} word ${w} = ${v >>> 0}`);
      }
    for (let k = 0; k < 12; k++) {
      const m = Buffer.from(body);
      const at = rnd() % m.length;
      m[at] = rnd() & 0xff;
      check(m, `${i} byte ${at}`);
    }
  }
  t.same(differ, [], 'no case decoded differently');
  t.ok(accepted > 50 && refused > 200, `both outcomes exercised (${accepted} accepted, ${refused} refused)`);
});

t.test('decodeBlockResponse: the block, VrfBlock and IV are views into the body; SegmentId is a copy', async (t) => {
  const body = encodeResponse({
    type: 'BLK',
    cryptoAlgo: 1,
    segmentId: bytes(32, 7),
    blockIndex: 0,
    nextBlockIndex: 1,
    block: bytes(32, 9),
    iv: bytes(16, 1),
  });
  const m = decodeBlockResponse(body);
  if (m.type !== 'BLK') throw new Error('not a BLK');
  t.equal(m.block.buffer, body.buffer);
  t.equal(m.iv.buffer, body.buffer);
  body.fill(0);
  t.same(m.segmentId, bytes(32, 7), 'SegmentId does not alias the body');
  t.same(m.block, bytes(32, 0), 'the block is the body');
});
