/**
 * Issue 16.11: a v1 peer that answers MSG_GETBLKLIST with HTTP 400 (python-peerdist implements
 * only MSG_GETBLKS; iPXE never sends MSG_GETBLKLIST) must still be used: a ProbeMatch BlockCount
 * covering the whole segment means "ask for blocks", and so does a failed block list (an empty
 * MSG_BLK tells us what the peer lacks).
 */
import t from 'tap';
import { fetchContentInfo } from '../../testkit/sim/evilpeer.js';
import { MiB, payload, readAll, sha256, startNode, startOrigin, testPort } from './harness.js';
import { startGetblksOnlyPeer } from './getblks-only-peer.js';

t.test('peer holding the whole file, GETBLKS only: every block from it', async (t) => {
  const size = 3 * MiB + 4567;
  const data = payload(size);
  const origin = await startOrigin(t, { 'f.bin': data });
  await origin.warm('f.bin', 1);
  const ci = (await fetchContentInfo(origin.url('f.bin'), 1))!;
  const port = testPort();
  const peer = await startGetblksOnlyPeer({ host: '127.0.0.61', ci, data, discoveryPort: port });
  t.teardown(() => peer.close());
  const node = await startNode(t, 62, port, { engine: { maxContentVersion: 1 }, timing: { maxWaitMs: 2000 } });
  const job = node.engine.download(origin.url('f.bin'));
  const r = await job.done;
  t.equal(sha256(await readAll(job.createReadStream())), sha256(data), 'content exact');
  t.equal(
    r.fromPeers,
    size,
    `every block from the GETBLKS-only peer (origin ${r.fromOrigin}, peer requests ${JSON.stringify(peer.counts)})`,
  );
  t.equal(r.fromOrigin, 0, 'no block bytes from the origin');
  t.ok(peer.blocksServed >= Math.ceil(size / 65536), 'the peer served the blocks');
  t.same((await node.store.verifyAll()).bad, [], 'cache verifies');
});

t.test(
  'peer holding part of the file, block list refused: held blocks from it, the rest from the origin',
  async (t) => {
    const size = 2 * MiB;
    const data = payload(size);
    const origin = await startOrigin(t, { 'f.bin': data });
    await origin.warm('f.bin', 1);
    const ci = (await fetchContentInfo(origin.url('f.bin'), 1))!;
    const port = testPort();
    const held = (_seg: number, i: number) => i % 2 === 0; // every other block (16 of 32)
    const peer = await startGetblksOnlyPeer({ host: '127.0.0.63', ci, data, discoveryPort: port, holds: held });
    t.teardown(() => peer.close());
    const node = await startNode(t, 64, port, { engine: { maxContentVersion: 1 }, timing: { maxWaitMs: 2000 } });
    const job = node.engine.download(origin.url('f.bin'));
    const r = await job.done;
    t.equal(sha256(await readAll(job.createReadStream())), sha256(data), 'content exact');
    t.ok((peer.counts.GETBLKLIST ?? 0) >= 1, 'a block list was asked for and refused');
    t.equal(r.fromPeers, size / 2, `the 16 held blocks from the peer (peer requests ${JSON.stringify(peer.counts)})`);
    t.equal(r.fromOrigin, size / 2, 'the 16 others from the origin');
    t.ok((peer.counts.GETBLKS ?? 0) <= 32 + 8, `bounded GETBLKS: ${peer.counts.GETBLKS}`);
  },
);
