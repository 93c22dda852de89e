import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, symlink, writeFile, utimes, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders, missingDataRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { verifyContentInfoSignature } from '../../src/protocol/pccrtp/signature.js';
import { describesData, get, rawGet, startOrigin } from './http.js';
import { tempDir } from './tmp.js';

const V2 = clientRequestHeaders({ maxContentVersion: 2 });
const V2_HASH = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });
const V1_HASH = clientRequestHeaders({ maxContentVersion: 1, hashRequest: true });
const WIN7 = { 'Accept-Encoding': 'gzip, deflate, peerdist', 'X-P2P-PeerDist': 'Version=1.0' };

const secret = randomBytes(32);
const data = randomBytes(200_000);

async function fixture(t: Parameters<typeof tempDir>[0]) {
  const top = await tempDir(t);
  const root = join(top, 'root');
  await mkdir(join(root, 'sub', 'dir'), { recursive: true });
  await writeFile(join(root, 'file.bin'), data);
  await writeFile(join(root, 'empty.bin'), Buffer.alloc(0));
  await writeFile(join(root, 'sub', 'dir', 'a b.txt'), 'inner file\n');
  await writeFile(join(top, 'outside.txt'), 'TOP-SECRET-OUTSIDE\n');
  await symlink(join(top, 'outside.txt'), join(root, 'escape'));
  await symlink(join(top), join(root, 'escape-dir'));
  await symlink(join(root, 'file.bin'), join(root, 'inside-link'));
  return { top, root, state: join(top, 'state') };
}

