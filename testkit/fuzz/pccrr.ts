/** Fuzz targets: MS-PCCRR codec (decode/re-encode) and the server-side responder (respond()). */
import { isDeepStrictEqual } from 'node:util';
import { segmentIdOf } from '../../src/protocol/pccrc/keys.js';
import { blockRange, V1_BLOCK_SIZE } from '../../src/protocol/pccrc/types.js';
import {
  decodeMessage,
  decodeRequest,
  decodeResponse,
  encodeMessage,
  type Message,
  type Decoded,
} from '../../src/protocol/pccrr/codec.js';
import { RetrievalParseError } from '../../src/protocol/pccrr/errors.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { replyBody, respond, type BlockSource } from '../../src/retrieval/block-responder.js';
import { Rng } from './lib.js';
import {
  fixturesDir,
  FuzzFailure,
  fromSeeds,
  hexValues,
  readJson,
  typed,
  type FuzzTarget,
  type Outcome,
} from './common.js';

export function pccrrSeeds(): Buffer[] {
  const seeds: Buffer[] = [];
  for (const b of hexValues(readJson(fixturesDir('retrieval', 'vectors.json')))) {
    if (b.length < 16) continue;
    // vectors of responses carry the 4-byte transport header
    seeds.push(b.length >= 20 && b.readUInt32BE(0) === b.length - 4 ? b.subarray(4) : b);
  }
  const rng = new Rng(0x77);
  const id = rng.bytes(32);
  const msgs: Message[] = [
    { type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } },
    { type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } },
    {
      type: 'GETBLKLIST',
      segmentId: id,
      ranges: [
        [0, 3],
        [7, 1],
      ],
    },
    { type: 'BLKLIST', segmentId: rng.bytes(48), ranges: [[0, 512]], nextBlockIndex: 0 },
    { type: 'GETBLKS', segmentId: id, ranges: [[5, 1]], vrfData: rng.bytes(5) },
    {
      type: 'BLK',
      cryptoAlgo: 1,
      segmentId: id,
      blockIndex: 2,
      nextBlockIndex: 3,
      block: rng.bytes(64),
      vrfBlock: rng.bytes(3),
      iv: rng.bytes(16),
    },
    {
      type: 'BLK',
      segmentId: rng.bytes(64),
      blockIndex: 9,
      nextBlockIndex: 0,
      block: Buffer.alloc(0),
      iv: Buffer.alloc(0),
    },
    {
      type: 'GETSEGLIST',
      requestId: rng.bytes(16),
      segmentIds: [id, rng.bytes(32), rng.bytes(48)],
      extensibleBlob: rng.bytes(7),
    },
    {
      type: 'SEGLIST',
      requestId: rng.bytes(16),
      ranges: [
        [0, 2],
        [5, 1],
      ],
    },
  ];
  for (const m of msgs) seeds.push(encodeMessage(m));
  return seeds;
}

/** Structural equality of two decoded messages, ignoring the size (padding may differ). */
function sameMessage(a: Decoded<Message>, b: Decoded<Message>): boolean {
  return isDeepStrictEqual({ ...a, size: 0 }, { ...b, size: 0 });
}

export function pccrrCodecTarget(): FuzzTarget {
  const seeds = pccrrSeeds();
  return {
    name: 'pccrr-codec',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run(input) {
      let accepted = false;
      try {
        const m = decodeMessage(input);
        if (!sameMessage(decodeMessage(encodeMessage(m)), m)) throw new FuzzFailure(`${m.type} re-encodes differently`);
        accepted = true;
      } catch (e) {
        typed(e, RetrievalParseError);
      }
      // The request/response entry points must agree with decodeMessage and stay typed.
      try {
        decodeRequest(input);
      } catch (e) {
        typed(e, RetrievalParseError);
      }
      const framed = Buffer.alloc(4 + input.length);
      framed.writeUInt32BE(input.length);
      input.copy(framed, 4);
      try {
        decodeResponse(framed);
      } catch (e) {
        typed(e, RetrievalParseError);
      }
      return accepted ? 'accepted' : 'rejected';
    },
  };
}

