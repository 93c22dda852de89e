import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { runCli } from '../helpers/cli.js';
import { cliEntry } from '../helpers/paths.js';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { secretPath } from '../../src/origin/secret.js';
import { createOriginServer } from '../../src/origin/server.js';
import { describesData, get, startOrigin, testSigningKey } from './http.js';
import { tempDir } from './tmp.js';

const V2 = clientRequestHeaders({ maxContentVersion: 2 });
const V2_HASH = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });

async function tree(t: Parameters<typeof tempDir>[0]) {
  const top = await tempDir(t);
  const root = join(top, 'root');
  await mkdir(join(root, 'nested'), { recursive: true });
  const a = randomBytes(300_000),
    b = randomBytes(70_000);
  await writeFile(join(root, 'a.bin'), a);
  await writeFile(join(root, 'nested', 'b.bin'), b);
  await writeFile(join(root, 'empty'), '');
  return { top, root, a, b };
}

t.test('serve: listening line, fetch, SIGTERM exits 0', async (t) => {
  const f = await tree(t);
  const child = spawn(
    process.execPath,
    [cliEntry, 'serve', f.root, '--port', '0', '--host', '127.0.0.1', '--state-dir', join(f.top, 'state')],
    {
      env: { ...process.env, PEERDIST_LOG: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line; stdout: ${out}`)), 30_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`exited early; stdout: ${out}`));
    });
  });
  const r = await request(`http://127.0.0.1:${port}/nested/b.bin`, { headers: { connection: 'close' } });
  t.equal(r.statusCode, 200);
  t.ok(Buffer.from(await r.body.arrayBuffer()).equals(f.b));
  const st = await request(`http://127.0.0.1:${port}/.peerdist/stats`, { headers: { connection: 'close' } });
  t.match(await st.body.json(), { requests: 2, bytesFull: 70_000 });
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit code 0 after SIGTERM');
  t.equal((await stat(secretPath(join(f.top, 'state')))).size, 32, 'secret created in the state dir');
});

t.test('serve: usage errors exit 2', async (t) => {
  const f = await tree(t);
  const bad = await runCli(['serve', f.root, '--port', 'http']);
  t.equal(bad.code, 2, 'bad option value');
  const none = await runCli(['serve', '--state-dir', join(f.top, 'state')]);
  t.equal(none.code, 2, 'neither a directory nor --upstream');
  t.match(none.stderr, /USAGE: .*directory|upstream/);
  const both = await runCli([
    'serve',
    f.root,
    '--upstream',
    'http://127.0.0.1:9/',
    '--state-dir',
    join(f.top, 'state'),
  ]);
  t.equal(both.code, 2, 'both a directory and --upstream');
  const ftp = await runCli(['serve', '--upstream', 'ftp://example.test/', '--state-dir', join(f.top, 'state')]);
  t.equal(ftp.code, 2, 'an upstream that is not http(s)');
  t.match(ftp.stderr, /USAGE: upstream must be http\(s\)/);
  const notDir = await runCli(['serve', join(f.root, 'a.bin'), '--state-dir', join(f.top, 'state')]);
  t.equal(notDir.code, 1, 'a file where a directory belongs is an operation failure');
});

t.test('secret export / import: two origins, identical content information', async (t) => {
  const f = await tree(t);
  const sa = join(f.top, 'a'),
    sb = join(f.top, 'b');
  const exp = await runCli(['secret', 'export', '--state-dir', sa, '-o', join(f.top, 'key.hex')]);
  t.equal(exp.code, 0, exp.stderr);
  const hex = (await readFile(join(f.top, 'key.hex'), 'utf8')).trim();
  t.match(hex, /^[0-9a-f]{64}$/);
  t.equal((await runCli(['secret', 'export', '--state-dir', sa])).stdout.trim(), hex, 'stdout form matches');
  t.ok((await readFile(secretPath(sa))).equals(Buffer.from(hex, 'hex')), 'export is the stored raw secret');
  const imp = await runCli(['secret', 'import', join(f.top, 'key.hex'), '--state-dir', sb]);
  t.equal(imp.code, 0, imp.stderr);
  t.ok((await readFile(secretPath(sb))).equals(Buffer.from(hex, 'hex')));

  const a = await startOrigin(t, { root: f.root, stateDir: sa });
  const b = await startOrigin(t, { root: f.root, stateDir: sb });
  const ba = (await get(a, '/a.bin', V2_HASH)).body;
  const bb = (await get(b, '/a.bin', V2_HASH)).body;
  t.ok(ba.equals(bb), 'identical content information from both origins');
  t.equal(describesData(parseContentInfo(ba), f.a, Buffer.from(hex, 'hex')), undefined);

  const missing = await runCli(['secret', 'import', join(f.top, 'nope'), '--state-dir', sb]);
  t.equal(missing.code, 1);
});

t.test('secret public-key matches the key the server signs with', async (t) => {
  const f = await tree(t);
  const state = join(f.top, 'state');
  const pk = await runCli(['secret', 'public-key', '--state-dir', state]);
  t.equal(pk.code, 0, pk.stderr);
  t.match(pk.stdout, /^-----BEGIN PUBLIC KEY-----\n/);
  t.equal((await stat(join(state, 'origin', 'signing-key.pem'))).mode & 0o777, 0o600);
  const server = await createOriginServer({ root: f.root, stateDir: state });
  t.teardown(() => server.close());
  t.equal(server.publicKeyPem, pk.stdout);
});

t.test('publish precomputes hashes the server uses at once', async (t) => {
  const f = await tree(t);
  const state = join(f.top, 'state');
  const r = await runCli(['publish', f.root, '--state-dir', state, '--json']);
  t.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  t.match(summary, { files: 2, bytes: 370_000, hashed: 4, cached: 0, failed: [], versions: [1, 2] });
  const again = await runCli(['publish', f.root, '--state-dir', state]);
  t.match(
    again.stdout,
    /^published 2 files \(370000 bytes\), content versions 1,2: 0 hashed, 4 already cached, 0 failed in [\d.]+ s\n$/,
  );

  const s = await startOrigin(t, { root: f.root, stateDir: state, signingKey: testSigningKey() });
  const v2 = await get(s, '/nested/b.bin', V2);
  t.equal(v2.headers['content-encoding'], 'peerdist', 'PeerDist on the first request');
  const v1 = await get(s, '/a.bin', clientRequestHeaders({ maxContentVersion: 1 }));
  t.equal(parseContentInfo(v1.body).version, 1);
  const secret = await readFile(secretPath(state));
  t.equal(describesData(parseContentInfo(v2.body), f.b, secret), undefined);
  t.equal(describesData(parseContentInfo(v1.body), f.a, secret), undefined);
  t.equal(s.server.stats().hashJobs, 0, 'no hashing by the server');

  const only1 = await runCli([
    'publish',
    f.root,
    '--state-dir',
    join(f.top, 'state1'),
    '--content-version',
    '1',
    '--json',
  ]);
  t.match(JSON.parse(only1.stdout), { hashed: 2, versions: [1] });
  const badV = await runCli(['publish', f.root, '--content-version', '3']);
  t.equal(badV.code, 2);
});

t.test('serve --first-wait: seconds or ms, 0 disables the wait; out of range is a usage error', async (t) => {
  const { parseWait } = await import('../../src/cli/origin.js');
  t.equal(parseWait('10'), 10_000);
  t.equal(parseWait('0.5'), 500);
  t.equal(parseWait('250ms'), 250);
  t.equal(parseWait('3s'), 3000);
  t.equal(parseWait('0'), 0);
  for (const bad of ['-1', 'ten', '601', '']) t.throws(() => parseWait(bad), `${JSON.stringify(bad)} refused`);
  const f = await tree(t);
  const r = await runCli(['serve', f.root, '--first-wait', 'soon']);
  t.equal(r.code, 2, 'usage error');
});
