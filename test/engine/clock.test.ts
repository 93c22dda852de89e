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
  w.discovery.announce('10.0.0.2:80', seg);
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
  w.discovery.announce(
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
