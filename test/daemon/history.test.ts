// Byte history (share from peers over the last hour/day), peer trouble, the BranchCache counter
// set in /metrics, and the status text.
import t from 'tap';
import { ByteHistory, PeerHealth } from '../../src/daemon/history.js';
import { collectMetrics, statusDocument, type DaemonParts } from '../../src/daemon/status-report.js';
import { renderMetrics } from '../../src/daemon/metrics.js';
import { PeerTracker } from '../../src/daemon/peer-tracker.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { statusText } from '../../src/client/format.js';
import { FakeEngine } from './fake-engine.js';

const MIN = 60_000,
  HOUR = 3_600_000;

t.test('byte history: windows over the last hour and day, bounded', async (t) => {
  const h = new ByteHistory();
  const tot = { fromOrigin: 0, fromPeers: 0, fromCache: 0 };
  // Two hours ago 100 from the origin, then 300 from peers in the last hour.
  h.record(0, tot);
  tot.fromOrigin = 100;
  h.record(HOUR, tot);
  for (let m = 61; m <= 120; m++) {
    tot.fromPeers += 5;
    h.record(m * MIN, tot);
  }
  const now = 120 * MIN;
  const hour = h.window(now, tot, HOUR);
  t.match(hour, { fromOrigin: 0, fromPeers: 300, fromCache: 0, bytes: 300, peerShare: 1, seconds: 3600 });
  const day = h.window(now, tot, 24 * HOUR);
  t.match(
    day,
    { fromOrigin: 100, fromPeers: 300, bytes: 400, peerShare: 0.75, offloadShare: 0.75, seconds: 7200 },
    'younger than a day: the whole uptime',
  );
  // Samples older than a day are dropped (one per minute for two days).
  for (let m = 121; m < 121 + 2 * 24 * 60; m++) h.record(m * MIN, tot);
  t.ok(h.size <= 24 * 60 + 3, `kept ${h.size} samples`);
  t.equal(h.window((121 + 2 * 24 * 60) * MIN, tot, HOUR).peerShare, null, 'nothing downloaded in the window');
});

t.test('peer health keeps only peers that failed, most recent first, bounded', async (t) => {
  const ph = new PeerHealth(2);
  ph.addJob(10, [
    { address: 'a:1', blocks: 5, failures: 0, notAvailable: 2, badBlocks: 0, banned: false },
    { address: 'b:1', blocks: 1, failures: 1, notAvailable: 0, badBlocks: 1, banned: true },
  ]);
  ph.addJob(20, [{ address: 'c:1', blocks: 0, failures: 3, notAvailable: 0, badBlocks: 0, banned: false }]);
  t.same(
    ph.list().map((p) => p.address),
    ['c:1', 'b:1'],
    'a peer that never failed is not listed',
  );
  ph.addJob(30, [{ address: 'd:1', blocks: 0, failures: 1, notAvailable: 0, badBlocks: 0, banned: false }]);
  t.same(
    ph.list().map((p) => p.address),
    ['d:1', 'c:1'],
    'the oldest trouble dropped at the cap',
  );
  ph.addJob(40, [{ address: 'c:1', blocks: 2, failures: 1, notAvailable: 0, badBlocks: 1, banned: true }]);
  t.match(ph.list()[0], { address: 'c:1', failures: 4, bans: 1, badBlocks: 1, blocks: 2, lastFailure: 40 });
  t.equal(ph.banned(), 1);
  t.equal(ph.failed(), 2);
});

