/**
 * Issue 22, item 8 in network namespaces: the Azure site of test/sim/azblob-crowd.test.ts
 * (Azurite, three `peerdist serve --store azblob://...` nodes, a balancer, all on the site's host)
 * with each of the eight client daemons in a namespace of its own, so crowd members have real,
 * distinct addresses (on loopback every client probes from 127.0.0.1 and the crowd has no
 * identity). A sequential run, then a flash crowd during which node 3 dies. Asserted: what holds
 * by design (every file right, sources add up, each blob hashed once over the nodes, content
 * information identical from every node, peers shared, node 3 died mid-crowd). Origin bytes per
 * file are printed; the 1.1-copies target is recorded by `bench/azblob-crowd.ts --netns` in
 * BENCHMARKS.md. Skips unless root with iproute2.
 */
import t from 'tap';
import { runAzblobSite } from '../../testkit/sim/azblob-site.js';
import { NetnsNetwork } from '../../testkit/sim/network.js';
import { netnsSupport } from '../../testkit/sim/netns.js';
import { checkAzblobSite } from '../helpers/azblob-site.js';

const support = await netnsSupport();
if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  t.test('Azure site in namespaces: three nodes, eight clients with their own addresses, a node killed', async (t) => {
    const r = await runAzblobSite({ network: await NetnsNetwork.create() });
    checkAzblobSite(t, r);
  });
}
