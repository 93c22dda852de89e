import t from 'tap';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import {
  formatSecretExport,
  loadOrCreateSecret,
  parseSecretImport,
  secretPath,
  storeSecret,
} from '../../src/origin/secret.js';
import {
  keyId,
  publicKeyPem,
  signContentInfo,
  verifyContentInfoSignature,
  signatureMessage,
} from '../../src/protocol/pccrtp/signature.js';
import { loadOrCreateSigningKey, signingKeyPath } from '../../src/origin/signing-key.js';
import { tempDir } from './tmp.js';

t.test('secret is created once, 32 bytes, 0600 in a 0700 dir', async (t) => {
  const dir = join(await tempDir(t), 'state');
  const s1 = await loadOrCreateSecret(dir);
  t.equal(s1.length, 32);
  const s2 = await loadOrCreateSecret(dir);
  t.ok(s1.equals(s2), 'second load returns the stored secret');
  t.ok((await readFile(secretPath(dir))).equals(s1), 'raw bytes on disk');
  if (process.platform !== 'win32') {
    t.equal((await stat(secretPath(dir))).mode & 0o777, 0o600);
    t.equal((await stat(join(dir, 'origin'))).mode & 0o777, 0o700);
    t.equal((await stat(dir)).mode & 0o777, 0o700);
  }
});

t.test('export / import round trip', async (t) => {
  const root = await tempDir(t);
  const a = await loadOrCreateSecret(join(root, 'a'));
  const text = formatSecretExport(a);
  t.match(text, /^[0-9a-f]{64}\n$/);
  const parsed = parseSecretImport(Buffer.from(text));
  t.ok(parsed.equals(a));
  await storeSecret(join(root, 'b'), parsed);
  t.ok((await loadOrCreateSecret(join(root, 'b'))).equals(a));
  if (process.platform !== 'win32') t.equal((await stat(secretPath(join(root, 'b')))).mode & 0o777, 0o600);
  const raw = Buffer.from([0, 1, 2, 0xff, 0x80, 0x7f]);
  t.ok(parseSecretImport(raw).equals(raw), 'raw bytes are accepted as they are');
  t.throws(() => parseSecretImport(Buffer.alloc(0)));
  t.rejects(storeSecret(join(root, 'c'), Buffer.alloc(0)));
});

t.test('empty secret file is an error', async (t) => {
  const dir = await tempDir(t);
  await loadOrCreateSecret(dir);
  await writeFile(secretPath(dir), Buffer.alloc(0));
  await t.rejects(loadOrCreateSecret(dir), { code: 'BAD_SECRET' });
});

t.test('signing key: created once, 3072-bit, 0600', async (t) => {
  const dir = await tempDir(t);
  const k1 = await loadOrCreateSigningKey(dir);
  t.equal(k1.asymmetricKeyDetails?.modulusLength, 3072);
  const k2 = await loadOrCreateSigningKey(dir);
  t.equal(keyId(k1), keyId(k2));
  if (process.platform !== 'win32') t.equal((await stat(signingKeyPath(dir))).mode & 0o777, 0o600);
  t.equal(keyId(createPrivateKey(await readFile(signingKeyPath(dir), 'utf8'))), keyId(k1));
});

