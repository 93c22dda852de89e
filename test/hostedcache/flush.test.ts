/**
 * Issue 27.3: one client cannot flush the hosted cache. As in the issue, a client offers batches
 * of 128 random v2 segment IDs and answers every pull with random bytes (plausible AES records);
 * segments an honest client offered and another client fetched survive, and so do an honest
 * client's offered segments nobody has fetched yet; the flooder holds at most its share. Real
 * hosted cache on loopback (127.0.0.0/8 addresses as separate clients).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { BlockStore } from '../../src/cache/store.js';
import { createRetrievalServer, type BlockSource } from '../../src/retrieval/server.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { asSegmentInfo } from '../../src/cache/meta.js';
import { startHostedCache } from '../../src/hostedcache/hosted-cache.js';
import { Offerer } from '../../src/hostedcache/offerer.js';
import { encodeRequest, PCHC_PATH_V2 } from '../../src/protocol/pchc/codec.js';
import { nullLogger } from '../../src/util/log.js';
import { putAll, randomV2, tempDir, type TestSegment } from '../cache/make.js';

const SEG = 4000;
/** 64 records of 4 KiB: a client's share is 8 of them, unasked segments 32. */
const LIMIT = 64 * 4096;

t.test('27.3: a client offering random IDs and answering with random bytes does not flush the cache', async (t) => {
  const hc = await startHostedCache(
    {
      stateDir: await tempDir(t, 'peerdist-hc-flush-'),
      http: { host: '127.0.0.1', port: 0 },
      admin: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      cacheLimitBytes: LIMIT,
      fetchRateBytesPerSec: 0,
    },
    { logger: nullLogger },
  );
  t.teardown(() => hc.close());
  const hcPort = Number(hc.ready.http.split(':')[1]);

  // An honest client on its own address: a block store and an MS-PCCRR server, offering with the Offerer.
  const honest = async (addr: string, segs: TestSegment[]) => {
    const store = await BlockStore.open({ dir: await tempDir(t, 'peerdist-hc-c-'), fsync: false, limitBytes: 1 << 26 });
    t.teardown(() => store.close());
    for (const s of segs) {
      await store.addSegment(s.meta);
      await putAll(store, s);
    }
    const server = createRetrievalServer({ source: store, host: addr, logger: nullLogger });
    const { port } = await server.listen();
    t.teardown(() => server.close());
    const offerer = new Offerer({
      target: { host: '127.0.0.1', port: hcPort, version: 2 },
      localPort: port,
      localAddress: addr,
      logger: nullLogger,
    });
    t.teardown(() => offerer.close());
    for (const s of segs) offerer.offer(s.meta);
    await offerer.flush();
    await hc.puller.idle();
  };
  const used = Array.from({ length: 6 }, () => randomV2(SEG));
  const offeredOnly = Array.from({ length: 2 }, () => randomV2(SEG));
  await honest('127.0.0.2', used);
  await honest('127.0.0.4', offeredOnly);
  for (const s of [...used, ...offeredOnly]) t.ok(hc.store.isComplete(s.meta.segmentId), 'honest segment pulled');

  // Another client (127.0.0.1) fetches the first client's segments from the hosted cache: they are in use.
  const reader = new RetrievalClient({ logger: nullLogger });
  t.teardown(() => reader.close());
  const fetchAll = async (segs: TestSegment[]) => {
    for (const s of segs) {
      const r = await reader.getBlock({
        peer: hc.ready.http,
        segmentId: s.meta.segmentId,
        index: 0,
        kp: s.meta.kp,
        expectedLength: SEG,
        verify: (b) => verifyBlock(2, asSegmentInfo(s.meta), 0, b),
      });
      t.same(r.data, s.data);
    }
  };
  await fetchAll(used);

  // The flooder: any segment ID, random bytes (the server encrypts them: a plausible AES record).
  const junk: BlockSource = {
    getSegment: () => ({ version: 2, kp: randomBytes(32), length: SEG, blockSize: SEG }),
    hasBlock: () => true,
    presentBlocks: () => [0],
    readBlock: async () => randomBytes(SEG),
  };
  const flooder = createRetrievalServer({ source: junk, host: '127.0.0.5', maxConcurrent: 1024, logger: nullLogger });
  const { port: floodPort } = await flooder.listen();
  t.teardown(() => flooder.close());
  const agent = new Agent({ localAddress: '127.0.0.5' });
  t.teardown(() => agent.close());
  const statuses: number[] = [];
  for (let k = 0; k < 8; k++) {
    const body = encodeRequest({
      type: 'BATCHED_OFFER',
      port: floodPort,
      descriptors: Array.from({ length: 128 }, () => ({
        blockSize: SEG,
        segmentSize: SEG,
        contentTag: Buffer.alloc(16),
        hashAlgorithm: 4,
        segmentId: randomBytes(32),
      })),
    });
    const r = await request(`http://${hc.ready.http}${PCHC_PATH_V2}`, { method: 'POST', body, dispatcher: agent });
    await r.body.arrayBuffer();
    statuses.push(r.statusCode);
  }
  await hc.puller.idle();
  const pulledFromFlooder = flooder.stats().blocksServed;
  t.ok(
    pulledFromFlooder > 64,
    `the hosted cache pulled ${pulledFromFlooder} random records (more than the cache holds)`,
  );

  for (const s of used) t.ok(hc.store.isComplete(s.meta.segmentId), 'a segment in use survived the flood');
  for (const s of offeredOnly)
    t.ok(hc.store.isComplete(s.meta.segmentId), 'an honest offered segment nobody fetched yet survived too');
  await fetchAll(used);
  const honestIds = new Set([...used, ...offeredOnly].map((s) => s.meta.segmentId.toString('hex')));
  const junkHeld = hc.store.list().filter((e) => !honestIds.has(e.segmentId));
  const junkBytes = junkHeld.reduce((a, e) => a + e.bytes, 0);
  t.ok(junkBytes <= LIMIT / 8, `the flooder holds ${junkBytes} bytes (${junkHeld.length} records), at most its share`);
  t.ok(hc.store.stats().bytes <= LIMIT, 'the cache is within its limit');
});
