/**
 * Issue 16.5, in the namespace simulation: a LAN host answers every probe with 16 XAddrs whose
 * sockets accept and never answer, plus a 404-answering HTTP service and the origin's own port
 * (rotated on every answer). Two client daemons download small files. Each download must complete
 * byte-exact with its bytes from the origin or the good peer, and the tarpit must cost a bounded
 * number of connection attempts: a bogus address is tried once per daemon (one request on
 * probation, then quarantined for 30 s, doubling), whatever the number of probes it answers, and
 * at most 16 of them per download. Times are reported, not asserted (RELIABILITY.md).
 */
import t from 'tap';
import { Cluster, originBlockBytes } from '../../testkit/sim/harness.js';
import { NetnsNetwork } from '../../testkit/sim/network.js';
import { netnsSupport } from '../../testkit/sim/netns.js';

const MiB = 1024 * 1024;
const support = await netnsSupport();

if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  t.test(
    'tarpit peer: downloads complete from the origin and the good peer, bounded connection attempts',
    async (t) => {
      const size = 4 * MiB + 4321;
      const c = await Cluster.create({
        network: await NetnsNetwork.create(),
        clients: 2,
        wan: { rateBps: 100e6, delayMs: 5 },
        files: [
          { name: 'f.bin', size },
          { name: 'g.bin', size: 2 * MiB + 17 },
        ],
      });
      t.teardown(() => c.close());
      const tarpit = await c.startTarpitPeer({ sockets: 16, extraXAddrs: [c.originFront] });
      const bogus = tarpit.xaddrs.length;
      t.comment(`tarpit names ${bogus} addresses: ${tarpit.xaddrs.join(' ')}`);
      await c.startDaemons();

      const d1 = await c.download(1, 'f.bin');
      t.ok(d1.correct, 'client 1: file exact');
      t.equal(d1.fromOrigin, size, 'client 1: every byte from the origin (the tarpit supplied nothing)');
      const d2 = await c.download(2, 'f.bin');
      t.ok(d2.correct, 'client 2: file exact');
      t.equal(d2.fromOrigin + d2.fromPeers, size, 'client 2: origin + peers = the file');
      t.ok(d2.fromPeers > 0, `client 2 used the good peer despite the tarpit (${d2.fromPeers} bytes from peers)`);
      const d3 = await c.download(1, 'g.bin');
      t.ok(d3.correct, 'client 1, second file: exact');
      const origin = await c.originStats();
      t.equal(
        originBlockBytes(origin),
        d1.fromOrigin + d2.fromOrigin + d3.fromOrigin,
        'origin counters agree with the clients',
      );

      const st = await tarpit.stop();
      const conns = Object.values(st.connections).reduce((a, b) => a + b, 0);
      const posts = Object.values(st.serviceRequests).reduce((a, b) => a + b, 0);
      t.comment(
        `times: client 1 ${d1.wallSeconds.toFixed(2)} s, client 2 ${d2.wallSeconds.toFixed(2)} s, client 1 again ${d3.wallSeconds.toFixed(2)} s`,
      );
      t.comment(
        `tarpit: ${st.probeMatches} ProbeMatches sent, ${conns} connections accepted ${JSON.stringify(st.connections)}, ${posts} requests to the other service ${JSON.stringify(st.serviceRequests)}`,
      );
      t.ok(st.probeMatches >= 3, 'the tarpit answered probes (the attack was exercised)');
      t.ok(conns >= 1, 'the daemons did try the tarpit');
      // The retrieval client's default quarantine: an address may be tried again only after it.
      const QUARANTINE_MS = 30_000;
      const downloadsBy: Record<string, number> = { [c.hosts[0]!.address]: 2, [c.hosts[1]!.address]: 1 };
      for (const [from, n] of Object.entries(st.connections)) {
        t.ok(
          n <= 16 * (downloadsBy[from] ?? 1),
          `daemon at ${from}: ${n} connections to tarpit ports over its ${downloadsBy[from]} download(s) (at most 16 unproven addresses per download)`,
        );
      }
      for (const [key, times] of Object.entries(st.attempts)) {
        const gaps = times.slice(1).map((at, i) => at - times[i]!);
        t.ok(
          gaps.every((ms) => ms >= QUARANTINE_MS - 1000),
          `${key}: ${times.length} connection(s), never again within the quarantine (gaps ${gaps.map((ms) => `${ms} ms`).join(', ') || 'none'})`,
        );
      }
      for (const [from, n] of Object.entries(st.serviceRequests))
        t.ok(n <= 1, `daemon at ${from}: ${n} request(s) to the other service`);
    },
  );
}
