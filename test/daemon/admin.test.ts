import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { createAdminHandler, startAdminServer, type AdminDeps } from '../../src/daemon/admin.js';
import { adminJson, adminRequest, readBody } from '../../src/client/admin-client.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { renderMetrics } from '../../src/daemon/metrics.js';
import type { AdminAddress } from '../../src/util/address.js';
import { FakeEngine } from './fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(300_000);

function deps(engine: FakeEngine): AdminDeps {
  const jobs = new JobBook(engine);
  return {
    jobs,
    status: () => ({ downloads: jobs.active(), totals: engine.totals() }),
    metrics: () => renderMetrics([{ name: 'peerdist_x_total', type: 'counter', help: 'x', value: 7 }]),
    cache: { stats: () => ({ bytes: 1 }), list: () => [{ segmentId: 'AA' }], verifyAll: async () => ({ bad: [] }) },
  };
}

function raw(
  addr: { host: string; port: number },
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; headers: IncomingMessage['headers'] }> {
  return new Promise((resolveP, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, headers }, (res) => {
      readBody(res).then((body) => resolveP({ status: res.statusCode!, body, headers: res.headers }), reject);
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('admin API over loopback TCP', async (t) => {
  const engine = new FakeEngine(
    new Map([
      ['http://origin.test/a.bin', { data: DATA }],
      ['http://origin.test/broken.bin', { data: randomBytes(100_000), behaviour: 'fail-mid' as const }],
    ]),
  );
  const admin = await startAdminServer({ kind: 'tcp', host: '127.0.0.1', port: 0 }, deps(engine));
  t.teardown(() => admin.close());
  t.match(admin.address, /^127\.0\.0\.1:\d+$/);
  const [host, port] = admin.address.split(':');
  const addr: AdminAddress = { kind: 'tcp', host: host!, port: Number(port) };

  const res = await adminRequest(addr, `/v1/fetch?url=${encodeURIComponent('http://origin.test/a.bin')}`);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-length'], String(DATA.length));
  const jobId = res.headers['x-peerdist-job'] as string;
  t.ok(jobId);
  const body = await readBody(res);
  t.equal(sha(body), sha(DATA), 'streamed bytes equal the content');
  const job = await adminJson<Record<string, unknown>>(addr, `/v1/jobs/${jobId}`);
  t.match(job, {
    id: jobId,
    url: 'http://origin.test/a.bin',
    state: 'done',
    bytesDone: DATA.length,
    fromOrigin: DATA.length,
    peerdist: true,
  });
  t.equal(engine.started.length, 1);

  const missing = await raw(
    { host: host!, port: Number(port) },
    `/v1/fetch?url=${encodeURIComponent('http://origin.test/nope')}`,
  );
  t.equal(missing.status, 404, 'origin status passed through');
  t.match(JSON.parse(missing.body.toString()), { error: /404/, job: String });

  const bad = await raw(
    { host: host!, port: Number(port) },
    `/v1/fetch?url=${encodeURIComponent('file:///etc/passwd')}`,
  );
  t.equal(bad.status, 400, 'only http(s) URLs');

  const broken = await adminRequest(addr, `/v1/fetch?url=${encodeURIComponent('http://origin.test/broken.bin')}`);
  t.equal(broken.statusCode, 200);
  await t.rejects(readBody(broken), 'a broken download cuts the response short');
  const bj = await adminJson<Record<string, unknown>>(addr, `/v1/jobs/${broken.headers['x-peerdist-job']}`);
  t.equal(bj.state, 'failed');

  t.same(await adminJson(addr, '/v1/cache/ls'), [{ segmentId: 'AA' }]);
  t.same(await adminJson(addr, '/v1/cache/stats'), { bytes: 1 });
  t.same(await adminJson(addr, '/v1/cache/verify', 'POST'), { bad: [] });
  const status = (p: Promise<unknown>) =>
    p.then(
      () => 200,
      (e: { status?: number }) => e.status,
    );
  t.equal(await status(adminJson(addr, '/v1/cache/verify')), 405, 'verify needs POST');
  t.equal(await status(adminJson(addr, '/v1/jobs/nonexistent')), 404);
  const badEscape = await raw({ host: host!, port: Number(port) }, '/v1/jobs/%E0%A4%A');
  t.equal(badEscape.status, 400, 'a bad percent-escape in the path is a bad request, not a server error');
  t.match(JSON.parse(badEscape.body.toString()), { error: /percent-escape/ });
  t.equal(await status(adminJson(addr, '/v1/nothing')), 404);
  const m = await raw({ host: host!, port: Number(port) }, '/metrics');
  t.equal(m.status, 200);
  t.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.match(m.body.toString(), /^# HELP peerdist_x_total x\n# TYPE peerdist_x_total counter\npeerdist_x_total 7\n$/);

  const rebind = await raw({ host: host!, port: Number(port) }, '/v1/status', { host: 'evil.example:7171' });
  t.equal(rebind.status, 403, 'a foreign Host header (DNS rebinding) is refused');
  const page = await raw({ host: host!, port: Number(port) }, '/v1/status', { origin: 'http://evil.example' });
  t.equal(page.status, 403, 'a request with Origin (made by a web page) is refused');
  const img = await raw(
    { host: host!, port: Number(port) },
    `/v1/fetch?url=${encodeURIComponent('http://origin.test/a.bin')}`,
    { 'sec-fetch-site': 'cross-site' },
  );
  t.equal(img.status, 403, 'a cross-site browser fetch is refused');
  t.equal(engine.started.length, 3, 'and started no download');
  const typed = await raw({ host: host!, port: Number(port) }, '/v1/status', { 'sec-fetch-site': 'none' });
  t.equal(typed.status, 200, 'a URL typed into the address bar is fine');
});

t.test('admin API refuses non-loopback listen addresses and peers', async (t) => {
  const engine = new FakeEngine();
  await t.rejects(startAdminServer({ kind: 'tcp', host: '0.0.0.0', port: 0 }, deps(engine)), {
    code: 'BAD_ADDRESS',
    message: /loopback/,
  });
  const handler = createAdminHandler(deps(engine), 'tcp');
  for (const remote of ['192.168.1.9', '::ffff:10.1.2.3', '2001:db8::1']) {
    const req = Object.assign(new EventEmitter(), {
      socket: { remoteAddress: remote },
      headers: {},
      url: '/v1/status',
      method: 'GET',
    }) as unknown as IncomingMessage;
    let status = 0;
    const res = {
      headersSent: false,
      writeHead(s: number) {
        status = s;
        return this;
      },
      end() {
        return this;
      },
      destroy() {},
    } as unknown as ServerResponse;
    handler(req, res);
    t.equal(status, 403, `request from ${remote} refused`);
  }
});

t.test('admin API over a unix socket', { skip: process.platform === 'win32' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-adm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'admin.sock');
  const engine = new FakeEngine(new Map([['http://o.test/x', { data: DATA.subarray(0, 1000) }]]));
  const admin = await startAdminServer({ kind: 'socket', path }, deps(engine));
  t.equal(admin.address, path);
  await t.rejects(
    startAdminServer({ kind: 'socket', path }, deps(engine)),
    { message: /in use/ },
    'second daemon on the same socket refused',
  );
  const addr: AdminAddress = { kind: 'socket', path };
  const res = await adminRequest(addr, `/v1/fetch?url=${encodeURIComponent('http://o.test/x')}`);
  t.equal(sha(await readBody(res)), sha(DATA.subarray(0, 1000)));
  t.match(await adminJson(addr, '/v1/status'), { downloads: Array });
  await admin.close();
  await t.rejects(stat(path), 'socket file removed on close');
});

t.test('concurrent fetches of one URL join a single job', async (t) => {
  const engine = new FakeEngine(new Map([['http://o.test/shared', { data: DATA }]]));
  const admin = await startAdminServer({ kind: 'tcp', host: '127.0.0.1', port: 0 }, deps(engine));
  t.teardown(() => admin.close());
  const [host, port] = admin.address.split(':');
  const addr: AdminAddress = { kind: 'tcp', host: host!, port: Number(port) };
  const path = `/v1/fetch?url=${encodeURIComponent('http://o.test/shared')}`;
  const [a, b] = await Promise.all([adminRequest(addr, path), adminRequest(addr, path)]);
  t.equal(a.headers['x-peerdist-job'], b.headers['x-peerdist-job']);
  const [ba, bb] = await Promise.all([readBody(a), readBody(b)]);
  t.equal(sha(ba), sha(DATA));
  t.equal(sha(bb), sha(DATA));
  t.equal(engine.started.length, 1, 'one engine download');
});
