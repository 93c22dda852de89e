/**
 * Issue 27.7: one host must not lock the others out of a server's uploads. Real loopback sockets
 * from distinct source addresses (127.0.0.2 the greedy host, 127.0.0.3 the honest one, bound with
 * localAddress). Connection slots: a host holding every slot gives one up to a host holding fewer.
 * Upload budget: the cap's queue is shared byte-fairly between sources, so a host keeping it full
 * delays another host's block by about one of its own and never gets it answered busy. The upload
 * test runs on a simulated clock that advances only when every request in progress is waiting for
 * the cap (nothing here depends on how fast the machine is).
 */
import t, { type Test } from 'tap';
import { connect, type Socket } from 'node:net';
import { Agent } from 'undici';
import { ConnectionGuard, FairUploadQueue, sourceKey } from '../../src/retrieval/fair-share.js';
import { TokenBucket } from '../../src/retrieval/rate-limit.js';
import { createRetrievalServer, type RetrievalServer } from '../../src/retrieval/server.js';
import {
  decodeResponse,
  encodeRequest,
  PCCRR_PATH,
  SUPPORTED_MAX,
  SUPPORTED_MIN,
} from '../../src/protocol/pccrr/codec.js';
import { startHostedCache } from '../../src/hostedcache/hosted-cache.js';
import { nullLogger } from '../../src/util/log.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemorySource, blockOf, makeContent, raw } from './source.js';

const BLOCKS = 8;
const A = await makeContent(65536 * BLOCKS);
const GREEDY = '127.0.0.2';
const HONEST = '127.0.0.3';

/** Settles once `cond` holds (checked after I/O); the test's own timeout bounds it. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

/** One MSG_GETBLKS; 'served' when the MSG_BLK carries the block, 'busy' when it is empty. */
async function getBlock(agent: Agent, base: string, index: number): Promise<'served' | 'busy'> {
  const body = encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: A.seg.segmentId, ranges: [[index, 1]] });
  const r = await raw(agent, base, { body });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
  const m = decodeResponse(r.body);
  if (m.type !== 'BLK' || m.blockIndex !== index) throw new Error('unexpected answer');
  if (m.block.length === 0) return 'busy';
  if (m.block.length < blockOf(A, index).length) throw new Error('short block');
  return 'served';
}

t.test('sources: one per IPv4 address, one per IPv6 /64', async (t) => {
  t.equal(sourceKey('127.0.0.2'), '127.0.0.2');
  t.equal(sourceKey('::ffff:10.1.2.3'), '10.1.2.3', 'IPv4-mapped');
  t.equal(sourceKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  t.equal(sourceKey('2001:db8:1:2::9'), '2001:db8:1:2::/64', 'the same /64');
  t.equal(sourceKey('2001:DB8:0001:0002:ffff::1'), '2001:db8:1:2::/64', 'case and leading zeros');
  t.not(sourceKey('2001:db8:1:3::9'), sourceKey('2001:db8:1:2::9'), 'another /64');
  t.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'zone dropped');
  t.equal(sourceKey('::1'), '0:0:0:0::/64');
});

t.test('connection guard: a per-source cap, and slots even out when all are taken', async (t) => {
  const made: Array<{ remoteAddress: string; destroyed: boolean; destroy(): void; once(): void }> = [];
  const sock = (remoteAddress: string) => {
    const s = {
      remoteAddress,
      destroyed: false,
      destroy() {
        s.destroyed = true;
      },
      once() {},
    };
    made.push(s);
    return s as unknown as Socket;
  };
  const g = new ConnectionGuard({ maxConnections: 8, maxPerSource: 6 });
  for (let i = 0; i < 10; i++) g.admit(sock(GREEDY));
  t.equal(g.stats().connections, 6, 'the greedy source stops at its cap of 6');
  for (let i = 0; i < 4; i++) g.admit(sock(HONEST));
  t.match(g.stats(), { connections: 8, sources: 2, evicted: 2 }, 'two honest newcomers took greedy slots');
  t.equal(made.filter((s) => s.remoteAddress === GREEDY && !s.destroyed).length, 4, 'greedy holds 4');
  t.equal(made.filter((s) => s.remoteAddress === HONEST && !s.destroyed).length, 4, 'honest holds 4');
  t.notOk(g.admit(sock(GREEDY)), 'even: the greedy source cannot take one back');
  t.notOk(g.admit(sock(HONEST)), 'nor the honest one more');
});

