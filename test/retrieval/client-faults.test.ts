import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { RetrievalClient, PeerError, type PeerErrorCode } from '../../src/retrieval/client.js';
import { decodeRequest, encodeResponse, MAX_RESPONSE_SIZE, type Blk } from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { blockOf, makeContent } from './source.js';

const A = await makeContent(65536 + 5000);
type Tap = Test;

/** A fake peer: `behave` decides what to send for each decoded request. */
async function fakePeer(
  t: Tap,
  behave: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
  onConnection?: () => void,
) {
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => behave(req, res, Buffer.concat(chunks)));
  });
  const sockets = new Set<import('node:net').Socket>();
  srv.on('connection', (s) => {
    onConnection?.();
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        srv.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  );
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

/** A correct MSG_BLK for the request, passed through `tweak` before encoding. */
function blkFor(body: Buffer, tweak: (m: Blk) => Blk = (m) => m): Buffer {
  const req = decodeRequest(body);
  if (req.type !== 'GETBLKS') throw new Error('fake peer expects GETBLKS');
  const index = req.ranges[0]![0];
  const { cipher, iv } = encryptBlock(1, A.seg.kp, blockOf(A, index));
  return encodeResponse(
    tweak({
      type: 'BLK',
      cryptoAlgo: 1,
      segmentId: req.segmentId,
      blockIndex: index,
      nextBlockIndex: 0,
      block: cipher,
      iv,
    }),
  );
}

const send = (res: ServerResponse, b: Buffer) => {
  res.writeHead(200, { 'Content-Length': b.length });
  res.end(b);
};
const want = (peer: string, index = 1) => ({
  peer,
  segmentId: A.seg.segmentId,
  index,
  kp: A.seg.kp,
  expectedLength: blockOf(A, index).length,
  verify: (p: Buffer) => verifyBlock(1, A.seg, index, p),
});

async function expectCode(t: Tap, p: Promise<unknown>, code: PeerErrorCode, msg: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof PeerError, `${msg}: PeerError`);
  t.equal((err as PeerError | undefined)?.code, code, msg);
  return err as PeerError;
}

t.test('client accepts a correct AES-128 answer from a fake peer (honours the response algorithm)', async (t) => {
  const peer = await fakePeer(t, (_q, res, body) => send(res, blkFor(body)));
  const c = new RetrievalClient({ cryptoAlgo: 3 });
  t.teardown(() => c.close());
  const r = await c.getBlock(want(peer));
  t.ok(r.data.equals(blockOf(A, 1)));
});

t.test('answer bodies: chunked in small pieces, declared length in pieces, a body shorter than declared', async (t) => {
  let mode = 'chunked';
  const peer = await fakePeer(t, (_q, res, body) => {
    const b = blkFor(body);
    if (mode === 'short') {
      res.writeHead(200, { 'Content-Length': b.length });
      res.end(b.subarray(0, b.length - 7));
      res.socket?.end();
      return;
    }
    res.writeHead(200, mode === 'chunked' ? {} : { 'Content-Length': b.length });
    // Many small writes: the client puts the pieces together in order.
    let off = 0;
    const step = () => {
      if (off >= b.length) return void res.end();
      res.write(b.subarray(off, off + 1000));
      off += 1000;
      setImmediate(step);
    };
    step();
  });
  const c = new RetrievalClient({ probation: false });
  t.teardown(() => c.close());
  const r1 = await c.getBlock(want(peer));
  t.ok(r1.data.equals(blockOf(A, 1)), 'chunked (no Content-Length): the block decrypts and verifies');
  mode = 'pieces';
  const r2 = await c.getBlock(want(peer, 0));
  t.ok(r2.data.equals(blockOf(A, 0)), 'Content-Length, body in 1000-byte pieces: the block decrypts and verifies');
  t.ok(r2.bytesOnWire > blockOf(A, 0).length, 'bytes on the wire counted');
  mode = 'short';
  await expectCode(t, c.getBlock(want(peer)), 'PEER_UNREACHABLE', 'body shorter than its Content-Length');
});

t.test('tampered ciphertext → BAD_BLOCK', async (t) => {
  const peer = await fakePeer(t, (_q, res, body) =>
    send(
      res,
      blkFor(body, (m) => {
        m.block[100]! ^= 1;
        return m;
      }),
    ),
  );
  const c = new RetrievalClient();
  t.teardown(() => c.close());
  await expectCode(t, c.getBlock(want(peer)), 'BAD_BLOCK', 'one flipped ciphertext bit');
});

