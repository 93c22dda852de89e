/**
 * First contact (issue 12), in the namespace simulation: what a new user sees without preparing
 * anything. A fresh origin nobody ran `peerdist publish` on, two clients one after another: the
 * origin must send the file about once; the same behind `serve --upstream`; IPv6 discovery; the
 * daemon's real error through `get` when the origin dies; a block found corrupt is no longer
 * announced. Skips unless root with iproute2.
 */
import t, { type Test } from 'tap';
import { open, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { peerdistEntry } from '../../testkit/sim/entrypoints.js';
import { Cluster, originBlockBytes, type ClusterOptions, type SimDownload } from '../../testkit/sim/harness.js';
import { NetnsNetwork } from '../../testkit/sim/network.js';
import { netnsSupport } from '../../testkit/sim/netns.js';
import { runDownloads } from '../../testkit/sim/scenarios.js';
import { BlockStore } from '../../src/cache/store.js';

const MiB = 1024 * 1024;
const support = await netnsSupport();

async function cluster(t: Test, clients: number, size: number, extra: Partial<ClusterOptions> = {}) {
  const c = await Cluster.create({
    network: await NetnsNetwork.create(),
    clients,
    wan: { rateBps: 40e6, delayMs: 10 },
    files: [{ name: 'f.bin', size }],
    ...extra,
  });
  t.teardown(() => c.close());
  return c;
}

const describe = (d: SimDownload) =>
  `client ${d.client}: ${d.seconds.toFixed(2)} s origin=${d.fromOrigin} peers=${d.fromPeers} cache=${d.fromCache} peerdist=${d.peerdist}`;

function checkAll(t: Test, ds: SimDownload[], size: number) {
  for (const d of ds) {
    t.ok(d.correct, `client ${d.client}: file matches the payload's SHA-256`);
    t.equal(d.fromOrigin + d.fromPeers + d.fromCache, size, `client ${d.client}: origin + peers + cache = file size`);
  }
}

if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  t.test('fresh unpublished origin, two clients one after another: the file crosses the WAN once', async (t) => {
    const size = 8 * MiB + 4321;
    const c = await cluster(t, 2, size, { publish: false });
    await c.startDaemons();
    const r = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2] });
    for (const d of r.downloads) t.comment(describe(d));
    checkAll(t, r.downloads, size);
    t.ok(r.downloads[0]!.peerdist, 'the first client already got content information (the origin waited for hashing)');
    t.equal(r.downloads[1]!.fromOrigin, 0, 'the second client took nothing from the origin');
    const blocks = originBlockBytes(r.origin);
    t.equal(blocks, r.downloads[0]!.fromOrigin + r.downloads[1]!.fromOrigin, 'origin counters agree with the clients');
    t.ok(blocks <= size * 1.05, `origin sent ${(blocks / size).toFixed(3)} x the file (at most 1.05)`);
    t.equal(r.origin.makeHashRequests, 0, 'no client was told to come back later');
  });

  t.test(
    'peerdist serve --upstream in front of a server without Range or validators: two clients, the file crosses the WAN once',
    async (t) => {
      const size = 8 * MiB + 777;
      const c = await cluster(t, 2, size, { upstreamPlain: true, publish: false });
      await c.startDaemons();
      const r = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2] });
      for (const d of r.downloads) t.comment(describe(d));
      checkAll(t, r.downloads, size);
      t.ok(r.downloads[0]!.peerdist, 'the first client got content information');
      t.equal(r.downloads[1]!.fromOrigin, 0, 'the second client took nothing from the origin');
      const blocks = originBlockBytes(r.origin);
      t.equal(
        blocks,
        r.downloads[0]!.fromOrigin + r.downloads[1]!.fromOrigin,
        'origin counters agree with the clients',
      );
      t.ok(blocks <= size * 1.05, `origin sent ${(blocks / size).toFixed(3)} x the file (at most 1.05)`);
      t.ok((r.origin.storeResponses ?? 0) > 0, 'missing-data ranges were answered from the entity store');
    },
  );

  t.test('IPv6 discovery (--ipv6): blocks come from a peer found over ff02::c only', async (t) => {
    const size = 4 * MiB + 99;
    const c = await Cluster.create({
      network: await NetnsNetwork.create({ ipv6: true }),
      clients: 3,
      wan: { rateBps: 40e6, delayMs: 10 },
      files: [{ name: 'f.bin', size }],
    });
    t.teardown(() => c.close());
    // IPv4 discovery is confined to each host's own loopback (--interface 127.0.0.1), so the only
    // way between hosts is IPv6 multicast on eth0; retrieval listens on [::] and is advertised at the ULA.
    const base = ['--listen', '[::]:0', '--interface', '127.0.0.1'];
    await c.startDaemon(1, [...base, '--ipv6', 'eth0']);
    await c.startDaemon(2, [...base, '--ipv6']); // true: every interface with IPv6 (eth0 here)
    await c.startDaemon(3, base); // control: no IPv6 discovery
    const d1 = await c.download(1, 'f.bin');
    const d2 = await c.download(2, 'f.bin');
    const d3 = await c.download(3, 'f.bin');
    for (const d of [d1, d2, d3]) t.comment(describe(d));
    checkAll(t, [d1, d2, d3], size);
    t.equal(d1.fromPeers, 0, 'client 1 had nobody to ask');
    t.equal(d2.fromPeers, size, 'client 2 got every block from client 1, found over IPv6');
    t.equal(d2.fromOrigin, 0);
    const known = (await c.daemonStatus(2)).peers as string[];
    t.ok(
      known.some((p) => p.includes('fd70:7064:1::11')),
      `client 2 knows client 1 by its IPv6 address: ${JSON.stringify(known)}`,
    );
    t.equal(d3.fromPeers, 0, 'control: without --ipv6 the same client finds no peer (the IPv4 path is closed)');
  });

  t.test("the origin dies mid-download: get reports the daemon's error, and no output file is left", async (t) => {
    const size = 16 * MiB;
    // 8 Mbit/s: the download takes about 17 s, so it is well under way when the origin goes.
    const c = await cluster(t, 1, size, { wan: { rateBps: 8e6, delayMs: 10 } });
    await c.startDaemons();
    const pending = c.getRaw(1, 'f.bin', 60_000);
    let got = 0;
    for (let i = 0; i < 100 && got < MiB; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const st = await c.daemonStatus(1);
      got = Number((st.totals as Record<string, unknown> | undefined)?.fromOrigin ?? 0);
    }
    t.ok(got >= MiB, `the daemon had ${got} bytes from the origin when it was stopped`);
    await c.stopOrigin();
    const r = await pending;
    t.comment(r.stderr.trim());
    t.not(r.code, 0, `peerdist get failed (exit ${r.code})`);
    t.match(r.stderr, /(BLOCK_FAILED|ORIGIN_[A-Z_]+): /, "stderr names the daemon's error code and reason");
    t.notMatch(r.stderr, /DAEMON_GONE/, 'not "the daemon closed the connection"');
    const dir = dirname(r.output);
    const left = (await readdir(dir)).filter((f) => f.startsWith(basename(r.output)) || f.includes('.part'));
    t.same(left, [], 'no output file, final or temporary');
  });

  t.test('a cached block found corrupt while serving is dropped and no longer announced', async (t) => {
    const size = 2 * MiB;
    const c = await cluster(t, 2, size);
    await c.startDaemons();
    const d1 = await c.download(1, 'f.bin');
    t.ok(d1.correct, 'client 1 has the file');
    // v2 content: the blocks are in pack files (src/cache/packs.ts); client 1's daemon is stopped
    // while the test opens its cache to find where one is, damages it, and starts again.
    await c.stopDaemon(1);
    const cache = await BlockStore.open({ dir: join(c.daemons[0]!.stateDir, 'cache') });
    const segs = cache
      .list()
      .map((r) => r.segmentId)
      .sort();
    t.ok(segs.length > 2, `client 1 holds ${segs.length} segments`);
    const [bad, good] = [segs[0]!, segs[1]!];
    const where = cache.blockFile(Buffer.from(bad, 'hex'), 0)!;
    await cache.close();
    const fh = await open(where.path, 'r+');
    await fh.write(Buffer.from('corrupted!'), 0, 10, where.offset + 100);
    await fh.close();
    await c.startDaemon(1);
    // Client 2 downloads: client 1 finds the damage when it serves the block, refuses it and drops it.
    const d2 = await c.download(2, 'f.bin');
    t.ok(d2.correct, 'client 2 got a correct file all the same');
    t.ok(d2.fromPeers > 0, `client 2 took ${d2.fromPeers} bytes from client 1`);
    // A probe from client 2's host for both segments: client 1 announces the intact one only.
    const r = await c.network.run(
      c.hosts[1]!,
      process.execPath,
      [
        peerdistEntry,
        'peers',
        ...['--segment', bad, '--segment', good, '--content-version', '2', '--json', '--timeout', '1500'],
        ...['--interface', c.hosts[1]!.discoveryInterface, '--discovery-port', String(c.discoveryPort)],
      ],
      { timeoutMs: 15_000 },
    );
    t.equal(r.code, 0, `peerdist peers --segment ran (${r.stderr.trim()})`);
    const seen = JSON.parse(r.stdout) as Array<{ segmentId: string; address: string }>;
    const by = (id: string) => seen.filter((x) => x.segmentId.toUpperCase() === id.toUpperCase()).map((x) => x.address);
    const c1 = c.daemons[0]!.retrieval;
    t.ok(by(good).includes(c1), `the intact segment is announced by client 1 (${by(good).join(', ')})`);
    t.notOk(by(bad).includes(c1), `the dropped one is not (${by(bad).join(', ') || 'nobody else'})`);
  });
}
