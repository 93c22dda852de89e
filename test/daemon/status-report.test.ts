// Pure parts: metrics exposition, status/metrics assembly, peer tracking, interface choice,
// and the systemd unit's required settings.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderMetrics } from '../../src/daemon/metrics.js';
import { collectMetrics, statusDocument, type DaemonParts } from '../../src/daemon/status-report.js';
import { PeerTracker } from '../../src/daemon/peer-tracker.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { advertisedAddresses, chooseInterface, InterfaceError, type InterfaceMap } from '../../src/daemon/netif.js';
import { repoRoot } from '../helpers/paths.js';
import { FakeEngine } from './fake-engine.js';

t.test('Prometheus exposition', async (t) => {
  const text = renderMetrics([
    { name: 'a_total', type: 'counter', help: 'line1\nback\\slash', value: 3 },
    {
      name: 'b',
      type: 'gauge',
      help: 'h',
      value: [
        { labels: { source: 'x"y\\z\n' }, value: 1.5 },
        { labels: {}, value: NaN },
      ],
    },
  ]);
  t.equal(
    text,
    [
      '# HELP a_total line1\\nback\\\\slash',
      '# TYPE a_total counter',
      'a_total 3',
      '# HELP b h',
      '# TYPE b gauge',
      'b{source="x\\"y\\\\z\\n"} 1.5',
      'b NaN',
      '',
    ].join('\n'),
  );
  t.throws(() => renderMetrics([{ name: 'bad-name', type: 'gauge', help: '', value: 1 }]));
  t.throws(() =>
    renderMetrics([{ name: 'ok', type: 'gauge', help: '', value: [{ labels: { '0bad': 'v' }, value: 1 }] }]),
  );
});

t.test('status document and metrics from the parts', async (t) => {
  const engine = new FakeEngine();
  engine.totals = () => ({ fromOrigin: 10, fromPeers: 20, fromCache: 30, contentInfoBytes: 4, jobs: 2 });
  const peers = new PeerTracker(() => 1000);
  peers.record('127.0.0.3:1');
  peers.record('127.0.0.4:2');
  peers.record('127.0.0.3:1');
  const parts: DaemonParts = {
    engine,
    jobs: new JobBook(engine),
    peers,
    started: 0,
    now: () => 5000,
    version: '9.9',
    store: { stats: () => ({ bytes: 100, limitBytes: 1000, segments: 2, blocks: 3, evictions: 1 }) },
    server: { stats: () => ({ blocksServed: 7, bytesServed: 700, requests: 8, blocksMissing: 1, busy: 0 }) },
    discovery: { stats: () => ({ probesSent: 5, probesReceived: 6, matchesSent: 2, matchesReceived: 3 }) },
  };
  const s = statusDocument(parts);
  t.match(s, {
    version: '9.9',
    uptimeSeconds: 5,
    downloads: [],
    peersKnown: 2,
    peers: ['127.0.0.3:1', '127.0.0.4:2'],
    totals: {
      fromOrigin: 10,
      fromPeers: 20,
      fromCache: 30,
      contentInfoBytes: 4,
      servedToPeers: 700,
      blocksServedToPeers: 7,
      jobs: 2,
    },
  });
  const text = renderMetrics(collectMetrics(parts));
  for (const line of [
    'peerdist_download_bytes_total{source="origin"} 10',
    'peerdist_download_bytes_total{source="peers"} 20',
    'peerdist_download_bytes_total{source="cache"} 30',
    'peerdist_served_bytes_total 700',
    'peerdist_served_blocks_total 7',
    'peerdist_probes_sent_total 5',
    'peerdist_probe_matches_received_total 3',
    'peerdist_cache_bytes 100',
    'peerdist_cache_blocks 3',
    'peerdist_peers_known 2',
    'peerdist_downloads_active 0',
  ])
    t.ok(text.split('\n').includes(line), line);
});

t.test('peer tracker wraps discovery watches and forgets old peers', async (t) => {
  let now = 0;
  const tracker = new PeerTracker(() => now, 1000);
  const watch = Object.assign(new EventEmitter(), {
    peers: () => [],
    reportFailure() {},
    waitForPeers: async () => {},
    close() {},
  });
  const wrapped = tracker.wrap({ initialWaitMs: 123, watch: () => watch });
  t.equal(wrapped.initialWaitMs, 123);
  t.equal(wrapped.watch([Buffer.alloc(32)], 1), watch);
  watch.emit('peer', { segmentId: 'AA', address: '127.0.0.9:5', blockCount: 1, complete: false });
  t.same(tracker.known(), ['127.0.0.9:5']);
  now = 2000;
  t.same(tracker.known(), [], 'expired after maxAge');
});

