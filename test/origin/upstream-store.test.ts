/**
 * Upstream mode's entity store: upstreams that ignore Range or send no validator, change
 * detection (content information always describes the bytes served), LRU size limit, restarts.
 */
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders, missingDataRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { verifyContentInfoSignature } from '../../src/protocol/pccrtp/signature.js';
import { originDir } from '../../src/origin/secret.js';
import { describesData, get, startOrigin } from './http.js';
import { tempDir } from './tmp.js';

const secret = randomBytes(32);
const V2 = clientRequestHeaders({ maxContentVersion: 2 });
const V1 = clientRequestHeaders({ maxContentVersion: 1 });

interface Entity {
  body: Buffer;
  etag?: string;
  lastModified?: string /** Honour If-None-Match (with `opts.conditional`). */;
  conditional?: boolean;
}

/**
 * A dumb upstream: ignores Range and If-Range entirely (always 200 with the whole body); honours
 * If-None-Match only when `conditional` is set. Entities are mutable (`files`).
 */
async function dumbUpstream(t: Test, files: Map<string, Entity>, opts: { conditional?: boolean } = {}) {
  const seen: Array<{ url: string; method: string; headers: IncomingHttpHeaders }> = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers });
    const f = files.get(req.url ?? '');
    if (!f) {
      res.writeHead(404, { 'Content-Length': '0' }).end();
      return;
    }
    const h: Record<string, string> = { 'Content-Length': String(f.body.length), 'Content-Type': 'application/x-test' };
    if (f.etag) h['ETag'] = f.etag;
    if (f.lastModified) h['Last-Modified'] = f.lastModified;
    if (opts.conditional && f.conditional !== false && f.etag && req.headers['if-none-match'] === f.etag) {
      res.writeHead(304, { ETag: f.etag }).end();
      return;
    }
    res.writeHead(200, h).end(req.method === 'HEAD' ? undefined : f.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const fullGets = (path: string) => seen.filter((s) => s.url === path && s.method === 'GET').length;
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, fullGets };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test(
  'an upstream that ignores Range and sends no validator: plain, ranged, missing-data and PeerDist answers from one fetch',
  async (t) => {
    const body = randomBytes(300_000);
    const up = await dumbUpstream(t, new Map([['/a.bin', { body }]]));
    const dir = await tempDir(t);
    const s = await startOrigin(t, {
      upstream: up.url,
      stateDir: join(dir, 'state'),
      secret,
      upstreamRevalidateMs: 60_000,
    });

    const ci = await get(s, '/a.bin', V2);
    t.equal(
      ci.headers['content-encoding'],
      'peerdist',
      'first PeerDist request: content information, although the upstream has no validator',
    );
    t.equal(describesData(parseContentInfo(ci.body), body, secret), undefined, 'it describes the upstream bytes');
    const etag = ci.headers['etag']!;
    t.match(etag, /^"pd-sha256-[0-9a-f]{32}"$/, 'a strong ETag derived from the bytes');
    t.same(
      verifyContentInfoSignature({
        publicKeyPem: s.server.publicKeyPem,
        path: '/a.bin',
        headers: ci.headers,
        body: ci.body,
      }),
      { ok: true },
    );

    const md = await get(s, '/a.bin', { ...missingDataRequestHeaders(), Range: 'bytes=65536-131071' });
    t.equal(md.status, 206, 'missing-data range answered 206 although the upstream ignores Range');
    t.equal(md.headers['content-range'], `bytes 65536-131071/${body.length}`);
    t.ok(md.body.equals(body.subarray(65536, 131072)));
    const suffix = await get(s, '/a.bin', { Range: 'bytes=-100' });
    t.equal(suffix.status, 206);
    t.ok(suffix.body.equals(body.subarray(body.length - 100)));
    t.equal((await get(s, '/a.bin', { Range: `bytes=${body.length}-` })).status, 416);
    const stale = await get(s, '/a.bin', { Range: 'bytes=0-9', 'If-Range': '"another-version"' });
    t.equal(stale.status, 200, 'If-Range with another validator: the whole (current) entity');
    t.equal((await get(s, '/a.bin', { 'If-None-Match': etag })).status, 304);
    const plain = await get(s, '/a.bin');
    t.ok(plain.body.equals(body));
    t.equal(plain.headers['accept-ranges'], 'bytes');
    const v1 = await get(s, '/a.bin', V1);
    t.equal(parseContentInfo(v1.body).version, 1, 'v1 content information from the same stored bytes');
    const head = await get(s, '/a.bin', {}, 'HEAD');
    t.equal(head.headers['content-length'], String(body.length));

    t.equal(up.fullGets('/a.bin'), 1, 'the upstream sent the entity once');
    t.match(s.server.stats(), {
      upstreamFetches: 1,
      upstreamBytes: body.length,
      storeEntities: 1,
      storeBytes: body.length,
      makeHashRequests: 0,
    });
    t.equal((await get(s, '/missing')).status, 404, 'upstream 404 relayed');
  },
);

