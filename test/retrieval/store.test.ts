/** The cache's BlockStore plugs into the PCCRR server as its BlockSource, end to end over HTTP. */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockStore, segmentMetaFrom } from '../../src/cache/store.js';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { createRetrievalServer, type BlockSource } from '../../src/retrieval/server.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { blockOf, makeContent } from './source.js';

t.test('BlockStore as BlockSource: served blocks decrypt and verify; absent ones are not-available', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-rr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await BlockStore.open({ dir, fsync: false, limitBytes: 64 * 1024 * 1024 });
  t.teardown(() => store.close());
  const c = await makeContent(65536 * 2 + 77);
  await store.addSegment(segmentMetaFrom(1, c.info.hashAlgorithm, c.seg));
  await store.putBlock(c.seg.segmentId, 0, Buffer.from(blockOf(c, 0)));
  await store.putBlock(c.seg.segmentId, 2, Buffer.from(blockOf(c, 2)));

  const source: BlockSource = store; // structural fit, checked by the compiler
  const server = createRetrievalServer({ source });
  const { host, port } = await server.listen();
  t.teardown(() => server.close());
  const client = new RetrievalClient();
  t.teardown(() => client.close());
  const peer = `${host}:${port}`;
  const ask = (index: number) =>
    client.getBlock({
      peer,
      segmentId: c.seg.segmentId,
      index,
      kp: c.seg.kp,
      expectedLength: blockOf(c, index).length,
      verify: (p) => verifyBlock(1, c.seg, index, p),
    });
  const r0 = await ask(0);
  t.ok(r0.data.equals(blockOf(c, 0)));
  t.equal(r0.nextBlockIndex, 2, 'next held block skips the missing one');
  t.ok((await ask(2)).data.equals(blockOf(c, 2)));
  await t.rejects(ask(1), { code: 'PEER_NOT_AVAILABLE' });
  t.same(await client.getBlockList({ peer, segmentId: c.seg.segmentId, ranges: [[0, 3]] }), {
    ranges: [
      [0, 1],
      [2, 1],
    ],
    nextBlockIndex: 0,
  });
  t.equal(store.stats().hitsPeer, 2, 'reads were counted as peer hits');
  t.equal(server.stats().blocksServed, 2);
});
