/**
 * Reused block buffers (src/engine/block-pool.ts, protocol/engine.md "Block buffers"): a buffer
 * goes back to the pool only when its last holder released it, and a download whose readers hold
 * blocks for a while (as a socket write does) hands every reader and the cache exactly the
 * content's bytes while the pool reuses buffers underneath. Fake world: every count is exact.
 */
import t from 'tap';
import { BlockPool, blockPool } from '../../src/engine/block-pool.js';
import { blocksOf, makeContent, runUntil, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

t.test('a buffer is reused only after its last holder released it', async (t) => {
  const pool = new BlockPool(1 << 20);
  const a = pool.take(70_000);
  t.equal(a.length, 70_000, 'exactly the length asked for');
  a.fill(1);
  pool.retain(a); // a second holder (a reader)
  pool.release(a); // the first one is done
  const b = pool.take(70_000);
  t.not(b.buffer, a.buffer, 'still held once: not handed out again');
  t.ok(
    a.every((x) => x === 1),
    'its bytes untouched',
  );
  pool.release(a.subarray(100, 200)); // a view releases the buffer it is a view of
  const c = pool.take(69_000);
  t.equal(c.buffer, a.buffer, 'released by everyone: reused for a block of the same size class');
  t.equal(c.length, 69_000);
  t.same(pool.stats(), { reused: 1, made: 2, idleBytes: 0 });
});

t.test('buffers not from the pool, empty and oversized blocks are not counted', async (t) => {
  const pool = new BlockPool(1 << 20, 200_000);
  const foreign = Buffer.alloc(65_536, 7);
  pool.retain(foreign);
  pool.release(foreign);
  pool.release(foreign);
  t.notOk(pool.owns(foreign));
  t.ok(foreign.every((x) => x === 7));
  const big = pool.take(300_000);
  t.equal(big.length, 300_000);
  t.notOk(pool.owns(big), 'longer than maxLength: a plain buffer');
  t.equal(pool.take(0).length, 0);
  t.throws(() => pool.take(-1), RangeError);
  t.throws(() => pool.take(1.5), RangeError);
  t.same(pool.stats(), { reused: 0, made: 0, idleBytes: 0 });
});

t.test('idle buffers are kept up to maxIdleBytes', async (t) => {
  const pool = new BlockPool(3 * 65_536);
  const bufs = Array.from({ length: 5 }, () => pool.take(65_536));
  for (const b of bufs) pool.release(b);
  t.equal(pool.stats().idleBytes, 3 * 65_536, 'three kept, two let go');
  const again = Array.from({ length: 5 }, () => pool.take(65_536));
  t.equal(new Set(again.map((b) => b.buffer)).size, 5, 'five distinct buffers out');
  t.same(pool.stats(), { reused: 3, made: 7, idleBytes: 0 });
  for (const b of again) pool.release(b);
  pool.trim();
  t.equal(pool.stats().idleBytes, 0);
});

/**
 * A download from the origin and a peer with two or three readers: one releases each buffer at
 * once, one keeps the last `lag` blocks it was given (as a slow socket does) and checks each
 * block's bytes only when it lets go of it, and (`stream`) one reads through the stream, which
 * never releases (its buffers are then never reused). Were a buffer handed out again while any of
 * them (or the cache write, or the download's window) held it, a held block would be overwritten
 * with another block's bytes before its check.
 */
for (const { lag, stream: withStream } of [
  { lag: 3, stream: false },
  { lag: 40, stream: false },
  { lag: 10, stream: true },
]) {
  t.test(
    `readers holding blocks while the pool reuses buffers get the exact bytes (lag ${lag}, stream ${withStream})`,
    async (t) => {
      const c = await makeContent(300 * 65_536 + 12_345, 2);
      const w = world(c, { initialWaitMs: 1000 });
      // Half the blocks from a peer (copied into pool buffers), the rest from the origin (received
      // into pool buffers).
      w.peers.add(
        '10.0.0.2:8081',
        blocksOf(c).filter((_, i) => i % 2 === 0),
      );
      const before = blockPool.stats();
      const job = w.engine.download(w.url);
      await job.info;
      w.discovery.sight(
        '10.0.0.2:8081',
        c.ci.segments.map((s) => s.segmentId),
      );
      const prompt = job.readBatches!();
      const slow = job.readBatches!();
      const stream = withStream ? job.createReadStream() : undefined;
      const promptRead = (async () => {
        const h: Buffer[] = [];
        for await (const batch of prompt.batches) {
          for (const b of batch) {
            h.push(Buffer.from(b));
            prompt.release(b);
          }
          await new Promise((r) => setImmediate(r));
        }
        return Buffer.concat(h);
      })();
      let wrong = 0;
      let checked = 0;
      const slowRead = (async () => {
        let pos = 0;
        const held: Array<{ b: Buffer; at: number }> = [];
        const letGo = () => {
          const { b, at } = held.shift()!;
          if (!b.equals(c.data.subarray(at, at + b.length))) wrong++;
          checked++;
          slow.release(b);
        };
        for await (const batch of slow.batches) {
          for (const b of batch) {
            held.push({ b, at: pos });
            pos += b.length;
            while (held.length > lag) letGo();
          }
          await new Promise((r) => setImmediate(r));
        }
        while (held.length > 0) letGo();
        return pos;
      })();
      const streamRead = stream ? readAll(stream) : Promise.resolve(c.data);
      await runUntil(w.clock, Promise.all([job.done, promptRead, slowRead, streamRead]));
      const blocks = blocksOf(c).length;
      t.equal(sha256(await promptRead), sha256(c.data), 'the prompt reader: every byte');
      t.equal(await slowRead, c.data.length, 'the slow reader: every byte...');
      t.equal(checked, blocks, '...in one buffer per block');
      t.equal(wrong, 0, '...each still holding its own bytes when let go');
      t.equal(sha256(await streamRead), sha256(c.data), 'the stream reader: every byte');
      let cached = 0;
      for (const b of blocksOf(c)) {
        const stored = w.store.blocks.get(`${b.idHex}/${b.index}`);
        if (stored?.equals(b.data)) cached++;
      }
      t.equal(cached, blocks, 'the cache got every block intact');
      const after = blockPool.stats();
      if (withStream) return;
      t.ok(after.reused - before.reused > blocks / 4, `buffers were reused (${after.reused - before.reused} times)`);
      t.ok(
        after.made - before.made < blocks,
        `fewer buffers made (${after.made - before.made}) than blocks (${blocks})`,
      );
    },
  );
}
