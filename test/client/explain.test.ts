// `peerdist explain` against real daemons on loopback: the first download of a file (nobody
// answers discovery, every block from the origin because discovery found nobody) and the second
// (one peer served every block); by job ID, by URL, the last one, --json.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOriginServer } from '../../src/origin/server.js';
import { publishDirectory } from '../../src/origin/publish.js';
import { loadOrCreateSecret } from '../../src/origin/secret.js';
import type { DownloadTrace } from '../../src/daemon/traces.js';
import { runCli } from '../helpers/cli.js';
import { startDaemonChild, freeUdpPort, type DaemonChild } from '../daemon/daemon-child.js';

const SIZE = 700_000;

t.test('explain two downloads', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pd-explain-'));
  const children: DaemonChild[] = [];
  t.teardown(async () => {
    await Promise.all(children.map((c) => c.stop(2000)));
    await rm(root, { recursive: true, force: true });
  });
  const www = join(root, 'www');
  await mkdir(www);
  await writeFile(join(www, 'f.bin'), randomBytes(SIZE));
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
  const port = await freeUdpPort();
  const args = (n: number) => [
    '--state-dir',
    join(root, `d${n}`),
    '--listen',
    `127.0.0.${50 + n}:0`,
    '--interface',
    '127.0.0.1',
    '--admin',
    '127.0.0.1:0',
    '--discovery-port',
    String(port),
    '--no-presence',
    '--max-content-version',
    '1',
  ];
  const [d1, d2] = await Promise.all([
    startDaemonChild(args(1), { timeoutMs: 60_000 }),
    startDaemonChild(args(2), { timeoutMs: 60_000 }),
  ]);
  children.push(d1!, d2!);

  const none = await runCli(['explain', '--daemon', d1!.ready.admin]);
  t.equal(none.code, 1, 'nothing to explain yet');
  t.match(none.stderr, /no download yet/);

  const g1 = await runCli(['get', url, '-o', join(root, 'one.bin'), '--daemon', d1!.ready.admin, '--json'], {
    timeoutMs: 60_000,
  });
  t.equal(g1.code, 0, g1.stderr);
  const j1 = await runCli(['explain', url, '--daemon', d1!.ready.admin, '--json']);
  t.equal(j1.code, 0, j1.stderr);
  const t1 = JSON.parse(j1.stdout) as DownloadTrace;
  t.match(t1, { url, state: 'done', content: { version: 1, contentLength: SIZE, segments: 1, blocks: 11 } });
  t.ok(t1.rounds.length >= 1, `${t1.rounds.length} discovery rounds`);
  t.ok(
    t1.rounds.every((r) => r.answers.length === 0),
    'nobody answered',
  );
  t.same(t1.peers, []);
  t.match(t1.origin, { blocks: 11, bytes: SIZE, byReason: { 'no-peer-found': { blocks: 11, bytes: SIZE } } });
  t.equal(t1.origin.requests.length, 11, 'every origin request listed');
  t.match(t1.totals, { bytes: SIZE, fromOrigin: SIZE, fromPeers: 0 });
  const x1 = await runCli(['explain', '--daemon', d1!.ready.admin]);
  t.match(x1.stdout, /^ {2}=> no peer answered discovery$/m);
  t.match(x1.stdout, /^ {2}11 blocks \(683\.6 KiB\) because discovery found nobody$/m);

  const g2 = await runCli(['get', url, '-o', join(root, 'two.bin'), '--daemon', d2!.ready.admin, '--json'], {
    timeoutMs: 60_000,
  });
  t.equal(g2.code, 0, g2.stderr);
  const jobs = JSON.parse(
    (await runCli(['explain', 'last', '--daemon', d2!.ready.admin, '--json'])).stdout,
  ) as DownloadTrace;
  const byId = JSON.parse(
    (await runCli(['explain', jobs.id, '--daemon', d2!.ready.admin, '--json'])).stdout,
  ) as DownloadTrace;
  t.equal(byId.id, jobs.id, 'the same trace by job ID');
  t.equal(byId.peers.length, 1);
  t.match(byId.peers[0], { address: d1!.ready.retrieval, blocks: 11, bytes: SIZE });
  t.equal(byId.origin.blocks, 0);
  t.ok(
    byId.rounds.some((r) => r.answers.some((a) => a.peer === d1!.ready.retrieval && a.segments === 1)),
    'a round answered by daemon 1',
  );
  const x2 = await runCli(['explain', jobs.id, '--daemon', d2!.ready.admin]);
  t.match(
    x2.stdout,
    new RegExp(
      `^  ${d1!.ready.retrieval.replace(/\./g, '\\.')}: 11 blocks \\(100\\.0% of the blocks\\), 683\\.6 KiB at `,
      'm',
    ),
  );
  t.match(x2.stdout, /^origin: 0 blocks \(0\.0% of the blocks\)/m);
  t.comment(x2.stdout);
  const unknown = await runCli(['explain', 'no-such-job', '--daemon', d2!.ready.admin]);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /no trace of job no-such-job/);
});
