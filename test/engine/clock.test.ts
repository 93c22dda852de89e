/**
 * Timer-driven engine behaviour on a fake clock (test/engine/fake-world.ts): the origin gate,
 * origin retry backoff, re-probes while no peer is known, v1 block-list refreshes, and that a
 * finished job leaves no timer, watch or pin behind. No wall-clock waiting.
 */
import t from 'tap';
import { DownloadError } from '../../src/engine/errors.js';
import { advance, blocksOf, makeContent, runUntil, settle, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

const BLOCK = 65536;

t.test("origin gate: with no peer known the origin is asked only after discovery's initial wait", async (t) => {
  const c = await makeContent(3 * BLOCK + 100, 1);
  const w = world(c, { initialWaitMs: 1000 });
  const job = w.engine.download(w.url);
  await settle();
  t.equal(w.origin.requests.length, 1, 'content information asked for at once');
  t.equal(w.discovery.watches.length, 1, 'the missing segment is watched');
  await advance(w.clock, 990);
  t.equal(w.origin.ranged.length, 0, 'no range request during the initial wait');
  await runUntil(w.clock, job.done);
  const r = await job.done;
  t.same(
    w.origin.ranged.map((q) => q.t - w.origin.requests[0]!.t),
    [1000, 1000, 1000, 1000],
    'every block asked for when the wait ended',
  );
  t.equal(r.fromOrigin, c.data.length);
  t.equal(r.fromPeers + r.fromCache, 0);
  t.equal(r.durationMs, 1000, 'duration measured on the injected clock');
  t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), 'content correct');
  t.equal(w.clock.pending, 0, 'no timer left');
  t.equal(w.discovery.open, 0, 'every watch closed');
  t.equal(w.store.pinned, 0, 'every segment unpinned');
});

t.test(
  'origin down and no peer has the content: retried with backoff, then a clear error, nothing complete',
  async (t) => {
    const c = await makeContent(2 * BLOCK, 1);
    const w = world(c, { initialWaitMs: 1000 });
    const job = w.engine.download(w.url);
    const reader = readAll(job.createReadStream()).then(
      () => undefined,
      (e: unknown) => e,
    );
    await settle();
    await job.info;
    w.origin.down = true;
    const took = await runUntil(w.clock, job.done);
    const err = await job.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof DownloadError, 'done rejects with a DownloadError');
    t.equal((err as DownloadError).code, 'BLOCK_FAILED');
    t.match((err as DownloadError).message, /from any peer or the origin/);
    t.match((err as DownloadError).message, /fake origin down/, 'the last origin error is named');
    const p = job.progress();
    t.equal(p.state, 'failed');
    t.ok(p.blocksDone < p.blocksTotal, 'not reported complete');
    t.match(p.error, /from any peer or the origin/);
    t.match(await reader, { code: 'BLOCK_FAILED' }, 'a reader sees the failure');
    t.equal(w.engine.totals().failed, 1);
    // Up to four attempts per block, 200, 400 and 800 ms apart (the scheduler's origin backoff);
    // the job fails when the first block used its fourth.
    const start = w.origin.requests[0]!.t;
    const attempts = [0, 1].map((g) =>
      w.origin.ranged.filter((q) => q.range === `bytes=${g * BLOCK}-${(g + 1) * BLOCK - 1}`).map((q) => q.t - start),
    );
    for (const [g, a] of attempts.entries())
      t.same(a, [1000, 1200, 1600, 2400].slice(0, a.length), `block ${g} attempts at ${a.join(', ')} ms`);
    t.ok(
      attempts.some((a) => a.length === 4),
      'a block was tried four times',
    );
    t.ok(took >= 2400 && took <= 2410, `failed after the last retry (${took} ms of fake time)`);
    t.equal(w.clock.pending, 0, 'no timer left');
    t.equal(w.store.pinned, 0, 'every segment unpinned');
  },
);

t.test('re-probes every 500 ms while no peer is known, and none once one is', async (t) => {
  const c = await makeContent(4 * BLOCK, 1);
  const w = world(c, { initialWaitMs: 1000 });
  w.origin.rangeDelayMs = 10_000; // a slow origin keeps the job running
  const t0 = w.clock.t;
  const job = w.engine.download(w.url);
  await settle();
  await advance(w.clock, 2700);
  const times = () => w.discovery.watches.map((x) => x.t - t0);
  t.same(times(), [0, 1500, 2000, 2500], 'the segment watch, then a fresh probe every 500 ms after the origin opened');
  t.equal(w.discovery.open, 2, 'the previous re-probe watch is closed when the next one starts');
  // A peer with everything shows up: no more re-probes.
  const seg = c.ci.segments.map((s) => s.segmentId);
  w.peers.add('10.0.0.2:80', blocksOf(c));
  w.discovery.sight('10.0.0.2:80', seg);
  await runUntil(w.clock, job.done);
  const r = await job.done;
  t.same(times(), [0, 1500, 2000, 2500], 'no re-probe after a peer was found');
  t.equal(r.fromOrigin + r.fromPeers, c.data.length, 'every byte from the peer or the origin');
  t.ok(r.fromPeers > 0, `the peer supplied ${r.fromPeers} bytes`);
  t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), 'content correct');
  t.equal(w.discovery.open, 0, 'every watch closed');
  await advance(w.clock, 11_000);
  t.equal(w.clock.pending, 0, 'no timer left once the slow origin answers');
});

