import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { startDelayProxy } from '../../testkit/sim/delayproxy.js';

async function echoServer(t: Test) {
  const sockets = new Set<Socket>();
  const s = createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.pipe(c);
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.teardown(() => {
    for (const c of sockets) c.destroy();
    s.close();
  });
  return (s.address() as { port: number }).port;
}

t.test('a round trip through the proxy takes at least twice the one-way delay', async (t) => {
  const port = await echoServer(t);
  const p = await startDelayProxy({ listenHost: '127.0.0.1', targetHost: '127.0.0.1', targetPort: port, delayMs: 120 });
  t.teardown(() => p.close());
  const c = connect(p.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  await once(c, 'connect');
  const started = performance.now();
  c.write('ping');
  const [data] = (await once(c, 'data')) as [Buffer];
  const rtt = performance.now() - started;
  t.equal(data.toString(), 'ping');
  t.ok(rtt >= 235, `round trip ${rtt.toFixed(0)} ms >= 2 x 120 ms`);
  t.equal(p.stats().connections, 1);
  t.equal(p.stats().upBytes, 4);
  t.equal(p.stats().downBytes, 4);
});

t.test('a bulk transfer arrives intact and in order, and the half-close is forwarded', async (t) => {
  const port = await echoServer(t);
  const p = await startDelayProxy({
    listenHost: '127.0.0.1',
    targetHost: '127.0.0.1',
    targetPort: port,
    delayMs: 20,
    highWaterBytes: 256 * 1024,
  });
  t.teardown(() => p.close());
  const payload = randomBytes(6 * 1024 * 1024 + 17);
  const c = connect(p.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const h = createHash('sha256');
  let n = 0;
  c.on('data', (d: Buffer) => {
    h.update(d);
    n += d.length;
    if (n === payload.length) c.end();
  });
  c.write(payload);
  await once(c, 'close');
  t.equal(n, payload.length, 'every byte echoed back');
  t.equal(h.digest('hex'), createHash('sha256').update(payload).digest('hex'), 'bytes in order');
  t.equal(p.stats().upBytes, payload.length);
  t.equal(p.stats().downBytes, payload.length);
});

t.test('with a rate, a bulk transfer takes at least its size over the rate, intact', async (t) => {
  const port = await echoServer(t);
  const rate = 16 * 1024 * 1024;
  const p = await startDelayProxy({
    listenHost: '127.0.0.1',
    targetHost: '127.0.0.1',
    targetPort: port,
    delayMs: 0,
    rateBytesPerSecond: rate,
  });
  t.teardown(() => p.close());
  const payload = randomBytes(4 * 1024 * 1024);
  const c = connect(p.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const h = createHash('sha256');
  let n = 0;
  const started = performance.now();
  c.on('data', (d: Buffer) => {
    h.update(d);
    n += d.length;
    if (n === payload.length) c.end();
  });
  c.write(payload);
  await once(c, 'close');
  const s = (performance.now() - started) / 1000;
  t.equal(h.digest('hex'), createHash('sha256').update(payload).digest('hex'), 'every byte, in order');
  // Up and back down, each at the rate (they overlap): never faster than one way at the rate.
  t.ok(s >= payload.length / rate - 0.01, `${s.toFixed(3)} s >= ${(payload.length / rate).toFixed(3)} s`);
});

t.test('a connection to a dead target is closed, the proxy keeps serving', async (t) => {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const deadPort = (s.address() as { port: number }).port;
  s.close();
  await once(s, 'close');
  const p = await startDelayProxy({
    listenHost: '127.0.0.1',
    targetHost: '127.0.0.1',
    targetPort: deadPort,
    delayMs: 5,
  });
  t.teardown(() => p.close());
  const c = connect(p.port, '127.0.0.1');
  c.on('error', () => {});
  await once(c, 'close');
  t.pass('client socket closed');
  const c2 = connect(p.port, '127.0.0.1');
  c2.on('error', () => {});
  await once(c2, 'close');
  t.equal(p.stats().connections, 2);
});

/**
 * Issue 27.16: `npm run sim` stopped with "plain fetch on client 1 failed: agent fetch: aborted".
 * The origin sends the whole body and closes its end (here at once; `peerdist serve` after its
 * keep-alive timeout, while the body still sits in the proxy's queue or the client's slow link);
 * the proxy destroyed the client's socket as soon as the upstream closed, cutting the body.
 */
async function sendThenClose(t: Test, payload: Buffer) {
  const s = createServer((c) => {
    c.end(payload);
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.teardown(() => s.close());
  return (s.address() as { port: number }).port;
}

async function readAll(c: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  c.on('data', (d: Buffer) => parts.push(d));
  await once(c, 'end');
  return Buffer.concat(parts);
}

t.test('a target that sends its data and closes at once: the client gets every byte, then the end', async (t) => {
  const payload = randomBytes(3 * 1024 * 1024 + 5);
  const port = await sendThenClose(t, payload);
  const p = await startDelayProxy({ listenHost: '127.0.0.1', targetHost: '127.0.0.1', targetPort: port, delayMs: 200 });
  t.teardown(() => p.close());
  const c = connect(p.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const got = await readAll(c);
  t.equal(got.length, payload.length, 'every byte arrived before the end');
  t.ok(got.equals(payload), 'in order');
});

t.test('a client that half-closes after its request still gets the whole answer', async (t) => {
  const payload = randomBytes(1024 * 1024);
  const s = createServer({ allowHalfOpen: true }, (c) => {
    c.resume();
    c.on('end', () => c.end(payload));
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.teardown(() => s.close());
  const port = (s.address() as { port: number }).port;
  const p = await startDelayProxy({ listenHost: '127.0.0.1', targetHost: '127.0.0.1', targetPort: port, delayMs: 50 });
  t.teardown(() => p.close());
  const c = connect({ port: p.port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => c.destroy());
  await once(c, 'connect');
  c.end('request');
  const got = await readAll(c);
  t.equal(got.length, payload.length, 'the answer to a half-closed request arrives whole');
});

t.test('an HTTP origin closing its idle keep-alive connection does not cut the body still in the proxy', async (t) => {
  const { createServer: createHttpServer, get, Agent } = await import('node:http');
  const body = randomBytes(2 * 1024 * 1024);
  // The origin's keep-alive timer starts once it has written the body (into the proxy) and closes
  // the connection soon after (Node adds up to a second to keepAliveTimeout), while the proxy still
  // delays the body by 1.5 s.
  const s = createHttpServer((_req, res) => {
    res.setHeader('content-length', body.length);
    res.end(body);
  });
  s.keepAliveTimeout = 100;
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.teardown(() => {
    s.closeAllConnections();
    s.close();
  });
  const port = (s.address() as { port: number }).port;
  const p = await startDelayProxy({
    listenHost: '127.0.0.1',
    targetHost: '127.0.0.1',
    targetPort: port,
    delayMs: 1500,
  });
  t.teardown(() => p.close());
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const got = await new Promise<Buffer>((resolve, reject) => {
    get({ host: '127.0.0.1', port: p.port, path: '/', agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve(Buffer.concat(parts)));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('aborted')));
    }).on('error', reject);
  });
  t.equal(got.length, body.length, 'the whole body arrived');
  t.ok(got.equals(body));
});