// ---------------------------------------------------------------------------------------------
// MS-PCCRR responder (respond()) and HTTP server

/** An in-memory BlockSource holding one v1 segment (3 blocks of 5, blocks 0, 1 and 4 present). */
export function memorySource(rng: Rng): {
  source: BlockSource;
  segmentId: Buffer;
  kp: Buffer;
  blocks: Map<number, Buffer>;
} {
  const length = 4 * V1_BLOCK_SIZE + 1000;
  const kp = rng.bytes(32);
  const segmentId = segmentIdOf(1, kp, rng.bytes(32));
  const seg = { version: 1 as const, kp, length, blockSize: V1_BLOCK_SIZE };
  const blocks = new Map<number, Buffer>();
  for (const i of [0, 1, 4]) {
    const [s, e] = blockRange(1, seg, i);
    blocks.set(i, rng.bytes(e - s));
  }
  const mine = (id: Buffer) => id.equals(segmentId);
  const source: BlockSource = {
    getSegment: (id) => (mine(id) ? seg : undefined),
    hasBlock: (id, i) => mine(id) && blocks.has(i),
    presentBlocks: (id) => (mine(id) ? [...blocks.keys()].sort((a, b) => a - b) : []),
    readBlock: async (id, i) => (mine(id) ? blocks.get(i) : undefined),
  };
  return { source, segmentId, kp, blocks };
}

export function responderSeeds(segmentId: Buffer): Buffer[] {
  const base = pccrrSeeds();
  const rng = new Rng(0x99);
  const reqs: Message[] = [
    { type: 'GETBLKS', segmentId, ranges: [[0, 1]] },
    { type: 'GETBLKS', segmentId, ranges: [[4, 1]] },
    { type: 'GETBLKS', segmentId, ranges: [[2, 1]] },
    {
      type: 'GETBLKS',
      segmentId,
      ranges: [
        [1, 2],
        [4, 1],
      ],
      version: { major: 2, minor: 0 },
    },
    { type: 'GETBLKLIST', segmentId, ranges: [[0, 5]] },
    {
      type: 'GETBLKLIST',
      segmentId,
      ranges: [
        [3, 2],
        [0, 1],
      ],
      cryptoAlgo: 3,
    },
    { type: 'GETSEGLIST', requestId: rng.bytes(16), segmentIds: [rng.bytes(32), segmentId] },
    { type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 3, minor: 0 } },
  ];
  return [...base, ...reqs.map(encodeMessage)];
}

/** Checks a responder reply against the request: typed rejection, or a decodable, encrypted answer. */
async function checkRespond(input: Buffer, mem: ReturnType<typeof memorySource>, busy: boolean): Promise<Outcome> {
  const r = await respond(input, { source: mem.source, cryptoAlgo: 3, busy });
  if (!r.ok) {
    if (!(r.error instanceof RetrievalParseError)) throw new FuzzFailure('rejection is not a RetrievalParseError');
    return 'rejected';
  }
  const m = decodeResponse(replyBody(r)); // must be a valid response
  if (m.type !== r.type) throw new FuzzFailure(`reply type ${m.type} != ${r.type}`);
  if (m.type === 'BLK' && m.block.length > 0) {
    if (m.cryptoAlgo === 0) throw new FuzzFailure('plaintext block served');
    const plain = mem.blocks.get(m.blockIndex);
    if (!plain || !m.segmentId.equals(mem.segmentId)) throw new FuzzFailure('served a block the source does not hold');
    if (m.block.includes(plain.subarray(0, 64))) throw new FuzzFailure('plaintext visible in the served block');
    if (!decryptBlock(m.cryptoAlgo, mem.kp, m.block, m.iv, plain.length).equals(plain))
      throw new FuzzFailure('served block does not decrypt to the held block');
  }
  return 'accepted';
}

export function pccrrResponderTarget(): FuzzTarget {
  const mem = memorySource(new Rng(0x5e));
  const seeds = responderSeeds(mem.segmentId);
  let n = 0;
  return {
    name: 'pccrr-responder',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run: (input) => checkRespond(input, mem, ++n % 16 === 0),
  };
}
