/**
 * Server-side MS-PCCRR semantics, independent of HTTP: turns one request body into one response
 * body (with transport header) or a "malformed" verdict. Randomness (IVs) is injected so the
 * behaviour is testable byte for byte; the block source is the only I/O.
 */
import { randomBytes } from 'node:crypto';
import { blockCount, blockRange } from '../protocol/pccrc/types.js';
import {
  decodeRequest,
  encodeBlkResponseParts,
  encodeResponse,
  isSupportedMajor,
  protVerFromU32,
  SUPPORTED_MAX,
  SUPPORTED_MIN,
  HEADER_SIZE,
  type Blk,
  type CryptoAlgo,
  type Decoded,
  type GetBlkList,
  type GetBlks,
  type GetSegList,
  type Range,
  type ResponseMessage,
} from '../protocol/pccrr/codec.js';
import { encryptBlock, encryptWithRoom, paddedLength } from '../protocol/pccrr/crypto.js';
import { intersectRanges, nextHeld, normalizeRanges, rangesFromIndexes } from '../protocol/pccrr/ranges.js';
import { RetrievalParseError } from '../protocol/pccrr/errors.js';
import { decodeReplayRecord } from './replay-record.js';
import type { Sealed, SealedBlocks } from './sealed-blocks.js';
import type { SealWorker } from './seal-worker.js';

/** Where served blocks come from (the cache's BlockStore satisfies this structurally). */
export interface BlockSource {
  /** `replay`: a hosted cache's v2 record, sent as stored (replay-record.ts). */
  getSegment(
    segmentId: Buffer,
  ): { version: 1 | 2; kp: Buffer; length: number; blockSize: number; replay?: boolean } | undefined;
  hasBlock(segmentId: Buffer, index: number): boolean;
  presentBlocks(segmentId: Buffer): number[];
  readBlock(segmentId: Buffer, index: number, purpose?: 'local' | 'peer'): Promise<Buffer | undefined>;
  /**
   * readBlock into `dest` (from its start): the verified block's length, undefined when not held.
   * When offered, served blocks are read into reused buffers (no fresh buffer per block).
   */
  readBlockInto?(
    segmentId: Buffer,
    index: number,
    dest: Buffer,
    purpose?: 'local' | 'peer',
  ): Promise<number | undefined>;
}

export type ServedAlgo = 1 | 2 | 3;

export interface ResponderDeps {
  source: BlockSource;
  /** Algorithm we encrypt with, whatever the client asked for (never 0: peers get only ciphertext). */
  cryptoAlgo: ServedAlgo;
  /** True when the server is at its concurrency cap: answer with empty BLK / BLKLIST / SEGLIST. */
  busy: boolean;
  /** IV source (default: 16 fresh random bytes per block sealed, from an IvPool). */
  randomIv?: () => Buffer;
  /** Encrypted blocks kept for reuse: a block asked for again is not read or encrypted again. */
  sealed?: SealedBlocks;
  /**
   * Blocks are read into shared slots and encrypted there by a worker thread (seal-worker.ts: no
   * block-sized allocation in this isolate). Without it, or when it has no slot free, inline.
   */
  sealer?: SealWorker;
}

/** What happened, for statistics and logs. */
export type Outcome = 'served' | 'missing' | 'busy' | 'list' | 'nego' | 'version';

/**
 * `parts`: the response body (transport header included) in pieces to be written in order without
 * joining them (a block's ciphertext is one piece, never copied); `length` their total. `release`:
 * when set, the parts are shared memory (seal-worker.ts) that the caller must give back, once,
 * when they are written (or will not be).
 */
export type Reply =
  | {
      ok: true;
      parts: Buffer[];
      length: number;
      outcome: Outcome;
      blockBytes: number;
      type: ResponseMessage['type'];
      release?: () => void;
    }
  | { ok: false; error: RetrievalParseError };

/** The whole body of a reply in one buffer (tests and logs; the server writes the parts). */
export function replyBody(r: Extract<Reply, { ok: true }>): Buffer {
  return r.parts.length === 1 ? r.parts[0]! : Buffer.concat(r.parts, r.length);
}

/**
 * IVs from the CSPRNG, drawn `batch` at a time: one call per 256 blocks sealed instead of one per
 * block (randomBytes(16) per block was 2.4% of a serving daemon's CPU, BENCHMARKS.md issue 25).
 * Every IV is handed out once; a used batch is never refilled (views of it may still be held).
 */
export class IvPool {
  private buf = Buffer.alloc(0);
  private at = 0;
  constructor(private readonly batch = 256) {}
  next(): Buffer {
    if (this.at + 16 > this.buf.length) {
      this.buf = randomBytes(16 * this.batch);
      this.at = 0;
    }
    const iv = this.buf.subarray(this.at, this.at + 16);
    this.at += 16;
    return iv;
  }
}
const ivs = new IvPool();

