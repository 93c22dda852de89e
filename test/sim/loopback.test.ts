/**
 * The same site on loopback (no root needed): an origin and real daemons on 127.0.0.x. Runs
 * everywhere, so the peer-to-peer path is covered even where namespaces are unavailable.
 */
import t from 'tap';
import { request } from 'node:http';
import { Cluster, originBlockBytes } from '../../testkit/sim/harness.js';
import { LoopbackNetwork } from '../../testkit/sim/loopback.js';
import { runDownloads } from '../../testkit/sim/scenarios.js';

const size = 3 * 1024 * 1024 + 777;
const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 40 }),
  clients: 3,
  files: [{ name: 'f.bin', size }],
  wan: { delayMs: 5 },
});
t.teardown(() => c.close());

/** `peerdist explain` of client i's latest download, from its admin API. */
function explain(i: number): Promise<{
  origin: { blocks: number; bytes: number; skipped: number; byReason: Record<string, { blocks: number }> };
}> {
  const [host, port] = c.daemons[i - 1]!.admin.split(':');
  return new Promise((resolve, reject) => {
    request({ host, port: Number(port), path: '/v1/explain' }, (res) => {
      let body = '';
      res.on('data', (x: Buffer) => {
        body += x.toString();
      });
      res.on('end', () => resolve(JSON.parse(body)));
    })
      .on('error', reject)
      .end();
  });
}

/**
 * Issue 27.13: this asserted that clients 2 and 3 take nothing from the origin, which is an outcome
 * of timing: beside two busy loops client 2 took 68-253 KB from it in 3 runs of 3. Its trace
 * showed why: the origin gate opened after the initial discovery wait (300 ms) with no answer in
 * yet (block fetched for 'no-peer-found'), and the peer's trial request was still unanswered after
 * its 300 ms grace (blocks fetched for 'peer-unproven'). Both waits are bounded on purpose (no peer
 * must cost nothing; a tarpit must not stall a download). What the design guarantees, asserted
 * here exactly: client 1 (nobody holds anything) takes the file from the origin; every file is
 * correct; the origin only ever fetches for clients 2 and 3 blocks that no known peer could supply
 * yet (no peer found, or the full holder's first request not yet answered), never racing a peer
 * that has answered; and the origin sent each of those bytes once.
 */
t.test(
  'sequential clients on loopback: the origin never races a peer that holds the file and has answered',
  async (t) => {
    await c.startDaemons();
    const r = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2, 3] });
    for (const d of r.downloads) {
      t.comment(
        `client ${d.client}: ${d.seconds.toFixed(2)} s origin=${d.fromOrigin} peers=${d.fromPeers} cache=${d.fromCache}`,
      );
      t.ok(d.correct, `client ${d.client}: file matches the payload's SHA-256`);
      t.equal(
        d.fromOrigin + d.fromPeers + d.fromCache,
        size,
        `client ${d.client}: byte sources add up to the file size`,
      );
    }
    t.equal(r.downloads[0]!.fromOrigin, size, 'client 1 took the file from the origin');
    let skipped = 0;
    for (const i of [2, 3]) {
      const d = r.downloads[i - 1]!;
      const x = await explain(i);
      t.comment(
        `client ${i}: origin blocks by reason ${JSON.stringify(x.origin.byReason)}, skipped ${x.origin.skipped}`,
      );
      t.equal(x.origin.bytes, d.fromOrigin, `client ${i}: its trace accounts for every origin byte`);
      const reasons = Object.keys(x.origin.byReason).filter((k) => k !== 'no-peer-found' && k !== 'peer-unproven');
      t.same(reasons, [], `client ${i}: origin blocks only while no known peer had answered`);
      skipped += x.origin.skipped;
    }
    const taken = r.downloads.reduce((n, d) => n + d.fromOrigin, 0);
    if (skipped === 0) t.equal(originBlockBytes(r.origin), taken, 'the origin sent each block it was asked for once');
    else t.ok(originBlockBytes(r.origin) >= taken, 'the origin sent every block the clients took from it');
  },
);

t.test('a second download on the same client comes from its own cache', async (t) => {
  const d = await c.download(2, 'f.bin');
  t.ok(d.correct, 'file correct');
  t.equal(d.fromCache, size, 'served entirely from the local cache');
  t.equal(d.fromOrigin, 0);
});

t.test('a malicious peer on loopback cannot corrupt a download', async (t) => {
  const c2 = await Cluster.create({
    network: new LoopbackNetwork({ base: 60 }),
    clients: 2,
    files: [{ name: 'g.bin', size }],
  });
  t.teardown(() => c2.close());
  const evil = await c2.startEvilPeer('g.bin', 'random');
  await c2.startDaemons();
  const r = await runDownloads(c2, 'g.bin', { mode: 'flash', clients: [1, 2] });
  const served = await evil.stop();
  for (const d of r.downloads) t.ok(d.correct, `client ${d.client}: file correct despite the malicious peer`);
  t.ok(served.blocksServed > 0, `the malicious peer was asked for blocks (${served.blocksServed} served)`);
});
