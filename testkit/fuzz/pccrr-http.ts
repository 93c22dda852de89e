/**
 * Fuzz targets over real HTTP on 127.0.0.1: the MS-PCCRR server (raw sockets: mutated bodies,
 * methods, paths, framing) and the RetrievalClient against a peer answering mutated responses.
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { blockRange } from '../../src/protocol/pccrc/types.js';
import { decodeResponse, encodeRequest, encodeResponse, PCCRR_PATH } from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { PeerError, RetrievalClient } from '../../src/retrieval/client.js';
import { createRetrievalServer, type RetrievalServer } from '../../src/retrieval/server.js';
import { nullLogger } from '../../src/util/log.js';
import { mutate, Rng } from './lib.js';
import { FuzzFailure, fromSeeds, type FuzzTarget } from './common.js';
import { memorySource, responderSeeds } from './pccrr.js';

/** Minimal HTTP/1.1 response reader for raw-socket cases: status and body. */
function readHttpResponse(sock: Socket, timeoutMs: number): Promise<{ status: number; body: Buffer } | 'closed'> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new FuzzFailure(`no response within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (v: { status: number; body: Buffer } | 'closed') => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      resolve(v);
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length >= end + 4 + len) done({ status, body: buf.subarray(end + 4, end + 4 + len) });
    });
    sock.on('close', () => done('closed'));
    sock.on('error', () => undefined);
  });
}

const HTTP_METHODS = ['POST', 'GET', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'TRACE', 'post', 'P0ST'];
const HTTP_PATHS = [
  PCCRR_PATH,
  PCCRR_PATH.toLowerCase(),
  PCCRR_PATH.slice(0, -1),
  `${PCCRR_PATH}?x=1`,
  `${PCCRR_PATH}../../etc/passwd`,
  '/',
  '/../../../../etc/passwd',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/cache/blocks',
  '/index',
  '//etc/passwd',
  '/116B50EB-ECE2-41ac-8429-9F9E963361B7/..%2f..%2f',
  'http://127.0.0.1/116B50EB-ECE2-41ac-8429-9F9E963361B7/',
  '*',
];

/** The retrieval server over real HTTP: mutated bodies, methods, paths and framing on raw sockets. */
export function pccrrServerTarget(): FuzzTarget & { stats(): ReturnType<RetrievalServer['stats']> | undefined } {
  const mem = memorySource(new Rng(0x5f));
  const seeds = responderSeeds(mem.segmentId);
  let server: RetrievalServer | undefined;
  let port = 0;
  return {
    name: 'pccrr-server',
    stats: () => server?.stats(),
    async setup() {
      server = createRetrievalServer({
        source: mem.source,
        host: '127.0.0.1',
        port: 0,
        uploadTimeoutMs: 2000,
        logger: nullLogger,
      });
      port = (await server.listen()).port;
    },
    async teardown() {
      await server?.close();
    },
    generate(rng) {
      const body = fromSeeds(rng, seeds, 16);
      const wellFormed = rng.bool(0.6);
      const method = wellFormed ? 'POST' : rng.pick(HTTP_METHODS);
      const path = wellFormed ? PCCRR_PATH : rng.pick(HTTP_PATHS);
      const len =
        wellFormed || rng.bool(0.7)
          ? String(body.length)
          : rng.pick(['', '-1', '99999999', '0x10', String(body.length + 3), '1e3']);
      const head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${len === '' ? '' : `Content-Length: ${len}\r\n`}\r\n`;
      const raw = Buffer.concat([Buffer.from(head, 'latin1'), body]);
      // Occasionally corrupt the framing itself.
      return wellFormed || rng.bool(0.7) ? raw : mutate(rng, raw, { rounds: 1 });
    },
    async run(input) {
      const sock = connect({ host: '127.0.0.1', port });
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
      const reply = readHttpResponse(sock, 5000);
      sock.end(input);
      const r = await reply;
      sock.destroy();
      if (r === 'closed') return 'rejected'; // HTTP-level refusal (the parser closed the connection)
      if (r.status >= 500) throw new FuzzFailure(`HTTP ${r.status}`);
      if (r.status !== 200) {
        if (r.body.length !== 0) throw new FuzzFailure(`HTTP ${r.status} with a body`);
        return 'rejected';
      }
      const head = input.subarray(0, input.indexOf('\r\n\r\n') + 4).toString('latin1');
      if (
        !head.startsWith(`POST ${PCCRR_PATH.split('?')[0]}`) &&
        !/^POST \/116b50eb-ece2-41ac-8429-9f9e963361b7\/(\?|\s)/i.test(head)
      ) {
        throw new FuzzFailure(`200 for a request that is not a POST to the PCCRR path: ${head.slice(0, 60)}`);
      }
      const m = decodeResponse(r.body);
      if (m.type === 'BLK' && m.block.length > 0 && m.cryptoAlgo === 0)
        throw new FuzzFailure('plaintext block over HTTP');
      return 'accepted';
    },
  };
}

