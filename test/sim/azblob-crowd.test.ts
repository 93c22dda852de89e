/**
 * Issue 22, item 8: the publishing side with a real storage server. Azurite started here on
 * loopback; three `peerdist serve --store azblob://...` nodes over one container (one secret, one
 * signing key); eight client daemons, half through a balancer, half naming a node with the other
 * two as mirrors; a sequential run, then a flash crowd during which node 3 dies
 * (testkit/sim/azblob-site.ts). Asserted: what holds by design. The origin bytes per file are
 * measured and printed; the 1.1-copies target is recorded by bench/azblob-crowd.ts in
 * BENCHMARKS.md (it depends on timing in the crowd: blocks in flight on the dying node are sent
 * again by another).
 */
import t from 'tap';
import { runAzblobSite } from '../../testkit/sim/azblob-site.js';
import { checkAzblobSite } from '../helpers/azblob-site.js';

t.test('three nodes over one Azurite container, eight clients, a node killed in the crowd', async (t) => {
  checkAzblobSite(t, await runAzblobSite());
});
