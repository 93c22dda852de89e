// Issue 27.2: the proxy is no way into loopback-only services. A real daemon (child process) with
// --proxy-port is asked, through its proxy, for its own admin API (/v1/status, /v1/fetch of an
// internal URL, /v1/cache/verify), a hosted cache's admin API and another 127.0.0.1 service, under
// every spelling of a local address: each is refused with 403 PROXY_REFUSED and the services see
// no request. A name that resolves to a public address at the first check and to 127.0.0.1 when
// the connection is made (DNS rebinding) is refused at the connection. The admin APIs refuse
// proxy-marked requests themselves, and a non-loopback --proxy-host needs --proxy-allow.
import t, { type Test } from 'tap';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loopbackDaemonArgs, startDaemonChild } from './daemon-child.js';
import { startHostedCache } from '../../src/hostedcache/hosted-cache.js';
import { startProxyServer } from '../../src/daemon/proxy.js';
import { TargetGuard } from '../../src/daemon/proxy-guard.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { DownloadEngine } from '../../src/engine/engine.js';
import type { DiscoveryLike, RetrievalLike, StoreLike } from '../../src/engine/types.js';
import { canonicalIp, clientAllowed, parseCidrList, reservedKind } from '../../src/util/ip.js';
import { resolveConfig } from '../../src/daemon/config.js';
import { readBody } from '../../src/client/admin-client.js';
import { runCli } from '../helpers/cli.js';
import { nullLogger } from '../../src/util/log.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to a proxy (absolute-form target) or a server (origin-form path). */
function send(hostPort: string, method: string, target: string, headers: Record<string, string> = {}): Promise<Answer> {
  const i = hostPort.lastIndexOf(':');
  return new Promise((resolveP, reject) => {
    const req = request(
      { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)), method, path: target, headers },
      (res) => {
        readBody(res).then(
          (b) => resolveP({ status: res.statusCode!, headers: res.headers, body: b.toString() }),
          reject,
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A loopback-only HTTP service that counts what reaches it. */
async function secretService(t: Test, host = '127.0.0.1'): Promise<{ server: Server; port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.end('secret\n');
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return { server, port: (server.address() as AddressInfo).port, hits };
}

t.test('address kinds the proxy refuses', async (t) => {
  for (const a of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1', '[::1]'])
    t.equal(reservedKind(a), 'a loopback address', a);
  for (const a of ['169.254.169.254', 'fe80::1', 'fe80::1%eth0', '::ffff:169.254.1.1', 'febf::1'])
    t.equal(reservedKind(a), 'a link-local address', a);
  for (const a of ['0.0.0.0', '0.1.2.3', '::', '::127.0.0.1']) t.equal(reservedKind(a), 'an unspecified address', a);
  for (const a of ['10.1.2.3', '192.168.1.10', '198.51.100.7', '2001:db8::1', 'fd00::1', '::ffff:10.0.0.1'])
    t.equal(reservedKind(a), undefined, `${a} may be a target`);
  t.equal(canonicalIp('::FFFF:7F00:0001'), '127.0.0.1');
  const own = new TargetGuard({ interfaces: () => ({ eth0: [{ address: '192.0.2.2' }, { address: 'fd00::2' }] }) });
  t.match(own.refusal('192.0.2.2', 80), /address of this host/);
  t.match(own.refusal('::ffff:192.0.2.2', 80), /address of this host/);
  t.match(own.refusal('fd00:0::2', 80), /address of this host/);
  t.equal(own.refusal('192.0.2.3', 80), undefined);
});

t.test('clients: loopback always, others only inside --proxy-allow', async (t) => {
  const allow = parseCidrList(['192.168.1.0/24', '10.0.0.5', 'fd00::/8']);
  t.ok(clientAllowed('127.0.0.1', undefined));
  t.ok(clientAllowed('::ffff:127.0.0.1', undefined));
  t.ok(clientAllowed('::1', undefined));
  t.notOk(clientAllowed('192.168.1.7', undefined), 'no --proxy-allow: LAN clients refused');
  t.ok(clientAllowed('192.168.1.7', allow));
  t.ok(clientAllowed('::ffff:192.168.1.7', allow), 'IPv4-mapped client address');
  t.ok(clientAllowed('10.0.0.5', allow));
  t.notOk(clientAllowed('10.0.0.6', allow));
  t.ok(clientAllowed('fd12::1', allow));
  t.notOk(clientAllowed('2001:db8::1', allow));
  t.notOk(clientAllowed(undefined, allow));
  t.throws(() => parseCidrList(['192.168.1.0/33']), /not an address or CIDR/);
  t.throws(() => parseCidrList(['lan']), /not an address or CIDR/);
});

t.test('a non-loopback --proxy-host needs --proxy-allow', async (t) => {
  const base = { defaultStateDir: '/tmp/pd-unused' };
  t.throws(
    () => resolveConfig({ ...base, flags: { proxyPort: '3128', proxyHost: '0.0.0.0' } }),
    /not loopback.*--proxy-allow/,
    'refused at start, not just a warning',
  );
  t.throws(
    () => resolveConfig({ ...base, flags: { proxyPort: '3128', proxyHost: '192.168.1.2', proxyAllow: ['lan'] } }),
    /proxyAllow: "lan" is not an address or CIDR/,
  );
  const ok = resolveConfig({ ...base, flags: { proxyPort: '3128', proxyHost: '0.0.0.0', proxyAllow: ['10.0.0.0/8'] } });
  t.same(ok.proxyAllow, ['10.0.0.0/8']);
  t.same(resolveConfig({ ...base, env: { proxyPort: '3128', proxyAllow: '10.0.0.0/8, 192.168.0.0/16' } }).proxyAllow, [
    '10.0.0.0/8',
    '192.168.0.0/16',
  ]);
  await t.rejects(
    startProxyServer({ host: '0.0.0.0', port: 0 }, { jobs: new JobBook({} as never) }),
    /not loopback: name the networks/,
  );
  // The daemon itself: exits with the error before listening anywhere.
  const r = await runCli(['daemon', '--proxy-port', '0', '--proxy-host', '0.0.0.0', '--state-dir', '/tmp/pd-unused'], {
    timeoutMs: 30_000,
  });
  t.not(r.code, 0);
  t.match(r.stderr, /BAD_CONFIG: proxyHost: the proxy would listen on 0\.0\.0\.0, which is not loopback/);
});

t.test('attacks through a running daemon proxy are refused; the services see nothing', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pd-proxy-guard-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const secret = await secretService(t);
  const hc = await startHostedCache(
    {
      stateDir: join(root, 'hc'),
      http: { host: '127.0.0.1', port: 0 },
      admin: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    },
    { logger: nullLogger },
  );
  t.teardown(() => hc.close());
  const d = await startDaemonChild(
    [...(await loopbackDaemonArgs(join(root, 'd'), '127.0.0.1:0')), '--proxy-port', '0'],
    { timeoutMs: 60_000 },
  );
  t.teardown(() => d.stop(2000));
  const proxy = d.ready.proxy!;
  const admin = d.ready.admin;
  const adminPort = admin.split(':')[1];
  const retrievalPort = d.ready.retrieval.split(':')[1];

  // Reachable directly (so a 403 below is the proxy's doing, not a dead service).
  t.equal((await send(admin, 'GET', '/v1/status')).status, 200, 'admin answers local clients directly');
  t.equal((await send(hc.ready.admin, 'GET', '/v1/status')).status, 200, 'hosted cache admin answers directly');

  const attacks: Array<[string, string]> = [
    ['GET', `http://${admin}/v1/status`],
    ['GET', `http://${admin}/v1/fetch?url=${encodeURIComponent(`http://127.0.0.1:${secret.port}/internal`)}`],
    ['POST', `http://${admin}/v1/cache/verify`],
    ['GET', `http://${admin}/metrics`],
    ['GET', `http://localhost:${adminPort}/v1/status`],
    ['GET', `http://[::ffff:127.0.0.1]:${adminPort}/v1/status`],
    ['GET', `http://[::ffff:7f00:1]:${adminPort}/v1/status`],
    ['GET', `http://2130706433:${adminPort}/v1/status`],
    ['GET', `http://0x7f.1:${adminPort}/v1/status`],
    ['GET', `http://0.0.0.0:${adminPort}/v1/status`],
    ['GET', `http://${hc.ready.admin}/v1/status`],
    ['POST', `http://${hc.ready.admin}/v1/cache/verify`],
    ['GET', `http://127.0.0.1:${secret.port}/`],
    ['DELETE', `http://127.0.0.1:${secret.port}/thing`],
    ['GET', `https://127.0.0.1:${secret.port}/`],
    ['GET', `http://[::1]:${secret.port}/`],
    ['GET', `http://[::]:${secret.port}/`],
    ['GET', `http://127.0.0.1:${retrievalPort}/`],
    ['GET', `http://169.254.169.254/latest/meta-data/`],
    ['GET', `http://[fe80::1]/`],
    ['GET', `http://${proxy}/loop`],
  ];
  for (const [method, url] of attacks) {
    const r = await send(proxy, method, url);
    t.equal(r.status, 403, `${method} ${url}: ${r.body.trim()}`);
    t.match(r.body, /PROXY_REFUSED: the proxy does not connect to/, 'a clear reason');
  }
  t.same(secret.hits, [], 'the 127.0.0.1 service saw no request (nor the /v1/fetch it was to be fetched by)');
  const status = JSON.parse((await send(admin, 'GET', '/v1/status')).body) as { totals: { jobs: number } };
  t.equal(status.totals.jobs, 0, 'the daemon started no download');

  // Defence in depth: the admin APIs refuse proxy-marked requests whoever forwards them.
  for (const h of [
    { via: '1.1 peerdist' } as Record<string, string>,
    { via: '1.1 squid' },
    { 'x-forwarded-for': '192.168.1.66' },
    { forwarded: 'for=192.168.1.66' },
    { 'x-real-ip': '192.168.1.66' },
  ]) {
    for (const a of [admin, hc.ready.admin]) {
      const r = await send(a, 'GET', '/v1/status', h);
      t.equal(r.status, 403, `${a} with ${JSON.stringify(h)}`);
      t.match(r.body, /came through a proxy/);
    }
  }
});

t.test('DNS rebinding: the address actually connected to is checked', async (t) => {
  const secret = await secretService(t);
  // rebind.test resolves to a public address at the first look-up (the proxy's check) and to
  // 127.0.0.1 afterwards (when the engine or the forwarder connects). Nothing ever connects to
  // the public address: every later look-up answers 127.0.0.1.
  const lookups: string[] = [];
  const guard = new TargetGuard({
    resolve: async (host) => {
      lookups.push(host);
      return lookups.length === 1 ? [{ address: '198.51.100.7', family: 4 }] : [{ address: '127.0.0.1', family: 4 }];
    },
  });
  const tmp = await mkdtemp(join(tmpdir(), 'pd-rebind-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const none = {} as unknown;
  const engine = new DownloadEngine({
    store: none as StoreLike,
    discovery: none as DiscoveryLike,
    retrieval: none as RetrievalLike,
    tmpDir: tmp,
  });
  const proxy = await startProxyServer({ host: '127.0.0.1', port: 0 }, { jobs: new JobBook(engine), guard });
  t.teardown(async () => {
    await proxy.close();
    await engine.close();
  });
  for (const method of ['GET', 'POST']) {
    lookups.length = 0;
    const r = await send(proxy.address, method, `http://rebind.test:${secret.port}/x`);
    t.equal(r.status, 403, `${method}: ${r.body.trim()}`);
    t.match(
      r.body,
      /PROXY_REFUSED: the proxy does not connect to rebind\.test:\d+: 127\.0\.0\.1 is a loopback address/,
    );
    t.ok(lookups.length >= 2, `${method}: the name was looked up again for the connection (${lookups.length})`);
  }
  t.same(secret.hits, [], 'the loopback service saw no request');
});
