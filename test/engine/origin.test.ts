/** How the engine treats what origins answer: plain bodies, bad content information, signatures, lying origins. */
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import type { DownloadError } from '../../src/engine/errors.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { MiB, payload, readAll, sha256, startNode, startOrigin, testPort } from './harness.js';

async function fakeOrigin(
  t: Test,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/file`, requests };
}

/** Content information (and its response headers) of `data` as the real origin produces it. */
async function realContentInfo(t: Test, data: Buffer, version: 1 | 2) {
  const origin = await startOrigin(t, { 'x.bin': data });
  const res = await request(origin.url('x.bin'), {
    headers: clientRequestHeaders({ maxContentVersion: version, hashRequest: true }),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  t.equal(res.headers['content-encoding'], 'peerdist');
  return { body, headers: res.headers, origin };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as DownloadError,
  );

t.test('plain origin: streamed through, counted from the origin, readable twice and afterwards', async (t) => {
  const data = payload(MiB + 99);
  const o = await fakeOrigin(t, (_req, res) => {
    res.writeHead(200, { 'Content-Length': String(data.length), 'Content-Type': 'application/x-test' });
    res.end(data);
  });
  const n = await startNode(t, 20, testPort());
  const job = n.engine.download(o.url);
  const r1 = readAll(job.createReadStream());
  const info = await job.info;
  t.equal(info.peerdist, false);
  t.equal(info.contentLength, data.length);
  t.equal(info.contentType, 'application/x-test');
  const r = await job.done;
  t.equal(r.fromOrigin, data.length);
  t.equal(r.peerdist, false);
  t.equal(sha256(await r1), sha256(data));
  t.equal(sha256(await readAll(job.createReadStream())), sha256(data), 'readable after completion');
  t.ok((await readAll(job.createReadStream(10, 19))).equals(data.subarray(10, 20)), 'range (end inclusive)');
  t.equal(o.requests[0]!.headers['accept-encoding'], 'peerdist', 'content information was asked for');
  t.equal(o.requests[0]!.headers['range'], undefined, 'no Range on the first request');
});

t.test('MakeHashRequest: the normal body is used right away', async (t) => {
  const data = payload(300_000);
  const origin = await startOrigin(t, { 'f.bin': data }, { firstWaitMs: 0 });
  const n = await startNode(t, 21, testPort());
  const job = n.engine.download(origin.url('f.bin'));
  t.equal((await job.info).peerdist, false);
  await job.done;
  t.equal(sha256(await readAll(job.createReadStream())), sha256(data));
  t.equal(origin.server.stats().makeHashRequests, 1);
});

t.test('fresh origin (nothing published): the first download already gets content information', async (t) => {
  const data = payload(2 * MiB + 5);
  const origin = await startOrigin(t, { 'f.bin': data });
  const n = await startNode(t, 27, testPort());
  const job = n.engine.download(origin.url('f.bin'));
  t.equal((await job.info).peerdist, true, 'the origin waited for its hash job');
  const r = await job.done;
  t.equal(sha256(await readAll(job.createReadStream())), sha256(data));
  t.equal(r.fromOrigin, data.length);
  t.match(origin.server.stats(), { makeHashRequests: 0, bytesFull: 0, bytesMissingData: data.length, hashJobs: 1 });
});

t.test('malformed or inconsistent content information: clear error', async (t) => {
  const n = await startNode(t, 22, testPort());
  const garbage = await fakeOrigin(t, (_req, res) => {
    res.writeHead(200, {
      'Content-Encoding': 'peerdist',
      'X-P2P-PeerDist': 'Version=1.1, ContentLength=100',
      ETag: '"x"',
    });
    res.end(Buffer.from('this is not content information'));
  });
  const e1 = await failure(n.engine.download(garbage.url).done);
  t.equal(e1.code, 'BAD_CONTENT_INFO');
  t.match(e1.message, /malformed content information/);

  const data = payload(200_000);
  const real = await realContentInfo(t, data, 2);
  const wrongLen = await fakeOrigin(t, (_req, res) => {
    res.writeHead(200, {
      'Content-Encoding': 'peerdist',
      'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length + 1}`,
    });
    res.end(real.body);
  });
  const e2 = await failure(n.engine.download(wrongLen.url).done);
  t.equal(e2.code, 'BAD_CONTENT_INFO');
  t.match(e2.message, /ContentLength/);
  const noLen = await fakeOrigin(t, (_req, res) => {
    res.writeHead(200, { 'Content-Encoding': 'peerdist' });
    res.end(real.body);
  });
  t.equal((await failure(n.engine.download(noLen.url).done)).code, 'BAD_CONTENT_INFO');

  const missing = await fakeOrigin(t, (_req, res) => {
    res.writeHead(404);
    res.end('nope');
  });
  const e3 = await failure(n.engine.download(missing.url).done);
  t.equal(e3.code, 'ORIGIN_STATUS');
  t.equal(e3.status, 404);
});

