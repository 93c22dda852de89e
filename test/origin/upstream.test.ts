import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { verifyContentInfoSignature } from '../../src/protocol/pccrtp/signature.js';
import { describesData, get, startOrigin } from './http.js';
import { tempDir } from './tmp.js';

const secret = randomBytes(32);
const V2 = clientRequestHeaders({ maxContentVersion: 2 });
const V2_HASH = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });

/** A plain HTTP upstream: /files/data.bin (ETag, ranges, If-None-Match) and /files/novalidator.bin. */
async function upstream(t: { teardown(fn: () => unknown): void }, body: Buffer) {
  const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    if (req.url === '/files/data.bin') {
      const etag = '"up-1"';
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { ETag: etag }).end();
        return;
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m) {
        const s = Number(m[1]),
          e = Number(m[2]);
        res.writeHead(206, {
          ETag: etag,
          'Content-Range': `bytes ${s}-${e}/${body.length}`,
          'Content-Length': String(e - s + 1),
          'Content-Type': 'application/x-test',
        });
        res.end(body.subarray(s, e + 1));
        return;
      }
      res.writeHead(200, { ETag: etag, 'Content-Length': String(body.length), 'Content-Type': 'application/x-test' });
      res.end(req.method === 'HEAD' ? undefined : body);
    } else if (req.url === '/files/redirect') {
      res.writeHead(302, { Location: '/files/data.bin', 'Content-Length': '0' }).end();
    } else if (req.url === '/files/coded.bin') {
      res.writeHead(200, { ETag: '"c"', 'Content-Encoding': 'gzip', 'Content-Length': String(body.length) }).end(body);
    } else if (req.url === '/files/novalidator.bin') {
      res.writeHead(200, { 'Content-Length': String(body.length) }).end(body);
    } else {
      res.writeHead(404, { 'Content-Length': '0' }).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/files`, seen };
}

t.test('reverse proxy mode', async (t) => {
  const body = randomBytes(150_000);
  const up = await upstream(t, body);
  const dir = await tempDir(t);
  // Relay-only mode (no entity store), the MS-PCCRTP first answer (no wait).
  const s = await startOrigin(t, {
    upstream: up.url,
    stateDir: join(dir, 'state'),
    secret,
    firstWaitMs: 0,
    upstreamStoreLimit: 0,
  });

  const plain = await get(s, '/data.bin');
  t.equal(plain.status, 200);
  t.ok(plain.body.equals(body));
  t.equal(plain.headers['etag'], '"up-1"');
  t.equal(plain.headers['content-type'], 'application/x-test');

  const ranged = await get(s, '/data.bin', { Range: 'bytes=100-199' });
  t.equal(ranged.status, 206);
  t.equal(ranged.headers['content-range'], `bytes 100-199/${body.length}`);
  t.ok(ranged.body.equals(body.subarray(100, 200)));
  t.equal((await get(s, '/data.bin', { 'If-None-Match': '"up-1"' })).status, 304, 'conditional forwarded');
  t.equal((await get(s, '/nothing')).status, 404);

  const first = await get(s, '/data.bin', V2);
  t.equal(first.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');
  t.ok(first.body.equals(body));

  const pd = await get(s, '/data.bin', V2_HASH);
  t.equal(pd.headers['content-encoding'], 'peerdist');
  t.equal(pd.headers['x-p2p-peerdist'], `Version=1.1, ContentLength=${body.length}`);
  t.equal(pd.headers['etag'], '"up-1"');
  t.equal(describesData(parseContentInfo(pd.body), body, secret), undefined, 'describes the upstream entity');
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: s.server.publicKeyPem,
      path: '/data.bin',
      headers: pd.headers,
      body: pd.body,
    }),
    { ok: true },
  );

  const again = await get(s, '/data.bin', V2);
  t.equal(again.headers['content-encoding'], 'peerdist', 'cached');
  t.ok(again.body.equals(pd.body));
  t.ok(s.server.stats().cacheHits >= 1);

  const nv = await get(s, '/novalidator.bin', V2_HASH);
  t.equal(nv.status, 200);
  t.equal(nv.headers['content-encoding'], undefined, 'no validator: never PeerDist');
  t.equal(nv.headers['x-p2p-peerdistex'], undefined);
  t.ok(nv.body.equals(body));

  const redirect = await get(s, '/redirect');
  t.equal(redirect.status, 302);
  t.equal(redirect.headers['location'], '/files/data.bin');
  const coded = await get(s, '/coded.bin', V2_HASH);
  t.equal(coded.headers['content-encoding'], 'gzip', 'upstream coding relayed, not replaced by PeerDist');
  t.equal(coded.headers['x-p2p-peerdistex'], undefined);

  const head = await get(s, '/data.bin', {}, 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);

  for (const r of up.seen) {
    t.equal(r.headers['x-p2p-peerdist'], undefined, `${r.url}: no PeerDist headers upstream`);
    t.equal(r.headers['x-p2p-peerdistex'], undefined);
    t.notMatch(String(r.headers['accept-encoding'] ?? ''), /peerdist/i);
  }
  t.ok(
    up.seen.some((r) => r.headers.range === 'bytes=100-199'),
    'Range forwarded',
  );
  t.match(s.server.stats(), {
    bytesFull: 600_100,
    fullResponses: 5,
    peerdistResponses: 2,
    notModified: 1,
    makeHashRequests: 1,
  });
});

t.test('upstream unreachable gives 502', async (t) => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const dir = await tempDir(t);
  const s = await startOrigin(t, { upstream: `http://127.0.0.1:${port}/`, stateDir: join(dir, 'state'), secret });
  t.equal((await get(s, '/x')).status, 502);
});