t.test('200 connections from one host do not lock an honest peer out (maxConnections 8)', async (t) => {
  const server = createRetrievalServer({ source: new MemorySource().add(A), maxConnections: 8 });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  let stop = false;
  const open = new Set<Socket>();
  let attempts = 0;
  // The greedy host: 200 connections that never send a request, each reopened when closed.
  const dial = () => {
    if (stop) return;
    attempts++;
    const s = connect({ host, port, localAddress: GREEDY });
    open.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      open.delete(s);
      if (!stop) setTimeout(dial, 5);
    });
  };
  for (let i = 0; i < 200; i++) dial();
  t.teardown(() => {
    stop = true;
    for (const s of open) s.destroy();
  });
  await until(() => server.stats().connections === 8 && attempts >= 200);
  t.equal(server.stats().sources, 1, 'the greedy host holds every slot');

  const agent = new Agent({ connections: 4, localAddress: HONEST });
  t.teardown(() => agent.close());
  const base = `http://${host}:${port}`;
  let served = 0;
  const errors: string[] = [];
  const worker = async (w: number) => {
    for (let i = w; i < 123; i += 4) {
      try {
        if ((await getBlock(agent, base, i % BLOCKS)) === 'served') served++;
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
  t.equal(served, 123, `the honest peer got every one of 123 blocks (errors: ${errors.slice(0, 3).join('; ')})`);
  const st = server.stats();
  t.ok(st.connections <= 8, `never more than 8 connections open (${st.connections})`);
  t.ok(st.connectionsEvicted >= 1, `greedy connections gave up their slots (${st.connectionsEvicted} evicted)`);
});

/**
 * A server whose upload cap sleeps on a simulated clock: `advance` moves time to the earliest
 * pending sleep only once `busy()` requests in progress are all parked at the cap, and then wakes
 * the clients that were told busy (they retry at the next tick, as a peer backs off).
 */
async function capped(t: Test, rate: number) {
  let now = 0;
  const sleeps: Array<{ due: number; resolve: () => void }> = [];
  const bucket = new TokenBucket({ rate, burst: 70_000, now: () => now });
  const server: RetrievalServer = createRetrievalServer({
    source: new MemorySource().add(A),
    bucket,
    maxThrottleWaitMs: 3000,
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        sleeps.push({ due: now + ms, resolve });
      }),
  });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  let wake!: () => void;
  let tick = new Promise<void>((r) => {
    wake = r;
  });
  const advance = async (parked: () => number) => {
    await until(() => sleeps.length + (server.stats().uploadWaiting ?? 0) >= parked());
    sleeps.sort((a, b) => a.due - b.due);
    const next = sleeps.shift();
    if (next) {
      now = Math.max(now, next.due);
      next.resolve();
    }
    const w = wake;
    tick = new Promise<void>((r) => {
      wake = r;
    });
    w();
    return next !== undefined;
  };
  return { server, base: `http://${host}:${port}`, advance, nextTick: () => tick };
}

t.test('the upload cap is shared fairly: a host keeping its queue full cannot starve another', async (t) => {
  const { server, base, advance, nextTick } = await capped(t, 65536);
  const greedy = new Agent({ connections: 8, localAddress: GREEDY });
  const honest = new Agent({ connections: 1, localAddress: HONEST });
  t.teardown(async () => {
    await greedy.close();
    await honest.close();
  });
  let stop = false;
  let outstanding = 0;
  let greedyServed = 0;
  // The greedy host: 8 connections, each asking for the next block as soon as it has an answer
  // (after "busy", at the next tick of the clock).
  const greedyLoop = async (w: number) => {
    for (let i = w; !stop; i += 8) {
      let r: 'served' | 'busy' | 'error' = 'error';
      outstanding++;
      try {
        r = await getBlock(greedy, base, i % BLOCKS);
      } catch {
        /* the test ends */
      } finally {
        outstanding--;
      }
      if (r === 'served') greedyServed++;
      else if (!stop) await nextTick();
    }
  };
  const loops = [0, 1, 2, 3, 4, 5, 6, 7].map(greedyLoop);
  // Let it fill the queue: the bucket is in debt for the 3 s the server queues at most.
  for (let k = 0; k < 16; k++) await advance(() => outstanding);
  t.ok(greedyServed >= 8, `the greedy host is being served (${greedyServed} blocks)`);

  // The honest peer asks for 10 blocks, one at a time.
  let busy = 0;
  let honestDone = false;
  const between: number[] = [];
  const honestRun = (async () => {
    for (let i = 0; i < 10; i++) {
      const before = greedyServed;
      outstanding++;
      try {
        if ((await getBlock(honest, base, i % BLOCKS)) === 'busy') busy++;
      } finally {
        outstanding--;
      }
      between.push(greedyServed - before);
    }
  })().finally(() => {
    honestDone = true;
  });
  while (!honestDone) await advance(() => (honestDone ? 0 : outstanding));
  await honestRun;
  stop = true;
  await advance(() => 0); // wakes the greedy loops waiting for a tick
  await server.close();
  await Promise.all(loops);
  t.equal(busy, 0, 'the honest peer was never answered busy');
  // By design one greedy block (the one being paid for when the honest request arrives) goes
  // before it; one more may already be on its way to the greedy client when the honest request is
  // sent, and is counted here too. First come, first served, the whole greedy backlog went first.
  t.ok(
    between.every((n) => n <= 2),
    `at most two greedy blocks reached the greedy host while each honest block waited (${between.join(', ')})`,
  );
  t.ok(server.stats().busyRateLimited > 0, 'the greedy host, beyond its fair wait, was told busy');
});

