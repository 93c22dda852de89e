/**
 * Real modules end to end: origin, block stores, discovery on loopback, PCCRR between engines.
 * A first client fills its cache from the origin; a second one then takes every block from it.
 */
import t from 'tap';
import { MiB, payload, readAll, sha256, startNode, startOrigin, testPort } from './harness.js';

t.test('v1 content larger than one segment: origin once, then peers only', async (t) => {
  const size = 33 * MiB + 12345; // two v1 segments (32 MiB + the rest)
  const data = payload(size);
  const origin = await startOrigin(t, { 'big.bin': data });
  await origin.warm('big.bin', 1);
  const port = testPort();
  const a = await startNode(t, 2, port, { engine: { maxContentVersion: 1 } });
  // A loaded CI machine may answer probes slowly; the client waits for them (it stops waiting as
  // soon as a peer answers, so this costs nothing when the peer is there).
  const b = await startNode(t, 3, port, { engine: { maxContentVersion: 1 }, timing: { maxWaitMs: 2000 } });

  const jobA = a.engine.download(origin.url('big.bin'));
  const streamed = readAll(jobA.createReadStream()); // reads while the download runs
  const info = await jobA.info;
  t.equal(info.peerdist, true);
  t.equal(info.contentLength, size);
  t.equal(info.contentInfo?.version, 1);
  t.equal(info.contentInfo?.segments.length, 2);
  const ra = await jobA.done;
  t.equal(sha256(await streamed), sha256(data), 'stream read during the download is the file');
  t.equal(ra.fromOrigin, size, 'first client: all blocks from the origin');
  t.equal(ra.fromPeers, 0);
  t.ok(ra.contentInfoBytes > 0);
  const missingBefore = origin.server.stats().bytesMissingData;
  t.equal(missingBefore, size, 'origin counted exactly the file in range requests');

  const jobB = b.engine.download(origin.url('big.bin'));
  const rb = await jobB.done;
  t.equal(rb.fromOrigin, 0, 'second client: zero block bytes from the origin');
  t.equal(rb.fromPeers, size, 'every block from the peer');
  t.equal(rb.peers, 1);
  t.equal(origin.server.stats().bytesMissingData, missingBefore, 'origin sent no block bytes to the second client');
  t.equal(sha256(await readAll(jobB.createReadStream())), sha256(data), 'second client content is the file');
  const part = await readAll(jobB.createReadStream(32 * MiB - 10, 32 * MiB + 9));
  t.ok(part.equals(data.subarray(32 * MiB - 10, 32 * MiB + 10)), 'ranged read across the segment boundary');
  t.equal(a.retrievalServer.stats().bytesServed, size, 'the first client served the file');
  const p = jobB.progress();
  t.equal(p.state, 'done');
  t.equal(p.blocksDone, p.blocksTotal);
  t.equal(b.engine.totals().fromPeers, size);
});

t.test('v2 content: identical concurrent requests share one job; second client from the peer', async (t) => {
  const size = 3 * MiB + 777;
  const data = payload(size);
  const origin = await startOrigin(t, { 'v2.bin': data });
  await origin.warm('v2.bin', 2);
  const port = testPort();
  const a = await startNode(t, 4, port);
  const b = await startNode(t, 5, port, { timing: { maxWaitMs: 2000 } });
  const j1 = a.engine.download(origin.url('v2.bin'));
  const j2 = a.engine.download(origin.url('v2.bin'));
  t.equal(j1, j2, 'same URL while running: the same job');
  t.equal(a.engine.jobs().length, 1);
  const [s1, s2] = await Promise.all([readAll(j1.createReadStream()), readAll(j2.createReadStream())]);
  const r1 = await j1.done;
  t.equal(sha256(s1), sha256(data));
  t.equal(sha256(s2), sha256(data));
  t.equal((await j1.info).contentInfo?.version, 2);
  t.equal(r1.fromOrigin, size);
  t.equal(
    origin.server.stats().peerdistResponses,
    2,
    'one content-information request for both callers (plus the warm-up)',
  );

  const rb = await b.engine.download(origin.url('v2.bin')).done;
  t.equal(rb.fromOrigin, 0, 'v2: zero block bytes from the origin');
  t.equal(rb.fromPeers, size);
  // After it finished, the same URL starts a new job, served from the local cache.
  const again = b.engine.download(origin.url('v2.bin'));
  const ragain = await again.done;
  t.equal(ragain.fromCache, size, 'repeat download: all from the local cache');
  t.equal(ragain.fromPeers + ragain.fromOrigin, 0);
  t.equal(b.engine.totals().jobs, 2);
});