t.test(
  'a changed upstream entity is detected (with and without validators); content information always describes the bytes served',
  async (t) => {
    const files = new Map<string, Entity>([
      ['/nv.bin', { body: randomBytes(200_000) }],
      ['/tag.bin', { body: randomBytes(200_000), etag: '"v1"' }],
      // Reuses its ETag for new bytes (and answers conditionals with 200): caught by the bytes' hash.
      ['/liar.bin', { body: randomBytes(200_000), etag: '"same"', conditional: false }],
    ]);
    const up = await dumbUpstream(t, files, { conditional: true });
    const dir = await tempDir(t);
    // Revalidate on every request: each answer reflects the upstream's current version.
    const s = await startOrigin(t, { upstream: up.url, stateDir: join(dir, 'state'), secret, upstreamRevalidateMs: 0 });

    for (const [path, change] of [
      ['/nv.bin', (e: Entity) => ({ body: randomBytes(e.body.length) })], // no validator, same length
      ['/tag.bin', (e: Entity) => ({ body: randomBytes(e.body.length), etag: '"v2"' })], // validator changes
      ['/liar.bin', (e: Entity) => ({ ...e, body: randomBytes(e.body.length) })], // validator does NOT change
    ] as const) {
      const before = files.get(path)!;
      const ci1 = await get(s, path, V2);
      t.equal(
        describesData(parseContentInfo(ci1.body), before.body, secret),
        undefined,
        `${path}: content information of version 1`,
      );
      const after = change(before);
      files.set(path, after);
      const ci2 = await get(s, path, V2);
      t.equal(ci2.headers['content-encoding'], 'peerdist');
      t.equal(
        describesData(parseContentInfo(ci2.body), after.body, secret),
        undefined,
        `${path}: new content information after the change`,
      );
      t.notOk(ci2.body.equals(ci1.body), `${path}: not the old content information`);
      const md = await get(s, path, { ...missingDataRequestHeaders(), Range: 'bytes=0-65535' });
      t.ok(md.body.equals(after.body.subarray(0, 65536)), `${path}: ranges come from the new version`);
      t.equal(md.headers['etag'], ci2.headers['etag'], `${path}: under the new version's ETag`);
      if (path !== '/liar.bin') t.not(ci2.headers['etag'], ci1.headers['etag'], `${path}: the ETag changed`);
      const old = await get(s, path, { Range: 'bytes=0-9', 'If-Range': ci1.headers['etag']! });
      if (path !== '/liar.bin')
        t.equal(old.status, 200, `${path}: a range for the old version gets the whole new entity, never mixed bytes`);
    }
    const unchanged = await get(s, '/tag.bin', V2);
    t.equal(unchanged.headers['content-encoding'], 'peerdist');
    t.ok(
      s.server.stats().upstreamNotModified >= 1,
      'an entity with a validator is revalidated with a conditional GET (304)',
    );
    t.ok(s.server.stats().cacheHits >= 1, 'unchanged: content information from the hash cache');

    files.delete('/nv.bin');
    t.equal((await get(s, '/nv.bin')).status, 404, 'gone upstream: gone here');
    t.equal(s.server.stats().storeEntities, 2);
  },
);

