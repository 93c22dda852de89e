/**
 * Reused block buffers with the real modules (src/engine/block-pool.ts): origin, block stores with
 * their group-committed pack files, PCCRR between two engines on loopback. While each download
 * runs, one reader releases every buffer at once and another holds the last blocks it was given
 * (as a slow socket does) and checks each one's bytes only when it lets go of it; a reader that
 * comes after the download reads the cache into pool buffers. Every byte read and every block in
 * both caches must be the file's: a buffer handed out again while a reader, the download's window
 * or a cache write still held it would show as a wrong block here or as a corrupt block in a
 * cache (read back and verified at the end).
 */
import t from 'tap';
import { blockPool } from '../../src/engine/block-pool.js';
import type { DownloadJob } from '../../src/engine/types.js';
import { MiB, payload, readAll, sha256, startNode, startOrigin, testPort } from './harness.js';

/** Reads a job's batches with a prompt reader and one that holds `lag` blocks; their outcomes. */
function readers(job: DownloadJob, data: Buffer, lag: number) {
  const prompt = job.readBatches!();
  const slow = job.readBatches!();
  const promptRead = (async () => {
    const h = [];
    for await (const batch of prompt.batches)
      for (const b of batch) {
        h.push(Buffer.from(b));
        prompt.release(b);
      }
    return Buffer.concat(h);
  })();
  const slowRead = (async () => {
    let pos = 0,
      wrong = 0,
      blocks = 0;
    const held: Array<{ b: Buffer; at: number }> = [];
    const letGo = () => {
      const { b, at } = held.shift()!;
      if (!b.equals(data.subarray(at, at + b.length))) wrong++;
      blocks++;
      slow.release(b);
    };
    for await (const batch of slow.batches) {
      for (const b of batch) {
        held.push({ b, at: pos });
        pos += b.length;
        while (held.length > lag) letGo();
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    while (held.length > 0) letGo();
    return { bytes: pos, wrong, blocks };
  })();
  return { promptRead, slowRead };
}

for (const version of [1, 2] as const) {
  t.test(`v${version}: readers, cache writes and peers share reused buffers without a wrong byte`, async (t) => {
    const size = 12 * MiB + 4321;
    const data = payload(size);
    const origin = await startOrigin(t, { 'f.bin': data });
    await origin.warm('f.bin', version);
    const port = testPort();
    const engine = { maxContentVersion: version };
    const a = await startNode(t, 31 + version * 2, port, { engine });
    const b = await startNode(t, 32 + version * 2, port, { engine, timing: { maxWaitMs: 2000 } });
    const before = blockPool.stats();

    const jobA = a.engine.download(origin.url('f.bin'));
    const ra = readers(jobA, data, 24);
    await jobA.done;
    t.equal(sha256(await ra.promptRead), sha256(data), 'A, prompt reader: the file');
    const sa = await ra.slowRead;
    t.equal(sa.bytes, size, 'A, slow reader: every byte...');
    t.equal(sa.wrong, 0, `...each of its ${sa.blocks} blocks intact when let go`);

    const jobB = b.engine.download(origin.url('f.bin'));
    const rb = readers(jobB, data, 24);
    const doneB = await jobB.done;
    t.equal(doneB.fromOrigin, 0, 'B: every block from A');
    t.equal(sha256(await rb.promptRead), sha256(data), 'B, prompt reader: the file');
    const sb = await rb.slowRead;
    t.equal(sb.bytes, size, 'B, slow reader: every byte...');
    t.equal(sb.wrong, 0, '...each block intact when let go');

    // Late readers read the cache (into pool buffers), two at once, one holding.
    const late = readers(jobB, data, 40);
    t.equal(sha256(await late.promptRead), sha256(data), 'B, late prompt reader (from the cache): the file');
    t.equal((await late.slowRead).wrong, 0, 'B, late slow reader: every block intact');

    // Both caches read back through the store's verification: no block was written from a buffer
    // that had been reused meanwhile.
    t.equal(sha256(await readAll(jobA.createReadStream())), sha256(data), 'A: the cache holds the file');
    t.equal(sha256(await readAll(jobB.createReadStream())), sha256(data), 'B: the cache holds the file');
    t.equal(a.store.stats().corruptBlocks, 0, 'A: no corrupt block');
    t.equal(b.store.stats().corruptBlocks, 0, 'B: no corrupt block');
    const after = blockPool.stats();
    t.ok(after.reused - before.reused > 50, `buffers were reused (${after.reused - before.reused} times)`);
  });
}
