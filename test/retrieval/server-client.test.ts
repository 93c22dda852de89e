import t, { type Test } from 'tap';
import { Agent } from 'undici';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { RetrievalClient, PeerError, type PeerErrorCode } from '../../src/retrieval/client.js';
import { decodeResponse, encodeRequest, encodeMessage, protVerToU32 } from '../../src/protocol/pccrr/codec.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { MemorySource, blockOf, deferred, makeContent, raw, type Content } from './source.js';

const A = await makeContent(65536 * 2 + 1000); // 3 blocks: 64 KiB, 64 KiB, 1000 bytes
const B = await makeContent(70000); // held nowhere
const V2 = await makeContent(50000, 2); // one v2 segment of 50000 bytes = one block

const agent = new Agent({ connections: 8 });
t.teardown(() => agent.close());

async function start(t: Tap, source: MemorySource, opts: Partial<Parameters<typeof createRetrievalServer>[0]> = {}) {
  const server = createRetrievalServer({ source, ...opts });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  return { server, peer: `${host}:${port}`, base: `http://${host}:${port}` };
}
type Tap = Test;

function client(t: Tap, opts: ConstructorParameters<typeof RetrievalClient>[0] = {}) {
  const c = new RetrievalClient(opts);
  t.teardown(() => c.close());
  return c;
}

const want = (c: Content, index: number, peer: string) => ({
  peer,
  segmentId: c.seg.segmentId,
  index,
  kp: c.seg.kp,
  expectedLength: blockOf(c, index).length,
  verify: (p: Buffer) => verifyBlock(c.info.version, c.seg, index, p),
});

async function rejects(t: Tap, p: Promise<unknown>, code: PeerErrorCode, msg: string): Promise<PeerError | undefined> {
  try {
    await p;
    t.fail(`${msg}: resolved, expected ${code}`);
  } catch (e) {
    t.ok(e instanceof PeerError, `${msg}: PeerError`);
    t.equal((e as PeerError).code, code, msg);
    return e as PeerError;
  }
  return undefined;
}

t.test('blocks round-trip over HTTP: encrypted, decrypted, verified; NextBlockIndex; stats', async (t) => {
  const { server, peer } = await start(t, new MemorySource().add(A).add(V2));
  const c = client(t);
  const nexts: number[] = [];
  for (const i of [0, 1, 2]) {
    const r = await c.getBlock(want(A, i, peer));
    t.ok(r.data.equals(blockOf(A, i)), `block ${i} bytes equal the source`);
    nexts.push(r.nextBlockIndex);
    t.ok(r.bytesOnWire > r.data.length, 'bytesOnWire counts ciphertext and framing');
  }
  t.same(nexts, [1, 2, 0], 'NextBlockIndex = next held block or 0');
  const v2 = await c.getBlock(want(V2, 0, peer));
  t.ok(v2.data.equals(V2.data), 'v2 segment retrieved as block 0');
  t.equal(v2.nextBlockIndex, 0);
  const s = server.stats();
  t.equal(s.blocksServed, 4);
  t.equal(s.bytesServed, A.data.length + V2.data.length);
  t.equal(s.byStatus[200], 4);
  t.same(await c.negotiate(peer), { min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } });
});