t.test('BranchCache counters in /metrics; shares and trouble in the status document and text', async (t) => {
  const engine = new FakeEngine();
  engine.totals = () => ({ fromOrigin: 25, fromPeers: 60, fromCache: 15, contentInfoBytes: 4 });
  const peers = new PeerTracker(() => 1000);
  const w = {
    on: (_e: string, fn: (p: { address: string }) => void) => {
      fn({ address: '10.0.0.2:7170' });
      fn({ address: '10.0.0.3:7170' });
    },
    peers: () => [],
    reportFailure() {},
    waitForPeers: async () => {},
    close() {},
  };
  const wrapped = peers.wrap({ initialWaitMs: 0, watch: () => w as never });
  wrapped.watch([], 1);
  peers.wrap({ initialWaitMs: 0, watch: () => ({ ...w, on: () => undefined }) as never }).watch([], 1);
  const health = new PeerHealth();
  health.addJob(Date.UTC(2026, 10, 30, 21, 0), [
    { address: '10.0.0.9:7170', blocks: 3, failures: 2, notAvailable: 0, badBlocks: 1, banned: true },
  ]);
  const history = new ByteHistory();
  history.record(0, { fromOrigin: 0, fromPeers: 0, fromCache: 0 });
  const parts: DaemonParts = {
    engine,
    jobs: new JobBook(engine),
    peers,
    started: 0,
    now: () => 10 * MIN,
    version: '9',
    history,
    health,
    store: { stats: () => ({ bytes: 100, limitBytes: 1000, segments: 5, completeSegments: 3, blocks: 3 }) },
    server: { stats: () => ({ blocksServed: 7, bytesServed: 700, requests: 8, blocksMissing: 1, busy: 0 }) },
    discovery: { stats: () => ({}) },
  };
  const text = renderMetrics(collectMetrics(parts)).split('\n');
  for (const line of [
    'peerdist_retrieval_bytes_from_cache_total 75',
    'peerdist_retrieval_bytes_from_server_total 25',
    'peerdist_retrieval_bytes_served_total 700',
    'peerdist_cache_hit_ratio 0.75',
    'peerdist_discovery_attempts_total 2',
    'peerdist_discovery_successes_total 1',
    'peerdist_cache_complete_segments 3',
    'peerdist_cache_partial_segments 2',
    'peerdist_peers_failed 1',
    'peerdist_peers_banned 1',
  ])
    t.ok(text.includes(line), line);
  const s = statusDocument(parts);
  t.match(s.shares.lastHour, { bytes: 100, fromPeers: 60, peerShare: 0.6, seconds: 600 });
  t.same(s.discoveryAttempts, { attempts: 2, successes: 1 });
  t.equal(s.troublePeers.length, 1);
  const out = statusText(s as never);
  t.match(out, /^last hour \(up 10 min\): 100 B downloaded, 60% from peers \(origin 25%, local cache 15%\)$/m);
  t.match(out, /^last day \(up 10 min\): 100 B downloaded, 60% from peers/m);
  t.match(
    out,
    /^peers that failed or were banned:\n {2}10\.0\.0\.9:7170: BANNED in 1 download \(1 bad block\), 2 failed requests, 3 blocks delivered; last 2026-11-30T21:00:00\.000Z$/m,
  );
});

t.test('the Grafana dashboard parses and plots only metrics the daemon exports', async (t) => {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { repoRoot } = await import('../helpers/paths.js');
  const dash = JSON.parse(await readFile(join(repoRoot, 'packaging', 'peerdist-grafana.json'), 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  };
  const engine = new FakeEngine();
  const exported = new Set(
    collectMetrics({
      engine,
      jobs: new JobBook(engine),
      peers: new PeerTracker(),
      started: 0,
      version: '9',
      store: { stats: () => ({ bytes: 0, limitBytes: 0, segments: 0, blocks: 0 }) },
      server: { stats: () => ({ blocksServed: 0, bytesServed: 0, requests: 0, blocksMissing: 0, busy: 0 }) },
      discovery: { stats: () => ({}) },
    }).map((m) => m.name),
  );
  const titles = dash.panels.map((p) => p.title);
  for (const want of ['Bytes by source', 'Peer count', 'Cache use']) t.ok(titles.includes(want), `panel "${want}"`);
  for (const p of dash.panels)
    for (const target of p.targets) {
      for (const m of target.expr.match(/peerdist_[a-z_]+/g) ?? [])
        t.ok(exported.has(m), `${p.title}: ${m} is exported`);
    }
});