t.test('v1: block lists of a partial holder are refreshed every blockListRefreshMs until the job ends', async (t) => {
  const c = await makeContent(4 * BLOCK, 1);
  const w = world(c, { initialWaitMs: 1000, blockListRefreshMs: 300 });
  w.origin.rangeDelayMs = 5000;
  const all = blocksOf(c);
  const peer = w.peers.add('10.0.0.3:80', all.slice(0, 2));
  w.discovery.sight(
    '10.0.0.3:80',
    c.ci.segments.map((s) => s.segmentId),
    false,
    2,
  );
  const t0 = w.clock.t;
  const job = w.engine.download(w.url);
  await settle();
  await advance(w.clock, 650);
  for (const b of all.slice(2)) peer.blocks.set(`${b.idHex}/${b.index}`, b.data);
  await runUntil(w.clock, job.done);
  const r = await job.done;
  const lists = w.peers.log.filter((q) => q.kind === 'list').map((q) => q.t - t0);
  for (const tick of [300, 600, 900])
    t.ok(lists.includes(tick), `block list asked for at ${tick} ms (${lists.join(' ')})`);
  t.equal(r.fromPeers + r.fromOrigin, c.data.length);
  t.ok(r.fromPeers >= 2 * BLOCK, `the partial holder supplied ${r.fromPeers} bytes`);
  t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), 'content correct');
  const asked = w.peers.log.length;
  await advance(w.clock, 3000);
  t.equal(w.peers.log.length, asked, 'no request to the peer after the job ended');
  t.equal(w.clock.pending, 0, 'refresh timer stopped');
  t.equal(w.store.pinned, 0, 'every segment unpinned');
});

t.test('origin blocks are announced for follow-up ProbeMatches; blocks from peers are not', async (t) => {
  const c = await makeContent(8 * BLOCK, 2);
  t.ok(c.ci.segments.length >= 4, `${c.ci.segments.length} segments`);
  const w = world(c, { initialWaitMs: 1000 });
  const ids = c.ci.segments.map((s) => s.segmentId.toString('hex').toUpperCase());
  const half = Math.floor(ids.length / 2);
  const fromPeer = blocksOf(c).filter((b) => ids.indexOf(b.idHex.toUpperCase()) < half);
  w.peers.add('10.0.0.2:80', fromPeer);
  w.discovery.sight(
    '10.0.0.2:80',
    c.ci.segments.slice(0, half).map((s) => s.segmentId),
  );
  const job = w.engine.download(w.url);
  await runUntil(w.clock, job.done);
  const r = await job.done;
  t.ok(r.fromPeers > 0 && r.fromOrigin > 0, `peer ${r.fromPeers} bytes, origin ${r.fromOrigin} bytes`);
  t.same([...w.discovery.announced].sort(), ids.slice(half).sort(), 'exactly the segments that came from the origin');
});