t.test('fair upload queue: the source given fewest bytes goes next; long fair waits are refused', async (t) => {
  let now = 0;
  const bucket = new TokenBucket({ rate: 1000, burst: 1000, now: () => now });
  // Sleeps end (and time passes) only when the test says so.
  const sleeps: Array<{ ms: number; resolve: () => void }> = [];
  const order: string[] = [];
  const q = new FairUploadQueue(
    bucket,
    4500,
    (ms) =>
      new Promise<void>((resolve) => {
        sleeps.push({ ms, resolve });
      }),
  );
  const all: Promise<unknown>[] = [];
  for (let i = 0; i < 4; i++) all.push(q.wait('a', 1000).then(() => order.push('a')));
  all.push(q.wait('b', 1000).then(() => order.push('b')));
  // a: one sent (the burst), one being paid for (1 s), two queued; b: one queued.
  t.equal(q.waiting, 3);
  t.equal(await q.wait('a', 1000), undefined, "a's fifth block would wait 5 s (over 4.5 s): refused");
  all.push(q.wait('c', 1000).then((w) => order.push(w === undefined ? 'c refused' : 'c')));
  let slept = 0;
  while (order.length < 6) {
    await new Promise((r) => setImmediate(r));
    const s = sleeps.shift();
    if (!s) continue;
    slept += s.ms;
    now += s.ms;
    s.resolve();
  }
  await Promise.all(all);
  t.same(order, ['a', 'a', 'b', 'c', 'a', 'a'], 'b and c, new, go before the rest of the queued a');
  t.equal(slept, 5000, '6 kB at 1 kB/s with a 1 kB burst: 5 s');
});

t.test('hosted cache listeners: one host holds at most its share of connections', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'peerdist-fair-hc-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const hc = await startHostedCache(
    {
      stateDir,
      http: { host: '127.0.0.1', port: 0 },
      admin: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      cacheLimitBytes: 1 << 20,
    },
    { logger: nullLogger },
  );
  t.teardown(() => hc.close());
  const [host, port] = [hc.ready.http.split(':')[0]!, Number(hc.ready.http.split(':')[1])];
  const body = encodeRequest({ type: 'NEGO_REQ', min: SUPPORTED_MIN, max: SUPPORTED_MAX });
  const request = Buffer.concat([
    Buffer.from(`POST ${PCCRR_PATH} HTTP/1.1\r\nHost: hc\r\nContent-Length: ${body.length}\r\n\r\n`),
    body,
  ]);
  /** Opens a connection from `from`, sends one request; 'answered' or 'closed' (without an answer). */
  const ask = (from: string, keep: Socket[]) =>
    new Promise<'answered' | 'closed'>((resolve) => {
      const s = connect({ host, port, localAddress: from }, () => s.write(request));
      keep.push(s);
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.startsWith('HTTP/1.1 200')) resolve('answered');
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve('closed'));
    });
  const greedySockets: Socket[] = [];
  t.teardown(() => {
    for (const s of greedySockets) s.destroy();
  });
  const greedy = await Promise.all(Array.from({ length: 100 }, () => ask(GREEDY, greedySockets)));
  const answered = greedy.filter((r) => r === 'answered').length;
  t.equal(answered, 64, `64 of the greedy host's 100 connections were served (the default per-host cap)`);
  const honestSockets: Socket[] = [];
  t.teardown(() => {
    for (const s of honestSockets) s.destroy();
  });
  t.equal(await ask(HONEST, honestSockets), 'answered', 'another host is still served');
  t.match(hc.stats().connections, { connections: 65, sources: 2, dropped: 36 });
});