t.test('plain requests, validators, ranges and conditionals', async (t) => {
  const f = await fixture(t);
  const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret });

  const full = await get(s, '/file.bin');
  t.equal(full.status, 200);
  t.ok(full.body.equals(data), 'identity body');
  t.match(full.headers['etag'], /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
  t.ok(full.headers['last-modified']);
  t.equal(full.headers['content-encoding'], undefined);
  t.equal(full.headers['x-p2p-peerdistex'], undefined, 'no MakeHashRequest for a client that did not offer PeerDist');
  t.equal(full.headers['accept-ranges'], 'bytes');

  const inner = await get(s, '/sub/dir/a%20b.txt');
  t.equal(inner.body.toString(), 'inner file\n');
  t.equal((await get(s, '/inside-link')).body.length, data.length, 'symlink inside the root is served');

  const head = await get(s, '/file.bin', {}, 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], String(data.length));
  t.equal(head.body.length, 0);

  const post = await get(s, '/file.bin', {}, 'POST');
  t.equal(post.status, 405);
  t.equal(post.headers['allow'], 'GET, HEAD');

  const r1 = await get(s, '/file.bin', { Range: 'bytes=10-19' });
  t.equal(r1.status, 206);
  t.equal(r1.headers['content-range'], `bytes 10-19/${data.length}`);
  t.ok(r1.body.equals(data.subarray(10, 20)));
  const suffix = await get(s, '/file.bin', { Range: 'bytes=-100' });
  t.equal(suffix.status, 206);
  t.ok(suffix.body.equals(data.subarray(data.length - 100)));
  const open = await get(s, '/file.bin', { Range: 'bytes=199990-' });
  t.ok(open.body.equals(data.subarray(199_990)));
  const past = await get(s, '/file.bin', { Range: 'bytes=199990-999999' });
  t.equal(past.headers['content-range'], `bytes 199990-199999/${data.length}`);
  const bad = await get(s, '/file.bin', { Range: `bytes=${data.length}-` });
  t.equal(bad.status, 416);
  t.equal(bad.headers['content-range'], `bytes */${data.length}`);
  const multi = await get(s, '/file.bin', { Range: 'bytes=0-1, 5-6' });
  t.equal(multi.status, 200, 'multiple ranges answer the whole entity');
  t.equal(multi.body.length, data.length);
  const emptyRange = await get(s, '/empty.bin', { Range: 'bytes=0-' });
  t.equal(emptyRange.status, 416);

  const etag = full.headers['etag']!;
  t.equal((await get(s, '/file.bin', { 'If-None-Match': etag })).status, 304);
  t.equal((await get(s, '/file.bin', { 'If-None-Match': `"nope", W/${etag}` })).status, 304, 'weak comparison');
  t.equal((await get(s, '/file.bin', { 'If-None-Match': '"nope"' })).status, 200);
  t.equal((await get(s, '/file.bin', { 'If-Modified-Since': full.headers['last-modified']! })).status, 304);
  t.equal((await get(s, '/file.bin', { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' })).status, 200);
  const ir = await get(s, '/file.bin', { Range: 'bytes=0-3', 'If-Range': etag });
  t.equal(ir.status, 206);
  const irStale = await get(s, '/file.bin', { Range: 'bytes=0-3', 'If-Range': '"other"' });
  t.equal(irStale.status, 200);
  t.equal(irStale.body.length, data.length);
});

t.test('PeerDist negotiation over HTTP', async (t) => {
  const f = await fixture(t);
  // firstWaitMs 0: the MS-PCCRTP behaviour (no wait for hashing on the first request).
  const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret, firstWaitMs: 0 });

  // First request: normal content plus MakeHashRequest.
  const first = await get(s, '/file.bin', V2);
  t.equal(first.status, 200);
  t.ok(first.body.equals(data));
  t.equal(first.headers['content-encoding'], undefined);
  t.equal(first.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');

  // Hash request: waits for hashing, returns v2 content information.
  const v2 = await get(s, '/file.bin', V2_HASH);
  t.equal(v2.status, 200);
  t.equal(v2.headers['content-encoding'], 'peerdist');
  t.equal(v2.headers['x-p2p-peerdist'], `Version=1.1, ContentLength=${data.length}`);
  t.equal(v2.headers['content-length'], String(v2.body.length));
  t.equal(v2.headers['etag'], first.headers['etag']);
  t.ok(v2.headers['last-modified']);
  const ci2 = parseContentInfo(v2.body);
  t.equal(ci2.version, 2);
  t.equal(describesData(ci2, data, secret), undefined, 'v2 blob describes the file');
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: s.server.publicKeyPem,
      path: '/file.bin',
      headers: v2.headers,
      body: v2.body,
    }),
    { ok: true },
  );

  // Now cached: a plain PeerDist request gets it immediately.
  const again = await get(s, '/file.bin', V2);
  t.equal(again.headers['content-encoding'], 'peerdist');
  t.ok(again.body.equals(v2.body));

  // 1.1 with Max 1.0 → v1.
  const v1 = await get(s, '/file.bin', V1_HASH);
  t.equal(v1.headers['content-encoding'], 'peerdist');
  const ci1 = parseContentInfo(v1.body);
  t.equal(ci1.version, 1);
  t.equal(describesData(ci1, data, secret), undefined, 'v1 blob describes the file');

  // Windows 7 style: Version=1.0, no PeerDistEx → v1, answered as 1.0.
  const w7 = await get(s, '/file.bin', WIN7);
  t.equal(w7.headers['content-encoding'], 'peerdist');
  t.equal(w7.headers['x-p2p-peerdist'], `Version=1.0, ContentLength=${data.length}`);
  t.ok(w7.body.equals(v1.body));

  // 2.0 only.
  const only2 = await get(s, '/file.bin', {
    ...V2,
    'X-P2P-PeerDistEx': 'MinContentInformation=2.0, MaxContentInformation=2.0',
  });
  t.equal(parseContentInfo(only2.body).version, 2);

  // Unsatisfiable or malformed: plain body, no MakeHashRequest.
  for (const [name, h] of [
    ['min 3.0', { ...V2, 'X-P2P-PeerDistEx': 'MinContentInformation=3.0, MaxContentInformation=3.0' }],
    ['1.1 without Ex', { 'Accept-Encoding': 'peerdist', 'X-P2P-PeerDist': 'Version=1.1' }],
    ['garbage version', { ...V2, 'X-P2P-PeerDist': 'Version=x.y' }],
    ['garbage Ex', { ...V2, 'X-P2P-PeerDistEx': ',,;;==' }],
    ['q=0', { ...V2, 'Accept-Encoding': 'peerdist;q=0' }],
  ] as const) {
    const r = await get(s, '/file.bin', h);
    t.equal(r.status, 200, name);
    t.equal(r.headers['content-encoding'], undefined, `${name}: not peerdist`);
    t.equal(r.headers['x-p2p-peerdistex'], undefined, `${name}: no MakeHashRequest`);
    t.ok(r.body.equals(data), `${name}: identity body`);
  }

  // A range request from a PeerDist client is an ordinary range request.
  const ranged = await get(s, '/file.bin', { ...V2, Range: 'bytes=0-9' });
  t.equal(ranged.status, 206);
  t.equal(ranged.headers['content-encoding'], undefined);

  // Empty files never use PeerDist.
  const empty = await get(s, '/empty.bin', V2_HASH);
  t.equal(empty.status, 200);
  t.equal(empty.body.length, 0);
  t.equal(empty.headers['content-encoding'], undefined);
  t.equal(empty.headers['x-p2p-peerdistex'], undefined);

  // Signature checks over HTTP: tampered body and missing header.
  const tampered = Buffer.from(v2.body);
  tampered[tampered.length - 1]! ^= 0xff;
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: s.server.publicKeyPem,
      path: '/file.bin',
      headers: v2.headers,
      body: tampered,
    }),
    { ok: false, reason: 'bad-signature' },
  );
  const { 'x-peerdist-signature': _drop, ...unsigned } = v2.headers;
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: s.server.publicKeyPem,
      path: '/file.bin',
      headers: unsigned,
      body: v2.body,
    }),
    { ok: false, reason: 'missing' },
  );
  const pk = await get(s, '/.peerdist/public-key');
  t.equal(pk.body.toString(), s.server.publicKeyPem);
});

