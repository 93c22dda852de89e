/**
 * The same site on loopback (no root needed): an origin and real daemons on 127.0.0.x. Runs
 * everywhere, so the peer-to-peer path is covered even where namespaces are unavailable.
 */
import t from 'tap';
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

t.test('sequential clients on loopback: the second and third take no file bytes from the origin', async (t) => {
  await c.startDaemons();
  const r = await runDownloads(c, 'f.bin', { mode: 'sequential', clients: [1, 2, 3] });
  for (const d of r.downloads) {
    t.comment(
      `client ${d.client}: ${d.seconds.toFixed(2)} s origin=${d.fromOrigin} peers=${d.fromPeers} cache=${d.fromCache}`,
    );
    t.ok(d.correct, `client ${d.client}: file matches the payload's SHA-256`);
    t.equal(d.fromOrigin + d.fromPeers + d.fromCache, size, `client ${d.client}: byte sources add up to the file size`);
  }
  t.equal(r.downloads[0]!.fromOrigin, size, 'client 1 took the file from the origin');
  t.equal(r.downloads[1]!.fromOrigin, 0, 'client 2 took nothing from the origin');
  t.equal(r.downloads[2]!.fromOrigin, 0, 'client 3 took nothing from the origin');
  t.equal(originBlockBytes(r.origin), size, 'the origin sent the file exactly once');
});

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