/**
 * The client side: a RetrievalClient asks a peer for a block (or a block list) and the peer answers
 * with a mutated response body (sometimes another HTTP status). The client must return a block that
 * passes verification, or fail with a PeerError, never anything else and never hang.
 */
export function pccrrClientTarget(): FuzzTarget {
  const mem = memorySource(new Rng(0x61));
  const seg = mem.source.getSegment(mem.segmentId)!;
  const seeds: Buffer[] = [];
  const rng = new Rng(0x62);
  for (const index of [0, 1, 4]) {
    const plain = mem.blocks.get(index)!;
    for (const algo of [1, 2, 3] as const) {
      const { cipher, iv } = encryptBlock(algo, mem.kp, plain);
      seeds.push(
        encodeResponse({
          type: 'BLK',
          cryptoAlgo: algo,
          segmentId: mem.segmentId,
          blockIndex: index,
          nextBlockIndex: index + 1,
          block: cipher,
          iv,
        }),
      );
    }
  }
  seeds.push(
    encodeResponse({
      type: 'BLK',
      segmentId: mem.segmentId,
      blockIndex: 0,
      nextBlockIndex: 0,
      block: Buffer.alloc(0),
      iv: Buffer.alloc(0),
    }),
  );
  seeds.push(
    encodeResponse({
      type: 'BLKLIST',
      segmentId: mem.segmentId,
      ranges: [
        [0, 2],
        [4, 1],
      ],
      nextBlockIndex: 0,
    }),
  );
  seeds.push(encodeResponse({ type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } }));
  seeds.push(encodeResponse({ type: 'SEGLIST', requestId: rng.bytes(16), ranges: [[0, 1]] }));
  let next: { status: number; body: Buffer } = { status: 200, body: Buffer.alloc(0) };
  let server: Server | undefined;
  let client: RetrievalClient | undefined;
  let peer = '';
  const sockets = new Set<Socket>();
  return {
    name: 'pccrr-client',
    async setup() {
      server = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(next.status, { 'Content-Length': next.body.length }).end(next.body));
      });
      server.on('connection', (c) => {
        sockets.add(c);
        c.on('close', () => sockets.delete(c));
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
      peer = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      client = new RetrievalClient({ requestTimeoutMs: 3000, logger: nullLogger, probation: false }); // every case against one peer: no quarantine
    },
    async teardown() {
      await client?.close();
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    },
    generate(r) {
      const status = r.bool(0.95) ? 200 : r.pick([204, 400, 404, 500, 503]);
      const k = r.int(seeds.length);
      const body = r.bool(0.05)
        ? Buffer.from(seeds[k]!)
        : mutate(r, seeds[k]!, { corpus: seeds, rounds: r.range(1, 2) });
      const out = Buffer.alloc(5 + body.length);
      out.writeUInt32BE(status);
      // Which request the client makes: mostly the one this seed answers (BLK seeds are 3 per block index).
      out[4] = r.bool(0.8) ? (k < 9 ? Math.floor(k / 3) : 7) : r.int(8);
      body.copy(out, 5);
      return out;
    },
    async run(input) {
      if (input.length < 5) return 'rejected';
      next = { status: Math.max(200, Math.min(599, input.readUInt32BE(0))), body: input.subarray(5) };
      const which = input[4]! % 8;
      try {
        if (which === 7) {
          await client!.getBlockList({ peer, segmentId: mem.segmentId, ranges: [[0, 5]] });
        } else {
          const index = [0, 1, 4][which % 3]!;
          const plain = mem.blocks.get(index)!;
          const [s, e] = blockRange(1, seg, index);
          const r = await client!.getBlock({
            peer,
            segmentId: mem.segmentId,
            index,
            kp: mem.kp,
            expectedLength: e - s,
            verify: (b) => b.equals(plain),
          });
          if (!r.data.equals(plain)) throw new FuzzFailure('client returned a block that is not the held block');
        }
        return 'accepted';
      } catch (e) {
        if (e instanceof PeerError) return 'rejected';
        throw e;
      }
    },
  };
}