t.test('paths outside the root are refused', async (t) => {
  const f = await fixture(t);
  const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret });
  const attempts = [
    '/../outside.txt',
    '/sub/../../outside.txt',
    '/%2e%2e/outside.txt',
    '/%2E%2E/outside.txt',
    '/sub/%2e%2e/%2e%2e/outside.txt',
    '/..%2foutside.txt',
    '/%2e%2e%2foutside.txt',
    '/%252e%252e/outside.txt',
    '/%252e%252e%252foutside.txt',
    '/..\\outside.txt',
    '/sub\\..\\..\\outside.txt',
    '/%5c..%5coutside.txt',
    '/escape',
    '/escape-dir/outside.txt',
    `/${f.top}/outside.txt`,
    `//${f.top.slice(1)}/outside.txt`,
    `http://127.0.0.1/../outside.txt`,
    '/file.bin%00.txt',
    '/.',
    '/./file.bin/..',
    '/sub',
    '/sub/',
    '/',
    '/.peerdist/',
    '/.peerdist/file.bin',
    '/%ZZ',
  ];
  for (const target of attempts) {
    const r = await rawGet(s.port, target);
    t.ok(r.status >= 400 && r.status < 500, `${target} refused (${r.status})`);
    t.notMatch(r.text, 'TOP-SECRET', `${target} leaks nothing`);
  }
  t.equal((await rawGet(s.port, '/file.bin')).status, 200, 'control request works');
});

t.test('missing-data requests and stats', async (t) => {
  const f = await fixture(t);
  const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret, firstWaitMs: 0 });
  await get(s, '/file.bin'); // full 200000
  await get(s, '/file.bin', { Range: 'bytes=0-99' }); // full 100 (ranged, not missing data)
  const md = await get(s, '/file.bin', { ...missingDataRequestHeaders(), Range: 'bytes=65536-131071' });
  t.equal(md.status, 206);
  t.ok(md.body.equals(data.subarray(65536, 131072)));
  const ci = await get(s, '/file.bin', V2_HASH); // peerdist (waited for job 1)
  await get(s, '/file.bin', V2); // peerdist, cache hit
  const mk = await get(s, '/sub/dir/a%20b.txt', V2); // MakeHashRequest, full 11, job 2 in background
  t.equal(mk.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');
  await get(s, '/file.bin', { 'If-None-Match': ci.headers['etag']! }); // 304
  await s.server.hashingIdle(); // job 2 finished
  const st = JSON.parse((await get(s, '/.peerdist/stats')).body.toString());
  t.match(st, {
    requests: 8,
    bytesFull: 200_111,
    fullResponses: 3,
    bytesMissingData: 65536,
    missingDataRequests: 1,
    bytesContentInfo: ci.body.length * 2,
    peerdistResponses: 2,
    makeHashRequests: 1,
    firstWaitsExpired: 0,
    hashRequests: 1,
    notModified: 1,
    hashJobs: 2,
    hashJobsFailed: 0,
    cacheHits: 1,
  });
  t.same(s.server.stats(), { ...st, requests: 8 }, 'stats() matches the endpoint');
});

