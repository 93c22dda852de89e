/**
 * A branch with three subnets (bridges joined by a router namespace that forwards unicast, not
 * multicast) and one hosted cache (`peerdist hosted-cache`) on subnet 1. One client per subnet
 * downloads the same small file one after another: without the hosted cache every subnet pulls
 * the file over the WAN (discovery does not cross the router); with it, the first client's
 * segments are offered, pulled by the hosted cache, and the other subnets get them from there.
 * In a flash crowd of all six clients the hosted cache names the crowd across subnets; its origin
 * ratio is a timing outcome measured by bench/hosted-cache.ts (see the comment at the flash crowd).
 * Skips unless root with iproute2.
 */
import t, { type Test } from 'tap';
import { Cluster, originBlockBytes, type SimDownload as DownloadResult } from '../../testkit/sim/harness.js';
import { NetnsNetwork } from '../../testkit/sim/network.js';
import { netnsSupport } from '../../testkit/sim/netns.js';
import { runDownloads } from '../../testkit/sim/scenarios.js';

const MiB = 1024 * 1024;
const SIZE = 2 * MiB + 4321;
const support = await netnsSupport();

async function branch(t: Test, clients: number, withHostedCache: boolean): Promise<Cluster> {
  const c = await Cluster.create({
    network: await NetnsNetwork.create({ subnets: 3 }),
    clients,
    wan: { rateBps: 40e6, delayMs: 10 },
    files: [
      { name: 'f.bin', size: SIZE },
      { name: 'g.bin', size: SIZE },
    ],
  });
  t.teardown(() => c.close());
  if (withHostedCache) await c.startHostedCache({ subnet: 1 });
  await c.startDaemons();
  return c;
}

const describe = (d: DownloadResult) =>
  `client ${d.client}: ${d.seconds.toFixed(2)} s origin=${d.fromOrigin} peers=${d.fromPeers} cache=${d.fromCache}`;

function checkAll(t: Test, ds: DownloadResult[]) {
  for (const d of ds) {
    t.ok(d.correct, `client ${d.client}: file matches the payload's SHA-256`);
    t.equal(d.fromOrigin + d.fromPeers + d.fromCache, SIZE, `client ${d.client}: origin + peers + cache = file size`);
  }
}

if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  t.test('three subnets, no hosted cache: every subnet pulls the file over the WAN', async (t) => {
    const c = await branch(t, 3, false);
    t.same(
      c.hosts.map((h) => h.subnet),
      [1, 2, 3],
      'one client per subnet',
    );
    const r = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2, 3] });
    for (const d of r.downloads) t.comment(describe(d));
    checkAll(t, r.downloads);
    for (const d of r.downloads)
      t.equal(d.fromPeers, 0, `client ${d.client}: no peer across the router (multicast is not forwarded)`);
    const blocks = originBlockBytes(r.origin);
    t.equal(blocks, 3 * SIZE, `origin sent ${(blocks / SIZE).toFixed(3)} x the file (one copy per subnet)`);
  });

  t.test('three subnets and a hosted cache: sequential, then a flash crowd', async (t) => {
    const c = await branch(t, 6, true);
    t.same(
      c.hosts.map((h) => h.subnet),
      [1, 2, 3, 1, 2, 3],
    );
    const seq = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2, 3] });
    for (const d of seq.downloads) t.comment(describe(d));
    checkAll(t, seq.downloads);
    const blocks = originBlockBytes(seq.origin);
    t.equal(
      blocks,
      seq.downloads.reduce((a, d) => a + d.fromOrigin, 0),
      'origin counters agree with what the clients report',
    );
    t.ok(
      blocks <= SIZE * 1.05,
      `sequential: origin sent ${blocks} file bytes = ${(blocks / SIZE).toFixed(3)} x the file (target <= 1.05)`,
    );
    for (const d of seq.downloads.slice(1))
      t.ok(
        d.fromPeers >= SIZE * 0.95,
        `client ${d.client} (subnet ${c.hosts[d.client - 1]!.subnet}, no peer there) got ${d.fromPeers} bytes from the hosted cache`,
      );
    const st = await c.hostedCacheStatus();
    const hc = st.hostedCache as {
      batchedOffers: number;
      bytesPulled: number;
      bytesServed: number;
      pullFailures: number;
      crowdAnswers: number;
    };
    t.comment(`hosted cache: ${JSON.stringify(hc)}`);
    t.ok(hc.batchedOffers > 0, 'offers received');
    t.ok(hc.bytesPulled >= SIZE, 'the hosted cache pulled the whole file from client 1');
    t.equal(hc.pullFailures, 0);
    t.ok(hc.bytesServed >= 1.9 * SIZE, 'and served it to the two other subnets');

    const flash = await runDownloads(c, 'g.bin', { mode: 'flash', clients: [1, 2, 3, 4, 5, 6] });
    for (const d of flash.downloads) t.comment(describe(d));
    for (const d of flash.downloads) t.ok(d.correct, `flash client ${d.client}: file matches the payload's SHA-256`);
    const fb = originBlockBytes(flash.origin);
    t.equal(
      fb,
      flash.downloads.reduce((a, d) => a + d.fromOrigin, 0),
      'origin counters agree with what the clients report',
    );
    t.comment(
      `flash crowd: origin bytes / file size = ${(fb / SIZE).toFixed(3)}; all done in ${flash.totalSeconds.toFixed(2)} s`,
    );
    // What the design guarantees, asserted: the hosted cache names each client's crowd
    // (PeerDist-Crowd) on its answers, so clients on the three subnets learn of each other.
    // How many copies the origin then sends is a timing outcome, not asserted here (issue 27.13):
    // a block becomes visible across subnets only after an offer, a pull and the next poll,
    // and this 2 MiB file crosses the 40 Mbit/s WAN in half a second, so on a loaded host the
    // clients' first blocks are fetched before they know of each other (identical runs gave
    // 1.000-1.757 x at load 5-26, the build before and after the last round alike;
    // RELIABILITY.md item 13). The target (<= 1.3 x) is measured by bench/hosted-cache.ts and
    // recorded in BENCHMARKS.md ("Hosted cache").
    const crowd = (await c.hostedCacheStatus()).hostedCache as { crowdAnswers: number };
    const named = crowd.crowdAnswers - hc.crowdAnswers;
    t.ok(named > 0, `the hosted cache named the crowd ${named} times during the flash crowd`);
    const shared = flash.downloads.reduce((a, d) => a + d.fromPeers, 0);
    t.ok(shared > 0, `peers and the hosted cache supplied ${shared} bytes of the flash crowd`);
  });
}
