// The raw-socket HTTP client `peerdist get` receives with (src/client/raw-http.ts): every framing
// the admin API can send (Content-Length, chunked, close-delimited), the response cut off in each,
// heads and chunk lines split across reads, writers that pause the socket, and unix sockets; and
// getToFile over a unix-socket admin API, with progress reported only on the timer at most 10 a second.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkedDecoder, parseHead, rawGet } from '../../src/client/raw-http.js';
import { StagedFileWriter } from '../../src/client/direct-file.js';
import { closeSync, openSync } from 'node:fs';
import type { AdminAddress } from '../../src/util/address.js';
import { getToFile, MIN_PROGRESS_INTERVAL_MS } from '../../src/client/get.js';
import { startAdminServer } from '../../src/daemon/admin.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { FakeEngine } from '../daemon/fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A server that answers every connection by writing `pieces` one by one (a tick apart), then `end`s or resets. */
async function scripted(
  t: { teardown: (fn: () => unknown) => void },
  pieces: Buffer[],
  how: 'end' | 'reset' = 'end',
  where: 'tcp' | 'unix' = 'tcp',
): Promise<{ addr: AdminAddress; requests: string[] }> {
  const requests: string[] = [];
  const srv: Server = createServer((s: Socket) => {
    let req = '';
    s.on('data', async (d) => {
      req += d.toString('latin1');
      if (!req.includes('\r\n\r\n')) return;
      requests.push(req);
      for (const p of pieces) {
        s.write(p);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (how === 'end') s.end();
      else s.resetAndDestroy();
    });
    s.on('error', () => {});
  });
  let addr: AdminAddress;
  if (where === 'unix') {
    const dir = await mkdtemp(join(tmpdir(), 'pd-raw-'));
    const path = join(dir, 'admin.sock');
    await new Promise<void>((r) => srv.listen(path, r));
    addr = { kind: 'socket', path };
    t.teardown(() => rm(dir, { recursive: true, force: true }));
  } else {
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    addr = { kind: 'tcp', host: '127.0.0.1', port: (srv.address() as { port: number }).port };
  }
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { addr, requests };
}

/** Splits `b` into pieces of the given sizes (the rest as the last piece). */
function split(b: Buffer, ...sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(b.subarray(at, at + n));
    at += n;
  }
  if (at < b.length) out.push(b.subarray(at));
  return out;
}

const head = (lines: string[]) => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

