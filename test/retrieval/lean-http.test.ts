/**
 * The lean MS-PCCRR HTTP/1.1 server (src/retrieval/lean-http.ts, issue 25): its head parser, and on
 * the wire: pipelining, header case, Expect, chunked bodies, huge heads, HTTP/1.0, half-closed
 * sockets, slow heads; and the same status for every refused request as the node:http transport.
 */
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { parseRequestHead, MAX_HEAD_BYTES, type RequestHead } from '../../src/retrieval/lean-http.js';
import { decodeResponse, encodeRequest, PCCRR_PATH } from '../../src/protocol/pccrr/codec.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { nullLogger } from '../../src/util/log.js';
import { MemorySource, blockOf, makeContent } from './source.js';

const A = await makeContent(65536 * 2 + 1000); // 3 blocks

t.test('head parser: fields, header case, refusals', async (t) => {
  const ok = (s: string, want = false) => {
    const h = parseRequestHead(s, want);
    if (typeof h === 'number') throw new Error(`refused ${h}: ${JSON.stringify(s)}`);
    return h as RequestHead;
  };
  const h = ok(
    `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 60\r\nExpect: 100-Continue\r\nConnection: TE, close`,
  );
  t.equal(h.method, 'POST');
  t.equal(h.target, PCCRR_PATH);
  t.equal(h.minor, 1);
  t.equal(h.contentLength, 60, 'header names in any case');
  t.equal(h.expect, '100-continue');
  t.equal(h.close, true, 'close among the Connection tokens');
  t.equal(h.headers, undefined, 'headers only when asked for');
  const v = ok('POST / HTTP/1.0\r\nX-A: 1\r\nx-a:  2 \r\nConnection: keep-alive', true);
  t.equal(v.minor, 0);
  t.equal(v.keepAlive, true);
  t.equal(v.contentLength, -1, 'no Content-Length');
  t.same(v.headers, { 'x-a': '1, 2', connection: 'keep-alive' }, 'names lowercased, repeats joined, values trimmed');
  t.equal(ok('POST / HTTP/1.1\r\nTransfer-Encoding: chunked').transferEncoding, true);
  const refused: Array<[string, number]> = [
    ['POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5', 400], // duplicate
    ['POST / HTTP/1.1\r\nContent-Length: -1', 400],
    ['POST / HTTP/1.1\r\nContent-Length: 0x10', 400],
    ['POST / HTTP/1.1\r\nContent-Length: 1e3', 400],
    ['POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked', 400], // both framings
    ['POST / HTTP/1.1\r\nHost x', 400], // no colon
    ['POST / HTTP/1.1\r\n folded: value', 400], // obs-fold
    ['POST / HTTP/1.1\r\nBad Name: v', 400],
    ['POST / HTTP/1.1\r\nHost: a\nX: b', 400], // bare LF
    ['POST / HTTP/1.1\r\nX: a\x00b', 400],
    ['POST  / HTTP/1.1', 400],
    ['POST /', 400],
    ['POST / HTTP/1.1 extra', 400],
    ['P(ST / HTTP/1.1', 400],
    ['POST / HTTP/2.0', 505],
    ['POST / HTTP/1.x', 400],
    ['\x16\x03\x01 / HTTP/1.1', 400],
  ];
  for (const [s, status] of refused) t.equal(parseRequestHead(s, false), status, JSON.stringify(s));
});

async function start(
  t: Test,
  transport: 'lean' | 'node',
  opts: { uploadTimeoutMs?: number; keepAliveTimeoutMs?: number } = {},
) {
  const source = new MemorySource().add(A);
  const server = createRetrievalServer({ source, transport, logger: nullLogger, ...opts });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  return { server, port, source };
}

