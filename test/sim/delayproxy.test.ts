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