t.test('server never sends plaintext, even when asked for algorithm 0; a random IV per block sealed', async (t) => {
  const source = new MemorySource().add(A);
  const { base } = await start(t, source);
  const ivs = new Set<string>();
  const ciphers = new Set<string>();
  for (const algo of [0, 1, 2, 3] as const) {
    const req = encodeRequest({ type: 'GETBLKS', cryptoAlgo: algo, segmentId: A.seg.segmentId, ranges: [[2, 1]] });
    const { status, body } = await raw(agent, base, { body: req });
    t.equal(status, 200);
    t.equal(body.readUInt32BE(4 + 12), 3, `asked ${algo}: CryptoAlgoId on the wire is 3 (AES-256)`);
    const m = decodeResponse(body);
    if (m.type !== 'BLK') {
      t.fail('not BLK');
      continue;
    }
    t.equal(m.iv.length, 16);
    t.equal(m.block.length, 1008, '1000 bytes + PKCS#7 padding');
    t.equal(body.indexOf(blockOf(A, 2).subarray(0, 64)), -1, 'plaintext does not appear on the wire');
    t.ok(decryptBlock(3, A.seg.kp, m.block, m.iv, 1000).equals(blockOf(A, 2)), 'AES-256 with all of Kp');
    ivs.add(m.iv.toString('hex'));
    ciphers.add(m.block.toString('hex'));
  }
  // The block is sealed once and the same ciphertext with the same IV answers again (issue 25;
  // protocol/pccrr.md "Crypto" says why that is safe); other blocks get IVs of their own.
  t.equal(source.reads, 1, 'block 2 read once for the four requests');
  t.equal(ivs.size, 1, 'the same IV with the same ciphertext');
  t.equal(ciphers.size, 1);
  for (const i of [0, 1]) {
    const req = encodeRequest({ type: 'GETBLKS', cryptoAlgo: 3, segmentId: A.seg.segmentId, ranges: [[i, 1]] });
    const m = decodeResponse((await raw(agent, base, { body: req })).body);
    if (m.type === 'BLK') ivs.add(m.iv.toString('hex'));
  }
  t.equal(ivs.size, 3, 'a fresh random IV for every block sealed');
  // With no memory for sealed blocks, every response is encrypted afresh.
  const off = await start(t, new MemorySource().add(A), { sealedBudgetBytes: 0 });
  const fresh = new Set<string>();
  for (let k = 0; k < 2; k++) {
    const req = encodeRequest({ type: 'GETBLKS', cryptoAlgo: 3, segmentId: A.seg.segmentId, ranges: [[2, 1]] });
    const m = decodeResponse((await raw(agent, off.base, { body: req })).body);
    if (m.type === 'BLK') fresh.add(m.iv.toString('hex'));
  }
  t.equal(fresh.size, 2, 'sealedBudgetBytes 0: a fresh IV per response');
  t.throws(() => createRetrievalServer({ source: new MemorySource(), cryptoAlgo: 0 as 1 }), RangeError);
});

t.test('missing block and unknown segment → empty MSG_BLK echoing the request', async (t) => {
  const { server, peer, base } = await start(t, new MemorySource().add(A, [0, 2]));
  const c = client(t);
  await rejects(t, c.getBlock(want(A, 1, peer)), 'PEER_NOT_AVAILABLE', 'missing block');
  await rejects(t, c.getBlock(want(B, 0, peer)), 'PEER_NOT_AVAILABLE', 'unknown segment');
  await rejects(t, c.getBlock({ ...want(A, 2, peer), index: 7 }), 'PEER_NOT_AVAILABLE', 'index past the end');
  const { body } = await raw(agent, base, {
    body: encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: B.seg.segmentId, ranges: [[5, 1]] }),
  });
  const m = decodeResponse(body);
  t.equal(m.type, 'BLK');
  if (m.type === 'BLK') {
    t.ok(m.segmentId.equals(B.seg.segmentId), 'SegmentID echoed');
    t.equal(m.blockIndex, 5, 'BlockIndex echoed');
    t.equal(m.nextBlockIndex, 0);
    t.equal(m.block.length, 0);
    t.equal(m.iv.length, 0);
    t.equal(m.cryptoAlgo, 0);
  }
  t.equal(server.stats().blocksMissing, 4);
  t.equal(server.stats().blocksServed, 0);
});

t.test('GETBLKLIST answers the intersection with held blocks; GETSEGLIST lists held segments', async (t) => {
  const { base, peer } = await start(t, new MemorySource().add(A, [0, 2]).add(V2));
  const c = client(t);
  t.same(await c.getBlockList({ peer, segmentId: A.seg.segmentId, ranges: [[0, 3]] }), {
    ranges: [
      [0, 1],
      [2, 1],
    ],
    nextBlockIndex: 0,
  });
  t.same(await c.getBlockList({ peer, segmentId: A.seg.segmentId, ranges: [[0, 1]] }), {
    ranges: [[0, 1]],
    nextBlockIndex: 2,
  });
  t.same(
    await c.getBlockList({
      peer,
      segmentId: A.seg.segmentId,
      ranges: [
        [1, 1],
        [3, 10],
      ],
    }),
    { ranges: [], nextBlockIndex: 0 },
    'nothing held after the last requested range',
  );
  t.same(
    await c.getBlockList({ peer, segmentId: A.seg.segmentId, ranges: [[1, 1]] }),
    { ranges: [], nextBlockIndex: 2 },
    'next held after the request',
  );
  t.same(await c.getBlockList({ peer, segmentId: B.seg.segmentId, ranges: [[0, 2]] }), {
    ranges: [],
    nextBlockIndex: 0,
  });
  const req = encodeRequest({
    type: 'GETSEGLIST',
    requestId: Buffer.alloc(16, 9),
    segmentIds: [B.seg.segmentId, A.seg.segmentId, V2.seg.segmentId],
  });
  const m = decodeResponse((await raw(agent, base, { body: req })).body);
  t.equal(m.type, 'SEGLIST');
  if (m.type === 'SEGLIST') {
    t.same(m.ranges, [[1, 2]], 'indexes 1 and 2 of the request are held');
    t.ok(m.requestId.equals(Buffer.alloc(16, 9)), 'RequestID echoed');
  }
});