t.test('signatures: the origin key is accepted, another key or no signature is refused', async (t) => {
  const data = payload(150_000);
  const origin = await startOrigin(t, { 'f.bin': data });
  await origin.warm('f.bin', 2);
  const port = testPort();
  const ok = await startNode(t, 23, port, { engine: { signaturePublicKeyPem: origin.server.publicKeyPem } });
  const r = await ok.engine.download(origin.url('f.bin')).done;
  t.equal(r.peerdist, true, 'signed by the configured key');
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();
  const bad = await startNode(t, 24, port, { engine: { signaturePublicKeyPem: other } });
  const e = await failure(bad.engine.download(origin.url('f.bin')).done);
  t.equal(e.code, 'BAD_SIGNATURE');
  t.match(e.message, /rejected: signature/);
  const real = await realContentInfo(t, data, 2);
  const unsigned = await fakeOrigin(t, (_req, res) => {
    res.writeHead(200, {
      'Content-Encoding': 'peerdist',
      'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length}`,
    });
    res.end(real.body);
  });
  const strict = await startNode(t, 25, port, { engine: { signaturePublicKeyPem: origin.server.publicKeyPem } });
  t.equal((await failure(strict.engine.download(unsigned.url).done)).code, 'BAD_SIGNATURE');
});

t.test('an origin whose bytes do not match its content information: retried, then a clear error', async (t) => {
  const data = payload(3 * 65536);
  const real = await realContentInfo(t, data, 1);
  const other = payload(data.length);
  const liar = await fakeOrigin(t, (req, res) => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['range'] ?? ''));
    if (!range) {
      res.writeHead(200, {
        'Content-Encoding': 'peerdist',
        'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length}`,
      });
      res.end(real.body);
      return;
    }
    const s = Number(range[1]),
      e = Number(range[2]);
    res.writeHead(206, { 'Content-Range': `bytes ${s}-${e}/${data.length}` });
    res.end(other.subarray(s, e + 1));
  });
  const n = await startNode(t, 26, testPort(), { engine: { maxContentVersion: 1 } });
  const job = n.engine.download(liar.url);
  const e = await failure(job.done);
  t.equal(e.code, 'ORIGIN_MISMATCH');
  t.match(e.message, /origin returned data that does not match its content information/);
  const ranged = liar.requests.filter((r) => r.headers['range']);
  t.ok(ranged.length >= 2, `retried (${ranged.length} range requests)`);
  t.match(String(ranged[0]!.headers['x-p2p-peerdist']), /MissingDataRequest=true/, 'fallback requests are flagged');
  t.notOk(
    String(ranged[0]!.headers['accept-encoding'] ?? '').includes('peerdist'),
    'no peerdist coding on fallback requests',
  );
  t.equal(job.progress().blocksDone, 0, 'nothing unverified was stored');
  const ci = (await job.info).contentInfo!;
  t.notOk(n.store.hasBlock(ci.segments[0]!.segmentId, 0), 'the cache holds none of the bad bytes');
});

