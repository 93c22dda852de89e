/**
 * The command line over Azurite: `peerdist publish --store`, `peerdist serve --store` with a shared
 * identity (--secret-file, --signing-key-file), credentials from the environment or a config file.
 */
import t, { type Test } from 'tap';
import { createPublicKey, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { request } from 'undici';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { verifyContentInfoSignature } from '../../src/protocol/pccrtp/signature.js';
import { startAzurite, AZURITE_ACCOUNT, type Azurite } from '../../testkit/azurite.js';
import { runCli } from '../helpers/cli.js';
import { describesData, testSigningKey } from './http.js';
import { startServeChild } from './serve-child.js';
import { tempDir } from './tmp.js';

const V2 = clientRequestHeaders({ maxContentVersion: 2 });

let az: Azurite;
t.before(async () => {
  az = await startAzurite();
});
t.teardown(async () => {
  await az?.stop();
});

async function serveStore(t: Test, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await startServeChild(t, args, env)).port;
}

t.test('publish --store hashes every blob once; serve --store nodes answer from the records', async (t) => {
  const dir = await tempDir(t);
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('media');
  await c.create();
  const a = randomBytes(1_500_000);
  const b = randomBytes(90_000);
  await c.getBlockBlobClient('rel/a.bin').uploadData(a);
  await c.getBlockBlobClient('rel/b.bin').uploadData(b);
  await c.getBlockBlobClient('rel/empty').uploadData(Buffer.alloc(0));
  await c.getBlockBlobClient('rel/.hidden').uploadData(Buffer.from('x'));
  const secret = randomBytes(32);
  const secretFile = join(dir, 'secret');
  const keyFile = join(dir, 'signing-key.pem');
  await writeFile(secretFile, secret, { mode: 0o600 });
  await writeFile(keyFile, testSigningKey().export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const env = { AZURE_STORAGE_CONNECTION_STRING: az.connectionString };
  const url = `azblob://${AZURITE_ACCOUNT}/media`;

  const first = await runCli(
    ['publish', '--store', url, '--secret-file', secretFile, '--json', '--state-dir', join(dir, 's0')],
    { env },
  );
  t.equal(first.code, 0, first.stderr);
  const s1 = JSON.parse(first.stdout) as { files: number; hashed: number; cached: number; failed: unknown[] };
  t.equal(s1.files, 2, 'two non-empty, visible blobs');
  t.equal(s1.hashed, 4, 'both versions of both blobs hashed');
  t.equal(s1.cached, 0);
  t.same(s1.failed, []);

  // Credentials from a config file (no connection string in the environment), prefix narrows it.
  const cfg = join(dir, 'store.json');
  await writeFile(cfg, JSON.stringify({ azblob: { [AZURITE_ACCOUNT]: { connectionString: az.connectionString } } }));
  const again = await runCli(
    [
      'publish',
      '--store',
      `${url}/rel`,
      '--store-config',
      cfg,
      '--secret-file',
      secretFile,
      '--json',
      '--state-dir',
      join(dir, 's0'),
    ],
    { env: { AZURE_STORAGE_CONNECTION_STRING: '' } },
  );
  t.equal(again.code, 0, again.stderr);
  const s2 = JSON.parse(again.stdout) as { hashed: number; cached: number };
  t.equal(s2.hashed, 0, 'nothing hashed twice');
  t.equal(s2.cached, 4);

  // Two nodes, separate state directories, one identity: the first PeerDist request is answered
  // from the published records, identically, by both.
  const ports = [
    await serveStore(
      t,
      ['--store', url, '--secret-file', secretFile, '--signing-key-file', keyFile, '--state-dir', join(dir, 'n1')],
      env,
    ),
    await serveStore(t, ['--store', url, '--state-dir', join(dir, 'n2')], {
      ...env,
      PEERDIST_SECRET_FILE: secretFile,
      PEERDIST_SIGNING_KEY_FILE: keyFile,
    }),
  ];
  const pem = createPublicKey(testSigningKey()).export({ type: 'spki', format: 'pem' }).toString();
  const bodies: Buffer[] = [];
  for (const port of ports) {
    const r = await request(`http://127.0.0.1:${port}/rel/a.bin`, { headers: V2 });
    const body = Buffer.from(await r.body.arrayBuffer());
    t.equal(r.headers['content-encoding'], 'peerdist', 'content information on the first request');
    const headers = r.headers as Record<string, string>;
    t.same(verifyContentInfoSignature({ publicKeyPem: pem, path: '/rel/a.bin', headers, body }), { ok: true });
    t.equal(describesData(parseContentInfo(body), a, secret), undefined);
    bodies.push(body);
    const st = (await (await request(`http://127.0.0.1:${port}/.peerdist/stats`)).body.json()) as {
      hashJobs: number;
    };
    t.equal(st.hashJobs, 0, 'the node hashed nothing');
    const plain = await request(`http://127.0.0.1:${port}/rel/b.bin`, { headers: { Range: 'bytes=5-9' } });
    t.equal(plain.statusCode, 206);
    t.ok(Buffer.from(await plain.body.arrayBuffer()).equals(b.subarray(5, 10)));
  }
  t.ok(bodies[0]!.equals(bodies[1]!), 'byte-identical from both nodes');
});

t.test('no credentials, bad key, bad store URL: clear errors, secrets never echoed', async (t) => {
  const dir = await tempDir(t);
  const none = await runCli(['publish', '--store', 'azblob://acct9/media', '--state-dir', dir], {
    env: { AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_SAS_URL: '' },
  });
  t.not(none.code, 0);
  t.match(none.stderr, /no credentials for storage account acct9/);
  const bad = await runCli(['publish', '--store', 'https://acct9.blob.core.windows.net/media'], {});
  t.not(bad.code, 0);
  t.match(bad.stderr, /bad store URL|unsupported store/);
  await writeFile(join(dir, 'k.pem'), 'not a key');
  const key = await runCli(
    ['serve', '--store', `azblob://${AZURITE_ACCOUNT}/media`, '--signing-key-file', join(dir, 'k.pem')],
    { env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString } },
  );
  t.not(key.code, 0);
  t.match(key.stderr, /BAD_SIGNING_KEY/);
  t.notMatch(key.stderr + key.stdout, /AccountKey|Eby8vdM02/, 'the connection string is not printed');
});
