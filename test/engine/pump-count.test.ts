/**
 * How often a peer download asks the Scheduler for work (issue 25: the scheduler's per-block cost
 * as the transfer calls it). Each Scheduler.next() scans the origin and peer candidates; calling
 * it again for every finished block and again for every finished cache write, when neither can
 * change its answer until the event loop turns, cost a second pick per block. Fake world: exact
 * counts, no timing.
 */
import t from 'tap';
import { Scheduler } from '../../src/engine/scheduler.js';
import { blocksOf, makeContent, runUntil, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

t.test('a peer download asks the scheduler at most about once per block', async (t) => {
  const c = await makeContent(400 * 65536 + 77, 2);
  const w = world(c, { initialWaitMs: 1000 });
  const blocks = blocksOf(c);
  w.peers.add('10.0.0.2:8081', blocks);
  // Answers come one per event-loop turn, as a peer's responses arrive one socket read each.
  let turn: Promise<void> = Promise.resolve();
  const getBlock = w.peers.getBlock.bind(w.peers);
  w.peers.getBlock = (req) => {
    turn = turn.then(() => new Promise<void>((r) => setImmediate(r)));
    return turn.then(() => getBlock(req));
  };
  // Writes finish in groups, as the cache's group commit finishes them (one fdatasync per group).
  const gated: Array<() => void> = [];
  const put = w.store.putBlock.bind(w.store);
  w.store.putBlock = (id, index, data) =>
    new Promise<void>((resolve, reject) => {
      gated.push(() => put(id, index, data).then(resolve, reject));
    });
  const commit = setInterval(() => {
    for (const release of gated.splice(0)) release();
  }, 1);
  t.teardown(() => clearInterval(commit));
  let calls = 0;
  const next = Scheduler.prototype.next;
  Scheduler.prototype.next = function (this: Scheduler, ...args: Parameters<Scheduler['next']>) {
    calls++;
    return next.apply(this, args);
  };
  t.teardown(() => {
    Scheduler.prototype.next = next;
  });
  const job = w.engine.download(w.url);
  await job.info;
  w.discovery.sight(
    '10.0.0.2:8081',
    c.ci.segments.map((s) => s.segmentId),
  );
  await runUntil(w.clock, job.done);
  const r = await job.done;
  t.equal(r.fromPeers, c.data.length, `every byte from the peer (${JSON.stringify(r)})`);
  t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), 'content correct');
  t.ok(
    calls <= blocks.length * 1.25 + 20,
    `Scheduler.next called ${calls} times for ${blocks.length} blocks (at most 1.25 per block + 20)`,
  );
});