t.test(
  'alone: runs of adjacent blocks in one Range, each block verified and stored as it arrives; a bad block mid-range costs only itself',
  async (t) => {
    const data = payload(40 * 65536 + 1234);
    const real = await realContentInfo(t, data, 1);
    let corrupted = false;
    const ranges: Array<[number, number]> = [];
    const o = await fakeOrigin(t, (req, res) => {
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['range'] ?? ''));
      if (!range) {
        res.writeHead(200, {
          'Content-Encoding': 'peerdist',
          'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length}`,
        });
        res.end(real.body);
        return;
      }
      const s = Number(range[1]),
        e = Number(range[2]);
      ranges.push([s, e]);
      const body = Buffer.from(data.subarray(s, e + 1));
      // The first multi-block range carries one bad byte in its third block.
      if (!corrupted && e - s + 1 > 3 * 65536) {
        corrupted = true;
        body[2 * 65536 + 7]! ^= 0xff;
      }
      res.writeHead(206, { 'Content-Range': `bytes ${s}-${e}/${data.length}` });
      // Sent in odd-sized pieces, so blocks are cut across chunk boundaries.
      for (let off = 0; off < body.length; off += 10_007) res.write(body.subarray(off, off + 10_007));
      res.end();
    });
    const n = await startNode(t, 28, testPort(), {
      engine: { maxContentVersion: 1, originRangeBlocks: 8, originAloneAfterMs: 0 },
    });
    const job = n.engine.download(o.url);
    const out = readAll(job.createReadStream());
    const r = await job.done;
    t.equal(sha256(await out), sha256(data), 'content correct');
    t.equal(r.fromOrigin, data.length, 'every block counted once');
    t.ok(corrupted, 'a range with a bad block was served');
    const multi = ranges.filter(([s, e]) => e - s + 1 > 65536);
    t.ok(
      multi.length > 0 && multi.every(([s, e]) => e - s + 1 <= 8 * 65536),
      `ranges of up to 8 blocks (${ranges.length} requests for 41 blocks)`,
    );
    t.ok(ranges.length < 41, 'fewer requests than blocks');
    const ci = (await job.info).contentInfo!;
    t.same(n.store.presentBlocks(ci.segments[0]!.segmentId).length, 41, 'all blocks stored');
    t.same((await n.store.verifyAll()).bad, [], 'every stored block verifies');
  },
);

t.test('a range answered short: the verified blocks are kept, the rest fetched again', async (t) => {
  const data = payload(20 * 65536);
  const real = await realContentInfo(t, data, 1);
  let cut = 0;
  const o = await fakeOrigin(t, (req, res) => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['range'] ?? ''));
    if (!range) {
      res.writeHead(200, {
        'Content-Encoding': 'peerdist',
        'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length}`,
      });
      res.end(real.body);
      return;
    }
    const s = Number(range[1]),
      e = Number(range[2]);
    res.writeHead(206, { 'Content-Range': `bytes ${s}-${e}/${data.length}`, 'Content-Length': String(e - s + 1) });
    if (cut === 0 && e - s + 1 >= 4 * 65536) {
      // The connection drops in the middle of the third block.
      cut++;
      res.write(data.subarray(s, s + 2 * 65536 + 100));
      setImmediate(() => res.destroy());
      return;
    }
    res.end(data.subarray(s, e + 1));
  });
  const n = await startNode(t, 29, testPort(), {
    engine: { maxContentVersion: 1, originRangeBlocks: 8, originAloneAfterMs: 0 },
  });
  const job = n.engine.download(o.url);
  const out = readAll(job.createReadStream());
  const r = await job.done;
  t.equal(sha256(await out), sha256(data), 'content correct');
  t.equal(cut, 1, 'one range was cut short');
  t.equal(r.fromOrigin, data.length, 'every block counted once');
  t.same((await n.store.verifyAll()).bad, [], 'every stored block verifies');
});

t.test(
  'a lone download streamed to a reader: blocks reach the reader from memory, not re-read from the cache',
  async (t) => {
    // Smaller than the 16 MiB a job keeps for its readers: however far the download runs ahead of
    // the reader (in one process the local origin outruns it), nothing is dropped before it is read.
    const data = payload(12 * MiB + 4321);
    const real = await realContentInfo(t, data, 1);
    const o = await fakeOrigin(t, (req, res) => {
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers['range'] ?? ''));
      if (!range) {
        res.writeHead(200, {
          'Content-Encoding': 'peerdist',
          'X-P2P-PeerDist': `Version=1.1, ContentLength=${data.length}`,
        });
        res.end(real.body);
        return;
      }
      const s = Number(range[1]),
        e = Number(range[2]);
      res.writeHead(206, { 'Content-Range': `bytes ${s}-${e}/${data.length}` });
      res.end(data.subarray(s, e + 1));
    });
    const n = await startNode(t, 33, testPort(), {
      engine: { maxContentVersion: 1, originRangeBlocks: 16, originAloneAfterMs: 0 },
    });
    let reads = 0;
    const read = n.store.readBlock.bind(n.store);
    n.store.readBlock = (...args: Parameters<typeof read>) => {
      reads++;
      return read(...args);
    };
    const job = n.engine.download(o.url);
    const out = readAll(job.createReadStream());
    await job.done;
    t.equal(sha256(await out), sha256(data), 'content correct');
    const blocks = Math.ceil(data.length / 65536);
    t.equal(reads, 0, `${reads} of ${blocks} blocks re-read from the cache`);
  },
);
