/**
 * Malicious peers against the real download path: a real origin, a real DownloadEngine with a real
 * BlockStore, RetrievalClient and Discovery, and one fake PCCRR server per misbehaviour (wrong data,
 * wrong segment ID, wrong block index, truncated answer, cut-short message, stall after the headers,
 * a byte every 100 ms, endless body) announced over real discovery on 127.0.0.x. The download must be byte-exact, the
 * cache must verify clean, no block may be credited to a bad peer, and every bad peer is penalised.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { Discovery } from '../../src/discovery/discovery.js';
import { DownloadEngine } from '../../src/engine/engine.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { fetchContentInfo } from '../../testkit/sim/evilpeer.js';
import { freeUdpPort } from '../daemon/daemon-child.js';
import { startEvilPeer, type EvilMode } from './evil-peer.js';
import { publishedOrigin, sha, tmpDir } from './rig.js';

const MODES: EvilMode[] = [
  'wrong-data',
  'wrong-segment',
  'wrong-index',
  'truncated',
  'short-message',
  'stall',
  'drip',
  'flood',
];

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

t.test('every kind of malicious peer at once: download exact, cache clean, peers penalised', async (t) => {
  const root = await tmpDir(t, 'peers');
  const size = 6 * 1024 * 1024 + 777;
  const data = randomBytes(size);
  const { base } = await publishedOrigin(t, root, { 'f.bin': data });
  const url = `${base}/f.bin`;
  const ci = (await fetchContentInfo(url, 1))!;
  const port = await freeUdpPort();
  const evil = await Promise.all(
    MODES.map((mode, k) => startEvilPeer({ host: `127.0.0.${20 + k}`, mode, ci, data, discoveryPort: port })),
  );
  t.teardown(() => Promise.all(evil.map((e) => e.close())));

  const store = await BlockStore.open({ dir: join(root, 'victim'), limitBytes: 256 * 1024 * 1024, fsync: false });
  const discovery = new Discovery({
    port,
    interfaces: ['127.0.0.1'],
    loopback: true,
    xaddrs: () => ['127.0.0.40:1'],
    lookup: (ids) => ids.map(() => undefined),
  });
  await discovery.start();
  const retrieval = new RetrievalClient({ requestTimeoutMs: 1500, firstByteTimeoutMs: 600 });
  const engine = new DownloadEngine({ store, discovery, retrieval, maxContentVersion: 1 });
  t.teardown(async () => {
    await engine.close();
    await retrieval.close();
    await discovery.close();
    await store.close();
  });

  const rss0 = process.memoryUsage().rss;
  const job = engine.download(url);
  const result = await job.done;
  const got = await readAll(job.createReadStream());
  t.equal(got.length, size, 'whole file');
  t.equal(sha(got), sha(data), 'downloaded bytes are the origin bytes');
  t.equal(result.fromPeers, 0, 'no byte credited to a malicious peer');
  t.equal(result.fromOrigin, size, 'the origin supplied what the peers failed to');

  const report = await store.verifyAll();
  t.same(report.bad, [], 'store.verifyAll(): no bad block');
  t.equal(report.bytes, size, 'every block of the file is in the cache');

  const stats = new Map(result.peerStats.map((p) => [p.address, p]));
  for (const e of evil) {
    const s = stats.get(e.address);
    t.ok(e.getblks >= 1, `${e.mode}: was asked for blocks (${e.getblks} MSG_GETBLKS)`);
    t.ok(s, `${e.mode}: known to the scheduler`);
    if (!s) continue;
    t.equal(s.blocks, 0, `${e.mode}: no block accepted`);
    t.ok(s.failures >= 1, `${e.mode}: failures counted (${s.failures})`);
    t.ok(s.banned || s.backoffUntil > 0, `${e.mode}: penalised (banned ${s.banned}, backoff ${s.backoffUntil > 0})`);
    if (e.mode === 'wrong-data') t.ok(s.banned, 'wrong data: banned for the job');
    t.comment(`${e.mode}: ${e.getblks} GETBLKS, ${s.failures} failures, ${s.badBlocks} bad blocks, banned ${s.banned}`);
  }
  const flood = evil.find((e) => e.mode === 'flood')!;
  t.comment(
    `flood peer pushed ${(flood.bytesSent / 1048576).toFixed(1)} MiB for ${flood.getblks} requests; victim RSS grew ${((process.memoryUsage().rss - rss0) / 1048576).toFixed(0)} MiB`,
  );
  t.ok(process.memoryUsage().rss - rss0 < 256 * 1024 * 1024, 'memory stays bounded under the flood');
});
