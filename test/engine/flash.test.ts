/**
 * Flash crowd with real modules in one process: 8 engines start the same download at once behind
 * one shared, slow WAN link to the origin (a FIFO link model wrapped around the real HTTP client).
 */
import t from 'tap';
import type { RetrievalLike } from '../../src/engine/engine.js';
import { UndiciOriginClient, type OriginClient, type OriginResponse } from '../../src/engine/origin-client.js';
import { MiB, payload, readAll, sha256, startNode, startOrigin, testPort } from './harness.js';

/** All origin responses share one link of `rateBps`, plus `latencyMs` per response. */
class SharedWan implements OriginClient {
  constructor(
    private readonly inner: OriginClient,
    private readonly rateBps: number,
    private readonly latencyMs: number,
    private readonly link: { freeAt: number },
  ) {}
  async get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginResponse> {
    const res = await this.inner.get(url, headers, signal);
    const parts: Buffer[] = [];
    for await (const c of res.body) parts.push(c);
    const body = Buffer.concat(parts);
    const now = Date.now();
    this.link.freeAt = Math.max(now, this.link.freeAt) + (body.length * 1000) / this.rateBps;
    await new Promise((r) => setTimeout(r, this.link.freeAt - now + this.latencyMs));
    return {
      status: res.status,
      headers: res.headers,
      body: (async function* () {
        yield body;
      })(),
      discard: () => undefined,
    };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const V = (process.env.FLASH_V === '2' ? 2 : 1) as 1 | 2;

t.test('8 clients at once: origin bytes close to one copy, time close to one download', async (t) => {
  const size = 6 * MiB;
  const data = payload(size);
  const origin = await startOrigin(t, { 'f.bin': data });
  await origin.warm('f.bin', V);
  const rate = 4e6;
  const raw = new UndiciOriginClient();
  const clients: OriginClient[] = [raw];
  t.teardown(() => Promise.all(clients.map((c) => c.close())));

  // Baseline: one client alone over the same link.
  const port = testPort();
  const wanAlone = new SharedWan(raw, rate, 10, { freeAt: 0 });
  const alone = await startNode(t, 30, port, { engine: { maxContentVersion: V, http: wanAlone } });
  const t0 = Date.now();
  await alone.engine.download(origin.url('f.bin')).done;
  const aloneMs = Date.now() - t0;
  await alone.close();

  const origin2 = await startOrigin(t, { 'f.bin': data });
  await origin2.warm('f.bin', V);
  const wanState = { freeAt: 0 };
  const port2 = testPort();
  const nodes = [];
  const timing: Record<string, number[]> = { blk: [], list: [] };
  const wrap = (r: RetrievalLike): RetrievalLike => ({
    getBlock: async (q) => {
      const s = Date.now();
      try {
        return await r.getBlock(q);
      } finally {
        timing.blk!.push(Date.now() - s);
      }
    },
    getBlockList: async (q) => {
      const s = Date.now();
      try {
        return await r.getBlockList(q);
      } finally {
        timing.list!.push(Date.now() - s);
      }
    },
  });
  for (let i = 0; i < 8; i++) {
    const own = new UndiciOriginClient();
    clients.push(own);
    const http = new SharedWan(own, rate, 10, wanState);
    nodes.push(await startNode(t, 31 + i, port2, { engine: { maxContentVersion: V, http }, wrapRetrieval: wrap }));
  }
  const t1 = Date.now();
  const jobs = nodes.map((n) => n.engine.download(origin2.url('f.bin')));
  const tl = setInterval(() => {
    if (process.env.FLASH_DEBUG)
      console.error(
        Date.now() - t1,
        jobs
          .map((j) => {
            const p = j.progress();
            return `${p.blocksDone}/${(p.fromOrigin / 65536) | 0}`;
          })
          .join(' '),
      );
  }, 500);
  const results = await Promise.all(jobs.map((j) => j.done));
  clearInterval(tl);
  const pct = (a: number[], q: number) => [...a].sort((x, y) => x - y)[Math.floor(q * (a.length - 1))];
  if (process.env.FLASH_DEBUG)
    console.error(
      'getBlock p50/p90/max',
      pct(timing.blk!, 0.5),
      pct(timing.blk!, 0.9),
      pct(timing.blk!, 1),
      'n',
      timing.blk!.length,
      'getBlockList',
      pct(timing.list!, 0.5),
      pct(timing.list!, 0.9),
      pct(timing.list!, 1),
      'n',
      timing.list!.length,
    );
  if (process.env.FLASH_DEBUG)
    for (const r of results)
      console.error(
        JSON.stringify(r.peerStats.map((p) => [p.address, p.blocks, p.failures, p.notAvailable, p.banned])),
      );
  const crowdMs = Date.now() - t1;
  for (const j of jobs) t.equal(sha256(await readAll(j.createReadStream())), sha256(data));
  const fromOrigin = results.reduce((a, r) => a + r.fromOrigin, 0);
  const ratio = fromOrigin / size;
  t.equal(origin2.server.stats().bytesMissingData, fromOrigin, 'origin counters agree with the clients');
  t.comment(
    `flash crowd: origin ${ratio.toFixed(3)} x file, ${crowdMs} ms for all 8 vs ${aloneMs} ms alone (${(crowdMs / aloneMs).toFixed(2)} x); per client origin MiB: ${results.map((r) => (r.fromOrigin / MiB).toFixed(1)).join(' ')}`,
  );
  // Without coordination this would be 8; the bound leaves room for the CPU-starved peers of a
  // one-process test on a loaded CI machine (typical: 1.1-1.5, see protocol/engine.md).
  t.ok(ratio <= 2, `origin sent ${ratio.toFixed(3)} x the file`);
  // Time is reported above, not asserted: performance goals live in bench/ (bench/sim.ts measures
  // the crowd with separate processes on a shaped link; figures in BENCHMARKS.md).
});
