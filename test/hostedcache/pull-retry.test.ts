/**
 * Issue 27.11 and 27.5 (hosted-cache halves): a pull that meets a bad or missing block goes on with
 * the remaining blocks and then asks the other clients that offered the segment; a pull that stored
 * nothing leaves nothing in the index. Real BlockStore in a temp dir, OfferHandler + Puller, and a
 * fake MS-PCCRR client (no sockets).
 */
import t, { type Test } from 'tap';
import { BlockStore } from '../../src/cache/store.js';
import { OfferHandler } from '../../src/hostedcache/offers.js';
import { Puller, type PullClient } from '../../src/hostedcache/puller.js';
import { encodeRequest, encodeSegmentInformation } from '../../src/protocol/pchc/codec.js';
import { PeerError } from '../../src/protocol/pccrr/errors.js';
import { randomV1, randomV2, tempDir, type TestSegment } from '../cache/make.js';

function segmentInfo(s: TestSegment, port: number): Buffer {
  return encodeRequest({
    type: 'SEGMENT_INFO',
    port,
    contentTag: Buffer.alloc(16),
    segmentInformation: encodeSegmentInformation({
      hashAlgorithm: s.meta.hashAlgorithm as 'SHA-256',
      offsetInContent: 0,
      length: s.meta.length,
      hod: s.meta.hod,
      kp: s.meta.kp,
      blockHashes: s.meta.blockHashes,
    }),
  });
}

async function openStore(t: Test, dir?: string) {
  const store = await BlockStore.open({
    dir: dir ?? (await tempDir(t, 'peerdist-hc-pull-')),
    fsync: false,
    limitBytes: 1 << 30,
  });
  return store;
}

/** A fake set of offering clients: `answer(peer, index)` says what each one sends for a block. */
function fakeClients(
  segs: TestSegment[],
  answer: (peer: string, index: number) => 'good' | 'bad' | 'missing' | 'refused',
): PullClient & { asked: string[] } {
  const asked: string[] = [];
  const find = (id: Buffer) => segs.find((s) => s.meta.segmentId.equals(id))!;
  return {
    asked,
    getBlock: async (req) => {
      asked.push(`${req.peer}#${req.index}`);
      const a = answer(req.peer, req.index);
      if (a === 'refused') throw new PeerError('PEER_UNREACHABLE', req.peer, 'connection refused');
      if (a === 'missing') throw new PeerError('PEER_NOT_AVAILABLE', req.peer, `block ${req.index} not available`);
      const good = find(req.segmentId).blocks[req.index]!;
      const data = a === 'good' ? good : Buffer.alloc(good.length, 7);
      if (!req.verify(data)) throw new PeerError('BAD_BLOCK', req.peer, `block ${req.index} failed the hash check`);
      return { data };
    },
    getRawBlock: async (req) => {
      asked.push(`${req.peer}#raw`);
      const a = answer(req.peer, 0);
      if (a === 'refused') throw new PeerError('PEER_UNREACHABLE', req.peer, 'connection refused');
      if (a === 'missing') throw new PeerError('PEER_NOT_AVAILABLE', req.peer, 'block 0 not available');
      const s = find(req.segmentId);
      // A bad answer: a record whose size cannot hold the segment.
      return { cryptoAlgo: 0, block: a === 'good' ? s.data : s.data.subarray(1), iv: Buffer.alloc(0) };
    },
  };
}

