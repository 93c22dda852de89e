/**
 * The hosted cache end to end on loopback: a "client" (block store + MS-PCCRR server) offers its
 * segments with the Offerer (v2 over HTTP, v1 over HTTPS with the generated certificate), the
 * hosted cache pulls them from the client's address only, stores them, and serves them to anyone
 * over MS-PCCRR; malformed and oversized offers get 400 / 413; status and metrics report it.
 */
import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import { BlockStore } from '../../src/cache/store.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { asSegmentInfo } from '../../src/cache/meta.js';
import { startHostedCache, type RunningHostedCache } from '../../src/hostedcache/hosted-cache.js';
import { certPath } from '../../src/hostedcache/cert.js';
import { Offerer } from '../../src/hostedcache/offerer.js';
import { encodeRequest, PCHC_PATH_V2, PCHC_PATH_V1 } from '../../src/protocol/pchc/codec.js';
import { nullLogger } from '../../src/util/log.js';
import { PCCRR_PATH, encodeRequest as encodePccrr } from '../../src/protocol/pccrr/codec.js';
import { CROWD_HEADER, CROWD_REQUEST_VALUE, parseCrowd } from '../../src/protocol/pchc/crowd.js';
import { runCli } from '../helpers/cli.js';
import { putAll, randomV1, randomV2, tempDir, type TestSegment } from '../cache/make.js';

async function client(t: Test, segs: TestSegment[]) {
  const store = await BlockStore.open({
    dir: await tempDir(t, 'peerdist-hc-client-'),
    fsync: false,
    limitBytes: 1 << 30,
  });
  t.teardown(() => store.close());
  for (const s of segs) {
    await store.addSegment(s.meta);
    await putAll(store, s);
  }
  const server = createRetrievalServer({ source: store, logger: nullLogger });
  const { port } = await server.listen();
  t.teardown(() => server.close());
  return { store, server, port };
}

async function hostedCache(
  t: Test,
  extra: Partial<Parameters<typeof startHostedCache>[0]> = {},
): Promise<RunningHostedCache & { stateDir: string }> {
  const stateDir = await tempDir(t, 'peerdist-hc-');
  const hc = await startHostedCache(
    {
      stateDir,
      http: { host: '127.0.0.1', port: 0 },
      https: { host: '127.0.0.1', port: 0 },
      admin: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      cacheLimitBytes: 1 << 30,
      ...extra,
    },
    { logger: nullLogger },
  );
  t.teardown(() => hc.close());
  return Object.assign(hc, { stateDir });
}

async function fetchAll(t: Test, peer: string, segs: TestSegment[]): Promise<void> {
  const rc = new RetrievalClient({ logger: nullLogger });
  t.teardown(() => rc.close());
  for (const s of segs) {
    for (let i = 0; i < s.blocks.length; i++) {
      const r = await rc.getBlock({
        peer,
        segmentId: s.meta.segmentId,
        index: i,
        kp: s.meta.kp,
        expectedLength: s.blocks[i]!.length,
        verify: (b) => verifyBlock(s.meta.version, asSegmentInfo(s.meta), i, b),
      });
      t.same(
        r.data,
        s.blocks[i],
        `block ${i} of ${s.meta.segmentId.toString('hex').slice(0, 8)} from the hosted cache`,
      );
    }
  }
}

