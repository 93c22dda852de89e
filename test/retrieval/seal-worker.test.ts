/**
 * Issue 25, serving side: blocks encrypted on a worker thread in shared slots (seal-worker.ts) give
 * the same bytes as inline encryption, and a slot is never reused while a response or the
 * sealed-block memory still holds it.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { replyBody, respond, type ResponderDeps } from '../../src/retrieval/block-responder.js';
import { SealedBlocks } from '../../src/retrieval/sealed-blocks.js';
import { SealWorker } from '../../src/retrieval/seal-worker.js';
import { decodeResponse, encodeRequest } from '../../src/protocol/pccrr/codec.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { blockOf, IntoSource, makeContent, type Content } from './source.js';

const V2 = await makeContent(131_072, 2); // v2: the first segment (one block) of it
const V1 = await makeContent(9 * 65536 + 100); // v1: ten blocks of up to 64 KiB

const req = (c: Content, index: number) =>
  encodeRequest({ type: 'GETBLKS', cryptoAlgo: 3, segmentId: c.seg.segmentId, ranges: [[index, 1]] });

function deps(source: IntoSource, extra: Partial<ResponderDeps>): ResponderDeps {
  return { source, cryptoAlgo: 3, busy: false, ...extra };
}

type Ok = Extract<Awaited<ReturnType<typeof respond>>, { ok: true }>;
function ok(r: Awaited<ReturnType<typeof respond>>): Ok {
  if (!r.ok) throw new Error('not ok');
  return r;
}

function plain(c: Content, r: Ok, index: number): Buffer {
  const m = decodeResponse(replyBody(r));
  if (m.type !== 'BLK') throw new Error(`got ${m.type}`);
  return decryptBlock(m.cryptoAlgo, c.seg.kp, m.block, m.iv, blockOf(c, index).length);
}

// One worker for the first three tests (each worker is a thread to start): eight slots.
const shared = new SealWorker({ maxSlots: 8 });
t.teardown(() => shared.close());

t.test('the worker gives byte for byte the response inline encryption gives', async (t) => {
  const sealer = shared;
  t.ok(await sealer.ready(), 'the worker runs');
  for (const c of [V2, V1]) {
    const source = new IntoSource().add(c);
    const iv = randomBytes(16);
    const index = c === V1 ? 9 : 0; // v1: the short last block too
    const inline = ok(await respond(req(c, index), deps(source, { randomIv: () => iv })));
    const viaWorker = ok(await respond(req(c, index), deps(source, { randomIv: () => iv, sealer })));
    t.ok(replyBody(viaWorker).equals(replyBody(inline)), `v${c.info.version} block ${index}: same bytes`);
    t.ok(plain(c, viaWorker, index).equals(blockOf(c, index)), 'decrypts to the block');
    t.type(viaWorker.release, 'function', 'the response holds a slot');
    viaWorker.release!();
  }
  t.equal(sealer.encrypted, 2, 'both encrypted by the worker');
  await new Promise((r) => setImmediate(r)); // the sealings' own references go
  t.equal(sealer.inUse, 0, 'every slot given back');
});

t.test('a slot held by a response or by the sealed memory is not reused', async (t) => {
  const sealer = shared;
  const before = sealer.encrypted;
  const source = new IntoSource().add(V1);
  // The sealed memory keeps two blocks at most.
  const sealed = new SealedBlocks(2 * 65_600);
  const d = deps(source, { sealer, sealed });
  const serve = async (n: number) => {
    const held: Ok[] = [];
    const copies: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const r = ok(await respond(req(V1, i), d));
      held.push(r);
      copies.push(Buffer.from(replyBody(r)));
    }
    await new Promise((r) => setImmediate(r)); // the sealings' own references go
    return { held, copies };
  };
  const six = await serve(6);
  t.equal(sealer.encrypted - before, 6, 'six blocks by the worker');
  t.equal(sealer.inUse, 6, 'six slots held (responses not yet written)');
  for (const r of six.held) r.release!();
  t.equal(sealer.inUse, 2, 'the sealed memory still holds its two blocks');
  sealed.clear();
  t.equal(sealer.inUse, 0, 'and gives them back when cleared');

  // Ten responses held at once with eight slots: slots are reused only once given back, and the two
  // beyond them are sealed inline; every response keeps its bytes while it is held.
  const ten = await serve(10);
  t.equal(sealer.encrypted - before, 14, 'eight more by the worker');
  t.equal(ten.held.filter((r) => r.release).length, 8, 'two sealed inline (no slot free)');
  for (let i = 0; i < 10; i++) {
    t.ok(replyBody(ten.held[i]!).equals(ten.copies[i]!), `response ${i} unchanged while held`);
    t.ok(plain(V1, ten.held[i]!, i).equals(blockOf(V1, i)), `response ${i} decrypts to its block`);
  }
  for (const r of ten.held) r.release?.();
  sealed.clear();
  t.equal(sealer.inUse, 0, 'nothing leaked');
});

t.test('a block answered from the sealed memory holds the slot for its own response', async (t) => {
  const sealer = shared;
  const source = new IntoSource().add(V2);
  const sealed = new SealedBlocks(1); // keeps nothing (smaller than any block)
  const d = deps(source, { sealer, sealed });
  const a = ok(await respond(req(V2, 0), d));
  const b = ok(await respond(req(V2, 0), d));
  await new Promise((r) => setImmediate(r));
  t.equal(source.reads, 2, 'not kept: read twice');
  t.equal(sealer.inUse, 2, 'each response holds its slot');
  a.release!();
  b.release!();
  t.equal(sealer.inUse, 0, 'given back');

  const keep = new SealedBlocks();
  const d2 = deps(source, { sealer, sealed: keep });
  const [x, y] = await Promise.all([respond(req(V2, 0), d2), respond(req(V2, 0), d2)]).then((r) => r.map(ok));
  await new Promise((r) => setImmediate(r));
  t.equal(source.reads, 3, 'two requests at once: one read');
  t.ok(replyBody(x!).equals(replyBody(y!)), 'the same response');
  x!.release!();
  keep.clear();
  t.equal(sealer.inUse, 1, 'the other response still holds it');
  t.ok(plain(V2, y!, 0).equals(blockOf(V2, 0)), 'and its bytes are intact');
  y!.release!();
  t.equal(sealer.inUse, 0, 'given back');
});

t.test('without a working worker blocks are sealed inline', async (t) => {
  const sealer = new SealWorker();
  const source = new IntoSource().add(V2);
  const d = deps(source, { sealer });
  const r1 = ok(await respond(req(V2, 0), d));
  t.ok(plain(V2, r1, 0).equals(blockOf(V2, 0)), 'served inline while the worker starts');
  t.equal(r1.release, undefined, 'holding no slot');
  t.ok(await sealer.ready(), 'the worker runs');
  await sealer.close();
  t.ok(await sealer.ready(), 'a closed worker starts again');
  const r0 = ok(await respond(req(V2, 0), d));
  t.ok(plain(V2, r0, 0).equals(blockOf(V2, 0)), 'served by it after the restart');
  t.equal(sealer.encrypted, 1);
  r0.release?.();
  await sealer.close();
  const none = new SealWorker({ maxSlots: 0 });
  const r = ok(await respond(req(V2, 0), deps(source, { sealer: none })));
  t.ok(plain(V2, r, 0).equals(blockOf(V2, 0)), 'no slots: served inline');
  t.equal(r.release, undefined, 'holding nothing');
  t.equal(none.encrypted, 0);
});

t.test('a server with the seal worker: blocks over HTTP, both transports, slots given back', async (t) => {
  for (const transport of ['lean', 'node'] as const) {
    const source = new IntoSource().add(V1).add(V2);
    const server = createRetrievalServer({ source, sealWorker: true, transport, sealedBudgetBytes: 0 });
    const { host, port } = await server.listen();
    const peer = `${host}:${port}`;
    const c = new RetrievalClient({ probation: false });
    /** Block `i` of `content` from the server, checked against the source. */
    const fetch = async (content: Content, i: number) => {
      const r = await c.getBlock({
        peer,
        segmentId: content.seg.segmentId,
        index: i,
        kp: content.seg.kp,
        expectedLength: blockOf(content, i).length,
        verify: (p) => verifyBlock(content.info.version, content.seg, i, p),
      });
      t.ok(r.data.equals(blockOf(content, i)), `${transport}: v${content.info.version} block ${i}`);
    };
    try {
      // Sealed inline until the worker runs (started as the server listened), then by it.
      await fetch(V1, 0);
      while (server.stats().sealedInWorker === 0) {
        await fetch(V1, 1);
        await new Promise((r) => setTimeout(r, 10));
      }
      const before = server.stats();
      await Promise.all([...Array(10).keys(), ...Array(10).keys()].map((i) => fetch(V1, i)));
      await fetch(V2, 0);
      const after = server.stats();
      t.equal(after.blocksServed - before.blocksServed, 21);
      t.equal(after.sealedInWorker - before.sealedInWorker, 21, 'all 21 encrypted by the worker');
    } finally {
      await c.close();
      await server.close();
    }
  }
});
