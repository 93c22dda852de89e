import t from 'tap';
import { Agent } from 'undici';
import { TokenBucket } from '../../src/retrieval/rate-limit.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { decodeResponse, encodeRequest } from '../../src/protocol/pccrr/codec.js';
import { MemorySource, blockOf, makeContent, raw, type Content } from './source.js';

t.test('token bucket: burst, then the rate; waits queue behind each other (injected clock)', async (t) => {
  let now = 1000;
  const b = new TokenBucket({ rate: 1000, burst: 2000, now: () => now });
  t.equal(b.reserve(1500), 0, 'within the burst: no wait');
  t.equal(b.waitFor(1000), 500, 'waitFor does not take tokens');
  t.equal(b.reserve(1000), 500, '500 bytes short at 1000 B/s: 500 ms');
  t.equal(b.reserve(1000), 1500, 'the next one queues behind it');
  t.equal(b.available(), -1500, 'in debt until the queued bytes are paid for');
  now += 1500;
  t.equal(b.available(), 0, 'paid off when the last queued response may go');
  now += 1000;
  t.equal(b.available(), 1000);
  now += 60_000;
  t.equal(b.available(), 2000, 'refill stops at the burst');
  // Long run: n bytes through the bucket take n / rate seconds (minus one burst).
  let waited = 0;
  for (let i = 0; i < 100; i++) waited = Math.max(waited, b.reserve(1000));
  t.equal(waited, 98_000, '100 kB at 1000 B/s: the last waits 98 s (2 kB burst)');
  t.throws(() => new TokenBucket({ rate: 0 }), RangeError);
  t.equal(new TokenBucket({ rate: 10e6 }).burst, 1e6, 'default burst: 100 ms of rate');
  t.equal(new TokenBucket({ rate: 1000 }).burst, 65536 + 1024, 'default burst holds at least one block response');
});

const A = await makeContent(65536 * 4); // 4 blocks
const agent = new Agent({ connections: 4 });
t.teardown(() => agent.close());

const want = (c: Content, index: number, peer: string) => ({
  peer,
  segmentId: c.seg.segmentId,
  index,
  kp: c.seg.kp,
  expectedLength: blockOf(c, index).length,
  verify: (p: Buffer) => verifyBlock(c.info.version, c.seg, index, p),
});

t.test('server: block responses wait for the cap; too long a queue is answered busy', async (t) => {
  let now = 0;
  const sleeps: number[] = [];
  const bucket = new TokenBucket({ rate: 65536, burst: 70_000, now: () => now });
  const server = createRetrievalServer({
    source: new MemorySource().add(A),
    bucket,
    maxThrottleWaitMs: 1500,
    // The fake sleep advances the fake clock, so the bucket sees the time pass.
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  const peer = `${host}:${port}`;
  const c = new RetrievalClient({});
  t.teardown(() => c.close());
  for (const i of [0, 1, 2])
    t.ok((await c.getBlock(want(A, i, peer))).data.equals(blockOf(A, i)), `block ${i} served intact`);
  t.equal(sleeps.length, 2, 'the first response fit the burst; the next two waited');
  for (const ms of sleeps) t.ok(ms > 900 && ms < 1100, `waited ${ms} ms for a 64 KiB block at 64 KiB/s`);
  const st = server.stats();
  t.equal(st.throttled, 2);
  t.equal(st.throttledMs, sleeps[0]! + sleeps[1]!);
  // Now put the bucket deep in debt: the wait exceeds 1500 ms, so the answer is an empty block.
  bucket.reserve(200_000);
  await t.rejects(
    c.getBlock(want(A, 3, peer)),
    { code: 'PEER_NOT_AVAILABLE' },
    'a request that would wait too long is answered busy',
  );
  t.equal(server.stats().busyRateLimited, 1);
  t.equal(server.stats().blocksServed, 3);
  // Block lists are never throttled.
  const bl = decodeResponse(
    (
      await raw(agent, `http://${peer}`, {
        body: encodeRequest({ type: 'GETBLKLIST', segmentId: A.seg.segmentId, ranges: [[0, 4]] }),
      })
    ).body,
  );
  t.same(bl.type === 'BLKLIST' && bl.ranges, [[0, 4]], 'block list answered at once');
});

t.test('server: notServing answers every request busy (on battery)', async (t) => {
  let why: string | undefined = 'on battery';
  const source = new MemorySource().add(A);
  const server = createRetrievalServer({ source, notServing: () => why });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  const peer = `${host}:${port}`;
  const c = new RetrievalClient({});
  t.teardown(() => c.close());
  await t.rejects(c.getBlock(want(A, 0, peer)), { code: 'PEER_NOT_AVAILABLE' });
  const bl = decodeResponse(
    (
      await raw(agent, `http://${peer}`, {
        body: encodeRequest({ type: 'GETBLKLIST', segmentId: A.seg.segmentId, ranges: [[0, 4]] }),
      })
    ).body,
  );
  t.same(bl.type === 'BLKLIST' && bl.ranges, [], 'no block list either');
  t.equal(source.reads, 0, 'the store was not read');
  t.equal(server.stats().notServing, 2);
  why = undefined;
  t.ok((await c.getBlock(want(A, 0, peer))).data.equals(blockOf(A, 0)), 'served again on mains');
});

t.test('server: connections beyond maxConnections are closed', async (t) => {
  const server = createRetrievalServer({ source: new MemorySource().add(A), maxConnections: 1 });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  const { connect } = await import('node:net');
  const open = (): Promise<import('node:net').Socket> =>
    new Promise((res, rej) => {
      const s = connect(port, host, () => res(s));
      s.on('error', rej);
    });
  const a = await open();
  t.teardown(() => a.destroy());
  for (let i = 0; i < 100 && server.stats().connections < 1; i++) await new Promise((r) => setTimeout(r, 10));
  const b = await open();
  const closed = await new Promise<boolean>((res) => {
    b.once('close', () => res(true));
    setTimeout(() => res(false), 3000);
  });
  t.ok(closed, 'the second connection was closed by the server');
  t.equal(server.stats().connectionsDropped, 1);
  t.equal(server.stats().connections, 1);
});