t.test('GETBLKS naming several blocks serves only the lowest index', async (t) => {
  const { base } = await start(t, new MemorySource().add(A));
  const req = encodeRequest({
    type: 'GETBLKS',
    cryptoAlgo: 1,
    segmentId: A.seg.segmentId,
    ranges: [
      [2, 1],
      [1, 2],
    ],
  });
  const m = decodeResponse((await raw(agent, base, { body: req })).body);
  t.equal(m.type, 'BLK');
  if (m.type === 'BLK') {
    t.equal(m.blockIndex, 1);
    t.equal(m.nextBlockIndex, 2);
    t.ok(decryptBlock(m.cryptoAlgo, A.seg.kp, m.block, m.iv, 65536).equals(blockOf(A, 1)));
  }
});

t.test('at the concurrency cap requests get empty responses', async (t) => {
  const source = new MemorySource().add(A);
  const { server, peer, base } = await start(t, source, { maxConcurrent: 1 });
  const gate = deferred();
  source.hold = gate.promise;
  // A server test: the client's probation (one request at a time to a peer that has not answered
  // yet, short first-byte timer) would hold the second request back.
  const c = client(t, { probation: false });
  const first = c.getBlock(want(A, 0, peer));
  for (let i = 0; i < 500 && source.reads === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(source.reads, 1, 'first request is inside readBlock');
  await rejects(t, c.getBlock(want(A, 1, peer)), 'PEER_NOT_AVAILABLE', 'second request while at the cap');
  const bl = decodeResponse(
    (
      await raw(agent, base, {
        body: encodeRequest({ type: 'GETBLKLIST', segmentId: A.seg.segmentId, ranges: [[0, 3]] }),
      })
    ).body,
  );
  t.same(bl.type === 'BLKLIST' && bl.ranges, [], 'empty BLKLIST at the cap');
  t.equal(server.stats().busy, 2);
  t.equal(source.reads, 1, 'busy requests never touch the store');
  gate.resolve();
  source.hold = undefined;
  t.ok((await first).data.equals(blockOf(A, 0)), 'held request completes');
  t.ok((await c.getBlock(want(A, 1, peer))).data.equals(blockOf(A, 1)), 'served again once below the cap');
});

t.test('HTTP errors: 404 path, 405 method, 413 oversized, 411 no length, 400 garbage', async (t) => {
  const { server, base, peer } = await start(t, new MemorySource().add(A));
  const good = encodeRequest({ type: 'GETBLKS', segmentId: A.seg.segmentId, ranges: [[0, 1]] });
  t.equal((await raw(agent, base, { path: '/other/', body: good })).status, 404);
  t.equal(
    (await raw(agent, base, { path: '/116B50EB-ECE2-41ac-8429-9F9E963361B7', body: good })).status,
    404,
    'trailing slash required',
  );
  t.equal(
    (await raw(agent, base, { path: '/116b50eb-ece2-41AC-8429-9f9e963361b7/', body: good })).status,
    200,
    'path is case-insensitive',
  );
  t.equal((await raw(agent, base, { method: 'GET' })).status, 405);
  t.equal((await raw(agent, base, { body: Buffer.alloc(98_305) })).status, 413);
  t.equal((await raw(agent, base, { body: Buffer.from('hello, this is not pccrr at all') })).status, 400);
  t.equal((await raw(agent, base, { body: Buffer.alloc(8) })).status, 400, 'shorter than a header');
  const asResponse = encodeMessage({ type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 1, minor: 0 } });
  t.equal((await raw(agent, base, { body: asResponse })).status, 400, 'a response type is not a request');
  // chunked body without Content-Length → 411
  async function* chunks() {
    yield good;
  }
  t.equal((await raw(agent, base, { body: chunks() as unknown as Buffer })).status, 411);
  const s = server.stats();
  t.same(s.byStatus, { 200: 1, 400: 3, 404: 2, 405: 1, 411: 1, 413: 1 });
  t.equal(s.malformed, 3);
  t.equal(s.requests, 9);
  // the client maps a 4xx to 'PEER_HTTP'
  const e = await rejects(
    t,
    client(t).getBlock({ ...want(A, 0, peer), segmentId: Buffer.alloc(0) }),
    'PEER_HTTP',
    'a request the server rejects (empty SegmentID)',
  );
  t.match(e?.message, /HTTP 400/);
});