function chunkedBody(data: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    parts.push(Buffer.from(`${n.toString(16)};ext=1\r\n`), data.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  parts.push(Buffer.from('0\r\nx-trailer: 1\r\n\r\n'));
  return Buffer.concat(parts);
}

/** Collects the body with a synchronous writer (as file sinks do). */
async function collect(addr: AdminAddress, bufferBytes?: number): Promise<{ status: number; body: Buffer; n: number }> {
  const res = await rawGet(addr, '/v1/fetch?url=x', { bufferBytes });
  const parts: Buffer[] = [];
  const n = await res.body((b, s, e) => {
    parts.push(Buffer.from(b.subarray(s, e)));
  });
  return { status: res.head.status, body: Buffer.concat(parts), n };
}

t.test('parseHead', async (t) => {
  const h = parseHead('HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2');
  t.same(h, { status: 404, statusText: 'Not Found', headers: { 'content-length': '3', 'x-a': '1, 2' } });
  t.throws(() => parseHead('SSH-2.0-x'), { code: 'BAD_RESPONSE' });
  t.throws(() => parseHead('HTTP/1.1 200 OK\r\nno colon'), { code: 'BAD_RESPONSE' });
});

t.test('chunked decoder, fed one byte at a time', async (t) => {
  const data = randomBytes(1000);
  const wire = Buffer.concat([chunkedBody(data, [1, 500, 499]), Buffer.from('NEXT')]);
  const d = new ChunkedDecoder();
  const got: Buffer[] = [];
  let end = -1;
  for (let i = 0; i < wire.length && end === -1; i++) {
    const at = d.feed(wire, i, i + 1, (s, e) => got.push(Buffer.from(wire.subarray(s, e))));
    if (d.done) end = at;
  }
  t.equal(sha(Buffer.concat(got)), sha(data));
  t.equal(wire.subarray(end).toString(), 'NEXT', 'stops right after the trailer');
  t.throws(
    () => new ChunkedDecoder().feed(Buffer.from('zz\r\n'), 0, 4, () => {}),
    { code: 'BAD_RESPONSE' },
    'a chunk size that is not hex',
  );
  t.throws(
    () => new ChunkedDecoder().feed(Buffer.from('2\r\nabXY\r\n'), 0, 9, () => {}),
    { code: 'BAD_RESPONSE' },
    'data not followed by CRLF',
  );
});

t.test('Content-Length body, head and body split at awkward places, small read buffer', async (t) => {
  const data = randomBytes(300_000);
  const wire = Buffer.concat([head(['HTTP/1.1 200 OK', `Content-Length: ${data.length}`, 'X-PeerDist-Job: j1']), data]);
  const { addr, requests } = await scripted(t, split(wire, 5, 40, 1, 70_000, 3));
  const r = await collect(addr, 4096);
  t.equal(r.status, 200);
  t.equal(r.n, data.length);
  t.equal(sha(r.body), sha(data), 'every byte, in order');
  t.match(requests[0], /^GET \/v1\/fetch\?url=x HTTP\/1\.1\r\n/);
  t.match(requests[0], /\r\nconnection: close\r\n/);
});

t.test('chunked body across reads', async (t) => {
  const data = randomBytes(200_000);
  const wire = Buffer.concat([
    head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']),
    chunkedBody(data, [7, 65_536, 100_000, 34_457]),
  ]);
  const { addr } = await scripted(t, split(wire, 30, 20, 3, 65_550, 2, 1));
  const r = await collect(addr, 8192);
  t.equal(r.n, data.length);
  t.equal(sha(r.body), sha(data));
});

t.test('reads into a StagedFileWriter stage (readBuffer), Content-Length and chunked: the file is exact', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-raw-stage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const data = randomBytes(3_000_000);
  const wires = {
    length: Buffer.concat([head(['HTTP/1.1 200 OK', `Content-Length: ${data.length}`]), data]),
    chunked: Buffer.concat([
      head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']),
      chunkedBody(data, [7, 65_536, 1_000_000, 4096, 1_930_361]),
    ]),
  };
  for (const [kind, wire] of Object.entries(wires)) {
    const { addr } = await scripted(t, split(wire, 30, 20, 3, 65_550, 2, 1, 1_500_000, 4097));
    const path = join(dir, `${kind}.bin`);
    const fd = openSync(path, 'wx');
    const w = new StagedFileWriter(fd, { stageBytes: 64 * 1024 });
    let regions = 0;
    const res = await rawGet(addr, '/', {
      readBuffer: () => {
        regions++;
        return w.readBuffer();
      },
    });
    const n = await res.body((b, s, e) => w.write(b, s, e));
    t.equal(n, data.length, kind);
    t.equal(w.finish(), data.length, `${kind}: written`);
    closeSync(fd);
    t.equal(sha(await readFile(path)), sha(data), `${kind}: every byte, in order`);
    t.ok(regions > 3, `${kind}: reads went to the stage (${regions})`);
  }
});

t.test('a body delimited by the end of the connection', async (t) => {
  const data = randomBytes(50_000);
  const { addr } = await scripted(t, split(Buffer.concat([head(['HTTP/1.1 200 OK']), data]), 10, 1000));
  const r = await collect(addr);
  t.equal(sha(r.body), sha(data));
});

t.test('cut short: TRUNCATED, with Content-Length and with chunks; a reset before the head', async (t) => {
  const data = randomBytes(10_000);
  const cl = await scripted(t, [head(['HTTP/1.1 200 OK', 'Content-Length: 20000']), data]);
  await t.rejects(collect(cl.addr), { code: 'TRUNCATED' });
  const ch = await scripted(t, [
    head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']),
    chunkedBody(data, [5000]).subarray(0, 3000),
  ]);
  await t.rejects(collect(ch.addr), { code: 'TRUNCATED' }, 'the last chunk never came');
  const reset = await scripted(t, [head(['HTTP/1.1 200 OK', 'Content-Length: 20000']), data], 'reset');
  await t.rejects(collect(reset.addr), { code: /ECONNRESET|TRUNCATED/ });
  const none = await scripted(t, [], 'end');
  await t.rejects(rawGet(none.addr, '/'), { code: 'ECONNRESET' }, 'closed before any answer');
  const bad = await scripted(t, [Buffer.from('garbage\r\n\r\n')]);
  await t.rejects(rawGet(bad.addr, '/'), { code: 'BAD_RESPONSE' });
});

