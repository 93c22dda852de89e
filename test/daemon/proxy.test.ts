// The local HTTP forward proxy with a fake engine: absolute-form GET goes through the engine
// (whole body and single ranges), other methods are forwarded to the real upstream, CONNECT is 501.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { startProxyServer, parseRange } from '../../src/daemon/proxy.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { TargetGuard } from '../../src/daemon/proxy-guard.js';
import { readBody } from '../../src/client/admin-client.js';
import { FakeEngine } from './fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(100_000);

function viaProxy(
  proxyPort: number,
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolveP, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, method, path: url, headers }, (res) => {
      readBody(res).then((b) => resolveP({ status: res.statusCode!, headers: res.headers, body: b }), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('range parsing', async (t) => {
  t.same(parseRange('bytes=0-9', 100), [0, 9]);
  t.same(parseRange('bytes=90-', 100), [90, 99]);
  t.same(parseRange('bytes=-10', 100), [90, 99]);
  t.same(parseRange('bytes=50-500', 100), [50, 99]);
  t.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  t.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
  t.equal(parseRange('bytes=0-1,5-6', 100), undefined, 'multi-range: whole body');
  t.equal(parseRange('bytes=9-3', 100), undefined);
  t.equal(parseRange('items=0-1', 100), undefined);
  t.equal(parseRange(undefined, 100), undefined);
});

t.test('proxy', async (t) => {
  // A real upstream for forwarded (non-GET) requests.
  const seen: Array<{ method: string; url: string; body: string; headers: IncomingHttpHeaders }> = [];
  const upstream = createServer((req, res) => {
    readBody(req).then((b) => {
      seen.push({ method: req.method!, url: req.url!, body: b.toString(), headers: req.headers });
      res.writeHead(201, { 'x-upstream': 'yes', 'content-type': 'text/plain' });
      res.end(`got ${req.method}`);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  const engine = new FakeEngine(new Map([[`${up}/file.bin`, { data: DATA }]]));
  // The upstream runs on loopback, which the proxy refuses (issue 27.2): this test lets its port through.
  const guard = new TargetGuard({ exempt: [`127.0.0.1:${(upstream.address() as AddressInfo).port}`] });
  const proxy = await startProxyServer({ host: '127.0.0.1', port: 0 }, { jobs: new JobBook(engine), guard });
  t.teardown(async () => {
    await proxy.close();
    await new Promise((r) => {
      upstream.close(r);
      upstream.closeAllConnections();
    });
  });
  const port = Number(proxy.address.split(':')[1]);

  const whole = await viaProxy(port, 'GET', `${up}/file.bin`, {
    'user-agent': 'apt',
    'proxy-connection': 'keep-alive',
    range: 'pages=1',
  });
  t.equal(whole.status, 200, 'a malformed Range is ignored');
  t.equal(sha(whole.body), sha(DATA));
  t.equal(whole.headers['content-length'], String(DATA.length));
  t.equal(whole.headers['content-type'], 'application/x-test');
  t.equal(whole.headers['etag'], '"e1"');
  t.ok(whole.headers['x-peerdist-job']);
  t.equal(engine.started.length, 1, 'GET went through the engine');
  t.same(engine.started[0]!.headers, { 'user-agent': 'apt' }, 'hop-by-hop and engine-owned headers are not passed on');
  t.equal(seen.length, 0, 'the upstream was not contacted directly');

  const part = await viaProxy(port, 'GET', `${up}/file.bin`, { range: 'bytes=1000-1999' });
  t.equal(part.status, 206);
  t.equal(part.headers['content-range'], `bytes 1000-1999/${DATA.length}`);
  t.equal(sha(part.body), sha(DATA.subarray(1000, 2000)));

  const past = await viaProxy(port, 'GET', `${up}/file.bin`, { range: `bytes=${DATA.length}-` });
  t.equal(past.status, 416);
  t.equal(past.headers['content-range'], `bytes */${DATA.length}`);

  const missing = await viaProxy(port, 'GET', `${up}/missing`);
  t.equal(engine.started.at(-1)?.url, `${up}/missing`, 'tried through the engine first');
  t.equal(missing.status, 201, "engine failure: the origin's own answer is passed through");
  t.equal(missing.body.toString(), 'got GET');
  t.match(seen.at(-1), { method: 'GET', url: '/missing' });
  seen.length = 0;

  const post = await viaProxy(
    port,
    'POST',
    `${up}/submit`,
    { 'content-type': 'text/plain', 'content-length': '5' },
    Buffer.from('hello'),
  );
  t.equal(post.status, 201);
  t.equal(post.body.toString(), 'got POST');
  t.equal(post.headers['x-upstream'], 'yes');
  t.match(seen.at(-1), { method: 'POST', url: '/submit', body: 'hello' });
  t.equal(seen.length, 1);
  const head = await viaProxy(port, 'HEAD', `${up}/file.bin`);
  t.equal(head.status, 201);
  t.equal(seen.at(-1)?.method, 'HEAD', 'HEAD forwarded as-is');

  const before = engine.started.length;
  const authed = await viaProxy(port, 'GET', `${up}/file.bin`, { authorization: 'Bearer x' });
  t.equal(authed.status, 201, 'GET with credentials bypasses the engine');
  t.match(seen.at(-1), { method: 'GET', url: '/file.bin', headers: { authorization: 'Bearer x' } });
  t.equal(engine.started.length, before, 'the engine was not used');

  const origin = await viaProxy(port, 'GET', '/not-absolute');
  t.equal(origin.status, 400, 'origin-form requests are refused');

  const connectReply = await new Promise<string>((resolveP, reject) => {
    const s = connect(port, '127.0.0.1', () =>
      s.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'),
    );
    let buf = '';
    s.setEncoding('utf8')
      .on('data', (d) => {
        buf += d;
      })
      .on('end', () => resolveP(buf))
      .on('error', reject);
  });
  t.match(connectReply, /^HTTP\/1\.1 501 /, 'CONNECT refused');
});