/**
 * Buffers that served blocks are read into and padded in (then encrypted into a fresh ciphertext):
 * reused, so a served block costs one new buffer (its ciphertext), not three. At most `keep` are
 * kept while idle; more are made while many requests are in progress.
 */
export class ScratchBuffers {
  private readonly free: Buffer[] = [];
  constructor(private readonly keep = 4) {}
  take(length: number): Buffer {
    const i = this.free.findIndex((b) => b.length >= length);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    return Buffer.allocUnsafeSlow(Math.ceil(length / 4096) * 4096);
  }
  give(b: Buffer): void {
    if (this.free.length < this.keep) this.free.push(b);
  }
}
const scratch = new ScratchBuffers();

const KEY_BYTES: Record<ServedAlgo, number> = { 1: 16, 2: 24, 3: 32 };

function reply(m: ResponseMessage, outcome: Outcome, blockBytes = 0): Reply {
  const body = encodeResponse(m);
  return { ok: true, parts: [body], length: body.length, outcome, blockBytes, type: m.type };
}

function blkReply(m: Blk, blockBytes: number, release?: () => void): Reply {
  return partsReply(encodeBlkResponseParts(m), blockBytes, release);
}

function partsReply(parts: Buffer[], blockBytes: number, release?: () => void): Reply {
  let length = 0;
  for (const p of parts) length += p.length;
  return { ok: true, parts, length, outcome: 'served', blockBytes, type: 'BLK', release };
}

function negoResp(): ResponseMessage {
  return { type: 'NEGO_RESP', min: SUPPORTED_MIN, max: SUPPORTED_MAX };
}

/** Handle one request body. Never throws for bad input: returns { ok: false } (HTTP 400). */
export async function respond(body: Buffer, deps: ResponderDeps): Promise<Reply> {
  // A request in a major version we do not speak gets our version range, whatever follows (4.6).
  if (body.length >= HEADER_SIZE) {
    const major = protVerFromU32(body.readUInt32BE(0)).major;
    if (!isSupportedMajor(major)) {
      // The body layout of an unknown version is unknown; only its MsgSize must be consistent.
      const size = body.readUInt32BE(8);
      if (size !== body.length)
        return { ok: false, error: new RetrievalParseError('MsgSize', `${size} but message is ${body.length} bytes`) };
      return reply(negoResp(), 'version');
    }
  }
  let req: Decoded<ReturnType<typeof decodeRequest>>;
  try {
    req = decodeRequest(body);
  } catch (e) {
    if (e instanceof RetrievalParseError) return { ok: false, error: e };
    throw e;
  }
  switch (req.type) {
    case 'NEGO_REQ':
      return reply(negoResp(), 'nego');
    case 'GETBLKS':
      return getBlocks(req, deps);
    case 'GETBLKLIST':
      return getBlockList(req, deps);
    case 'GETSEGLIST':
      return getSegmentList(req, deps);
  }
}