t.test(
  '27.11: a bad block does not end the pull; the rest come from this client, the bad one from another',
  async (t) => {
    const store = await openStore(t);
    t.teardown(() => store.close());
    const s = randomV1(4);
    // Client A sends a bad block 0 (as a Windows peer whose AES key we read differently would) and good others;
    // client B, which offered the same segment meanwhile, has block 0.
    const client = fakeClients([s], (peer, i) => (peer.startsWith('10.0.0.1:') && i === 0 ? 'bad' : 'good'));
    const puller = new Puller({ store, client, rateBytesPerSec: 0 });
    const offers = new OfferHandler({ store, pull: (task) => puller.offer(task) });
    t.ok(offers.handle(segmentInfo(s, 80), '10.0.0.1').ok);
    t.ok(offers.handle(segmentInfo(s, 80), '10.0.0.2').ok);
    await puller.idle();
    t.ok(store.isComplete(s.meta.segmentId), 'the segment is complete');
    t.same(client.asked, ['10.0.0.1:80#0', '10.0.0.1:80#1', '10.0.0.1:80#2', '10.0.0.1:80#3', '10.0.0.2:80#0']);
    t.equal(puller.snapshot().segmentsPulled, 1);
    await puller.close();
  },
);

t.test('27.11: v2: an implausible record from one offerer, the next offerer is asked', async (t) => {
  const store = await openStore(t);
  t.teardown(() => store.close());
  const s = randomV2(5000);
  const client = fakeClients([s], (peer) => (peer.startsWith('10.0.0.1:') ? 'bad' : 'good'));
  const puller = new Puller({ store, client, rateBytesPerSec: 0 });
  const offers = new OfferHandler({ store, pull: (task) => puller.offer(task) });
  const bo = encodeRequest({
    type: 'BATCHED_OFFER',
    port: 80,
    descriptors: [
      {
        blockSize: 5000,
        segmentSize: 5000,
        contentTag: Buffer.alloc(16),
        hashAlgorithm: 4,
        segmentId: s.meta.segmentId,
      },
    ],
  });
  offers.handle(bo, '10.0.0.1');
  offers.handle(bo, '10.0.0.2');
  await puller.idle();
  t.same(client.asked, ['10.0.0.1:80#raw', '10.0.0.2:80#raw']);
  t.ok(store.isComplete(s.meta.segmentId), 'stored from the second offerer');
  await puller.close();
});

t.test('27.5: pulls that store nothing leave nothing in the index', async (t) => {
  const dir = await tempDir(t, 'peerdist-hc-pull-');
  let store = await openStore(t, dir);
  const segs = Array.from({ length: 40 }, () => randomV1(2));
  const client = fakeClients(segs, (peer) => (peer.startsWith('10.0.0.1:') ? 'missing' : 'refused'));
  const puller = new Puller({ store, client, rateBytesPerSec: 0 });
  const offers = new OfferHandler({ store, pull: (task) => puller.offer(task) });
  // Valid one-segment SEGMENT_INFO offers whose pulls fail: the client lacks the blocks, or refuses connections.
  for (const [k, s] of segs.entries()) offers.handle(segmentInfo(s, 80), k % 2 ? '10.0.0.1' : '10.0.0.2');
  await puller.idle();
  t.equal(puller.snapshot().segmentsPulled, 0);
  t.equal(store.stats().segments, 0, 'no segment metadata is left in memory');
  await puller.close();
  await store.close();
  store = await openStore(t, dir);
  t.equal(store.stats().segments, 0, 'nor in the index on disk');
  await store.close();
});

t.test('27.11: a client that sends only bad blocks is asked for at most 4 of them', async (t) => {
  const store = await openStore(t);
  t.teardown(() => store.close());
  const s = randomV1(10);
  const client = fakeClients([s], (peer) => (peer.startsWith('10.0.0.1:') ? 'bad' : 'good'));
  const puller = new Puller({ store, client, rateBytesPerSec: 0 });
  const offers = new OfferHandler({ store, pull: (task) => puller.offer(task) });
  offers.handle(segmentInfo(s, 80), '10.0.0.1');
  offers.handle(segmentInfo(s, 80), '10.0.0.2');
  await puller.idle();
  t.equal(client.asked.filter((a) => a.startsWith('10.0.0.1:')).length, 4, 'four bad blocks, then the next offerer');
  t.equal(client.asked.filter((a) => a.startsWith('10.0.0.2:')).length, 10);
  t.ok(store.isComplete(s.meta.segmentId));
  await puller.close();
});
