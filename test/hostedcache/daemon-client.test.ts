/**
 * The daemon's client role: two daemons that cannot discover each other (separate discovery
 * ports: two subnets) and a hosted cache. The first download comes from the origin and its
 * segments are offered; the hosted cache pulls them; the second daemon then gets every block
 * from the hosted cache and nothing from the origin. v2 (BATCHED_OFFER, HTTP) and v1
 * (INITIAL_OFFER / SEGMENT_INFO over HTTPS with the exported certificate).
 */
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createOriginServer } from '../../src/origin/server.js';
import { publishDirectory } from '../../src/origin/publish.js';
import { loadOrCreateSecret } from '../../src/origin/secret.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/daemon.js';
import { resolveConfig } from '../../src/daemon/config.js';
import { startHostedCache } from '../../src/hostedcache/hosted-cache.js';
import { certPath } from '../../src/hostedcache/cert.js';
import { nullLogger, createLogger } from '../../src/util/log.js';
const dbg = process.env.HC_DEBUG ? createLogger({ component: 'test' }, 'info') : nullLogger;
import { freeUdpPort } from '../daemon/daemon-child.js';
import { tempDir } from '../cache/make.js';

const SIZE = 700_000;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

async function scenario(t: Test, version: 1 | 2): Promise<void> {
  const root = await tempDir(t, 'peerdist-hcd-');
  const www = join(root, 'www');
  await mkdir(www);
  const data = randomBytes(SIZE);
  await writeFile(join(www, 'f.bin'), data);
  const originState = join(root, 'origin');
  await publishDirectory({
    root: www,
    stateDir: originState,
    secret: await loadOrCreateSecret(originState),
    versions: [1, 2],
  });
  const origin = await createOriginServer({ root: www, stateDir: originState, host: '127.0.0.1', port: 0 });
  const o = await origin.listen();
  t.teardown(() => origin.close());
  const url = `http://127.0.0.1:${o.port}/f.bin`;

  const hc = await startHostedCache(
    {
      stateDir: join(root, 'hc'),
      http: { host: '127.0.0.1', port: 0 },
      https: version === 1 ? { host: '127.0.0.1', port: 0 } : undefined,
      admin: { kind: 'tcp', host: '127.0.0.1', port: 0 },
      cacheLimitBytes: 1 << 30,
    },
    { logger: dbg },
  );
  t.teardown(() => hc.close());
  const httpPort = hc.ready.http.split(':')[1]!;
  const hcFlags =
    version === 2
      ? { hostedCache: [`127.0.0.1:${httpPort}`], hostedCacheVersion: '2' }
      : {
          hostedCache: [`127.0.0.1:${hc.ready.https!.split(':')[1]}`],
          hostedCacheVersion: '1',
          hostedCacheCa: certPath(join(root, 'hc')),
          hostedCacheRetrievalPort: httpPort,
        };

  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    for (const d of daemons) await d.close();
  });
  for (const n of [1, 2]) {
    const config = resolveConfig({
      flags: {
        stateDir: join(root, `d${n}`),
        listen: `127.0.0.${n + 1}:0`,
        interface: '127.0.0.1',
        admin: '127.0.0.1:0',
        discoveryPort: String(await freeUdpPort()),
        presence: false,
        maxContentVersion: String(version),
        ...hcFlags,
      },
      defaultStateDir: root,
    });
    t.equal(config.hostedCaches.length, 1);
    daemons.push(await startDaemon(config, { logger: dbg }));
  }
  const [d1, d2] = daemons as [RunningDaemon, RunningDaemon];

  const r1 = await d1.engine.download(url).done;
  t.equal(r1.fromOrigin, SIZE, 'first client: everything from the origin');
  t.ok(
    await until(
      () => hc.stats().bytesPulled >= SIZE && hc.stats().pullsInProgress + hc.stats().pullsWaiting === 0,
      10_000,
    ),
    'the hosted cache pulled the offered segments',
  );
  await hc.puller.idle();
  const st = hc.stats();
  t.equal(st.pullFailures, 0);
  if (version === 2) {
    t.ok(st.batchedOffers >= 1);
    t.equal(st.bytesPulled >= SIZE, true, `pulled ${st.bytesPulled} bytes`);
  } else {
    t.ok(st.initialOffers >= 1 && st.segmentInfos >= 1);
    t.equal(st.bytesPulled, SIZE);
  }

  const job = d2.engine.download(url);
  const r2 = await job.done;
  t.equal(r2.fromOrigin, 0, 'second client (other subnet): nothing from the origin');
  t.equal(r2.fromPeers, SIZE, 'every block from the hosted cache');
  t.same(
    r2.peerStats.filter((p) => p.blocks > 0).map((p) => p.address),
    [`127.0.0.1:${httpPort}`],
  );
  const chunks: Buffer[] = [];
  for await (const c of job.createReadStream() as AsyncIterable<Buffer>) chunks.push(c);
  t.equal(sha(Buffer.concat(chunks)), sha(data), 'content correct');
  t.ok(hc.stats().bytesServed >= SIZE);
}

t.test('v2 hosted cache (BATCHED_OFFER over HTTP)', (t) => scenario(t, 2));
t.test('v1 hosted cache (INITIAL_OFFER / SEGMENT_INFO over HTTPS)', (t) => scenario(t, 1));
