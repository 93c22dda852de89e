/**
 * The retrieval client's own HTTP/1.1 transport (src/retrieval/peer-wire.ts) against raw TCP
 * peers that write exactly the bytes a test wants: keep-alive, bytes beyond the declared length,
 * a kept-alive connection the peer closed, interim answers, chunk framing, malformed heads, IPv6,
 * and aborts that close the request's connection and open no other.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { RetrievalClient, PeerError, type PeerErrorCode } from '../../src/retrieval/client.js';
import { decodeRequest, encodeResponse } from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { blockOf, makeContent } from './source.js';

const A = await makeContent(65536 + 5000);

/** A correct MSG_BLK answer body for a GETBLKS request body. */
function blkFor(body: Buffer): Buffer {
  const req = decodeRequest(body);
  if (req.type !== 'GETBLKS') throw new Error('expects GETBLKS');
  const index = req.ranges[0]![0];
  const { cipher, iv } = encryptBlock(1, A.seg.kp, blockOf(A, index));
  return encodeResponse({
    type: 'BLK',
    cryptoAlgo: 1,
    segmentId: req.segmentId,
    blockIndex: index,
    nextBlockIndex: 0,
    block: cipher,
    iv,
  });
}

interface Conn {
  sock: net.Socket;
  /** Requests answered on this connection so far. */
  n: number;
}

/**
 * A raw HTTP/1.1 peer: parses each POST (head + Content-Length body) and lets `answer` write
 * whatever it wants on the socket.
 */
async function rawPeer(
  t: Test,
  answer: (c: Conn, body: Buffer, head: string) => void,
  host = '127.0.0.1',
): Promise<{ peer: string; connections: () => number; closed: () => number; requests: () => number }> {
  let connections = 0;
  let closed = 0;
  let requests = 0;
  const socks = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    connections++;
    socks.add(sock);
    sock.on('close', () => {
      closed++;
      socks.delete(sock);
    });
    sock.on('error', () => undefined);
    const c: Conn = { sock, n: 0 };
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        requests++;
        answer(c, body, head);
        c.n++;
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  );
  const { port } = srv.address() as net.AddressInfo;
  return {
    peer: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    connections: () => connections,
    closed: () => closed,
    requests: () => requests,
  };
}

const ok = (b: Buffer, extra = '') =>
  Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n${extra}\r\n`), b]);

const want = (peer: string, index = 1) => ({
  peer,
  segmentId: A.seg.segmentId,
  index,
  kp: A.seg.kp,
  expectedLength: blockOf(A, index).length,
  verify: (p: Buffer) => verifyBlock(1, A.seg, index, p),
});

async function expectCode(t: Test, p: Promise<unknown>, code: PeerErrorCode, msg: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof PeerError, `${msg}: PeerError`);
  t.equal((err as PeerError | undefined)?.code, code, `${msg}: ${(err as Error | undefined)?.message}`);
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

t.test('request bytes on the wire; answers in one write and byte by byte; keep-alive', async (t) => {
  let heads: string[] = [];
  let dribble = false;
  const p = await rawPeer(t, (c, body, head) => {
    heads.push(head);
    if (decodeRequest(body).type !== 'GETBLKS') {
      const m = encodeResponse({ type: 'BLKLIST', segmentId: A.seg.segmentId, ranges: [], nextBlockIndex: 0 });
      return void c.sock.write(ok(m));
    }
    const out = ok(blkFor(body));
    if (!dribble) return void c.sock.write(out);
    let i = 0;
    const step = () => {
      if (i >= out.length) return;
      const piece = out.subarray(i, i + 7);
      i += 7;
      c.sock.write(piece, () => setImmediate(step));
    };
    step();
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), 'block 1');
  t.match(heads[0]!, /^POST \/116B50EB-ECE2-41ac-8429-9F9E963361B7\/ HTTP\/1\.1\r\n/, 'request line');
  t.match(heads[0]!, new RegExp(`\r\nHost: ${p.peer.replace(/[.[\]]/g, '\\$&')}\r\n`), 'Host header');
  t.match(heads[0]!, /\r\nContent-Length: 68(\r\n|$)/, 'Content-Length of the GETBLKS body');
  dribble = true;
  t.ok((await c.getBlock({ ...want(p.peer, 0) })).data.equals(blockOf(A, 0)), 'an answer in 7-byte writes');
  t.equal(p.connections(), 1, 'both over one kept-alive connection');
  heads = [];
  const list = await c.getSegmentList({ peer: p.peer, segmentIds: [A.seg.segmentId], crowd: () => undefined }).then(
    () => 'answered',
    (e: PeerError) => e.code,
  );
  t.equal(list, 'PEER_PROTOCOL', 'a MSG_BLK to MSG_GETSEGLIST is refused');
  t.match(heads[0]!, /\r\nPeerDist-Crowd: /i, 'the crowd mark goes with a request that asks for it');
});

t.test('bytes beyond the declared length: the answer stands, the connection goes', async (t) => {
  const p = await rawPeer(t, (c, body) => {
    c.sock.write(Buffer.concat([ok(blkFor(body)), Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz')]));
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), 'the declared answer verifies');
  await until(() => p.closed() === 1);
  t.equal(p.closed(), 1, 'the connection with unasked-for bytes was closed');
  t.ok((await c.getBlock(want(p.peer, 0))).data.equals(blockOf(A, 0)), 'the next request on a new connection');
  t.equal(p.connections(), 2);
});

t.test('a Content-Length shorter than the message: PEER_PROTOCOL, not a desynchronised connection', async (t) => {
  let answers = 0;
  const p = await rawPeer(t, (c, body) => {
    const b = blkFor(body);
    if (answers++ > 0) return void c.sock.write(ok(b));
    // The declared 100 bytes, and the rest of the message a little later (a separate read).
    c.sock.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n`), b.subarray(0, 100)]));
    setTimeout(() => c.sock.write(b.subarray(100)), 50);
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  await expectCode(t, c.getBlock(want(p.peer, 1)), 'PEER_PROTOCOL', 'lying Content-Length');
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), 'the next answer is read from a clean start');
  t.equal(p.connections(), 2, 'on a new connection');
});