t.test('wrong SegmentID, wrong BlockIndex, short block, bad framing, NEGO_RESP → protocol', async (t) => {
  const cases: Array<[string, (body: Buffer) => Buffer]> = [
    ['wrong SegmentID', (b) => blkFor(b, (m) => ({ ...m, segmentId: Buffer.alloc(32, 1) }))],
    ['wrong BlockIndex', (b) => blkFor(b, (m) => ({ ...m, blockIndex: 0 }))],
    ['ciphertext shorter than the block', (b) => blkFor(b, (m) => ({ ...m, block: m.block.subarray(0, 4096) }))],
    ['IV of 8 bytes', (b) => blkFor(b, (m) => ({ ...m, iv: m.iv.subarray(0, 8) }))],
    [
      'transport size mismatch',
      (b) => {
        const x = blkFor(b);
        x.writeUInt32BE(7, 0);
        return x;
      },
    ],
    ['garbage', () => Buffer.from('not a pccrr message')],
    [
      'NEGO_RESP',
      () => encodeResponse({ type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 1, minor: 0 } }),
    ],
    [
      'BLKLIST instead of BLK',
      (b) =>
        encodeResponse({
          type: 'BLKLIST',
          segmentId: decodeRequest(b).type === 'GETBLKS' ? A.seg.segmentId : A.seg.segmentId,
          ranges: [],
          nextBlockIndex: 0,
        }),
    ],
  ];
  let which = 0;
  const peer = await fakePeer(t, (_q, res, body) => send(res, cases[which]![1](body)));
  const c = new RetrievalClient();
  t.teardown(() => c.close());
  for (; which < cases.length; which++) {
    const e = await expectCode(t, c.getBlock(want(peer)), 'PEER_PROTOCOL', cases[which]![0]);
    if (cases[which]![0] === 'NEGO_RESP') t.match(e.message, /1\.0\.\.1\.0/, 'versions in the message');
  }
});

t.test('stalled peer → timeout within the timers', async (t) => {
  const peer = await fakePeer(t, (_q, res) => {
    res.writeHead(200, { 'Content-Length': 100000 });
    res.write(Buffer.alloc(10)); // headers and a few bytes, then nothing
  });
  const c = new RetrievalClient({ requestTimeoutMs: 600, firstByteTimeoutMs: 300 });
  t.teardown(() => c.close());
  const t0 = Date.now();
  await expectCode(t, c.getBlock(want(peer)), 'PEER_TIMEOUT', 'body stalls');
  const dt = Date.now() - t0;
  t.ok(dt >= 250 && dt < 4000, `gave up after ${dt} ms`);

  const silent = await fakePeer(t, () => {
    /* never answers */
  });
  const t1 = Date.now();
  await expectCode(t, c.getBlock(want(silent)), 'PEER_TIMEOUT', 'no headers');
  t.ok(Date.now() - t1 < 4000, 'bounded');
});