t.test('v2: BATCHED_OFFER over HTTP, replay records served verbatim and decrypted by the client', async (t) => {
  const segs = [randomV2(39390), randomV2(60320), randomV2(131072)];
  const c = await client(t, segs);
  const hc = await hostedCache(t);
  const offerer = new Offerer({
    target: { host: '127.0.0.1', port: Number(hc.ready.http.split(':')[1]), version: 2 },
    localPort: c.port,
    logger: nullLogger,
  });
  t.teardown(() => offerer.close());
  for (const s of segs) offerer.offer(s.meta);
  offerer.offer(segs[0]!.meta); // offered once only
  await offerer.flush();
  t.same(offerer.snapshot(), {
    requests: 1,
    segmentsOffered: 3,
    ok: 1,
    interested: 0,
    failures: 0,
    busy: 0,
    queued: 0,
  });
  await hc.puller.idle();
  const st = hc.stats();
  t.equal(st.batchedOffers, 1);
  t.equal(st.descriptors, 3);
  t.equal(st.segmentsPulled, 3);
  t.equal(
    st.bytesPulled,
    segs.reduce((a, s) => a + Math.ceil((s.data.length + 1) / 16) * 16, 0),
    'AES ciphertext bytes pulled',
  );
  for (const s of segs) {
    const m = hc.store.getSegment(s.meta.segmentId);
    t.ok(m?.replay, 'stored as a replay record');
    t.ok(hc.store.isComplete(s.meta.segmentId));
  }
  t.equal(c.server.stats().blocksServed, 3, 'one GETBLKS per segment');
  await fetchAll(t, hc.ready.http, segs);
  t.equal(hc.stats().blocksServed, 3);
  // Offering again pulls nothing.
  const again = new Offerer({ target: offerer.target, localPort: c.port, logger: nullLogger });
  t.teardown(() => again.close());
  for (const s of segs) again.offer(s.meta);
  await again.flush();
  await hc.puller.idle();
  t.equal(c.server.stats().blocksServed, 3);
  const v = await hc.store.verifyAll();
  t.equal(v.bad.length, 0);
  t.equal(v.blocks, 3);
  // The cache CLI works on the hosted cache's state dir once it has stopped (records kept across restarts).
  await hc.close();
  const ls = await runCli(['cache', 'ls', '--state-dir', hc.stateDir, '--json']);
  t.equal(ls.code, 0, ls.stderr);
  const list = JSON.parse(ls.stdout) as { segmentId: string; replay?: boolean; blocksPresent: number }[];
  t.same(list.map((e) => e.segmentId).sort(), segs.map((s) => s.meta.segmentId.toString('hex')).sort());
  t.ok(list.every((e) => e.replay === true && e.blocksPresent === 1));
  const verify = await runCli(['cache', 'verify', '--state-dir', hc.stateDir]);
  t.equal(verify.code, 0, verify.stdout + verify.stderr);
  const cert = await runCli(['hosted-cache', 'export-cert', '--state-dir', hc.stateDir]);
  t.equal(cert.code, 0);
  t.equal(cert.stdout, await readFile(certPath(hc.stateDir), 'utf8'), 'export-cert prints the generated certificate');
});

t.test('v1: INITIAL_OFFER / SEGMENT_INFO over HTTPS with the generated certificate', async (t) => {
  const segs = [randomV1(3, 1000), randomV1(1, 65536)];
  const c = await client(t, segs);
  const hc = await hostedCache(t);
  const ca = await readFile(certPath(hc.stateDir), 'utf8');
  const port = Number(hc.ready.https!.split(':')[1]);
  const offerer = new Offerer({
    target: { host: '127.0.0.1', port, version: 1, ca },
    localPort: c.port,
    logger: nullLogger,
  });
  t.teardown(() => offerer.close());
  for (const s of segs) offerer.offer(s.meta);
  await offerer.flush();
  t.same(offerer.snapshot(), {
    requests: 4,
    segmentsOffered: 2,
    ok: 2,
    interested: 2,
    failures: 0,
    busy: 0,
    queued: 0,
  });
  await hc.puller.idle();
  const st = hc.stats();
  t.equal(st.initialOffers, 2);
  t.equal(st.segmentInfos, 2);
  t.equal(st.answeredInterested, 2);
  t.equal(st.segmentsPulled, 2);
  t.equal(st.blocksPulled, 4, 'one GETBLKS per block');
  t.equal(st.bytesPulled, 3 * 65536 + 1000);
  for (const s of segs) t.ok(hc.store.isComplete(s.meta.segmentId) && !hc.store.getSegment(s.meta.segmentId)!.replay);
  await fetchAll(t, hc.ready.http, segs);
  // A second INITIAL_OFFER of a segment we hold is answered OK: nothing more to send.
  const again = new Offerer({ target: offerer.target, localPort: c.port, logger: nullLogger });
  t.teardown(() => again.close());
  again.offer(segs[0]!.meta);
  await again.flush();
  t.same(again.snapshot(), { requests: 1, segmentsOffered: 1, ok: 1, interested: 0, failures: 0, busy: 0, queued: 0 });
  // Without the CA the HTTPS offer fails (the certificate is not trusted by default).
  const untrusting = new Offerer({
    target: { host: '127.0.0.1', port, version: 1 },
    localPort: c.port,
    logger: nullLogger,
  });
  t.teardown(() => untrusting.close());
  untrusting.offer(randomV1(1).meta);
  await untrusting.flush();
  t.equal(untrusting.snapshot().failures, 1);
});

