/**
 * Issue 27.4 and 27.12: the hosted cache's pull queue is shared fairly (per-client caps, round
 * robin), an offer that could not be queued is not answered OK, and failed pulls are logged at a
 * bounded rate. State machines only (OfferHandler + Puller with an in-memory store and a fake
 * MS-PCCRR client): no sockets, no timers; every wait is for queued microtasks to settle.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { SegmentMeta } from '../../src/cache/meta.js';
import { OfferHandler } from '../../src/hostedcache/offers.js';
import { Puller, type PullClient, type PullStore } from '../../src/hostedcache/puller.js';
import { encodeRequest } from '../../src/protocol/pchc/codec.js';
import type { Logger } from '../../src/util/log.js';

const SEG = 1000;

function memoryStore(): PullStore & { metas: Map<string, SegmentMeta>; isComplete(id: Buffer): boolean } {
  const metas = new Map<string, SegmentMeta>();
  const blocks = new Set<string>();
  return {
    metas,
    addSegment: async (m) => {
      metas.set(m.segmentId.toString('hex'), m);
    },
    getSegment: (id) => metas.get(id.toString('hex')),
    hasBlock: (id, i) => blocks.has(`${id.toString('hex')}!${i}`),
    putBlock: async (id, i) => {
      blocks.add(`${id.toString('hex')}!${i}`);
    },
    pin: () => () => undefined,
    isComplete: (id) => blocks.has(`${id.toString('hex')}!0`),
  };
}

/** A v2-only fake MS-PCCRR client. */
function rawClient(getRawBlock: PullClient['getRawBlock']): PullClient {
  return {
    getBlock: async () => {
      throw new Error('unused');
    },
    getRawBlock,
  };
}

/** Waits until every queued microtask and immediate has run (the fakes never touch the network). */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

function batched(ids: Buffer[], port = 8080): Buffer {
  return encodeRequest({
    type: 'BATCHED_OFFER',
    port,
    descriptors: ids.map((segmentId) => ({
      blockSize: SEG,
      segmentSize: SEG,
      contentTag: Buffer.alloc(16),
      hashAlgorithm: 4,
      segmentId,
    })),
  });
}

t.test('27.4: a client that floods the pull queue does not starve an honest offer', async (t) => {
  const store = memoryStore();
  const held: (() => void)[] = [];
  const pulledFrom: string[] = [];
  const client = rawClient(async (req) => {
    pulledFrom.push(req.peer);
    // The attacker answers each pull just before the timer (here: never, until the test ends).
    if (req.peer.startsWith('10.0.0.66:')) await new Promise<void>((r) => held.push(r));
    return { cryptoAlgo: 0, block: randomBytes(SEG), iv: Buffer.alloc(0) };
  });
  const puller = new Puller({ store, client, rateBytesPerSec: 0 });
  const offers = new OfferHandler({ store, pull: (task) => puller.offer(task) });
  // As in the issue: 33 BATCHED_OFFERs of 128 random IDs from one host (4,224 segments).
  const answers: number[] = [];
  for (let k = 0; k < 33; k++) {
    const r = offers.handle(batched(Array.from({ length: 128 }, () => randomBytes(32))), '10.0.0.66');
    if (r.ok) answers.push(r.code === 0 && !('busy' in r && r.busy) ? 0 : 1);
  }
  t.ok(answers.includes(1), "offers beyond the client's share of the queue are not answered OK");
  t.equal(answers.indexOf(1) > 0, true, 'its first offers were queued and answered OK');
  const honest = randomBytes(32);
  const r = offers.handle(batched([honest], 80), '10.0.0.7');
  t.ok(r.ok && r.code === 0 && !('busy' in r && r.busy), 'the honest offer is answered OK');
  await settle();
  t.ok(pulledFrom.includes('10.0.0.7:80'), 'and it is pulled while the flooder still holds its pulls');
  t.ok(store.getSegment(honest), 'the honest segment is stored');
  for (const h of held.splice(0)) h();
  await puller.close();
  for (const h of held.splice(0)) h();
});

