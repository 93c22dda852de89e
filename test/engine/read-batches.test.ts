/**
 * The stream to `get` in batches (issue 25): job.readBatches yields the blocks that are ready
 * together (at most BATCH_BYTES), the same bytes as createReadStream, ranges included; the admin
 * API's /v1/fetch streams them (one corked write per batch) and the bytes arrive intact. Fake
 * world: every count is exact.
 */
import t from 'tap';
import { startJobsAdmin } from '../helpers/admin.js';
import { BATCH_BYTES } from '../../src/engine/reader.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { rawGet } from '../../src/client/raw-http.js';
import { blocksOf, makeContent, runUntil, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

async function finishedJob(blocksTotal: number) {
  const c = await makeContent(blocksTotal * 65536 + 1000, 2);
  const w = world(c, { initialWaitMs: 1000 });
  w.peers.add('10.0.0.2:8081', blocksOf(c));
  const job = w.engine.download(w.url);
  await job.info;
  w.discovery.sight(
    '10.0.0.2:8081',
    c.ci.segments.map((s) => s.segmentId),
  );
  await runUntil(w.clock, job.done);
  return { c, w, job };
}

t.test('a finished job is read in batches of ready blocks, at most BATCH_BYTES each', async (t) => {
  const { c, job } = await finishedJob(100);
  const sizes: number[] = [];
  const parts: Buffer[] = [];
  for await (const batch of job.readBatches!().batches) {
    let n = 0;
    for (const b of batch) n += b.length;
    sizes.push(n);
    parts.push(...batch);
  }
  const all = Buffer.concat(parts);
  t.equal(sha256(all), sha256(c.data), 'the same bytes as the content');
  const blocks = blocksOf(c).length;
  t.ok(sizes.length < blocks / 4, `${sizes.length} batches for ${blocks} blocks`);
  for (const n of sizes.slice(0, -1))
    t.ok(n >= BATCH_BYTES - 70_000 && n < BATCH_BYTES + 70_000, `batch of ${n} bytes`);
  const subParts: Buffer[] = [];
  for await (const batch of job.readBatches!(70_000, 3_000_000).batches) subParts.push(...batch);
  const sub = Buffer.concat(subParts);
  t.ok(sub.equals(c.data.subarray(70_000, 3_000_001)), 'a range across blocks');
  t.ok(
    Buffer.concat([await readAll(job.createReadStream(5, 9))]).equals(c.data.subarray(5, 10)),
    'the stream still reads',
  );
});

t.test('/v1/fetch streams a running download in batches, intact', async (t) => {
  const c = await makeContent(120 * 65536 + 999, 2);
  const w = world(c, { initialWaitMs: 1000 });
  w.peers.add('10.0.0.2:8081', blocksOf(c));
  const jobs = new JobBook(w.engine);
  const admin = await startJobsAdmin(jobs);
  t.teardown(() => admin.close());
  const [host, port] = admin.address.split(':');
  const resP = rawGet({ kind: 'tcp', host: host!, port: Number(port) }, `/v1/fetch?url=${encodeURIComponent(w.url)}`);
  // The fake world runs on fake time: let it run while the stream is read.
  const job = await (async () => {
    for (;;) {
      const j = w.engine.jobs()[0];
      if (j) return j;
      await new Promise((r) => setImmediate(r));
    }
  })();
  await job.info;
  w.discovery.sight(
    '10.0.0.2:8081',
    c.ci.segments.map((s) => s.segmentId),
  );
  const res = await resP;
  t.equal(res.head.status, 200);
  const parts: Buffer[] = [];
  const body = res.body((buf, start, end) => {
    parts.push(Buffer.from(buf.subarray(start, end)));
  });
  await runUntil(w.clock, job.done);
  await body;
  t.equal(sha256(Buffer.concat(parts)), sha256(c.data), 'every byte, in order');
});