t.test('pulls go only to the offering address; a client that lacks the blocks costs nothing', async (t) => {
  const s = randomV1(2);
  const c = await client(t, []); // holds nothing
  const hc = await hostedCache(t);
  const offerer = new Offerer({
    target: { host: '127.0.0.1', port: Number(hc.ready.http.split(':')[1]), version: 1 },
    localPort: c.port,
    logger: nullLogger,
    post: async (url, body, signal) => {
      const r = await request(url.replace('https:', 'http:'), { method: 'POST', body, signal });
      return Buffer.from(await r.body.arrayBuffer());
    },
  });
  t.teardown(() => offerer.close());
  offerer.offer(s.meta);
  await offerer.flush();
  await hc.puller.idle();
  // One request per block: a client may hold part of a segment (Windows offers at ~20 %), so a
  // missing block does not end the pull (issue 27.11).
  t.equal(c.server.stats().requests, 2, 'the hosted cache asked the offering client (and it had nothing)');
  t.equal(hc.stats().pullFailures, 2);
  t.equal(hc.stats().segmentsPulled, 0);
  t.equal(hc.store.presentBlocks(s.meta.segmentId).length, 0);
  t.equal(hc.store.getSegment(s.meta.segmentId), undefined, 'the failed pull left no metadata (issue 27.5)');
});

t.test('HTTP front: malformed 400, oversized 413, wrong path 404, wrong method 405; status and metrics', async (t) => {
  const hc = await hostedCache(t, { https: undefined });
  t.equal(hc.ready.https, null);
  const base = `http://${hc.ready.http}`;
  const post = async (path: string, body: Buffer, method = 'POST') => {
    const r = await request(base + path, { method, body: method === 'POST' ? body : undefined });
    return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) };
  };
  const good = encodeRequest({ type: 'INITIAL_OFFER', port: 1, hash: Buffer.alloc(32, 9) });
  t.same(
    await post(PCHC_PATH_V2, good),
    { status: 200, body: Buffer.from('0000000101', 'hex') },
    'unknown segment: INTERESTED',
  );
  t.same((await post(PCHC_PATH_V1.toLowerCase() + '/', good)).status, 200, 'either path, any case, trailing slash');
  t.equal((await post(PCHC_PATH_V2 + '?x=1', good)).status, 200);
  t.equal((await post(PCHC_PATH_V2, good.subarray(0, 20))).status, 400);
  t.equal((await post(PCHC_PATH_V2, Buffer.alloc(0))).status, 400);
  const badVersion = Buffer.from(good);
  badVersion[1] = 3;
  t.equal((await post(PCHC_PATH_V2, badVersion)).status, 400);
  t.equal((await post(PCHC_PATH_V2, Buffer.alloc(70_000))).status, 413);
  t.equal((await post('/elsewhere', good)).status, 404);
  t.equal((await post(PCHC_PATH_V2, good, 'GET')).status, 405);
  // SEGMENT_INFO with a bad content information: OK, nothing fetched.
  const si = encodeRequest({
    type: 'SEGMENT_INFO',
    port: 1,
    contentTag: Buffer.alloc(16),
    segmentInformation: Buffer.from('garbage'),
  });
  t.same((await post(PCHC_PATH_V2, si)).body, Buffer.from('0000000100', 'hex'));
  // BATCHED_OFFER with an unknown HashAlgorithm: OK, skipped.
  const bo = encodeRequest({
    type: 'BATCHED_OFFER',
    port: 1,
    descriptors: [
      { blockSize: 10, segmentSize: 10, contentTag: Buffer.from('t'), hashAlgorithm: 9, segmentId: Buffer.alloc(32) },
    ],
  });
  t.same((await post(PCHC_PATH_V2, bo)).body, Buffer.from('0000000100', 'hex'));
  const st = hc.stats();
  t.equal(st.offersReceived, 5);
  t.equal(st.dropped, 3);
  t.equal(st.badSegmentInfo, 1);
  t.equal(st.skippedDescriptors, 1);
  t.equal(st.pullsRequested, 0);

  const admin = `http://${hc.ready.admin}`;
  const status = (await (await request(`${admin}/v1/status`)).body.json()) as {
    role: string;
    downloads: unknown[];
    hostedCache: { offersReceived: number };
  };
  t.equal(status.role, 'hosted-cache');
  t.same(status.downloads, []);
  t.equal(status.hostedCache.offersReceived, 5);
  const metrics = await (await request(`${admin}/metrics`)).body.text();
  t.match(metrics, /peerdist_hc_offers_received_total\{type="initial_offer"\} 3/);
  t.match(metrics, /peerdist_hc_offers_dropped_total 3/);
  t.match(metrics, /peerdist_hc_offers_busy_total 0/);
  t.equal((await request(`${admin}/v1/fetch?url=http://x/`)).statusCode, 404);
  t.same(await (await request(`${admin}/v1/jobs`)).body.json(), []);
});

