/**
 * Issue 25, serving side: a block that several peers ask for is read (and verified) and encrypted
 * once; every answer carries the same ciphertext and IV, which decrypt to the block. Bounded memory;
 * a block the store no longer holds is never answered from memory.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { IvPool, replyBody, respond, type ResponderDeps } from '../../src/retrieval/block-responder.js';
import { SealedBlocks } from '../../src/retrieval/sealed-blocks.js';
import { decodeResponse, encodeRequest } from '../../src/protocol/pccrr/codec.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { blockOf, deferred, IntoSource, makeContent, MemorySource } from './source.js';

const C = await makeContent(3 * 65536 + 100); // v1: four blocks of up to 64 KiB
const req = (index: number) =>
  encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: C.seg.segmentId, ranges: [[index, 1]] });

/** The block a response carries, decrypted, with its IV. */
function opened(r: Awaited<ReturnType<typeof respond>>, index: number): { plain: Buffer; iv: Buffer } {
  if (!r.ok) throw new Error('not ok');
  const m = decodeResponse(replyBody(r));
  if (m.type !== 'BLK') throw new Error(`got ${m.type}`);
  return { plain: decryptBlock(m.cryptoAlgo, C.seg.kp, m.block, m.iv, blockOf(C, index).length), iv: m.iv };
}

function deps(source: MemorySource, sealed: SealedBlocks): ResponderDeps & { ivs: number } {
  const d = {
    source,
    cryptoAlgo: 3 as const,
    busy: false,
    sealed,
    ivs: 0,
    randomIv: () => {
      d.ivs++;
      return randomBytes(16);
    },
  };
  return d;
}

t.test('a block asked for three times is read and encrypted once, same IV, right bytes', async (t) => {
  const source = new MemorySource().add(C);
  const d = deps(source, new SealedBlocks());
  const answers = [];
  for (let k = 0; k < 3; k++) answers.push(opened(await respond(req(1), d), 1));
  t.equal(source.reads, 1, 'one read of the block from the store');
  t.equal(d.ivs, 1, 'one encryption');
  for (const a of answers) {
    t.ok(a.plain.equals(blockOf(C, 1)), 'decrypts to the block');
    t.ok(a.iv.equals(answers[0]!.iv), 'the same IV with the same ciphertext');
  }
  opened(await respond(req(2), d), 2);
  t.equal(source.reads, 2, 'another block is read on its own');
});

t.test('requests arriving while the block is being read share that read', async (t) => {
  const source = new MemorySource().add(C);
  const gate = deferred();
  source.hold = gate.promise;
  const d = deps(source, new SealedBlocks());
  const pending = [respond(req(0), d), respond(req(0), d), respond(req(0), d)];
  gate.resolve();
  for (const r of await Promise.all(pending)) t.ok(opened(r, 0).plain.equals(blockOf(C, 0)));
  t.equal(source.reads, 1);
});

t.test('bounded: beyond the budget the least recently used block goes', async (t) => {
  const source = new MemorySource().add(C);
  const one = 65536 + 16 + 16; // ciphertext of a full block (PKCS#7 adds 16) and its IV
  const sealed = new SealedBlocks(2 * one);
  const d = deps(source, sealed);
  for (const i of [0, 1, 0, 2]) opened(await respond(req(i), d), i);
  t.equal(source.reads, 3, 'blocks 0, 1, 2 read once each (0 again from memory)');
  t.ok(sealed.size() <= 2 * one, `held ${sealed.size()} bytes, budget ${2 * one}`);
  opened(await respond(req(1), d), 1);
  t.equal(source.reads, 4, 'block 1 was the least recently used and went (now 0 goes)');
  opened(await respond(req(2), d), 2);
  t.equal(source.reads, 4, 'block 2 (the newest before it) stayed');
});

t.test('a block the store no longer holds is not served from memory', async (t) => {
  const source = new MemorySource().add(C);
  const d = deps(source, new SealedBlocks());
  opened(await respond(req(3), d), 3);
  source.held.get(C.seg.segmentId.toString('hex'))!.blocks.delete(3);
  const r = await respond(req(3), d);
  t.equal(r.ok && r.outcome, 'missing');
});

