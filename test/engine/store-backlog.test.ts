/**
 * A peer's request slot goes back to the scheduler once the block is verified, not once the cache
 * has made it durable (fetch-peer.ts). Holding it through the write capped a loopback peer download
 * at what 16 slots carry per group-commit fdatasync (BENCHMARKS.md, issue 25, lead's quiet runs).
 * Fake clock, fake peer, a store whose writes finish only when the test lets them: every count is
 * exact. What must not change: the download ends only after every write, a block is in the store
 * only once written, the content is right, and unfinished writes stay bounded.
 */
import t from 'tap';
import { STORE_BACKLOG_BLOCKS } from '../../src/engine/fetch-peer.js';
import { advance, blocksOf, makeContent, settle, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

t.test('peer requests go on while cache writes are unfinished; the job ends after the last write', async (t) => {
  const c = await makeContent(200 * 65536 + 123, 2);
  const w = world(c, { initialWaitMs: 1000 });
  const blocks = blocksOf(c);
  w.peers.add('10.0.0.2:8081', blocks);
  // Writes wait until the test releases them.
  const gated: Array<() => void> = [];
  const put = w.store.putBlock.bind(w.store);
  w.store.putBlock = (id, index, data) =>
    new Promise<void>((resolve, reject) => {
      gated.push(() => put(id, index, data).then(resolve, reject));
    });
  const job = w.engine.download(w.url);
  await job.info;
  w.discovery.sight(
    '10.0.0.2:8081',
    c.ci.segments.map((s) => s.segmentId),
  );
  let done = false;
  void job.done.then(() => {
    done = true;
  });
  await settle(200);
  const asked = w.peers.log.filter((e) => e.kind === 'block').length;
  t.equal(w.store.blocks.size, 0, 'no block is in the store before its write finished');
  t.equal(gated.length, asked, 'every block the peer sent is waiting for its write');
  t.ok(asked > 16, `${asked} blocks asked of one peer with no write finished (16 slots per peer)`);
  t.ok(
    asked <= STORE_BACKLOG_BLOCKS + 16,
    `unfinished writes stay bounded: ${asked} <= ${STORE_BACKLOG_BLOCKS} + the peer's slots`,
  );
  // Let every write through, as they come.
  while (!done) {
    for (const release of gated.splice(0)) release();
    await settle(50);
    if (!done && gated.length === 0) await advance(w.clock, 10);
  }
  const r = await job.done;
  t.equal(r.fromPeers, c.data.length, 'every byte from the peer');
  t.equal(w.store.blocks.size, blocks.length, 'every block written before the job ended');
  t.equal(sha256(await readAll(job.createReadStream())), sha256(c.data), 'content correct');
});
