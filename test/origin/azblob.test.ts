/**
 * `peerdist serve --store azblob://...` against a real Azure Blob Storage API: Azurite, started
 * here on 127.0.0.1 (port picked by the OS, data in a temp dir, telemetry off) and stopped after.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { BlobServiceClient, ContainerSASPermissions, type ContainerClient } from '@azure/storage-blob';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { verifyContentInfoSignature } from '../../src/protocol/pccrtp/signature.js';
import { AzblobStore } from '../../src/origin/store-azblob.js';
import { parseStoreUrl } from '../../src/origin/store.js';
import { recordSpec } from '../../src/origin/shared-hash.js';
import { createLogger } from '../../src/util/log.js';
import { startAzurite, AZURITE_ACCOUNT, type Azurite } from '../../testkit/azurite.js';
import { describesData, get, startOrigin, type Started } from './http.js';
import { tempDir, type Teardown } from './tmp.js';

const V2 = clientRequestHeaders({ maxContentVersion: 2 });
const V2_HASH = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });
const V1_HASH = clientRequestHeaders({ maxContentVersion: 1, hashRequest: true });

const secret = randomBytes(32);
const quiet = createLogger({ component: 'origin' }, 'silent');

let az: Azurite;
let container: ContainerClient;
let containerSeq = 0;

t.before(async () => {
  az = await startAzurite();
});
t.teardown(async () => {
  await az?.stop();
});

/** A fresh container per test, so tests do not see each other's records. */
async function freshContainer(): Promise<{ name: string; c: ContainerClient }> {
  const name = `pub${++containerSeq}`;
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(name);
  await c.create();
  container = c;
  return { name, c };
}

async function upload(c: ContainerClient, name: string, body: Buffer): Promise<string> {
  const r = await c.getBlockBlobClient(name).uploadData(body);
  return r.etag!;
}

