/** `serve --require-jwt`: bearer tokens checked against a JWKS before any byte or content information. */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { TokenGate, underPrefix } from '../../src/origin/auth.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { get, startOrigin } from './http.js';
import { tempDir } from './tmp.js';

const V2_HASH = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });

async function keys() {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  return { privateKey, jwks: { keys: [jwk] } };
}

t.test('prefix matching', async (t) => {
  t.ok(underPrefix(['tenant-a', 'x.bin'], 'tenant-a'));
  t.ok(underPrefix(['tenant-a', 'x.bin'], '/tenant-a/'));
  t.notOk(underPrefix(['tenant-ab', 'x.bin'], 'tenant-a'), 'whole segments only');
  t.notOk(underPrefix(['x.bin'], 'tenant-a'));
  t.ok(underPrefix(['any', 'thing'], '/'), '/ grants everything');
});

t.test('tokens: missing, malformed, expired, wrong audience, wrong key, wrong tenant, good', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'www');
  await mkdir(join(root, 'tenant-a'), { recursive: true });
  await mkdir(join(root, 'tenant-b'), { recursive: true });
  const a = randomBytes(100_000);
  await writeFile(join(root, 'tenant-a', 'x.bin'), a);
  await writeFile(join(root, 'tenant-b', 'y.bin'), randomBytes(1000));
  const k = await keys();
  const other = await keys();
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(k.jwks));
  const gate = await TokenGate.create({ jwks: join(dir, 'jwks.json'), audience: 'downloads' });
  const s = await startOrigin(t, { root, stateDir: join(dir, 'state'), tokenGate: gate });

  const token = (claims: Record<string, unknown>, opts: { exp?: string | number; aud?: string; key?: unknown } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setAudience(opts.aud ?? 'downloads')
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m')
      .sign((opts.key ?? k.privateKey) as Parameters<SignJWT['sign']>[0]);
  const bearer = async (...args: Parameters<typeof token>) => ({ Authorization: `Bearer ${await token(...args)}` });

  const none = await get(s, '/tenant-a/x.bin');
  t.equal(none.status, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="peerdist"');
  t.notOk(none.body.includes(a.subarray(0, 16)), 'no content');
  t.equal((await get(s, '/tenant-a/x.bin', { Authorization: 'Basic Zm9vOmJhcg==' })).status, 401);
  const garbage = await get(s, '/tenant-a/x.bin', { Authorization: 'Bearer not.a.jwt' });
  t.equal(garbage.status, 401);
  t.match(garbage.headers['www-authenticate'], /error="invalid_token"/);

  const expired = await get(s, '/tenant-a/x.bin', await bearer({ peerdist_prefix: 'tenant-a' }, { exp: 1000 }));
  t.equal(expired.status, 401);
  t.match(expired.body.toString(), /token expired/);
  const aud = await get(s, '/tenant-a/x.bin', await bearer({ peerdist_prefix: 'tenant-a' }, { aud: 'elsewhere' }));
  t.equal(aud.status, 401);
  t.match(aud.body.toString(), /claim aud invalid/);
  const wrongKey = await get(
    s,
    '/tenant-a/x.bin',
    await bearer({ peerdist_prefix: 'tenant-a' }, { key: other.privateKey }),
  );
  t.equal(wrongKey.status, 401);
  t.match(wrongKey.body.toString(), /signature does not verify/);

  const goodA = await bearer({ peerdist_prefix: 'tenant-a' });
  const otherTenant = await get(s, '/tenant-b/y.bin', goodA);
  t.equal(otherTenant.status, 403, "another tenant's prefix");
  t.match(otherTenant.headers['www-authenticate'], /error="insufficient_scope"/);
  t.equal((await get(s, '/tenant-b/y.bin', await bearer({}))).status, 403, 'no prefix claim');
  const ci = await get(s, '/tenant-a/x.bin', { ...V2_HASH, ...goodA });
  t.equal(ci.status, 200);
  t.equal(ci.headers['content-encoding'], 'peerdist', 'content information for the token holder');
  const body = await get(s, '/tenant-a/x.bin', { ...goodA, Range: 'bytes=0-99' });
  t.equal(body.status, 206);
  t.ok(body.body.equals(a.subarray(0, 100)));
  const both = await bearer({ peerdist_prefix: ['tenant-a', 'tenant-b'] });
  t.equal((await get(s, '/tenant-b/y.bin', both)).status, 200, 'a token may grant several prefixes');
  t.equal((await get(s, '/.peerdist/public-key')).status, 200, 'the public key stays public');
  const st = JSON.parse((await get(s, '/.peerdist/stats')).body.toString()) as { authRejected: number };
  t.equal(st.authRejected, 8, 'every refusal counted');
});

t.test('JWKS from a URL', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f.bin'), randomBytes(5000));
  const k = await keys();
  let fetched = 0;
  const jwksServer = createServer((_req, res) => {
    fetched++;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(k.jwks));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => jwksServer.close(() => r())));
  const url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  const gate = await TokenGate.create({ jwks: url, audience: 'dl', prefixClaim: 'scope_prefix' });
  const s = await startOrigin(t, { root: dir, stateDir: join(dir, 'state'), tokenGate: gate });
  const jwt = await new SignJWT({ scope_prefix: '/' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setAudience('dl')
    .setExpirationTime('5m')
    .sign(k.privateKey);
  t.equal((await get(s, '/f.bin', { Authorization: `Bearer ${jwt}` })).status, 200);
  t.equal((await get(s, '/f.bin', { Authorization: `Bearer ${jwt}` })).status, 200);
  t.equal(fetched, 1, 'the key set is fetched once and cached');
});