async function getBlocks(req: GetBlks, deps: ResponderDeps): Promise<Reply> {
  const index = Math.min(...req.ranges.map(([i]) => i)); // several blocks named: serve only the lowest
  const empty = (outcome: Outcome): Reply =>
    reply(
      {
        type: 'BLK',
        segmentId: req.segmentId,
        blockIndex: index,
        nextBlockIndex: 0,
        block: Buffer.alloc(0),
        iv: Buffer.alloc(0),
      },
      outcome,
    );
  if (deps.busy) return empty('busy');
  const { source } = deps;
  const seg = source.getSegment(req.segmentId);
  if (!seg || index >= blockCount(seg.version, seg) || !source.hasBlock(req.segmentId, index)) return empty('missing');
  if (seg.replay) {
    const data = await source.readBlock(req.segmentId, index, 'peer');
    // Sent exactly as the offering client sent it: we never had the key (protocol/pchc.md).
    const rec = data && index === 0 ? decodeReplayRecord(data) : undefined;
    if (!rec) return empty('missing');
    return reply(
      {
        type: 'BLK',
        cryptoAlgo: rec.cryptoAlgo,
        segmentId: req.segmentId,
        blockIndex: 0,
        nextBlockIndex: 0,
        block: rec.block,
        iv: rec.iv,
      },
      'served',
      rec.block.length,
    );
  }
  const [s, e] = blockRange(seg.version, seg, index);
  // Strongest algorithm that the segment key supports, up to the configured one.
  let algo: ServedAlgo = deps.cryptoAlgo;
  while (algo > 1 && seg.kp.length < KEY_BYTES[algo]) algo = (algo - 1) as ServedAlgo;
  if (seg.kp.length < KEY_BYTES[algo]) return empty('missing');
  const next = seg.version === 2 ? 0 : nextHeld(source.presentBlocks(req.segmentId), index);
  const blk = (cipher: Buffer, iv: Buffer): Blk => ({
    type: 'BLK',
    cryptoAlgo: algo as CryptoAlgo,
    segmentId: req.segmentId,
    blockIndex: index,
    nextBlockIndex: next,
    block: cipher,
    iv,
  });
  // The store verifies the block as it reads it: only verified bytes are encrypted (and kept).
  // The whole response is built here, once: a block asked for again is answered with the same
  // bytes, not encoded again (the same IV and ciphertext; protocol/pccrr.md, "Crypto"). The block
  // is read into a reused buffer with room for the padding and encrypted in one pass; the
  // ciphertext is sent as it is, between the response's head and tail (no copy).
  const seal = async (): Promise<Sealed | undefined> => {
    const iv = deps.randomIv?.() ?? ivs.next();
    let cipher: Buffer | undefined;
    let slot: Sealed['slot'];
    const taken = source.readBlockInto ? deps.sealer?.take(e - s) : undefined;
    if (taken) {
      // Read and verified into a shared slot, encrypted there by the worker (seal-worker.ts).
      try {
        const n = await source.readBlockInto!(req.segmentId, index, taken.slot.buf, 'peer');
        if (n !== e - s) {
          taken.release();
          return undefined;
        }
        cipher = await deps.sealer!.encrypt(taken.slot, algo, seg.kp.subarray(0, KEY_BYTES[algo]), n, iv);
        slot = taken.slot;
        // The sealing's own reference outlives every request waiting for this sealing (they take
        // theirs in the microtasks that follow) and the memory's, taken as it keeps the block.
        setImmediate(taken.release);
      } catch (err) {
        taken.release();
        if (!(err instanceof Error && /seal worker/.test(err.message))) throw err;
        cipher = undefined; // the worker failed: sealed inline below
      }
    }
    if (!cipher && source.readBlockInto) {
      const buf = scratch.take(paddedLength(e - s));
      try {
        const n = await source.readBlockInto(req.segmentId, index, buf, 'peer');
        if (n !== e - s) return undefined;
        cipher = encryptWithRoom(algo, seg.kp, buf, n, iv);
      } finally {
        scratch.give(buf);
      }
    } else if (!cipher) {
      const data = await source.readBlock(req.segmentId, index, 'peer');
      if (!data || data.length !== e - s) return undefined;
      cipher = encryptBlock(algo, seg.kp, data, iv).cipher;
    }
    const parts = encodeBlkResponseParts(blk(cipher, iv));
    const tail = parts[2];
    return { cipher, iv: tail.subarray(tail.length - iv.length), length: e - s, parts, next, slot };
  };
  const sealed = deps.sealed ? await deps.sealed.get(req.segmentId, index, algo, seg.kp, seal) : await seal();
  if (!sealed) return empty('missing');
  // This response's reference to the slot the ciphertext is in (if it is in one).
  const release = sealed.slot?.hold();
  // NextBlockIndex (v1: the next block held) is the one field that may differ between requests.
  if (sealed.parts && sealed.next === next) return partsReply(sealed.parts, sealed.length, release);
  return blkReply(blk(sealed.cipher, sealed.iv), sealed.length, release);
}

async function getBlockList(req: GetBlkList, deps: ResponderDeps): Promise<Reply> {
  const seg = deps.busy ? undefined : deps.source.getSegment(req.segmentId);
  let ranges: Range[] = [];
  let next = 0;
  if (seg) {
    const held = deps.source.presentBlocks(req.segmentId);
    ranges = intersectRanges(req.ranges, held);
    const wanted = normalizeRanges(req.ranges);
    const last = wanted[wanted.length - 1]!;
    next = nextHeld(held, last[0] + last[1] - 1);
  }
  return reply(
    { type: 'BLKLIST', segmentId: req.segmentId, ranges, nextBlockIndex: next },
    deps.busy ? 'busy' : 'list',
  );
}

async function getSegmentList(req: GetSegList, deps: ResponderDeps): Promise<Reply> {
  const held: number[] = [];
  if (!deps.busy) {
    req.segmentIds.forEach((id, k) => {
      if (deps.source.getSegment(id) && deps.source.presentBlocks(id).length > 0) held.push(k);
    });
  }
  const ranges = rangesFromIndexes(held);
  return reply({ type: 'SEGLIST', requestId: req.requestId, ranges }, deps.busy ? 'busy' : 'list');
}