t.test('oversized response is cut off, HTTP errors, refused connection, abort', async (t) => {
  let mode = 'huge';
  const peer = await fakePeer(t, (_q, res) => {
    if (mode === 'huge') {
      res.writeHead(200); // chunked, no length: the client must stop reading past the cap
      const chunk = Buffer.alloc(65536);
      let sent = 0;
      const pump = () => {
        while (sent < 2 * MAX_RESPONSE_SIZE && res.write(chunk)) sent += chunk.length;
        if (sent < 2 * MAX_RESPONSE_SIZE)
          res.once('drain', () => {
            sent += chunk.length;
            pump();
          });
        else res.end();
      };
      pump();
    } else if (mode === 'declared') {
      res.writeHead(200, { 'Content-Length': MAX_RESPONSE_SIZE + 5 });
      res.write(Buffer.alloc(10));
    } else if (mode === '500') {
      res.writeHead(500, { 'Content-Length': 0 });
      res.end();
    } else if (mode === '503') {
      res.writeHead(503, { 'Content-Length': 0 });
      res.end();
    }
  });
  // One peer answering each failure in turn: without probation, which would quarantine it after the first.
  const c = new RetrievalClient({ requestTimeoutMs: 3000, probation: false });
  t.teardown(() => c.close());
  await expectCode(t, c.getBlock(want(peer)), 'PEER_PROTOCOL', 'streamed response beyond 384 KiB');
  mode = 'declared';
  await expectCode(t, c.getBlock(want(peer)), 'PEER_PROTOCOL', 'Content-Length beyond 384 KiB');
  mode = '500';
  await expectCode(t, c.getBlock(want(peer)), 'PEER_HTTP', 'HTTP 500');
  mode = '503';
  await expectCode(t, c.getBlock(want(peer)), 'PEER_BUSY', 'HTTP 503');

  // a port with nothing listening
  const dead = await fakePeer(t, () => undefined);
  const deadPort = dead.split(':')[1];
  await new Promise((r) => setTimeout(r, 1));
  await expectCode(t, c.getBlock(want('127.0.0.1:1')), 'PEER_UNREACHABLE', `refused (port 1, not ${deadPort})`);
  await expectCode(t, c.getBlock(want('not a peer')), 'PEER_UNREACHABLE', 'bad address');

  const ac = new AbortController();
  const p = c.getBlock({ ...want(dead), signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await expectCode(t, p, 'ABORTED', 'caller abort');
});

t.test('client request bytes: the GETBLKS vector for T, AES-128 requested by default', async (t) => {
  const T = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
  const info = await (await import('../../src/protocol/pccrc/hash.js')).hashStream(
    (async function* () {
      yield T;
    })(),
    { secret: Buffer.from('no more secrets'), version: 1 },
  );
  const seg = info.segments[0]!;
  const bodies: Buffer[] = [];
  const peer = await fakePeer(t, (q, res, body) => {
    bodies.push(body);
    t.equal(q.method, 'POST');
    t.equal(q.url, '/116B50EB-ECE2-41ac-8429-9F9E963361B7/');
    const { cipher, iv } = encryptBlock(2, seg.kp, T);
    send(
      res,
      encodeResponse({
        type: 'BLK',
        cryptoAlgo: 2,
        segmentId: seg.segmentId,
        blockIndex: 0,
        nextBlockIndex: 0,
        block: cipher,
        iv,
      }),
    );
  });
  const c = new RetrievalClient();
  t.teardown(() => c.close());
  const r = await c.getBlock({
    peer,
    segmentId: seg.segmentId,
    index: 0,
    kp: seg.kp,
    expectedLength: 100,
    verify: (p) => verifyBlock(1, seg, 0, p),
  });
  t.ok(r.data.equals(T), 'AES-192 answer honoured');
  const vectors = JSON.parse(
    (await import('node:fs')).readFileSync(
      (await import('../helpers/paths.js')).fixture('retrieval', 'vectors.json'),
      'utf8',
    ),
  ) as Record<string, string>;
  t.equal(bodies[0]!.toString('hex'), vectors.t_getblks, 'request is the section 6 GETBLKS vector');
  t.equal(r.bytesOnWire, 68 + 204, 'request body + response body (vector-sized)');
});

t.test('keep-alive and the per-peer connection cap', async (t) => {
  let connections = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const peer = await fakePeer(
    t,
    (_q, res, body) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        send(res, blkFor(body));
      }, 20);
    },
    () => connections++,
  );
  const one = new RetrievalClient({ connections: 1 });
  t.teardown(() => one.close());
  for (let i = 0; i < 5; i++) await one.getBlock(want(peer, i % 2));
  t.equal(connections, 1, 'five sequential exchanges over one kept-alive connection');
  await one.close();
  connections = 0;
  const c = new RetrievalClient({ connections: 2 });
  t.teardown(() => c.close());
  maxInFlight = 0;
  const all = await Promise.all(Array.from({ length: 10 }, (_, i) => c.getBlock(want(peer, i % 2))));
  t.equal(all.length, 10);
  t.equal(maxInFlight, 2, 'never more than 2 requests in flight to one peer');
  t.equal(connections, 2, 'at most 2 connections');
});