async function node(t: Teardown, containerName: string, extra: Record<string, unknown> = {}): Promise<Started> {
  const store = await AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/${containerName}`), {
    env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
  });
  return startOrigin(t, {
    store,
    stateDir: await tempDir(t),
    secret,
    logger: quiet,
    storePollMs: 20,
    ...extra,
  });
}

interface Stats {
  hashJobs: number;
  hashJobsFailed: number;
  cacheHits: number;
  recordsRejected: number;
  lockWaits: number;
  storeUnavailable: number;
}

async function stats(s: Started): Promise<Stats> {
  return JSON.parse((await get(s, '/.peerdist/stats')).body.toString()) as Stats;
}

t.test('store URLs and credentials', async (t) => {
  t.same(parseStoreUrl('azblob://acct1/media/releases/2026'), {
    scheme: 'azblob',
    account: 'acct1',
    container: 'media',
    prefix: 'releases/2026/',
  });
  t.equal(parseStoreUrl('azblob://acct1/media').prefix, '');
  t.throws(() => parseStoreUrl('s3://bucket/x'), /unsupported store/);
  t.throws(() => parseStoreUrl('azblob://key:secret@acct1/media'), /bad store URL/);
  t.throws(() => parseStoreUrl('azblob://acct1/media/.peerdist'), /bad prefix/);
  t.throws(() => parseStoreUrl('azblob://acct1/Bad_Name'), /bad container/);
  const u = parseStoreUrl('azblob://acct1/media');
  await t.rejects(AzblobStore.open(u, { env: {} }), /no credentials for storage account acct1/);
  await t.rejects(
    AzblobStore.open(u, { env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString } }),
    /is for account devstoreaccount1, not acct1/,
  );
});

t.test('credentials from a container SAS URL (read, write records, lease)', async (t) => {
  const { name, c } = await freshContainer();
  await upload(c, 'f.bin', Buffer.from('hello sas'));
  const sas = await c.generateSasUrl({
    permissions: ContainerSASPermissions.parse('racwdl'),
    expiresOn: new Date(Date.now() + 3600_000),
  });
  const store = await AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/${name}`), {
    env: { AZURE_STORAGE_SAS_URL: sas },
  });
  t.equal((await store.stat('f.bin'))?.size, 9);
  await store.putRecord('.peerdist/ci/probe', Buffer.from('x'));
  t.same(await store.getRecord('.peerdist/ci/probe'), Buffer.from('x'));
  const lock = await store.tryLock('probe');
  t.ok(lock, 'a lease through the SAS');
  await lock!.release();
  await t.rejects(
    AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/othercontainer`), {
      env: { AZURE_STORAGE_SAS_URL: sas },
    }),
    /SAS URL is for another container/,
  );
});

t.test('blobs are served like files: validators, HEAD, ranges, conditionals, hidden names', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(300_000);
  const etag = await upload(c, 'dir/file.bin', data);
  await upload(c, '.peerdist/ci/forged', Buffer.from('not for clients'));
  await upload(c, 'dir/.env', Buffer.from('SECRET=1'));
  const s = await node(t, name);

  const full = await get(s, '/dir/file.bin');
  t.equal(full.status, 200);
  t.ok(full.body.equals(data), 'identity body');
  t.equal(full.headers['etag'], etag, "the blob's ETag");
  t.ok(full.headers['last-modified']);
  t.equal(full.headers['accept-ranges'], 'bytes');
  t.equal(full.headers['x-p2p-peerdistex'], undefined);

  const head = await get(s, '/dir/file.bin', {}, 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], String(data.length));
  t.equal(head.body.length, 0);

  const r = await get(s, '/dir/file.bin', { Range: 'bytes=1000-1999' });
  t.equal(r.status, 206);
  t.equal(r.headers['content-range'], `bytes 1000-1999/${data.length}`);
  t.ok(r.body.equals(data.subarray(1000, 2000)));
  const tail = await get(s, '/dir/file.bin', { Range: 'bytes=-10' });
  t.ok(tail.body.equals(data.subarray(data.length - 10)));
  t.equal((await get(s, '/dir/file.bin', { Range: `bytes=${data.length}-` })).status, 416);
  const staleIfRange = await get(s, '/dir/file.bin', { Range: 'bytes=0-9', 'If-Range': '"0xOLD"' });
  t.equal(staleIfRange.status, 200, 'If-Range with another ETag: whole entity');

  t.equal((await get(s, '/dir/file.bin', { 'If-None-Match': etag })).status, 304);
  t.equal((await get(s, '/dir/file.bin', { 'If-Modified-Since': full.headers['last-modified']! })).status, 304);
  t.equal((await get(s, '/dir/file.bin', { 'If-None-Match': '"0xother"' })).status, 200);

  t.equal((await get(s, '/dir/missing.bin')).status, 404);
  t.equal((await get(s, '/dir/.env')).status, 404, 'dot names are not served');
  t.equal((await get(s, '/.peerdist/ci/forged')).status, 404, "the store's own records are not served");
  t.equal((await get(s, '/dir/')).status, 404);
  t.equal((await get(s, '/dir/file.bin', {}, 'POST')).status, 405);
});

t.test('content information: hashed once, stored in the container, identical from every node', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(3 * 1024 * 1024 + 12345);
  await upload(c, 'big.bin', data);
  const a = await node(t, name);

  const first = await get(a, '/big.bin', V2_HASH);
  t.equal(first.status, 200);
  t.equal(first.headers['content-encoding'], 'peerdist');
  const ci = parseContentInfo(first.body);
  t.equal(describesData(ci, data, secret), undefined, 'content information describes the blob');
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: a.server.publicKeyPem,
      path: '/big.bin',
      headers: first.headers,
      body: first.body,
    }),
    { ok: true },
  );
  await a.server.hashingIdle();
  const names: string[] = [];
  for await (const b of c.listBlobsFlat({ prefix: '.peerdist/ci/' })) names.push(b.name);
  t.equal(names.length, 1, 'one record in the container');
  t.match(names[0], /^\.peerdist\/ci\/big\.bin@0x[0-9A-F]+\.v2-cdc\.[0-9a-f]{16}$/);

  // A second node (own state dir, same identity) hashes nothing and answers the same bytes.
  const b = await node(t, name);
  const second = await get(b, '/big.bin', V2);
  t.equal(second.status, 200);
  t.equal(second.headers['content-encoding'], 'peerdist', 'answered from the record at once');
  t.ok(second.body.equals(first.body), 'byte-identical content information');
  // RSA-PSS signatures are salted, so they differ byte for byte; both verify under the one key.
  t.equal(b.server.publicKeyPem, a.server.publicKeyPem);
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: a.server.publicKeyPem,
      path: '/big.bin',
      headers: second.headers,
      body: second.body,
    }),
    { ok: true },
    "the second node's signature verifies with the shared key",
  );
  const sa = await stats(a);
  const sb = await stats(b);
  t.equal(sa.hashJobs, 1);
  t.equal(sb.hashJobs, 0, 'the second node hashed nothing');
  t.equal(sb.cacheHits, 1);

  // Version 1 is another record, hashed once too.
  const v1 = await get(b, '/big.bin', V1_HASH);
  t.equal(parseContentInfo(v1.body).version, 1);
  t.equal(describesData(parseContentInfo(v1.body), data, secret), undefined);
  t.equal((await stats(b)).hashJobs, 1);

  // Another server secret never reads these records: it hashes its own.
  const other = await node(t, name, { secret: randomBytes(32) });
  const o = await get(other, '/big.bin', V2_HASH);
  t.notOk(o.body.equals(first.body), 'another secret, other content information');
  t.equal((await stats(other)).hashJobs, 1);
});

t.test('a replaced blob is never served with the old content information', async (t) => {
  const { name, c } = await freshContainer();
  const v1data = randomBytes(500_000);
  const v2data = randomBytes(400_000);
  const e1 = await upload(c, 'f.bin', v1data);
  const s = await node(t, name);
  const before = await get(s, '/f.bin', V2_HASH);
  t.equal(describesData(parseContentInfo(before.body), v1data, secret), undefined);
  const e2 = await upload(c, 'f.bin', v2data);
  t.not(e2, e1);
  const after = await get(s, '/f.bin', V2_HASH);
  t.equal(after.headers['etag'], e2);
  t.equal(describesData(parseContentInfo(after.body), v2data, secret), undefined, 'describes the new bytes');
  t.equal((await stats(s)).hashJobs, 2);
  const plain = await get(s, '/f.bin');
  t.ok(plain.body.equals(v2data));
});

t.test('a tampered record is detected, never served, and recomputed', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(700_000);
  await upload(c, 'f.bin', data);
  const s = await node(t, name);
  const good = await get(s, '/f.bin', V2_HASH);
  const props = await c.getBlobClient('f.bin').getProperties();
  const spec = recordSpec({ name: 'f.bin', etag: props.etag!, size: data.length }, 2, 'cdc', secret);
  const rec = await c.getBlobClient(spec.name).downloadToBuffer();

  // Flip one byte of the content information (the MAC no longer matches).
  const bad = Buffer.from(rec);
  bad[bad.length - 1]! ^= 0x01;
  await c.getBlockBlobClient(spec.name).uploadData(bad);
  const again = await get(s, '/f.bin', V2_HASH);
  t.equal(again.status, 200);
  t.ok(again.body.equals(good.body), 'recomputed, same content information');
  let st = await stats(s);
  t.equal(st.recordsRejected, 1);
  t.equal(st.hashJobs, 2, 'hashed again');
  t.ok((await c.getBlobClient(spec.name).downloadToBuffer()).equals(rec), 'the good record is back');

  // Garbage, and a record sealed for another blob length (copied from elsewhere).
  await c.getBlockBlobClient(spec.name).uploadData(Buffer.from('PDCIREC1 not really'));
  t.ok((await get(s, '/f.bin', V2_HASH)).body.equals(good.body));
  await c
    .getBlockBlobClient(spec.name)
    .uploadData(Buffer.concat([rec.subarray(0, 8), randomBytes(32), rec.subarray(40)]));
  t.ok((await get(s, '/f.bin', V2_HASH)).body.equals(good.body));
  st = await stats(s);
  t.equal(st.recordsRejected, 3);
  t.equal(st.hashJobs, 4);
});

t.test('concurrent first requests on three nodes hash the blob once', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(8 * 1024 * 1024);
  await upload(c, 'crowd.bin', data);
  const nodes = [await node(t, name), await node(t, name), await node(t, name)];
  const answers = await Promise.all([0, 1, 2, 0, 1, 2].map((i) => get(nodes[i]!, '/crowd.bin', V2_HASH)));
  for (const r of answers) {
    t.equal(r.headers['content-encoding'], 'peerdist');
    t.ok(r.body.equals(answers[0]!.body), 'identical content information');
  }
  t.equal(describesData(parseContentInfo(answers[0]!.body), data, secret), undefined);
  const all = await Promise.all(nodes.map((n) => stats(n)));
  t.equal(
    all.reduce((a, s) => a + s.hashJobs, 0),
    1,
    'one hash over the three nodes',
  );
  t.equal(
    all.reduce((a, s) => a + s.hashJobsFailed, 0),
    0,
  );
});

t.test('a node waiting for another node answers plain after --first-wait, and the holder finishes', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(2 * 1024 * 1024);
  await upload(c, 'w.bin', data);
  // Hold the hash lock as a stalled node would.
  const store = await AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/${name}`), {
    env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
  });
  const props = await c.getBlobClient('w.bin').getProperties();
  const spec = recordSpec({ name: 'w.bin', etag: props.etag!, size: data.length }, 2, 'cdc', secret);
  const lock = await store.tryLock(spec.name);
  t.ok(lock, 'lock taken');
  t.equal(await store.tryLock(spec.name), undefined, 'a second taker is refused');
  const s = await node(t, name, { firstWaitMs: 0 });
  const r = await get(s, '/w.bin', V2);
  t.equal(r.status, 200);
  t.equal(r.headers['content-encoding'], undefined, 'plain answer while another node hashes');
  t.match(r.headers['x-p2p-peerdistex'], /MakeHashRequest=true/);
  t.ok(r.body.equals(data));
  // The plain answer does not wait for the node's job to find the lock held (--first-wait 0): see it
  // waiting before the holder lets go, or the job may simply take a free lock (a CI failure).
  for (let i = 0; (await stats(s)).lockWaits !== 1 && i < 200; i++) await new Promise((r) => setTimeout(r, 25));
  // The holder goes away without a record: the waiting node takes the lock over and hashes.
  await lock!.release();
  await s.server.hashingIdle();
  const st = await stats(s);
  t.equal(st.lockWaits, 1);
  t.equal(st.hashJobs, 1, 'took over after the lock was released');
  const ci = await get(s, '/w.bin', V2);
  t.equal(ci.headers['content-encoding'], 'peerdist');
});