t.test('size limit with LRU eviction; entities larger than the store are relayed', async (t) => {
  const files = new Map<string, Entity>();
  for (const n of ['a', 'b', 'c']) files.set(`/${n}.bin`, { body: randomBytes(100_000), etag: `"${n}"` });
  files.set('/huge.bin', { body: randomBytes(300_000), etag: '"h"' });
  const up = await dumbUpstream(t, files);
  const dir = await tempDir(t);
  const s = await startOrigin(t, {
    upstream: up.url,
    stateDir: join(dir, 'state'),
    secret,
    upstreamStoreLimit: 250_000,
    upstreamRevalidateMs: 60_000,
  });
  await get(s, '/a.bin');
  await get(s, '/b.bin');
  await get(s, '/a.bin'); // a is now more recently used than b
  await get(s, '/c.bin'); // evicts b
  t.match(s.server.stats(), { storeEntities: 2, storeBytes: 200_000, storeEvictions: 1 });
  await get(s, '/a.bin');
  t.equal(up.fullGets('/a.bin'), 1, 'a stayed');
  t.ok((await get(s, '/b.bin')).body.equals(files.get('/b.bin')!.body));
  t.equal(up.fullGets('/b.bin'), 2, 'b was evicted and fetched again');
  const huge = await get(s, '/huge.bin', V2);
  t.ok(huge.body.equals(files.get('/huge.bin')!.body), 'an entity larger than the store is relayed');
  t.equal(huge.headers['content-encoding'], undefined);
  t.ok(s.server.stats().storeBytes! <= 250_000, 'never above the limit');
  const names = await readdir(join(originDir(join(dir, 'state')), 'entities'));
  t.equal(names.filter((n) => n.endsWith('.data')).length, 2, 'evicted files are removed');
});

t.test('the store survives a restart; leftovers of an interrupted fill are removed', async (t) => {
  const body = randomBytes(150_000);
  const up = await dumbUpstream(t, new Map([['/r.bin', { body, etag: '"r1"' }]]), { conditional: true });
  const dir = await tempDir(t);
  const state = join(dir, 'state');
  const a = await startOrigin(t, { upstream: up.url, stateDir: state, secret });
  const ci = await get(a, '/r.bin', V2);
  await a.server.close();
  const entities = join(originDir(state), 'entities');
  await writeFile(join(entities, 'deadbeef.part'), 'half a fill');
  await writeFile(join(entities, 'stray.data'), 'no metadata');

  const b = await startOrigin(t, { upstream: up.url, stateDir: state, secret });
  const again = await get(b, '/r.bin', V2);
  t.ok(again.body.equals(ci.body), 'same content information after the restart');
  const md = await get(b, '/r.bin', { ...missingDataRequestHeaders(), Range: 'bytes=100-199' });
  t.ok(md.body.equals(body.subarray(100, 200)));
  t.match(b.server.stats(), { upstreamFetches: 0, upstreamNotModified: 1, storeEntities: 1, hashJobs: 0 });
  t.equal(up.fullGets('/r.bin'), 2, 'one fill before the restart, one conditional revalidation after it');
  const names = (await readdir(entities)).sort();
  t.equal(names.length, 2, `only the entity's data and metadata remain: ${names.join(' ')}`);
  t.ok(names.every((n) => !n.startsWith('deadbeef') && !n.startsWith('stray')));
  t.equal(sha(body), sha(Buffer.from((await get(b, '/r.bin')).body)), 'plain body intact');
});