t.test('a read that fails is not kept: the next request reads again', async (t) => {
  const source = new MemorySource().add(C);
  const d = deps(source, new SealedBlocks());
  const real = source.readBlock.bind(source);
  let fail = true;
  source.readBlock = async (id, i) => {
    if (fail) {
      source.reads++;
      throw new Error('disk gone');
    }
    return real(id, i);
  };
  await t.rejects(respond(req(0), d), /disk gone/);
  fail = false;
  t.ok(opened(await respond(req(0), d), 0).plain.equals(blockOf(C, 0)));
  t.equal(source.reads, 2);
});

t.test('the response is encoded once: a repeat is the same bytes, the kept ciphertext lives inside it', async (t) => {
  const source = new MemorySource().add(C);
  const sealed = new SealedBlocks();
  const d = deps(source, sealed);
  const first = await respond(req(1), d);
  const again = await respond(req(1), d);
  if (!first.ok || !again.ok) throw new Error('not ok');
  t.equal(again.parts, first.parts, 'the same buffers answer again (no second encoding)');
  const m = decodeResponse(replyBody(again));
  if (m.type !== 'BLK') throw new Error(m.type);
  t.ok(m.block.equals(again.parts[1]!), 'the ciphertext is the middle piece, sent as it is');
  t.equal(m.blockIndex, 1);
  t.equal(m.nextBlockIndex, 2, 'v1: NextBlockIndex names the next block held');
  t.ok(opened(again, 1).plain.equals(blockOf(C, 1)));
  t.ok(sealed.size() >= m.block.length, 'the memory counts the ciphertext');
  // The next block goes: NextBlockIndex changes, so the answer is encoded afresh around the same
  // ciphertext and IV (no new read, no new encryption).
  source.held.get(C.seg.segmentId.toString('hex'))!.blocks.delete(2);
  const later = await respond(req(1), d);
  if (!later.ok) throw new Error('not ok');
  const m2 = decodeResponse(replyBody(later));
  if (m2.type !== 'BLK') throw new Error(m2.type);
  t.equal(m2.nextBlockIndex, 3, 'NextBlockIndex skips the block no longer held');
  t.ok(m2.block.equals(m.block) && m2.iv.equals(m.iv), 'same ciphertext and IV');
  t.equal(source.reads, 1, 'read once');
  t.equal(d.ivs, 1, 'encrypted once');
});

t.test('IvPool: 16-byte IVs, each handed out once, across batches', async (t) => {
  const pool = new IvPool(4);
  const seen = new Set<string>();
  let sized = 0;
  for (let k = 0; k < 1000; k++) {
    const iv = pool.next();
    if (iv.length === 16) sized++;
    seen.add(iv.toString('hex'));
  }
  t.equal(sized, 1000, 'every IV is 16 bytes');
  t.equal(seen.size, 1000, 'no IV repeats');
});

t.test('blocks read into reused buffers: every answer stays intact after later blocks are read', async (t) => {
  const source = new IntoSource().add(C);
  for (const sealed of [new SealedBlocks(), new SealedBlocks(0)]) {
    const d = deps(source, sealed);
    const answers = [];
    for (const i of [0, 1, 2, 3, 0, 3]) answers.push([i, await respond(req(i), d)] as const);
    for (const [i, r] of answers)
      t.ok(opened(r, i).plain.equals(blockOf(C, i)), `block ${i}, budget ${sealed.budgetBytes}`);
  }
  t.ok(source.intoReads >= 8, 'read through readBlockInto');
});

t.test('counted: blocks sealed and requests answered from memory, with and without a budget', async (t) => {
  const source = new MemorySource().add(C);
  const on = new SealedBlocks();
  for (const i of [0, 0, 1, 0]) opened(await respond(req(i), deps(source, on)), i);
  t.match(on, { sealedCount: 2, hits: 2 }, 'blocks 0 and 1 sealed, block 0 answered twice from memory');
  const off = new SealedBlocks(0);
  for (const i of [0, 0, 1]) opened(await respond(req(i), deps(source, off)), i);
  t.match(off, { sealedCount: 3, hits: 0 }, 'no memory: every request sealed');
});