t.test('a node that died holding the hash lock: its lease expires and a waiting node takes over', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(1024 * 1024);
  await upload(c, 'dead.bin', data);
  // The lock as a node that died mid-hash left it: taken (15 s lease, Azure's shortest), never
  // renewed or released.
  const store = await AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/${name}`), {
    env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
  });
  const props = await c.getBlobClient('dead.bin').getProperties();
  const spec = recordSpec({ name: 'dead.bin', etag: props.etag!, size: data.length }, 2, 'cdc', secret);
  t.ok(await store.tryLock(spec.name), 'lock taken by the node that then dies');
  const takenAt = Date.now();
  const s = await node(t, name, { firstWaitMs: 0 });
  const r = await get(s, '/dead.bin', V2);
  t.equal(r.headers['content-encoding'], undefined, 'plain answer while the lease holds');
  t.ok(r.body.equals(data));
  await s.server.hashingIdle();
  const st = await stats(s);
  t.equal(st.lockWaits, 1, 'the node waited for the lock');
  t.equal(st.hashJobs, 1, 'and hashed once the lease had expired');
  t.ok(Date.now() - takenAt >= 14_000, 'not before the lease expired (15 s)');
  const ci = await get(s, '/dead.bin', V2);
  t.equal(ci.headers['content-encoding'], 'peerdist');
  t.equal(describesData(parseContentInfo(ci.body), data, secret), undefined, 'content information describes the blob');
});

t.test('storage unreachable: 503 with Retry-After, then recovery without restart', async (t) => {
  const { name, c } = await freshContainer();
  const data = randomBytes(100_000);
  await upload(c, 'f.bin', data);
  const lines: string[] = [];
  const s = await node(t, name, { logger: createLogger({}, 'info', (l) => lines.push(l)) });
  t.equal((await get(s, '/f.bin')).status, 200);
  await az.pause();
  const down = await get(s, '/f.bin');
  const down2 = await get(s, '/f.bin', V2);
  await az.resume();
  t.equal(down.status, 503);
  t.equal(down.headers['retry-after'], '5');
  t.equal(down2.status, 503);
  const up = await get(s, '/f.bin');
  t.equal(up.status, 200);
  t.ok(up.body.equals(data));
  t.equal((await stats(s)).storeUnavailable, 2);
  const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.equal(msgs.filter((m) => m.startsWith('storage unreachable')).length, 1, 'one log line for the outage');
  t.equal(msgs.filter((m) => m === 'storage reachable again').length, 1);
  void container;
});
