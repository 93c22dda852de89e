/**
 * HTTPS origins: `serve --tls-cert/--tls-key` (certificate reloaded on SIGHUP), and `peerdist get
 * https://...` through a daemon that trusts the origin's CA with `--origin-ca`, PeerDist
 * negotiated inside TLS.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { generateSelfSigned } from '../../src/hostedcache/cert.js';
import { createOriginServer } from '../../src/origin/server.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { runCli } from '../helpers/cli.js';
import { freeUdpPort, startDaemonChild } from '../daemon/daemon-child.js';
import { testSigningKey } from './http.js';
import { startServeChild } from './serve-child.js';
import { tempDir } from './tmp.js';

async function httpsGet(url: string, ca: string | undefined, headers: Record<string, string> = {}) {
  const agent = new Agent({ connect: ca ? { ca } : {} });
  try {
    const r = await request(url, { dispatcher: agent, headers });
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
  } finally {
    await agent.close();
  }
}

t.test('serve --tls-cert/--tls-key: HTTPS with PeerDist, SIGHUP loads a renewed certificate', async (t) => {
  const dir = await tempDir(t);
  const www = join(dir, 'www');
  await mkdir(www);
  const data = randomBytes(200_000);
  await writeFile(join(www, 'f.bin'), data);
  const first = generateSelfSigned(['127.0.0.1']);
  await writeFile(join(dir, 'cert.pem'), first.certPem);
  await writeFile(join(dir, 'key.pem'), first.keyPem, { mode: 0o600 });
  const srv = await startServeChild(
    t,
    [www, '--state-dir', join(dir, 'state'), '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')],
    { PEERDIST_LOG: 'info' },
  );
  const { child, port, exited } = srv;
  const reloaded: Array<() => void> = [];
  srv.onStderr((all) => {
    if (all.includes('TLS certificate reloaded')) for (const f of reloaded.splice(0)) f();
  });
  const url = `https://127.0.0.1:${port}/f.bin`;

  const plain = await httpsGet(url, first.certPem);
  t.equal(plain.status, 200);
  t.ok(plain.body.equals(data));
  const pd = await httpsGet(url, first.certPem, clientRequestHeaders({ maxContentVersion: 2, hashRequest: true }));
  t.equal(pd.headers['content-encoding'], 'peerdist', 'PeerDist inside TLS');
  await t.rejects(httpsGet(url, undefined), 'an untrusted certificate is refused by the client');

  // Renew: new pair on disk, SIGHUP; new connections get the new certificate.
  const second = generateSelfSigned(['127.0.0.1']);
  await writeFile(join(dir, 'cert.pem'), second.certPem);
  await writeFile(join(dir, 'key.pem'), second.keyPem);
  const done = new Promise<void>((resolve) => reloaded.push(resolve));
  child.kill('SIGHUP');
  await done;
  t.ok((await httpsGet(url, second.certPem)).body.equals(data), 'the renewed certificate is served');
  await t.rejects(httpsGet(url, first.certPem), 'the old certificate is gone');

  // A broken pair on SIGHUP keeps the working certificate.
  await writeFile(join(dir, 'key.pem'), first.keyPem);
  child.kill('SIGHUP');
  await new Promise<void>((resolve) => {
    srv.onStderr((all) => {
      if (all.includes('reload failed')) resolve();
    });
  });
  t.ok((await httpsGet(url, second.certPem)).body.equals(data), 'still serving the last good certificate');
  child.kill('SIGTERM');
  t.equal(await exited, 0);
});

t.test('peerdist get https://... through a daemon with --origin-ca', async (t) => {
  const dir = await tempDir(t);
  const www = join(dir, 'www');
  await mkdir(www);
  const data = randomBytes(2 * 1024 * 1024 + 777);
  await writeFile(join(www, 'big.bin'), data);
  const pair = generateSelfSigned(['127.0.0.1']);
  await writeFile(join(dir, 'origin-ca.pem'), pair.certPem);
  const origin = await createOriginServer({
    root: www,
    stateDir: join(dir, 'origin'),
    signingKey: testSigningKey(),
    tls: { cert: pair.certPem, key: pair.keyPem },
  });
  const { port } = await origin.listen();
  t.teardown(() => origin.close());
  const url = `https://127.0.0.1:${port}/big.bin`;

  const discoveryPort = await freeUdpPort();
  const mdnsPort = await freeUdpPort();
  const args = (n: number, extra: string[]) => [
    '--state-dir',
    join(dir, `d${n}`),
    '--listen',
    `127.0.0.${n + 1}:0`,
    '--interface',
    '127.0.0.1',
    '--admin',
    '127.0.0.1:0',
    '--discovery-port',
    String(discoveryPort),
    '--mdns-port',
    String(mdnsPort),
    ...extra,
  ];
  const trusting = await startDaemonChild(args(1, ['--origin-ca', join(dir, 'origin-ca.pem')]));
  t.teardown(() => trusting.stop());
  const ok = await runCli(['get', url, '-o', join(dir, 'out.bin'), '--daemon', trusting.ready.admin, '--json'], {
    timeoutMs: 60_000,
  });
  t.equal(ok.code, 0, ok.stderr);
  t.ok((await readFile(join(dir, 'out.bin'))).equals(data), 'the file arrived intact over HTTPS');
  const r = JSON.parse(ok.stdout) as { peerdist: boolean; bytes: number };
  t.equal(r.peerdist, true, 'PeerDist negotiated inside TLS');
  t.equal(r.bytes, data.length);
  t.ok(origin.stats().peerdistResponses >= 1, 'the origin sent content information');

  // Control: a daemon that does not trust the origin's CA refuses it.
  const other = await startDaemonChild(args(2, []));
  t.teardown(() => other.stop());
  const refused = await runCli(['get', url, '-o', join(dir, 'no.bin'), '--daemon', other.ready.admin], {
    timeoutMs: 60_000,
  });
  t.not(refused.code, 0, 'untrusted origin certificate: the download fails');

  const bad = await startDaemonChild(args(3, ['--origin-ca', join(www, 'big.bin')])).then(
    (d) => {
      void d.stop();
      return 'started';
    },
    (e: Error) => e.message,
  );
  t.match(bad, /originCa: origin CA .*no PEM certificate/, 'a bad CA file stops the daemon at start');
});