t.test('27.4: waiting pulls are dequeued round robin across clients', async (t) => {
  const store = memoryStore();
  const gates: (() => void)[] = [];
  const order: string[] = [];
  const client = rawClient(async (req) => {
    order.push(req.peer.split(':')[0]!);
    await new Promise<void>((r) => gates.push(r));
    return { cryptoAlgo: 0, block: randomBytes(SEG), iv: Buffer.alloc(0) };
  });
  const p = new Puller({ store, client, concurrency: 1, perPeer: 1, rateBytesPerSec: 0 });
  const task = (host: string) => ({
    kind: 'v2' as const,
    peer: `${host}:80`,
    segmentId: randomBytes(32),
    segmentSize: SEG,
  });
  for (let k = 0; k < 4; k++) p.offer(task('10.0.0.1'));
  p.offer(task('10.0.0.2'));
  p.offer(task('10.0.0.3'));
  // Same /64 on IPv6: one client, whatever the address.
  p.offer({ ...task('x'), peer: '[fd00:1:2:3::10]:80' });
  p.offer({ ...task('x'), peer: '[fd00:1:2:3::11]:80' });
  while (p.snapshot().inProgress + p.snapshot().waiting > 0) {
    await settle(3);
    gates.shift()?.();
  }
  await p.idle();
  t.same(
    order,
    ['10.0.0.1', '10.0.0.2', '10.0.0.3', '[fd00', '10.0.0.1', '[fd00', '10.0.0.1', '10.0.0.1'],
    'one pull per client in turn',
  );
  await p.close();
});

t.test('27.12: failed pulls are logged at a bounded rate', async (t) => {
  const lines: string[] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: (m) => lines.push(m),
    warn: (m) => lines.push(m),
    error: (m) => lines.push(m),
    child: () => logger,
  };
  const client = rawClient(async () => {
    throw new Error('connection refused');
  });
  const p = new Puller({ store: memoryStore(), client, rateBytesPerSec: 0, logger, concurrency: 64, perPeer: 64 });
  for (let k = 0; k < 200; k++)
    p.offer({ kind: 'v2', peer: `10.0.${k >> 8}.${k & 255}:80`, segmentId: randomBytes(32), segmentSize: SEG });
  await p.idle();
  t.equal(p.snapshot().failures, 200);
  t.ok(lines.length <= 10, `${lines.length} log lines for 200 failed pulls (at most 10)`);
  await p.close();
});

t.test('27.4: an offer that could not be queued gets HTTP 503 (not OK) and the offerer offers it again', async (t) => {
  const { createServer } = await import('node:http');
  const { createHostedCacheHandler } = await import('../../src/hostedcache/hosted-cache.js');
  const { Offerer } = await import('../../src/hostedcache/offerer.js');
  const { nullLogger } = await import('../../src/util/log.js');
  const { randomV2 } = await import('../cache/make.js');
  const store = memoryStore();
  // The first offer finds the client's share of the queue full; the next one is queued.
  const outcomes: string[] = [];
  const offers = new OfferHandler({
    store,
    pull: () => {
      const r = outcomes.length === 0 ? 'refused' : 'queued';
      outcomes.push(r);
      return r;
    },
  });
  const server = createServer(createHostedCacheHandler(offers, undefined, nullLogger));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const statuses: number[] = [];
  let secondAnswer: () => void = () => undefined;
  const second = new Promise<void>((r) => {
    secondAnswer = r;
  });
  const offerer = new Offerer({
    target: { host: '127.0.0.1', port, version: 2 },
    localPort: 8080,
    logger: nullLogger,
    post: async (url, body, signal) => {
      const { request } = await import('undici');
      const res = await request(url, { method: 'POST', body, signal });
      const b = Buffer.from(await res.body.arrayBuffer());
      statuses.push(res.statusCode);
      if (statuses.length === 2) secondAnswer();
      if (res.statusCode === 503) t.equal(res.headers['retry-after'], '5', 'with Retry-After');
      const { PchcHttpError } = await import('../../src/hostedcache/offerer.js');
      if (res.statusCode !== 200) throw new PchcHttpError(res.statusCode, 0); // offer again at once (test)
      return b;
    },
  });
  t.teardown(() => offerer.close());
  offerer.offer(randomV2(SEG).meta);
  await offerer.flush();
  await second; // the offerer's next attempt, after Retry-After (0 here)
  t.same(statuses, [503, 200], 'refused, then offered again and taken');
  t.same(outcomes, ['refused', 'queued']);
  await offerer.flush();
  const st = offerer.snapshot();
  t.equal(st.busy, 1);
  t.equal(st.ok, 1);
  t.equal(st.segmentsOffered, 1);
  t.equal(offers.stats.answeredBusy, 1);
});