t.test('unsupported major version gets MSG_NEGO_RESP 1.0..2.0; client reports protocol', async (t) => {
  const { base } = await start(t, new MemorySource().add(A));
  const req = encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: A.seg.segmentId, ranges: [[0, 1]] });
  req.writeUInt32BE(protVerToU32({ major: 3, minor: 0 }), 0);
  const { status, body } = await raw(agent, base, { body: req });
  t.equal(status, 200);
  const m = decodeResponse(body);
  t.equal(m.type, 'NEGO_RESP');
  if (m.type === 'NEGO_RESP') {
    t.same(m.min, { major: 1, minor: 0 });
    t.same(m.max, { major: 2, minor: 0 });
    t.same(m.version, { major: 1, minor: 0 });
  }
});

/** A raw TCP connection to the server; `closed(ms)` resolves to the ms until close, or -1 if still open. */
async function rawSocket(t: Test, base: string) {
  const net = await import('node:net');
  const url = new URL(base);
  const sock = net.connect(Number(url.port), url.hostname);
  t.teardown(() => sock.destroy());
  sock.on('error', () => undefined);
  await new Promise((r) => sock.once('connect', r));
  let closedAt = 0;
  const closedP = new Promise<void>((r) =>
    sock.once('close', () => {
      closedAt = Date.now();
      r();
    }),
  );
  const closed = async (ms: number): Promise<number> => {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closedP,
      new Promise<void>((r) => {
        timer = setTimeout(r, ms);
      }),
    ]);
    clearTimeout(timer);
    return closedAt ? closedAt - t0 : -1;
  };
  return { sock, closed };
}
const head = (n: number) =>
  `POST /116B50EB-ECE2-41ac-8429-9F9E963361B7/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${n}\r\n\r\n`;

t.test('upload timer cuts off a client that stalls sending', async (t) => {
  const { server, base } = await start(t, new MemorySource().add(A), { uploadTimeoutMs: 200 });
  const { sock, closed } = await rawSocket(t, base);
  sock.on('data', () => undefined);
  sock.write(head(68) + '0123456789');
  const dt = await closed(5000);
  t.ok(dt >= 150, `closed by the server after ${dt} ms (default timer is 15 s)`);
  t.equal(server.stats().requests, 1);
});

t.test('a client that stops reading is cut off by the upload timer', async (t) => {
  const { base } = await start(t, new MemorySource().add(A), { uploadTimeoutMs: 300 });
  const { sock, closed } = await rawSocket(t, base);
  sock.pause();
  const body = encodeRequest({ type: 'GETBLKS', segmentId: A.seg.segmentId, ranges: [[0, 1]] });
  const one = Buffer.concat([Buffer.from(head(body.length)), body]);
  // 200 pipelined requests for 64 KiB blocks (~13 MB of answers) while never reading: the socket
  // buffers fill, a response cannot complete, and its timer must fire.
  sock.write(Buffer.concat(Array.from({ length: 200 }, () => one)));
  await new Promise((r) => setTimeout(r, 1500));
  let got = 0;
  sock.on('data', (d: Buffer) => {
    got += d.length;
  });
  sock.resume();
  t.ok((await closed(5000)) >= 0, 'connection was closed by the server');
  t.ok(got < 200 * 65_536, `only ${got} bytes of ${200 * 65_632} delivered`);
});

t.test('slow request headers are bounded too', async (t) => {
  const { base } = await start(t, new MemorySource().add(A), { uploadTimeoutMs: 300 });
  const { sock, closed } = await rawSocket(t, base);
  sock.on('data', () => undefined);
  sock.write('POST /116B50EB-ECE2-41ac-8429-9F9E963361B7/ HTTP/1.1\r\nHost: x\r\n');
  const dt = await closed(5000);
  t.ok(dt >= 0, `closed after ${dt} ms (Node's default header timeout is 60 s)`);
});

t.test('handler mounts in another node:http server; options are validated', async (t) => {
  const { createServer } = await import('node:http');
  const rr = createRetrievalServer({ source: new MemorySource().add(A) });
  const outer = createServer(rr.handler);
  await new Promise<void>((r) => outer.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        outer.closeAllConnections();
        outer.close(() => r());
      }),
  );
  const port = (outer.address() as import('node:net').AddressInfo).port;
  const r = await client(t).getBlock(want(A, 2, `127.0.0.1:${port}`));
  t.ok(r.data.equals(blockOf(A, 2)));
  t.equal(rr.stats().blocksServed, 1);
  await rr.close(); // never listened: a no-op
  t.throws(() => createRetrievalServer({ source: new MemorySource(), maxConcurrent: 0 }), RangeError);
  t.throws(() => createRetrievalServer({ source: new MemorySource(), uploadTimeoutMs: -1 }), RangeError);
});