t.test('probation (issue 16.5): a tarpit gets one connection, then is quarantined; other services too', async (t) => {
  let connections = 0;
  const tarpit = await fakePeer(
    t,
    () => {
      /* accepts, never answers */
    },
    () => connections++,
  );
  let clock = 1_000_000;
  const c = new RetrievalClient({
    requestTimeoutMs: 5000,
    firstByteTimeoutMs: 2000,
    probation: { firstByteTimeoutMs: 300, answerWithinMs: 700, quarantineMs: 10_000 },
    now: () => clock,
  });
  t.teardown(() => c.close());
  const t0 = Date.now();
  const all = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      c.getBlock(want(tarpit, i % 2)).then(
        () => 'ok',
        (e: PeerError) => e.code,
      ),
    ),
  );
  t.equal(connections, 1, '20 concurrent requests to an unproven address: one connection');
  t.equal(all.filter((x) => x === 'PEER_TIMEOUT').length, 20, 'the probe and the requests behind it timed out');
  t.ok(Date.now() - t0 < 650, `short first-byte timer on probation (${Date.now() - t0} ms)`);
  t.equal(c.usable(tarpit), true, 'not quarantined while its answer may still come');
  await expectCode(t, c.getBlock(want(tarpit)), 'PEER_TIMEOUT', 'overdue: fails at once');
  t.equal(connections, 1, 'nothing more sent');
  while (c.usable(tarpit) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  // The window (700 ms) is ended by undici's headers timer, which runs on undici's coarse fast
  // timers (about 0.5 s resolution; CI saw it end at 639 ms): what must hold is that the quarantine
  // came from the window, well after the 300 ms first-byte timer, and not from the 5 s request timer.
  const at = Date.now() - t0;
  t.ok(at >= 400 && at < 1500, `quarantined once the answer window passed (${at} ms)`);
  t.equal(c.usable(tarpit), false, 'quarantined');
  await expectCode(
    t,
    c.getBlockList({ peer: tarpit, segmentId: A.seg.segmentId, ranges: [[0, 2]] }),
    'PEER_QUARANTINED',
    'block lists too',
  );
  t.equal(connections, 1, 'still one connection');
  clock += 10_001;
  t.equal(c.usable(tarpit), true, 'quarantine is for a while');
  await expectCode(t, c.getBlock(want(tarpit)), 'PEER_TIMEOUT', 'tried again after the quarantine');
  t.equal(connections, 2);
  while (c.usable(tarpit)) await new Promise((r) => setTimeout(r, 20));
  clock += 10_001;
  t.equal(c.usable(tarpit), false, 'second strike: a longer quarantine');

  // An HTTP service that is not a PCCRR peer (an origin, an admin port): one request, then quarantined.
  let posts = 0;
  const web = await fakePeer(t, (_q, res) => {
    posts++;
    res.writeHead(404, { 'Content-Length': 0 }).end();
  });
  await expectCode(t, c.getBlock(want(web)), 'PEER_HTTP', 'HTTP 404');
  await expectCode(t, c.getBlock(want(web)), 'PEER_QUARANTINED', 'not asked again');
  t.equal(posts, 1, 'one POST to the other service');

  // HTTP 400 to MSG_GETBLKLIST (python-peerdist) is not held against a peer; a good answer proves it.
  const limited = await fakePeer(t, (_q, res, body) => {
    if (decodeRequest(body).type !== 'GETBLKS') {
      res.writeHead(400, { 'Content-Length': 0 }).end();
      return;
    }
    send(res, blkFor(body));
  });
  await expectCode(
    t,
    c.getBlockList({ peer: limited, segmentId: A.seg.segmentId, ranges: [[0, 2]] }),
    'PEER_HTTP',
    'block list refused',
  );
  t.ok(c.usable(limited), 'not quarantined for that');
  t.ok((await c.getBlock(want(limited))).data.equals(blockOf(A, 1)), 'blocks from it');
  t.ok(c.proven(limited), 'proven');

  // A proven peer that fails later is not quarantined (the engine's backoff handles it).
  let fail = false;
  const good = await fakePeer(t, (_q, res, body) => {
    if (fail) {
      res.writeHead(500, { 'Content-Length': 0 }).end();
      return;
    }
    send(res, blkFor(body));
  });
  await c.getBlock(want(good));
  fail = true;
  await expectCode(t, c.getBlock(want(good)), 'PEER_HTTP', 'HTTP 500');
  await expectCode(t, c.getBlock(want(good)), 'PEER_HTTP', 'asked again');
  t.ok(c.usable(good));
});

t.test('probation: a slow honest peer answering after the short timer is proven, not quarantined', async (t) => {
  // A CPU-starved peer of a 32-client flash crowd answered its first request late and was put out of
  // use for 30 s (586 quarantines in one run, 7.7x the file from the origin).
  let delay = 500;
  const slow = await fakePeer(t, (_q, res, body) => {
    setTimeout(() => send(res, blkFor(body)), delay);
  });
  const c = new RetrievalClient({
    requestTimeoutMs: 3000,
    firstByteTimeoutMs: 2000,
    probation: { firstByteTimeoutMs: 150, quarantineMs: 30_000 },
  });
  t.teardown(() => c.close());
  await expectCode(t, c.getBlock(want(slow)), 'PEER_TIMEOUT', 'the caller is not kept waiting');
  t.notOk(c.proven(slow), 'not proven yet');
  t.ok(c.usable(slow), 'not quarantined');
  const until = Date.now() + 2500;
  while (!c.proven(slow) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.ok(c.proven(slow), 'proven by its late answer');
  t.ok(c.usable(slow), 'never quarantined');
  delay = 0;
  t.ok((await c.getBlock(want(slow, 1))).data.equals(blockOf(A, 1)), 'then used like any peer');
});
