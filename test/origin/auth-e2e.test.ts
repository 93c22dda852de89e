/**
 * `peerdist get -H 'Authorization: Bearer ...'` through a daemon to an origin that requires
 * tokens: the header reaches the origin for the content information and for every origin range,
 * the daemon never logs it, a request without it neither succeeds nor joins the authorized job.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { TokenGate } from '../../src/origin/auth.js';
import { createOriginServer } from '../../src/origin/server.js';
import { JobBook, type EngineLike } from '../../src/daemon/jobs.js';
import type { DownloadJob } from '../../src/engine/types.js';
import { decodeOriginHeaders, parseHeaderArgs } from '../../src/util/origin-headers.js';
import { runCli } from '../helpers/cli.js';
import { loopbackDaemonArgs, startDaemonChild } from '../daemon/daemon-child.js';
import { testSigningKey } from './http.js';
import { tempDir } from './tmp.js';

t.test('-H parsing refuses what peerdist sets itself and malformed headers', async (t) => {
  t.same(parseHeaderArgs(['Authorization: Bearer abc.def', 'X-Tenant:  a ']), {
    Authorization: 'Bearer abc.def',
    'X-Tenant': 'a',
  });
  t.throws(() => parseHeaderArgs(['Range: bytes=0-1']), /set by peerdist itself/);
  t.throws(() => parseHeaderArgs(['no colon']), /expects 'Name: value'/);
  t.throws(() => parseHeaderArgs(['Bad Name: x']), /bad header name/);
  t.throws(() => decodeOriginHeaders(Buffer.from('{"X-P2P-PeerDist":"Version=1.1"}').toString('base64url')));
  t.throws(() => decodeOriginHeaders('!!!'), /do not decode|must be an object/);
});

t.test('downloads with credentials are joined only by requests with the same credentials', async (t) => {
  const started: string[] = [];
  const fake = (id: string, url: string): DownloadJob =>
    ({
      id,
      url,
      info: new Promise(() => undefined),
      done: new Promise(() => undefined),
      progress: () => ({ state: 'running' }),
    }) as unknown as DownloadJob;
  const engine: EngineLike = {
    download: (url) => {
      started.push(url);
      return fake(`j${started.length}`, url);
    },
    jobs: () => [],
    totals: () => ({}),
    close: async () => undefined,
  };
  const book = new JobBook(engine);
  const url = 'http://127.0.0.1:1/x.bin';
  const a = book.obtain(url, { Authorization: 'Bearer A' });
  t.equal(book.obtain(url, { Authorization: 'Bearer A' }).id, a.id, 'same token: joined');
  t.not(book.obtain(url).id, a.id, 'no token: a download of its own');
  t.not(book.obtain(url, { authorization: 'Bearer B' }).id, a.id, 'another token: its own');
  t.equal(started.length, 3);
});

t.test('get -H through the daemon to a token-checking origin', async (t) => {
  const dir = await tempDir(t);
  const www = join(dir, 'www');
  await mkdir(join(www, 'tenant-a'), { recursive: true });
  const data = randomBytes(3 * 1024 * 1024 + 99);
  await writeFile(join(www, 'tenant-a', 'big.bin'), data);
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k' }] }));
  const origin = await createOriginServer({
    root: www,
    stateDir: join(dir, 'origin'),
    signingKey: testSigningKey(),
    tokenGate: await TokenGate.create({ jwks: join(dir, 'jwks.json'), audience: 'dl' }),
  });
  const { port } = await origin.listen();
  t.teardown(() => origin.close());
  const url = `http://127.0.0.1:${port}/tenant-a/big.bin`;
  const token = await new SignJWT({ peerdist_prefix: 'tenant-a' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k' })
    .setAudience('dl')
    .setExpirationTime('10m')
    .sign(privateKey);

  const d = await startDaemonChild(await loopbackDaemonArgs(join(dir, 'd1')), {
    env: { PEERDIST_LOG: 'debug' },
  });
  t.teardown(() => d.stop());

  const denied = await runCli(['get', url, '-o', join(dir, 'no.bin'), '--daemon', d.ready.admin], {
    timeoutMs: 60_000,
  });
  t.not(denied.code, 0, 'no token: the download fails');
  t.match(denied.stderr, /401/);
  const rejectedBefore = origin.stats().authRejected ?? 0;

  const ok = await runCli(
    [
      'get',
      url,
      '-o',
      join(dir, 'ok.bin'),
      '--daemon',
      d.ready.admin,
      '--json',
      '-H',
      `Authorization: Bearer ${token}`,
    ],
    { timeoutMs: 60_000 },
  );
  t.equal(ok.code, 0, ok.stderr);
  t.ok((await readFile(join(dir, 'ok.bin'))).equals(data), 'intact');
  const r = JSON.parse(ok.stdout) as { peerdist: boolean; fromOrigin: number };
  t.equal(r.peerdist, true, 'content information was handed out against the token');
  t.equal(r.fromOrigin, data.length, 'every block came in origin ranges');
  const st = origin.stats();
  t.equal(st.authRejected ?? 0, rejectedBefore, 'no request of the authorized download was refused');
  t.ok(st.missingDataRequests + st.fullResponses >= 1, 'origin ranges were sent, with the token');
  t.notOk(d.stderr().includes(token), 'the daemon never logged the token');
  t.notOk(ok.stderr.includes(token) || ok.stdout.includes(token), 'get never printed it');
});