t.test('a writer returning a promise pauses reading; the bytes it saw stay intact', async (t) => {
  const data = randomBytes(2_000_000);
  const { addr } = await scripted(t, [
    head(['HTTP/1.1 200 OK', `Content-Length: ${data.length}`]),
    ...split(data, 100_000, 300_000, 500_000),
  ]);
  const res = await rawGet(addr, '/', { bufferBytes: 16_384 });
  const parts: Buffer[] = [];
  let inFlight = 0;
  let overlapped = false;
  const n = await res.body(async (b, s, e) => {
    if (inFlight++) overlapped = true;
    const before = sha(b.subarray(s, e));
    await new Promise((r) => setImmediate(r));
    t.equal(sha(b.subarray(s, e)), before, 'buffer not reused while the write is pending');
    parts.push(Buffer.from(b.subarray(s, e)));
    inFlight--;
  });
  t.equal(n, data.length);
  t.notOk(overlapped, 'one write at a time');
  t.equal(sha(Buffer.concat(parts)), sha(data));
});

t.test('error answers are read whole; an abort rejects with AbortError', async (t) => {
  const body = Buffer.from(JSON.stringify({ error: 'origin answered 404', code: 'ORIGIN_STATUS' }));
  const { addr } = await scripted(t, [head(['HTTP/1.1 502 Bad Gateway', `Content-Length: ${body.length}`]), body]);
  const res = await rawGet(addr, '/');
  t.equal(res.head.status, 502);
  t.equal((await res.text(1 << 20)).toString(), body.toString());

  const slow = await scripted(t, [head(['HTTP/1.1 200 OK', 'Content-Length: 100000000']), randomBytes(1000)]);
  const ac = new AbortController();
  const r2 = await rawGet(slow.addr, '/', { signal: ac.signal });
  const p = r2.body(() => {
    ac.abort();
  });
  await t.rejects(p, { name: 'AbortError' });
});

t.test('unix socket', async (t) => {
  const data = randomBytes(100_000);
  const { addr } = await scripted(
    t,
    [head(['HTTP/1.1 200 OK', `Content-Length: ${data.length}`]), data],
    'end',
    'unix',
  );
  const r = await collect(addr);
  t.equal(sha(r.body), sha(data));
});

t.test('getToFile over a unix-socket admin API; progress only on its timer, at most 10 a second', async (t) => {
  const DATA = randomBytes(3_000_000);
  const engine = new FakeEngine(new Map([['http://o.test/big.bin', { data: DATA }]]));
  const jobs = new JobBook(engine);
  const dir = await mkdtemp(join(tmpdir(), 'pd-raw-get-'));
  const admin = await startAdminServer(
    { kind: 'socket', path: join(dir, 'admin.sock') },
    {
      jobs,
      status: () => ({ downloads: [], totals: { fromOrigin: 0, fromPeers: 0, fromCache: 0, servedToPeers: 0 } }),
      metrics: () => '',
      cache: { stats: () => ({}), list: () => [], verifyAll: async () => ({}) },
    },
  );
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });
  const asked: number[] = [];
  const ticks: Array<() => void> = [];
  let reports = 0;
  const out = join(dir, 'big.bin');
  const r = await getToFile({
    daemon: { kind: 'socket', path: admin.address },
    url: 'http://o.test/big.bin',
    output: out,
    progressIntervalMs: 1, // asks for 1000 a second
    every: (tick, ms) => {
      asked.push(ms);
      ticks.push(tick);
      return () => ticks.splice(0);
    },
    onProgress: () => {
      reports++;
    },
  });
  t.equal(r.bytes, DATA.length);
  t.equal(sha(await readFile(out)), sha(DATA), 'file content equals the source');
  t.same(asked, [MIN_PROGRESS_INTERVAL_MS], 'one timer, never faster than 100 ms');
  t.equal(MIN_PROGRESS_INTERVAL_MS, 100);
  t.equal(reports, 0, 'nothing reported per chunk: only the timer reports');
  t.equal(ticks.length, 0, 'the timer is stopped when the download ends');
});