t.test('sign / verify', async (t) => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const body = Buffer.from('content information bytes');
  const headers = {
    etag: '"abc-1"',
    'x-p2p-peerdist': 'Version=1.1, ContentLength=1000',
    'x-peerdist-signature': signContentInfo(privateKey, {
      path: '/dir/f.bin',
      etag: '"abc-1"',
      contentLength: 1000,
      body,
    }),
  };
  t.match(headers['x-peerdist-signature'], /^alg=rsa-pss-sha256, keyid=[0-9a-f]{32}, sig=[A-Za-z0-9+/]+=*$/);
  const pem = publicKeyPem(privateKey);
  t.same(verifyContentInfoSignature({ publicKeyPem: pem, path: '/dir/f.bin', headers, body }), { ok: true });
  const tampered = Buffer.from(body);
  tampered[0]! ^= 1;
  t.same(verifyContentInfoSignature({ publicKeyPem: pem, path: '/dir/f.bin', headers, body: tampered }), {
    ok: false,
    reason: 'bad-signature',
  });
  t.same(
    verifyContentInfoSignature({ publicKeyPem: pem, path: '/dir/g.bin', headers, body }),
    { ok: false, reason: 'bad-signature' },
    'bound to the path',
  );
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: pem,
      path: '/dir/f.bin',
      headers: { ...headers, etag: '"abc-2"' },
      body,
    }),
    { ok: false, reason: 'bad-signature' },
    'bound to the ETag',
  );
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: pem,
      path: '/dir/f.bin',
      headers: { ...headers, 'x-p2p-peerdist': 'Version=1.1, ContentLength=999' },
      body,
    }),
    { ok: false, reason: 'bad-signature' },
    'bound to the identity length',
  );
  t.same(verifyContentInfoSignature({ publicKeyPem: publicKeyPem(other), path: '/dir/f.bin', headers, body }), {
    ok: false,
    reason: 'wrong-key',
  });
  t.same(verifyContentInfoSignature({ publicKeyPem: pem, path: '/dir/f.bin', headers: { etag: '"abc-1"' }, body }), {
    ok: false,
    reason: 'missing',
  });
  for (const bad of [
    'garbage',
    'alg=rsa-pss-sha256, keyid=zz, sig=AAAA',
    'alg=hmac, keyid=00000000000000000000000000000000, sig=AAAA',
    `alg=rsa-pss-sha256, keyid=${keyId(privateKey)}, sig=!!!`,
  ]) {
    t.same(
      verifyContentInfoSignature({
        publicKeyPem: pem,
        path: '/dir/f.bin',
        headers: { ...headers, 'x-peerdist-signature': bad },
        body,
      }),
      { ok: false, reason: 'malformed' },
      bad,
    );
  }
  t.same(verifyContentInfoSignature({ publicKeyPem: 'not a pem', path: '/dir/f.bin', headers, body }), {
    ok: false,
    reason: 'malformed',
  });
  // A signature of the right key over a different message is a bad signature, not malformed.
  const wrongSig = signContentInfo(privateKey, { path: '/x', etag: undefined, contentLength: undefined, body });
  t.same(
    verifyContentInfoSignature({
      publicKeyPem: pem,
      path: '/dir/f.bin',
      headers: { ...headers, 'x-peerdist-signature': wrongSig },
      body,
    }),
    { ok: false, reason: 'bad-signature' },
  );
  t.equal(
    signatureMessage({ path: '/p', etag: '"e"', contentLength: 5, body: Buffer.alloc(0) }).toString(),
    'peerdist-content-information-signature-v1\n/p\n"e"\n5\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  );
});

t.test(
  'SignatureMemo reuses signatures (PSS is randomised, so equal values prove reuse) and stays bounded',
  async (t) => {
    const { SignatureMemo } = await import('../../src/origin/peerdist-response.js');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const memo = new SignatureMemo(2);
    const f = (n: number) => ({ path: `/f${n}`, etag: '"e"', contentLength: 10, body: Buffer.from('b') });
    const a = memo.sign(privateKey, f(1));
    t.equal(memo.sign(privateKey, f(1)), a);
    t.not(signContentInfo(privateKey, f(1)), a, 'a fresh signature differs');
    memo.sign(privateKey, f(2));
    memo.sign(privateKey, f(3)); // evicts f(1)
    t.not(memo.sign(privateKey, f(1)), a, 'evicted entry is signed again');
    const headers = { etag: '"e"', 'x-p2p-peerdist': 'Version=1.1, ContentLength=10', 'x-peerdist-signature': a };
    t.same(
      verifyContentInfoSignature({
        publicKeyPem: publicKeyPem(privateKey),
        path: '/f1',
        headers,
        body: Buffer.from('b'),
      }),
      { ok: true },
    );
  },
);