t.test(
  'crowds across subnets: marked MS-PCCRR requests are answered with the other askers (PeerDist-Crowd)',
  async (t) => {
    const hc = await hostedCache(t, { https: undefined });
    const url = `http://${hc.ready.http}${PCCRR_PATH}`;
    const agents = new Map<string, Agent>();
    t.teardown(async () => {
      for (const a of agents.values()) await a.close();
    });
    // Clients on different "subnets": distinct loopback source addresses.
    const ask = async (from: string, msg: Buffer, mark: boolean) => {
      let agent = agents.get(from);
      if (!agent) {
        agent = new Agent({ localAddress: from });
        agents.set(from, agent);
      }
      const r = await request(url, {
        method: 'POST',
        body: msg,
        dispatcher: agent,
        headers: mark ? { [CROWD_HEADER]: CROWD_REQUEST_VALUE } : {},
      });
      const body = Buffer.from(await r.body.arrayBuffer());
      return { status: r.statusCode, crowd: r.headers[CROWD_HEADER], body };
    };
    const ids = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    const seglist = (segmentIds: Buffer[]) =>
      encodePccrr({ type: 'GETSEGLIST', cryptoAlgo: 1, requestId: Buffer.alloc(16, 7), segmentIds });
    const a = await ask('127.0.0.2', seglist(ids), true);
    t.equal(a.status, 200);
    t.equal(a.crowd, '', 'first asker: an empty crowd (the header says the hosted cache reports crowds)');
    const b = await ask('127.0.0.3', seglist([ids[1]!]), true);
    t.equal(b.crowd, '127.0.0.2', 'the second asker is told of the first');
    const c = await ask(
      '127.0.0.4',
      encodePccrr({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: ids[0]!, ranges: [[0, 1]] }),
      true,
    );
    t.equal(c.crowd, '127.0.0.2', 'GETBLKS names its segment too');
    t.same(parseCrowd((await ask('127.0.0.2', seglist(ids), true)).crowd as string), ['127.0.0.4', '127.0.0.3']);
    // Unmarked (a Windows client): byte for byte the same response, no header, and not recorded.
    const plain = await ask('127.0.0.5', seglist(ids), false);
    const marked = await ask('127.0.0.6', seglist(ids), true);
    t.equal(plain.crowd, undefined, 'no PeerDist-Crowd header without the mark');
    t.same(plain.body, marked.body, 'the MS-PCCRR body is the same');
    t.notOk(parseCrowd(marked.crowd as string)!.includes('127.0.0.5'), 'an unmarked asker is not named');
    // A malformed marked request: the usual 400, no crowd header, nothing recorded.
    const bad = await ask('127.0.0.7', Buffer.alloc(40, 0xff), true);
    t.equal(bad.status, 400);
    t.equal(bad.crowd, undefined);
    t.equal(hc.stats().crowdAnswers, 5);
    const metrics = await (await request(`http://${hc.ready.admin}/metrics`)).body.text();
    t.match(metrics, /peerdist_hc_crowd_answers_total 5/);
  },
);