/** A raw connection collecting everything it receives; `closed` resolves when the server closes it. */
async function open(t: Test, port: number) {
  const sock: Socket = connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  const chunks: Buffer[] = [];
  const waiters: Array<() => void> = [];
  sock.on('data', (d: Buffer) => {
    chunks.push(d);
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  const received = () => Buffer.concat(chunks);
  /** Waits until `pred` holds for what was received (or the connection closed). */
  const until = async (pred: (b: Buffer) => boolean) => {
    let gone = false;
    void closed.then(() => {
      gone = true;
      for (const w of waiters.splice(0)) w();
    });
    while (!pred(received()) && !gone) await new Promise<void>((r) => waiters.push(r));
    return received();
  };
  return { sock, closed, received, until };
}

/** Splits a response stream into { status, head, body }. */
function responses(buf: Buffer) {
  const out: Array<{ status: number; head: string; body: Buffer }> = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = buf.subarray(at, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const n = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (end + 4 + n > buf.length) break;
    out.push({ status, head, body: buf.subarray(end + 4, end + 4 + n) });
    at = end + 4 + n;
  }
  return out;
}
const finals = (buf: Buffer) => responses(buf).filter((r) => r.status !== 100);

const body = (i: number) => encodeRequest({ type: 'GETBLKS', segmentId: A.seg.segmentId, ranges: [[i, 1]] });
const request = (i: number, extra = '', version = '1.1') => {
  const b = body(i);
  return Buffer.concat([
    Buffer.from(
      `POST ${PCCRR_PATH} HTTP/${version}\r\nHost: x\r\n${extra}Content-Length: ${b.length}\r\n\r\n`,
      'latin1',
    ),
    b,
  ]);
};
function blockIn(t: Test, r: { status: number; body: Buffer } | undefined, index: number) {
  t.equal(r?.status, 200, `block ${index}: 200`);
  const m = r && decodeResponse(r.body);
  t.ok(
    m?.type === 'BLK' &&
      m.blockIndex === index &&
      decryptBlock(m.cryptoAlgo, A.seg.kp, m.block, m.iv, blockOf(A, index).length).equals(blockOf(A, index)),
    `block ${index}: the right ciphertext`,
  );
}

t.test('pipelined requests in one write are answered in order on one connection', async (t) => {
  const { port, server } = await start(t, 'lean');
  const c = await open(t, port);
  c.sock.write(Buffer.concat([request(2), request(0), request(1, 'content-type: application/octet-stream\r\n')]));
  const got = finals(await c.until((b) => finals(b).length >= 3));
  t.same(
    got.map((r) => r.status),
    [200, 200, 200],
  );
  blockIn(t, got[0], 2);
  blockIn(t, got[1], 0);
  blockIn(t, got[2], 1);
  t.match(got[0]!.head, /\r\nKeep-Alive: timeout=5/, 'kept alive');
  t.match(got[0]!.head, /\r\nDate: \w{3}, \d\d \w{3} \d{4}/, 'Date header');
  // The same connection again, the request split byte by byte.
  const one = request(2);
  for (const byte of one) {
    c.sock.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  blockIn(t, finals(await c.until((b) => finals(b).length >= 4))[3], 2);
  t.equal(server.stats().connections, 1, 'one connection throughout');
  t.equal(server.stats().blocksServed, 4);
});

t.test('Expect: 100-continue gets 100 Continue before the body; other expectations 417', async (t) => {
  const { port } = await start(t, 'lean');
  const c = await open(t, port);
  const b = body(1);
  c.sock.write(`POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${b.length}\r\n\r\n`);
  const cont = await c.until((buf) => buf.includes('\r\n\r\n'));
  t.equal(cont.toString('latin1'), 'HTTP/1.1 100 Continue\r\n\r\n', 'the client is told to send its body');
  c.sock.write(b);
  blockIn(t, finals(await c.until((buf) => finals(buf).length >= 1))[0], 1);
  const d = await open(t, port);
  d.sock.write(`POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\nContent-Length: ${b.length}\r\n\r\n`);
  await d.closed;
  t.equal(finals(d.received())[0]?.status, 417, 'an expectation we do not meet: 417, closed');
});

t.test('half-closed: a request then FIN still gets its answer, then the server closes', async (t) => {
  const { port } = await start(t, 'lean');
  const c = await open(t, port);
  c.sock.end(Buffer.concat([request(0), request(2)]));
  await c.closed;
  const got = finals(c.received());
  t.equal(got.length, 2, 'both pipelined requests answered');
  blockIn(t, got[0], 0);
  blockIn(t, got[1], 2);
  // An unfinished head, then FIN: nothing to answer, closed.
  const d = await open(t, port);
  d.sock.end(`POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\n`);
  await d.closed;
  t.equal(d.received().length, 0, 'closed without an answer');
});

t.test('HTTP/1.0 is answered and closed unless it asks for keep-alive', async (t) => {
  const { port } = await start(t, 'lean');
  const c = await open(t, port);
  c.sock.write(request(1, '', '1.0'));
  await c.closed;
  const [r] = finals(c.received());
  blockIn(t, r, 1);
  t.match(r!.head, /\r\nConnection: close/);
  const d = await open(t, port);
  d.sock.write(
    Buffer.concat([request(0, 'Connection: keep-alive\r\n', '1.0'), request(2, 'Connection: keep-alive\r\n', '1.0')]),
  );
  const got = finals(await d.until((b) => finals(b).length >= 2));
  blockIn(t, got[1], 2);
  t.match(got[0]!.head, /\r\nConnection: keep-alive/);
});

t.test('garbage after a good request: the good one is answered, then 400 and close', async (t) => {
  const { port, server } = await start(t, 'lean');
  const c = await open(t, port);
  c.sock.write(Buffer.concat([request(2), Buffer.from('\x00\x01GARBAGE garbage\r\n\r\n'), request(0)]));
  await c.closed;
  const got = finals(c.received());
  t.same(
    got.map((r) => r.status),
    [200, 400],
    'nothing after the garbage is answered',
  );
  blockIn(t, got[0], 2);
  t.same(server.stats().byStatus, { 200: 1 }, 'parser refusals are not counted as requests (as with node:http)');
});

t.test('a head larger than 16 KiB: 431 and closed, never buffered without bound', async (t) => {
  const { port } = await start(t, 'lean');
  const c = await open(t, port);
  c.sock.write(`POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nX-Big: `);
  const chunk = Buffer.alloc(4096, 'a');
  // Keep sending (never finishing the head): the server answers once it holds more than the limit.
  let sent = 0;
  while (!c.sock.destroyed && c.received().length === 0 && sent < 64 * MAX_HEAD_BYTES) {
    c.sock.write(chunk);
    sent += chunk.length;
    await new Promise((r) => setImmediate(r));
  }
  await c.closed;
  t.equal(finals(c.received())[0]?.status, 431);
  t.ok(sent <= 16 * MAX_HEAD_BYTES, `refused after ${sent} bytes`);
});

t.test('slowloris: a head trickled in byte by byte is cut off by the header deadline', async (t) => {
  const { port } = await start(t, 'lean', { uploadTimeoutMs: 300 });
  const c = await open(t, port);
  const text = `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\n${'X-Slow: y\r\n'.repeat(1000)}`;
  let i = 0;
  const timer = setInterval(() => {
    if (!c.sock.destroyed) c.sock.write(text[i++ % text.length]!);
  }, 10);
  t.teardown(() => clearInterval(timer));
  await c.closed;
  clearInterval(timer);
  t.ok(i < text.length, `closed after ${i} bytes, before the head could finish`);
  t.equal(finals(c.received())[0]?.status, 408, '408 Request Timeout, as node:http answers');
});

t.test('an idle keep-alive connection is closed by the server; so is one that never sends a byte', async (t) => {
  const { port } = await start(t, 'lean', { uploadTimeoutMs: 400, keepAliveTimeoutMs: 200 });
  const c = await open(t, port);
  c.sock.write(request(0));
  const [r] = finals(await c.until((b) => finals(b).length >= 1));
  blockIn(t, r, 0);
  t.match(r?.head, /\r\nKeep-Alive: timeout=1(\r\n|$)/, 'the timeout announced in whole seconds, at least 1');
  await c.closed; // the test waits for the server to close it (no timed assertion)
  t.equal(finals(c.received()).length, 1, 'closed after its one answer, nothing more sent');
  const d = await open(t, port);
  await d.closed;
  t.equal(d.received().length, 0, 'a silent connection is closed without an answer');
  t.throws(() => createRetrievalServer({ source: new MemorySource(), keepAliveTimeoutMs: 0 }), RangeError);
});

t.test('every refused request gets the status the node:http transport gives', async (t) => {
  const good = body(0);
  const cases: Array<[string, Buffer | string]> = [
    [
      'other path',
      Buffer.concat([Buffer.from(`POST /other/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${good.length}\r\n\r\n`), good]),
    ],
    ['no trailing slash', `POST ${PCCRR_PATH.slice(0, -1)} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`],
    ['GET', `GET ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\n\r\n`],
    ['no length', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\n\r\n`],
    [
      'chunked',
      `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${good.length.toString(16)}\r\n${good.toString('latin1')}\r\n0\r\n\r\n`,
    ],
    ['too large', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 98305\r\n\r\n`],
    ['too short', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n12345678`],
    [
      'not pccrr',
      `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 31\r\n\r\nhello, this is not pccrr at all`,
    ],
    ['bad length', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n`],
    ['two lengths', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n`],
    [
      'query',
      Buffer.concat([
        Buffer.from(`POST ${PCCRR_PATH}?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: ${good.length}\r\n\r\n`),
        good,
      ]),
    ],
    [
      'lower-case path',
      Buffer.concat([
        Buffer.from(`POST ${PCCRR_PATH.toLowerCase()} HTTP/1.1\r\nhost: x\r\ncontent-length: ${good.length}\r\n\r\n`),
        good,
      ]),
    ],
    ['huge head', `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20000)}\r\n\r\n`],
  ];
  const statuses: Record<string, Array<number | undefined>> = {};
  for (const transport of ['node', 'lean'] as const) {
    const { port } = await start(t, transport);
    for (const [name, raw] of cases) {
      const c = await open(t, port);
      c.sock.write(raw);
      const got = finals(await c.until((b) => finals(b).length >= 1));
      statuses[name] = [...(statuses[name] ?? []), got[0]?.status];
      if (got[0] && got[0].status !== 200) {
        t.equal(got[0].body.length, 0, `${transport} ${name}: no body`);
        await c.closed; // a refused request closes the connection
      }
      c.sock.destroy();
    }
  }
  for (const [name, [node, lean]] of Object.entries(statuses)) t.equal(lean, node, `${name}: ${node} either way`);
  t.same(
    Object.values(statuses).map((s) => s[1]),
    [404, 404, 405, 411, 411, 413, 400, 400, 400, 400, 200, 200, 431],
  );
});