t.test('hash cache survives a restart; changed files are rehashed', async (t) => {
  const f = await fixture(t);
  const a = await startOrigin(t, { root: f.root, stateDir: f.state, secret });
  const blob = (await get(a, '/file.bin', V2_HASH)).body;
  t.equal(a.server.stats().hashJobs, 1);
  await a.server.close();

  const b = await startOrigin(t, { root: f.root, stateDir: f.state, secret, firstWaitMs: 0 });
  const r = await get(b, '/file.bin', V2);
  t.equal(r.headers['content-encoding'], 'peerdist', 'first request after restart is PeerDist');
  t.ok(r.body.equals(blob));
  t.equal(b.server.stats().hashJobs, 0, 'no rehash');
  t.equal(b.server.stats().cacheHits, 1);

  const extra = randomBytes(1000);
  await appendFile(join(f.root, 'file.bin'), extra);
  const future = new Date(Date.now() + 10_000);
  await utimes(join(f.root, 'file.bin'), future, future);
  const changed = await get(b, '/file.bin', V2);
  t.equal(changed.headers['content-encoding'], undefined, 'changed file: normal content');
  t.equal(changed.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');
  const re = await get(b, '/file.bin', V2_HASH);
  const ci = parseContentInfo(re.body);
  t.equal(
    describesData(ci, Buffer.concat([data, extra]), secret),
    undefined,
    'new content information describes the new bytes',
  );
  t.ok(b.server.stats().hashJobs >= 1);
});

t.test('same secret on two origins gives identical content information', async (t) => {
  const f = await fixture(t);
  const other = await tempDir(t);
  const a = await startOrigin(t, { root: f.root, stateDir: f.state, secret });
  const b = await startOrigin(t, { root: f.root, stateDir: join(other, 'state'), secret });
  const c = await startOrigin(t, { root: f.root, stateDir: join(other, 'state2') });
  const ba = (await get(a, '/file.bin', V2_HASH)).body;
  const bb = (await get(b, '/file.bin', V2_HASH)).body;
  const bc = (await get(c, '/file.bin', V2_HASH)).body;
  t.ok(ba.equals(bb), 'identical blobs');
  t.notOk(
    parseContentInfo(bc).segments[0]!.segmentId.equals(parseContentInfo(ba).segments[0]!.segmentId),
    'another secret gives other segment IDs',
  );
});

t.test(
  'first request on a fresh origin: waits for hashing (bounded) and answers with content information',
  async (t) => {
    const f = await fixture(t);
    const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret });
    const first = await get(s, '/file.bin', V2);
    t.equal(
      first.headers['content-encoding'],
      'peerdist',
      'no publish needed: the first PeerDist request gets content information',
    );
    t.equal(first.headers['x-p2p-peerdistex'], undefined, 'no MakeHashRequest');
    t.equal(describesData(parseContentInfo(first.body), data, secret), undefined, 'it describes the file');
    t.same(
      verifyContentInfoSignature({
        publicKeyPem: s.server.publicKeyPem,
        path: '/file.bin',
        headers: first.headers,
        body: first.body,
      }),
      { ok: true },
    );
    const w7 = await get(s, '/file.bin', WIN7);
    t.equal(w7.headers['content-encoding'], 'peerdist', 'a v1 (Windows 7 style) first request waits too');
    t.match(s.server.stats(), {
      bytesFull: 0,
      peerdistResponses: 2,
      makeHashRequests: 0,
      firstWaitsExpired: 0,
      hashJobs: 2,
      cacheHits: 0,
    });
    const plain = await get(s, '/sub/dir/a%20b.txt');
    t.equal(
      plain.headers['x-p2p-peerdistex'],
      undefined,
      'a client that did not offer PeerDist is not kept waiting or told to hash',
    );
    t.equal(s.server.stats().hashJobs, 2, 'and starts no hash job');
  },
);

t.test(
  'first request beyond the bound: the plain body with MakeHashRequest, and later clients get content information',
  async (t) => {
    const f = await fixture(t);
    const big = randomBytes(16 * 1024 * 1024);
    await writeFile(join(f.root, 'big.bin'), big);
    const s = await startOrigin(t, { root: f.root, stateDir: f.state, secret, firstWaitMs: 1 });
    const first = await get(s, '/big.bin', V2);
    t.equal(first.headers['content-encoding'], undefined, 'hashing 16 MiB takes longer than 1 ms: plain body');
    t.equal(first.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');
    t.ok(first.body.equals(big));
    t.match(s.server.stats(), { firstWaitsExpired: 1, makeHashRequests: 1, bytesFull: big.length });
    const later = await get(s, '/big.bin', V2_HASH);
    t.equal(later.headers['content-encoding'], 'peerdist', 'the background job finished for the next client');
    t.equal(s.server.stats().hashJobs, 1, 'one job for both requests');
  },
);
