/**
 * The origin gate waits for the hosted cache's first answer (RELIABILITY.md item 13).
 *
 * Discovery's initial wait is adaptive (like iPXE's): every probe nobody answers shortens it, down
 * to nothing, which is right on a subnet with no peers. A client alone on its subnet behind a
 * hosted cache is exactly that case, and its downloads then opened the origin gate at once: a
 * hosted cache that held the whole file but answered its GETSEGLIST a LAN round trip later lost the
 * race to the WAN. A flash crowd over several subnets lost the same way: the hosted cache's first
 * answer also names the other clients asking for the same segments (PeerDist-Crowd), and every
 * block fetched before it arrives is fetched blind.
 *
 * Here: the real HostedCacheSource around the fake discovery (initial wait 0), a hosted cache that
 * holds every segment and answers GETSEGLIST 40 ms (fake time) after it was asked. Every byte
 * must come from the hosted cache; before the fix the engine fetched from the origin while the
 * answer was on its way. And a hosted cache that failed its last request is not waited for.
 */
import t, { type Test } from 'tap';
import { HostedCacheSource, type ListClient } from '../../src/hostedcache/peer-source.js';
import { blocksOf, type FakeClock, makeContent, runUntil, settle, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

const HC = '10.0.9.1:80';
const ANSWER_MS = 40;

/** A hosted cache's GETSEGLIST answers on the fake clock: every asked ID held, or a failure. */
function listClient(clock: FakeClock, opts: { fail: boolean | 'hang' }): ListClient & { asked: number[] } {
  const asked: number[] = [];
  return {
    asked,
    getSegmentList(req) {
      asked.push(clock.t);
      return new Promise((resolve, reject) => {
        if (opts.fail === 'hang') return;
        clock.set(() => {
          if (opts.fail) reject(new Error('connection refused'));
          else resolve(req.segmentIds.map((_, k) => k));
        }, ANSWER_MS);
      });
    },
    getBlockList() {
      return Promise.reject(new Error('a v2 hosted cache is asked with GETSEGLIST'));
    },
  };
}

/** A HostedCacheSource whose list client (and clock) each download replaces. */
function source(): { src: HostedCacheSource; use(c: ListClient, now: () => number): void } {
  let client: ListClient | undefined;
  let now = () => 0;
  const src = new HostedCacheSource({
    caches: [{ address: HC, version: 2 }],
    client: {
      getSegmentList: (req) => client!.getSegmentList(req),
      getBlockList: (req) => client!.getBlockList(req),
    },
    now: () => now(),
  });
  return {
    src,
    use(c, n) {
      client = c;
      now = n;
    },
  };
}

async function download(t: Test, opts: { fail: boolean | 'hang'; hc?: ReturnType<typeof source> }) {
  const c = await makeContent(16 * 65536, 2);
  let client: ReturnType<typeof listClient> | undefined;
  const hc = opts.hc ?? source();
  const w = world(c, {
    initialWaitMs: 0,
    wrapDiscovery: (d) => {
      client = listClient(d.clock, opts);
      hc.use(client, d.clock.now);
      // Polls after the first use real timers (unref'd); only the first answer matters here.
      return hc.src.wrap(d);
    },
  });
  w.peers.add(HC, blocksOf(c));
  const job = w.engine.download(w.url);
  const body = readAll(job.createReadStream());
  await settle();
  await runUntil(w.clock, job.done, 60_000);
  const r = await job.done;
  t.equal(sha256(await body), sha256(c.data), 'every byte correct');
  const asked = client!.asked;
  // When the first origin range request went out, after the hosted cache was first asked.
  const firstRange = w.origin.ranged.length > 0 ? w.origin.ranged[0]!.t - asked[0]! : undefined;
  return { r, c, hc, ranged: w.origin.ranged.length, asked, firstRange };
}

t.test(
  'initial wait 0: the hosted cache that holds the file answers 40 ms later and supplies every byte',
  async (t) => {
    const { r, c, ranged, asked } = await download(t, { fail: false });
    t.equal(asked.length >= 1, true, 'the hosted cache was asked');
    t.equal(ranged, 0, 'no origin range request (before the fix: the origin raced the answer)');
    t.equal(r.fromOrigin, 0);
    t.equal(r.fromPeers, c.data.length, 'every byte from the hosted cache');
  },
);

t.test('a hosted cache that failed its last request is not waited for', async (t) => {
  // First download: the hosted cache refuses; the origin supplies the file after the bounded wait.
  const first = await download(t, { fail: true });
  t.equal(first.r.fromOrigin, first.c.data.length, 'a failing hosted cache: everything from the origin');
  t.ok(first.firstRange! >= ANSWER_MS, `the first download waited for the failure (${first.firstRange} ms)`);
  t.ok(first.hc.src.failing({ address: HC, version: 2 }), 'the source remembers the failure');
  // Second download with the same source: its first origin request goes out before the hosted
  // cache's (failing) answer could arrive.
  const second = await download(t, { fail: true, hc: first.hc });
  t.equal(second.r.fromOrigin, second.c.data.length);
  t.ok(second.firstRange! < ANSWER_MS, `the next one did not (${second.firstRange} ms)`);
});

t.test('a hosted cache that never answers holds the origin back for the bounded wait only', async (t) => {
  const { r, c, firstRange } = await download(t, { fail: 'hang' });
  t.equal(r.fromOrigin, c.data.length);
  t.ok(firstRange! >= 1000 && firstRange! <= 1600, `first origin request ${firstRange} ms after the ask (bound 1.5 s)`);
});