t.test(
  'another host probing for the content: a crowd; two such clients take disjoint origin blocks first',
  async (t) => {
    const c = await makeContent(16 * BLOCK, 2);
    const n = c.ci.segments.length;
    const ids = c.ci.segments.map((s) => s.segmentId);
    const segOf = (range: string) =>
      c.ci.segments.findIndex((s) => s.offset === Number(/bytes=(\d+)-/.exec(range)![1]));
    // The segments a range request covers (a crowd settled before its first pick fetches whole units).
    const segsOf = (range: string) => {
      const [, from, to] = /bytes=(\d+)-(\d+)/.exec(range)!.map(Number);
      return c.ci.segments.flatMap((s, i) => (s.offset >= from! && s.offset <= to! ? [i] : []));
    };
    const run = async (self: string, other: string) => {
      const w = world(c, { initialWaitMs: 1000, selfAddresses: [`${self}:80`] });
      w.origin.rangeDelayMs = 100;
      const t0 = w.clock.t;
      const job = w.engine.download(w.url);
      await settle();
      w.discovery.foreignProbe(other, ids); // the other client's probe, before our origin gate opens
      await runUntil(w.clock, job.done);
      const r = await job.done;
      t.equal(r.fromOrigin, c.data.length, `${self}: everything from the origin in the end (the other never delivers)`);
      t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), `${self}: content correct`);
      const reqs = w.origin.ranged.map((q) => ({ t: q.t - t0, seg: segOf(q.range!), segs: segsOf(q.range!) }));
      // In flight at once: a crowd's two origin streams, never the six of a lone client.
      for (const q of reqs) {
        const inFlight = reqs.filter((x) => x.t <= q.t && x.t + 100 > q.t).length;
        t.ok(inFlight <= 2, `${self}: ${inFlight} origin requests in flight at ${q.t} ms`);
      }
      // Ours first, in file order; the other's blocks only after a pause (its grace period).
      const gapAt = reqs.findIndex((q, i) => i > 0 && q.t - reqs[i - 1]!.t >= 500);
      t.ok(gapAt > 0, `${self}: a pause before the other member's blocks (${reqs.map((q) => q.t).join(' ')})`);
      const first = reqs.slice(0, gapAt).flatMap((q) => q.segs);
      t.same(
        first,
        [...first].sort((a, b) => a - b),
        `${self}: own blocks in file order`,
      );
      return new Set(first);
    };
    const a = await run('10.0.0.1', '10.0.0.9');
    const b = await run('10.0.0.9', '10.0.0.1');
    t.equal(a.size + b.size, n, `together the two first phases cover the file once (${a.size} + ${b.size} of ${n})`);
    t.ok(
      [...a].every((s) => !b.has(s)),
      'no block in both first phases',
    );

    // With hosted caches (clients on other subnets, unseen by our probes) the crowd is not shared
    // out: the blocks follow one another with no pause, still two origin streams at a time.
    const w = world(c, { initialWaitMs: 1000, selfAddresses: ['10.0.0.1:80'] });
    w.discovery.bridged = true;
    w.origin.rangeDelayMs = 100;
    const job = w.engine.download(w.url);
    await settle();
    w.discovery.foreignProbe('10.0.0.9', ids);
    await runUntil(w.clock, job.done);
    const times = w.origin.ranged.map((q) => q.t);
    t.ok(
      times.every((x, i) => i === 0 || x - times[i - 1]! < 500),
      `bridged: no pause between origin requests (${times.map((x) => x - times[0]!).join(' ')})`,
    );
    t.ok(
      times.every((x) => times.filter((y) => y <= x && y + 100 > x).length <= 2),
      'bridged: still a crowd (two origin streams)',
    );

    // Hosted caches that name the crowd (PeerDist-Crowd): bridged turns false once they answered,
    // after the download started, and the crowd is shared out again (the pause before the other
    // member's blocks).
    const w2 = world(c, { initialWaitMs: 1000, selfAddresses: ['10.0.0.1:80'] });
    w2.discovery.bridged = true;
    w2.origin.rangeDelayMs = 100;
    const job2 = w2.engine.download(w2.url);
    await settle();
    w2.discovery.bridged = false;
    w2.discovery.foreignProbe('10.0.0.9', ids);
    await runUntil(w2.clock, job2.done);
    const times2 = w2.origin.ranged.map((q) => q.t);
    t.ok(
      times2.some((x, i) => i > 0 && x - times2[i - 1]! >= 500),
      `no longer bridged: a pause before the other member's blocks (${times2.map((x) => x - times2[0]!).join(' ')})`,
    );
    t.equal(sha256(await readAll(job2.createReadStream())), sha256(c.data), 'content correct');
  },
);

t.test(
  'segments are registered in one call when the store can (addSegments), one by one when it is full',
  async (t) => {
    const c = await makeContent(8 * 65536, 2);
    const n = c.ci.segments.length;
    // The store registers every segment at once: no per-segment call, every segment pinned.
    const w = world(c);
    const calls = { batch: 0, single: 0 };
    const single = w.store.addSegment.bind(w.store);
    Object.assign(w.store, {
      addSegments: async (metas: Parameters<typeof single>[0][]) => {
        calls.batch++;
        for (const m of metas) await single(m);
      },
      addSegment: async (m: Parameters<typeof single>[0]) => {
        calls.single++;
        return single(m);
      },
    });
    const job = w.engine.download(w.url);
    await settle();
    t.equal(w.store.pinned, n, 'every segment pinned while the job runs');
    await runUntil(w.clock, job.done);
    t.same(calls, { batch: 1, single: 0 }, 'one addSegments call for the whole content');
    t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data));

    // Full filesystem: addSegments fails as a whole, each segment is tried alone, and the one that
    // finds no room is downloaded without caching.
    const w2 = world(c);
    const single2 = w2.store.addSegment.bind(w2.store);
    const full = Object.assign(new Error('no space left'), { code: 'NO_SPACE' });
    const tried: number[] = [];
    Object.assign(w2.store, {
      addSegments: async () => {
        throw full;
      },
      addSegment: async (m: Parameters<typeof single2>[0]) => {
        const k = c.ci.segments.findIndex((s) => s.segmentId.equals(m.segmentId));
        tried.push(k);
        if (k === 3) throw full;
        return single2(m);
      },
    });
    const job2 = w2.engine.download(w2.url);
    await settle();
    t.same(tried, [...Array(n).keys()], 'each segment registered on its own');
    t.equal(w2.store.pinned, n - 1, 'all but the one without room pinned');
    await runUntil(w2.clock, job2.done);
    t.equal(sha256(await readAll(job2.createReadStream())), sha256(c.data), 'content correct, segment 3 uncached');
    t.equal(w2.store.segments.size, n - 1);
  },
);