t.test('a kept-alive connection the peer drops on the next request: sent once more on a new one', async (t) => {
  let dropAll = false;
  const p = await rawPeer(t, (c, body) => {
    if (c.n >= 1 || dropAll) return void c.sock.destroy(); // the second request on a connection: dropped unanswered
    c.sock.write(ok(blkFor(body)));
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)));
  t.ok((await c.getBlock(want(p.peer, 0))).data.equals(blockOf(A, 0)), 'answered on the second connection');
  t.equal(p.requests(), 3, 'three requests reached the peer');
  t.equal(p.connections(), 2);
  dropAll = true;
  await expectCode(t, c.getBlock(want(p.peer, 1)), 'PEER_UNREACHABLE', 'a fresh connection dropped: no retry');
  t.equal(p.requests(), 5, 'the retry was sent once (reused connection), then no more');
});

t.test('interim 100 answer, chunk extensions and trailers, HTTP/1.0 close-delimited body', async (t) => {
  let mode = '100';
  const p = await rawPeer(t, (c, body) => {
    const b = blkFor(body);
    if (mode === '100') c.sock.write(Buffer.concat([Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'), ok(b)]));
    else if (mode === 'chunked') {
      const h = b.length >> 1;
      c.sock.write(
        Buffer.concat([
          Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'),
          Buffer.from(`${h.toString(16)};ext=1\r\n`),
          b.subarray(0, h),
          Buffer.from(`\r\n${(b.length - h).toString(16)}\r\n`),
          b.subarray(h),
          Buffer.from('\r\n0\r\nX-Trailer: 1\r\n\r\n'),
        ]),
      );
    } else {
      c.sock.write(Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), b]));
      c.sock.end();
    }
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), '100 Continue, then the answer');
  mode = 'chunked';
  t.ok((await c.getBlock(want(p.peer, 0))).data.equals(blockOf(A, 0)), 'chunked with an extension and a trailer');
  t.equal(p.connections(), 1, 'both on one connection');
  mode = 'close';
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), 'HTTP/1.0, body to the end of the connection');
  t.ok((await c.getBlock(want(p.peer, 0))).data.equals(blockOf(A, 0)), 'and again on a new connection');
  t.equal(p.connections(), 2);
});

t.test('malformed answers are PEER_PROTOCOL and close the connection', async (t) => {
  const answers: Array<[string, Buffer]> = [
    ['not HTTP', Buffer.from('SSH-2.0-OpenSSH_9.6\r\n\r\n')],
    ['endless head', Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(20_000)}`)],
    ['two Content-Lengths', Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n')],
    [
      'Content-Length and chunked',
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n'),
    ],
    ['bad chunk size', Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')],
    ['gzip', Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n')],
  ];
  let which = 0;
  const p = await rawPeer(t, (c) => void c.sock.write(answers[which]![1]));
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  for (; which < answers.length; which++) {
    await expectCode(t, c.getBlock(want(p.peer)), 'PEER_PROTOCOL', answers[which]![0]);
    await until(() => p.closed() === which + 1);
  }
  t.equal(p.closed(), answers.length, 'each connection closed');
});

t.test('an HTTP error with a small body keeps the connection; abort closes only its own', async (t) => {
  let mode = '503';
  const p = await rawPeer(t, (c, body) => {
    if (mode === '503') c.sock.write('HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy');
    else if (mode === 'ok') c.sock.write(ok(blkFor(body)));
    // 'silent': never answers
  });
  const c = new RetrievalClient({ probation: false, connections: 1 });
  t.teardown(() => c.close());
  await expectCode(t, c.getBlock(want(p.peer)), 'PEER_BUSY', 'HTTP 503');
  mode = 'ok';
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)));
  t.equal(p.connections(), 1, 'the 503 body was read and the connection kept');
  mode = 'silent';
  const ac = new AbortController();
  const first = c.getBlock({ ...want(p.peer, 1), signal: ac.signal });
  const queued = c.getBlock({ ...want(p.peer, 0), signal: ac.signal });
  await until(() => p.requests() === 3);
  ac.abort();
  await expectCode(t, first, 'ABORTED', 'the request on the wire');
  await expectCode(t, queued, 'ABORTED', 'the request queued behind it');
  await until(() => p.closed() === 1);
  t.equal(p.connections(), 1, 'no connection opened for the queued request');
  t.equal(p.requests(), 3, 'the queued request was never sent');
  mode = 'ok';
  t.ok((await c.getBlock(want(p.peer, 0))).data.equals(blockOf(A, 0)), 'the peer is used again afterwards');
  t.equal(p.connections(), 2, 'one connection opened since the abort: for this request');
  await c.close();
  await until(() => p.closed() === 2);
  t.equal(p.closed(), 2, 'close() closes the kept-alive connection');
});

t.test('IPv6 peer address [::1]:port', async (t) => {
  const p = await rawPeer(t, (c, body) => void c.sock.write(ok(blkFor(body))), '::1');
  const c = new RetrievalClient();
  t.teardown(() => c.close());
  t.ok((await c.getBlock(want(p.peer, 1))).data.equals(blockOf(A, 1)), `block from ${p.peer}`);
  t.ok(c.proven(p.peer), 'proven');
});
