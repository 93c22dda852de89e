import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HashCache, fileCacheKey } from '../../src/origin/hashcache.js';
import { HashJobs } from '../../src/origin/hashjobs.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { nullLogger } from '../../src/util/log.js';
import { get, startOrigin } from './http.js';
import { tempDir } from './tmp.js';

t.test('HashJobs: dedup, concurrency limit, results cached, failures reported', async (t) => {
  const dir = await tempDir(t);
  const cache = await HashCache.open(dir);
  const jobs = new HashJobs(cache, 2, nullLogger);
  t.teardown(async () => {
    await jobs.close();
    await cache.close();
  });
  let running = 0,
    maxRunning = 0,
    calls = 0;
  const gates: Array<() => void> = [];
  // started(n) resolves once n producers have begun (an awaited event, not a sleep).
  const startWaiters: Array<{ n: number; resolve: () => void }> = [];
  const started = (n: number) =>
    new Promise<void>((resolve) => {
      if (calls >= n) resolve();
      else startWaiters.push({ n, resolve });
    });
  const producer = (value: string) => async () => {
    calls++;
    running++;
    maxRunning = Math.max(maxRunning, running);
    const gate = new Promise<void>((r) => gates.push(r));
    for (const w of startWaiters.filter((x) => calls >= x.n)) w.resolve();
    await gate;
    running--;
    return Buffer.from(value);
  };
  const a1 = jobs.run('a', producer('A'));
  const a2 = jobs.run('a', producer('A-dup'));
  t.equal(a1, a2, 'same key shares one job');
  const b = jobs.run('b', producer('B'));
  const c = jobs.run('c', producer('C'));
  await started(2);
  t.equal(jobs.queued, 1, 'the third job waits for a slot');
  t.equal(gates.length, 2, 'only two jobs run at once');
  t.equal(calls, 2, 'the third job has not started');
  gates.shift()!();
  await started(3);
  t.equal(calls, 3, 'the third job starts when one finishes');
  while (gates.length) gates.shift()!();
  t.same([(await a1)?.toString(), (await b)?.toString(), (await c)?.toString()], ['A', 'B', 'C']);
  t.equal(maxRunning, 2);
  t.equal(jobs.started, 3);
  t.equal((await cache.get('b'))?.toString(), 'B', 'result stored in the cache');
  // A cached key does not run the producer again.
  t.equal(
    (
      await jobs.run('b', async () => {
        throw new Error('must not run');
      })
    )?.toString(),
    'B',
  );
  t.equal(jobs.started, 3);
  t.equal(
    await jobs.run('bad', async () => {
      throw new Error('boom');
    }),
    undefined,
    'failure resolves to undefined',
  );
  t.equal(jobs.failed, 1);
  t.equal(await cache.get('bad'), undefined);
});

t.test('a second process on the same hash cache gets a clear error', async (t) => {
  const dir = await tempDir(t);
  const first = await HashCache.open(dir);
  t.teardown(() => first.close());
  await t.rejects(HashCache.open(dir), { code: 'HASH_CACHE_LOCKED' });
});

t.test('HashJobs.close aborts running jobs', async (t) => {
  const dir = await tempDir(t);
  const cache = await HashCache.open(dir);
  t.teardown(() => cache.close());
  const jobs = new HashJobs(cache, 1, nullLogger);
  let sawAbort = false;
  let slowStarted!: () => void;
  const running = new Promise<void>((r) => {
    slowStarted = r;
  });
  const p = jobs.run(
    'slow',
    (signal) =>
      new Promise<Buffer>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          sawAbort = true;
          reject(signal.reason);
        });
        slowStarted();
      }),
  );
  const queued = jobs.run('queued', async () => Buffer.from('never'));
  await running;
  await jobs.close();
  t.ok(sawAbort);
  t.equal(await p, undefined);
  t.equal(await queued, undefined);
  t.equal(jobs.failed, 0, 'aborts are not failures');
  t.equal(await cache.get('queued'), undefined);
});

t.test('cache keys separate identity, version, chunking and secret', async (t) => {
  const id = { path: '/x', size: 10, mtimeNs: 5n, ino: 7n };
  const s1 = Buffer.alloc(32, 1),
    s2 = Buffer.alloc(32, 2);
  const keys = new Set([
    fileCacheKey(id, { version: 2, chunking: 'cdc', secret: s1 }),
    fileCacheKey(id, { version: 2, chunking: 'fixed', secret: s1 }),
    fileCacheKey(id, { version: 1, chunking: 'cdc', secret: s1 }),
    fileCacheKey(id, { version: 2, chunking: 'cdc', secret: s2 }),
    fileCacheKey({ ...id, mtimeNs: 6n }, { version: 2, chunking: 'cdc', secret: s1 }),
    fileCacheKey({ ...id, size: 11 }, { version: 2, chunking: 'cdc', secret: s1 }),
    fileCacheKey({ ...id, ino: 8n }, { version: 2, chunking: 'cdc', secret: s1 }),
  ]);
  t.equal(keys.size, 7);
  t.equal(
    fileCacheKey(id, { version: 1, chunking: 'cdc', secret: s1 }),
    fileCacheKey(id, { version: 1, chunking: 'fixed', secret: s1 }),
    'chunking is irrelevant for v1',
  );
});

t.test('server: concurrent hash requests share one job; the wait is bounded', async (t) => {
  const top = await tempDir(t);
  const root = join(top, 'root');
  await mkdir(root);
  await writeFile(join(root, 'f.bin'), randomBytes(300_000));
  await writeFile(join(root, 'big.bin'), randomBytes(8 * 1024 * 1024));
  const s = await startOrigin(t, { root, stateDir: join(top, 'state'), secret: randomBytes(32), hashWaitMs: 1 });
  const H = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });
  // The 1 ms bound: the big file cannot be hashed in time, so the answer is the normal body.
  const big = await get(s, '/big.bin', H);
  t.equal(big.headers['content-encoding'], undefined);
  t.equal(big.headers['x-p2p-peerdistex'], 'MakeHashRequest=true');
  t.equal(big.body.length, 8 * 1024 * 1024);

  const s2 = await startOrigin(t, { root, stateDir: join(top, 'state2'), secret: randomBytes(32) });
  const rs = await Promise.all([1, 2, 3, 4].map(() => get(s2, '/f.bin', H)));
  for (const r of rs) t.equal(r.headers['content-encoding'], 'peerdist');
  t.ok(rs.every((r) => r.body.equals(rs[0]!.body)));
  t.equal(s2.server.stats().hashJobs, 1, 'one job for four concurrent hash requests');
});

t.test(
  'HashJobs measures its hash rate: expectedMs is 0 before the first job of 1 MiB or more, then length / rate',
  async (t) => {
    const top = await tempDir(t);
    const cache = await HashCache.open(join(top, 'state'));
    t.teardown(() => cache.close());
    const jobs = new HashJobs(cache, 1, nullLogger);
    t.equal(jobs.expectedMs(1e9), 0, 'optimistic before any measurement');
    await jobs.run('small', async () => Buffer.from('x'), 1000);
    t.equal(jobs.expectedMs(1e9), 0, 'a small job is not measured');
    await jobs.run(
      'one',
      async () => {
        await new Promise((r) => setTimeout(r, 100));
        return Buffer.from('y');
      },
      10 * 1024 * 1024,
    );
    const e = jobs.expectedMs(100 * 1024 * 1024);
    t.ok(e >= 900 && e < 1000 * 20, `100 MiB at the measured rate (10 MiB per >= 100 ms): ${e.toFixed(0)} ms`);
    await jobs.close();
  },
);