/** Splits a raw response stream into HTTP/1.1 responses; throws FuzzFailure on anything malformed. */
function splitHttpResponses(buf: Buffer): Array<{ status: number; head: string; body: Buffer }> {
  const out: Array<{ status: number; head: string; body: Buffer }> = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) throw new FuzzFailure(`a truncated response head: ${buf.subarray(at, at + 60).toString('latin1')}`);
    const head = buf.subarray(at, end).toString('latin1');
    const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]+/.exec(head);
    if (!m) throw new FuzzFailure(`not an HTTP/1.1 status line: ${head.slice(0, 60)}`);
    const status = Number(m[1]);
    const len = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (status === 100) {
      if (len) throw new FuzzFailure('100 Continue with a body');
      at = end + 4;
      continue;
    }
    if (!len) throw new FuzzFailure(`HTTP ${status} without Content-Length`);
    const n = Number(len[1]);
    if (end + 4 + n > buf.length) throw new FuzzFailure(`HTTP ${status}: body cut short`);
    out.push({ status, head, body: buf.subarray(end + 4, end + 4 + n) });
    at = end + 4 + n;
  }
  return out;
}

/**
 * The retrieval server's HTTP/1.1 framing (lean-http.ts, issue 25): a connection carries one to
 * five pipelined pieces (valid requests in several spellings, mutated ones, chunked bodies,
 * `Expect`, huge heads, garbage), written whole, in random slices or byte by byte, then half-closed.
 * Input byte 0: bit 0 = the first piece is an untouched valid request (its answer must be a 200
 * with a block), bits 1-2 = how the bytes are sliced. The server must answer with well-formed
 * responses only (every one with a Content-Length), never plaintext, and close the connection by
 * itself once the client's side is closed; and it must answer a fresh connection afterwards.
 */