t.test('interface choice and advertised addresses', async (t) => {
  const ifaces: InterfaceMap = {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [
      {
        address: 'fe80::1',
        netmask: 'ffff:ffff:ffff:ffff::',
        family: 'IPv6',
        mac: '',
        internal: false,
        cidr: null,
        scopeid: 2,
      },
      {
        address: '192.168.7.20',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '',
        internal: false,
        cidr: '192.168.7.20/24',
      },
    ],
  };
  t.same(chooseInterface('eth0', ifaces), {
    name: 'eth0',
    address: '192.168.7.20',
    netmask: '255.255.255.0',
    loopback: false,
  });
  t.same(chooseInterface('192.168.7.20', ifaces), {
    name: 'eth0',
    address: '192.168.7.20',
    netmask: '255.255.255.0',
    loopback: false,
  });
  t.match(chooseInterface('lo', ifaces), { address: '127.0.0.1', loopback: true });
  t.match(chooseInterface('127.0.0.1', ifaces), { address: '127.0.0.1', loopback: true });
  t.throws(() => chooseInterface('wlan9', ifaces), InterfaceError);
  t.throws(() => chooseInterface('10.9.9.9', ifaces), InterfaceError);
  const eth0 = chooseInterface('eth0', ifaces);
  t.same(advertisedAddresses({ host: '127.0.0.3', port: 5 }, undefined, ifaces), ['127.0.0.3:5'], 'bound address wins');
  t.same(
    advertisedAddresses({ host: '0.0.0.0', port: 80 }, eth0, ifaces),
    ['192.168.7.20:80'],
    'wildcard: the chosen interface',
  );
  t.same(
    advertisedAddresses({ host: '0.0.0.0', port: 80 }, undefined, ifaces),
    ['192.168.7.20:80'],
    'wildcard: every external IPv4',
  );
});

t.test('systemd unit', async (t) => {
  const unit = await readFile(join(repoRoot, 'packaging', 'peerdist.service'), 'utf8');
  const active = unit.split('\n').filter((l) => l && !l.startsWith('#'));
  const has = (kv: string) => active.includes(kv);
  for (const kv of [
    '[Service]',
    'Type=simple',
    'StateDirectory=peerdist',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    // The state directory is writable through StateDirectory= (ProtectSystem=strict leaves it so),
    // owned by the package's system user (packaging/README.md).
    'User=peerdist',
    '[Install]',
  ])
    t.ok(has(kv), kv);
  t.ok(
    active.some((l) => l.startsWith('ExecStart=/usr/bin/peerdist daemon --state-dir /var/lib/peerdist')),
    'ExecStart runs the daemon',
  );
  t.notOk(
    active.some((l) => l.startsWith('AmbientCapabilities=')),
    'no capabilities unless port 80 is configured',
  );
  t.match(unit, /^#AmbientCapabilities=CAP_NET_BIND_SERVICE$/m, 'port-80 capability documented, commented out');
});

t.test('job book: joins running jobs, keeps finished ones up to a limit', async (t) => {
  const data = Buffer.alloc(1000, 7);
  const engine = new FakeEngine(
    new Map([
      ['http://o/a', { data }],
      ['http://o/b', { data }],
      ['http://o/c', { data }],
    ]),
  );
  let now = 100;
  const book = new JobBook(engine, { keepFinished: 1, now: () => now });
  const a = book.obtain('http://o/a');
  t.equal(book.obtain('http://o/a'), a, 'same URL while running: same job');
  t.same(
    book.active().map((v) => v.id),
    [a.id],
  );
  const drain = async (s: NodeJS.ReadableStream) => {
    for await (const _ of s as AsyncIterable<Buffer>) {
      /* discard */
    }
  };
  now = 160;
  await new Promise((r) => setImmediate(r)); // the origin's answer (job.info) is seen at 160
  now = 600;
  await drain(a.createReadStream());
  await a.done;
  now = 900;
  await new Promise((r) => setImmediate(r));
  t.match(book.view(a.id), {
    state: 'done',
    seconds: 0.5,
    originAnswerSeconds: 0.06,
    startedAt: new Date(100).toISOString(),
    bytesDone: 1000,
    peerdist: true,
  });
  t.same(book.active(), []);
  const a2 = book.obtain('http://o/a');
  t.not(a2, a, 'a finished job is not joined: a new download starts');
  const b = book.obtain('http://o/b');
  await drain(a2.createReadStream());
  await drain(b.createReadStream());
  await new Promise((r) => setImmediate(r));
  t.equal(book.view(a.id), undefined, 'oldest finished job pruned beyond keepFinished');
  const failed = book.obtain('http://o/missing');
  await failed.done.catch(() => {});
  await new Promise((r) => setImmediate(r));
  t.match(book.view(failed.id), { state: 'failed', error: /404/, peerdist: null });
  t.notOk('originAnswerSeconds' in book.view(failed.id)!, 'no origin answer: no originAnswerSeconds');
});
