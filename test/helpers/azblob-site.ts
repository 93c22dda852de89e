/** What test/sim/azblob-crowd.test.ts and azblob-netns.test.ts assert of an Azure site run (by design). */
import type { Test } from 'tap';
import type { AzblobSiteReport } from '../../testkit/sim/azblob-site.js';

export function checkAzblobSite(t: Test, r: AzblobSiteReport): void {
  for (const run of [r.sequential, r.crowd]) {
    t.comment(
      `${run.blob}: ${run.seconds.toFixed(1)} s, origin bytes ${run.originBytes} = ${run.copies.toFixed(3)} copies; ` +
        run.clients.map((c) => `c${c.client}/${c.via} o=${c.fromOrigin} p=${c.fromPeers} k=${c.fromCache}`).join(', '),
    );
    for (const c of run.clients) {
      t.ok(c.correct, `${run.blob}: client ${c.client} (${c.via}) has every byte right`);
      t.equal(c.fromOrigin + c.fromPeers + c.fromCache, run.size, `${run.blob}: client ${c.client}: sources add up`);
    }
    t.ok(run.originBytes >= run.size, `${run.blob}: the nodes sent at least one copy`);
  }
  t.ok(r.killedAfterBytes > 0, `node 3 died during the crowd (after ${r.killedAfterBytes} bytes)`);
  t.comment(`hash jobs per node ${JSON.stringify(r.hashJobs)}; stats ${JSON.stringify(r.nodeStats)}`);
  t.equal(
    r.hashJobs.reduce((a, b) => a + b, 0),
    2,
    'each blob hashed exactly once across the three nodes (one v2 hash job per blob)',
  );
  for (const [blob, cis] of Object.entries(r.contentInfo)) {
    t.equal(cis.length, 3, `${blob}: content information from the three nodes`);
    t.ok(
      cis[0] !== '' && cis.every((x) => x === cis[0]),
      `${blob}: byte-identical content information from every node`,
    );
  }
  // Sequential: the first client takes the file from the origin; the later ones, each through
  // another node, find it on the first as a peer.
  const later = r.sequential.clients.slice(1);
  t.ok(
    later.reduce((n, c) => n + c.fromPeers, 0) > 0,
    'clients that used other nodes took blocks from peers (the content is the same: segment IDs match)',
  );
  t.ok(r.crowd.clients.reduce((n, c) => n + c.fromPeers, 0) > 0, 'the crowd shared blocks as peers');
}