export function pccrrFramingTarget(): FuzzTarget {
  const mem = memorySource(new Rng(0x71));
  const seeds = responderSeeds(mem.segmentId);
  const good = encodeRequest({ type: 'GETBLKS', segmentId: mem.segmentId, ranges: [[1, 1]] });
  let server: RetrievalServer | undefined;
  let port = 0;
  const head = (len: number, extra = '', path = PCCRR_PATH, version = '1.1') =>
    `POST ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n${extra}Content-Length: ${len}\r\n\r\n`;
  const valid = () => Buffer.concat([Buffer.from(head(good.length), 'latin1'), good]);
  const exchange = async (input: Buffer, slicing: number, rng: Rng) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    const closed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 4000);
      sock.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (slicing === 0) sock.write(input);
    else {
      let at = 0;
      for (let k = 0; at < input.length && !sock.destroyed; k++) {
        const n = k >= 60 ? input.length - at : slicing === 1 ? 1 : rng.range(1, 700);
        sock.write(input.subarray(at, at + n));
        at += n;
        await new Promise((r) => setImmediate(r));
      }
    }
    if (!sock.destroyed) sock.end();
    const ok = await closed;
    sock.destroy();
    if (!ok) throw new FuzzFailure('the server kept a half-closed connection open');
    return Buffer.concat(chunks);
  };
  return {
    name: 'pccrr-framing',
    async setup() {
      server = createRetrievalServer({
        source: mem.source,
        host: '127.0.0.1',
        port: 0,
        uploadTimeoutMs: 2000,
        logger: nullLogger,
      });
      port = (await server.listen()).port;
    },
    async teardown() {
      await server?.close();
    },
    generate(rng) {
      const pieces: Buffer[] = [];
      const firstValid = rng.bool(0.5);
      if (firstValid) pieces.push(valid());
      const n = rng.range(firstValid ? 0 : 1, 4);
      for (let k = 0; k < n; k++) {
        const body = rng.bool(0.5) ? good : fromSeeds(rng, seeds, 16);
        switch (rng.int(9)) {
          case 0:
            pieces.push(valid());
            break;
          case 1: // header names in other cases, extra headers, keep-alive
            pieces.push(
              Buffer.concat([
                Buffer.from(
                  `POST ${PCCRR_PATH} HTTP/1.1\r\nhost: x\r\nCONTENT-LENGTH: ${body.length}\r\nConnection: Keep-Alive\r\nX-Other:  y \r\n\r\n`,
                  'latin1',
                ),
                body,
              ]),
            );
            break;
          case 2: // Expect: 100-continue, or an expectation we do not meet
            pieces.push(
              Buffer.concat([
                Buffer.from(head(body.length, `Expect: ${rng.bool(0.7) ? '100-continue' : 'teapot'}\r\n`), 'latin1'),
                body,
              ]),
            );
            break;
          case 3: {
            // a chunked body (411), sometimes with a Content-Length as well (400)
            const cl = rng.bool(0.3) ? `Content-Length: ${body.length}\r\n` : '';
            const h = `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${cl}\r\n`;
            pieces.push(
              Buffer.from(`${h}${body.length.toString(16)}\r\n${body.toString('latin1')}\r\n0\r\n\r\n`, 'latin1'),
            );
            break;
          }
          case 4: // a huge head
            pieces.push(Buffer.from(head(body.length, `X-Big: ${'a'.repeat(rng.range(8000, 20000))}\r\n`), 'latin1'));
            break;
          case 5:
            pieces.push(rng.bytes(rng.range(1, 300)));
            break;
          case 6: // HTTP/1.0 (the connection closes after the answer)
            pieces.push(Buffer.concat([Buffer.from(head(body.length, '', PCCRR_PATH, '1.0'), 'latin1'), body]));
            break;
          case 7: // a body shorter than announced (the connection ends first)
            pieces.push(Buffer.concat([Buffer.from(head(body.length + rng.range(1, 50)), 'latin1'), body]));
            break;
          default:
            pieces.push(mutate(rng, Buffer.concat([Buffer.from(head(body.length), 'latin1'), body]), { rounds: 1 }));
        }
      }
      const flags = (firstValid ? 1 : 0) | (rng.int(3) << 1);
      return Buffer.concat([Buffer.from([flags]), ...pieces]);
    },
    async run(input) {
      if (input.length < 2) return 'rejected';
      const flags = input[0]!;
      const rng = new Rng(input.length * 2654435761 + input[input.length - 1]!);
      const responses = splitHttpResponses(await exchange(input.subarray(1), (flags >> 1) % 3, rng));
      let served = 0;
      for (const r of responses) {
        if (r.status >= 500) throw new FuzzFailure(`HTTP ${r.status}`);
        if (r.status !== 200) {
          if (r.body.length !== 0) throw new FuzzFailure(`HTTP ${r.status} with a body`);
          continue;
        }
        const m = decodeResponse(r.body);
        if (m.type === 'BLK' && m.block.length > 0) {
          if (m.cryptoAlgo === 0) throw new FuzzFailure('plaintext block over HTTP');
          served++;
        }
      }
      if (flags & 1) {
        const first = responses[0];
        if (first?.status !== 200) throw new FuzzFailure(`a valid first request got ${first?.status ?? 'nothing'}`);
        const m = decodeResponse(first!.body);
        if (m.type !== 'BLK' || m.blockIndex !== 1 || m.block.length === 0)
          throw new FuzzFailure('a valid first request was not answered with its block');
      }
      // The server still serves a fresh connection.
      const after = splitHttpResponses(await exchange(valid(), 0, rng));
      if (after.length !== 1 || after[0]!.status !== 200)
        throw new FuzzFailure('a fresh request after the case failed');
      return served > 0 ? 'accepted' : 'rejected';
    },
  };
}
