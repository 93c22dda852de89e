// Real daemons on loopback: a daemon on battery serves nobody, and a daemon with an upload cap
// still downloads from its peers at full speed (the cap applies only to what it serves).
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOriginServer } from '../../src/origin/server.js';
import { publishDirectory } from '../../src/origin/publish.js';
import { loadOrCreateSecret } from '../../src/origin/secret.js';
import { runCli } from '../helpers/cli.js';
import { startDaemonChild, freeUdpPort, type DaemonChild } from './daemon-child.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const SIZE = 1024 * 1024 + 999;

t.test('battery and upload cap with real daemons', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pd-limits-'));
  const children: DaemonChild[] = [];
  t.teardown(async () => {
    await Promise.all(children.map((c) => c.stop(2000)));
    await rm(root, { recursive: true, force: true });
  });
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

  const power = join(root, 'power', 'BAT0');
  await mkdir(power, { recursive: true });
  await writeFile(join(power, 'type'), 'Battery\n');
  await writeFile(join(power, 'status'), 'Discharging\n');

  const discoveryPort = await freeUdpPort();
  const args = (n: number, extra: string[] = []) => [
    '--state-dir',
    join(root, `d${n}`),
    '--listen',
    `127.0.0.${n + 20}:0`,
    '--interface',
    '127.0.0.1',
    '--admin',
    '127.0.0.1:0',
    '--discovery-port',
    String(discoveryPort),
    '--no-presence',
    ...extra,
  ];
  const d1 = await startDaemonChild(args(1), {
    timeoutMs: 60_000,
    env: { PEERDIST_POWER_SUPPLY_DIR: join(root, 'power') },
  });
  children.push(d1);
  const d2 = await startDaemonChild(args(2), { timeoutMs: 60_000 });
  children.push(d2);
  const d3 = await startDaemonChild(args(3, ['--upload-rate-limit', '1000']), { timeoutMs: 60_000 });
  children.push(d3);

  const get = async (d: DaemonChild, name: string) => {
    const r = await runCli(['get', url, '-o', join(root, name), '--daemon', d.ready.admin, '--json'], {
      timeoutMs: 60_000,
    });
    t.equal(r.code, 0, r.stderr);
    t.equal(sha(await readFile(join(root, name))), sha(data), `${name} is intact`);
    return JSON.parse(r.stdout) as Record<string, number>;
  };
  const status = async (d: DaemonChild) =>
    JSON.parse((await runCli(['status', '--daemon', d.ready.admin, '--json'])).stdout) as {
      retrievalServer: Record<string, number>;
      discovery: Record<string, number>;
      shares: { lastHour: Record<string, number>; lastDay: Record<string, number> };
      discoveryAttempts: { attempts: number; successes: number };
    };

  const r1 = await get(d1, 'one.bin');
  t.equal(r1.fromOrigin, SIZE, 'daemon 1 (on battery) fetched from the origin');
  const r2 = await get(d2, 'two.bin');
  t.equal(r2.fromPeers, 0, 'daemon 2 got nothing from daemon 1, which runs on battery');
  t.equal(r2.fromOrigin, SIZE);
  const s1 = await status(d1);
  t.equal(s1.retrievalServer.blocksServed, 0, 'daemon 1 served no block');
  t.equal(s1.discovery.matchesSent ?? 0, 0, 'daemon 1 answered no probe');

  const r3 = await get(d3, 'three.bin');
  t.equal(r3.fromPeers, SIZE, 'daemon 3 (upload cap 1000 B/s) got the whole file from daemon 2');
  const s3 = await status(d3);
  t.equal(s3.retrievalServer.throttled, 0, 'its own download never went through its upload cap');
  t.match(
    s3.shares.lastHour,
    { fromPeers: SIZE, fromOrigin: 0, bytes: SIZE, peerShare: 1 },
    'status: 100% from peers in the last hour',
  );
  t.match(s3.shares.lastDay, { fromPeers: SIZE, peerShare: 1 });
  t.ok(s3.discoveryAttempts.successes >= 1, 'a discovery round found a peer');
  const text = await runCli(['status', '--daemon', d3.ready.admin]);
  t.match(
    text.stdout,
    /^last hour \(up \d+ min\): 1\.0 MiB downloaded, 100% from peers \(origin 0%, local cache 0%\)$/m,
    'status text shows the share from peers',
  );
  const m = await fetch(`http://${d3.ready.admin}/metrics`).then((r) => r.text());
  t.match(
    m,
    new RegExp(`^peerdist_retrieval_bytes_from_cache_total ${SIZE}$`, 'm'),
    'BranchCache counter: bytes from cache',
  );
  t.match(m, /^peerdist_retrieval_bytes_from_server_total 0$/m);
  t.match(m, /^peerdist_cache_hit_ratio 1$/m);
  t.match(m, /^peerdist_cache_complete_segments [1-9]\d*$/m);
  t.match(m, /^peerdist_cache_partial_segments 0$/m);
  const s2 = await status(d2);
  t.equal(s2.retrievalServer.bytesServed, SIZE, 'daemon 2 served it');
});
