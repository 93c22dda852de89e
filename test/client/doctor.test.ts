// `peerdist doctor` against real daemons on loopback: a healthy pair passes (each hears the
// other); no daemon, a port in use and a bad origin key fail with a remedy and exit status 1.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { startDaemonChild, freeUdpPort, type DaemonChild } from '../daemon/daemon-child.js';

interface Report {
  ok: boolean;
  checks: Array<{ id: string; status: string; detail: string; remedy?: string; blocking?: boolean }>;
}
const byId = (r: Report, id: string) => r.checks.find((c) => c.id === id);

t.test('doctor with two daemons on loopback, then with none', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pd-doctor-'));
  const children: DaemonChild[] = [];
  t.teardown(async () => {
    await Promise.all(children.map((c) => c.stop(2000)));
    await rm(root, { recursive: true, force: true });
  });
  const port = await freeUdpPort();
  const args = (n: number) => [
    '--state-dir',
    join(root, `d${n}`),
    '--listen',
    `127.0.0.${40 + n}:0`,
    '--interface',
    '127.0.0.1',
    '--admin',
    '127.0.0.1:0',
    '--discovery-port',
    String(port),
    '--no-presence',
  ];
  const [d1, d2] = await Promise.all([
    startDaemonChild(args(1), { timeoutMs: 60_000 }),
    startDaemonChild(args(2), { timeoutMs: 60_000 }),
  ]);
  children.push(d1!, d2!);

  const ok = await runCli(['doctor', '--daemon', d1!.ready.admin, '--expect-peers', '--json'], { timeoutMs: 30_000 });
  t.equal(ok.code, 0, `exit 0: ${ok.stdout}`);
  const r = JSON.parse(ok.stdout) as Report;
  t.equal(r.ok, true);
  for (const id of [
    'daemon',
    'state-dir',
    'retrieval-port',
    'admin-port',
    'discovery-port',
    'multicast-self',
    'multicast-peers',
    'clock',
    'cache-limit',
  ]) {
    t.equal(byId(r, id)?.status, 'pass', `${id}: ${byId(r, id)?.detail}`);
  }
  t.match(
    byId(r, 'multicast-peers')?.detail,
    new RegExp(d2!.ready.retrieval.replace(/\./g, '\\.')),
    'the other daemon answered the liveness probe',
  );
  t.equal(byId(r, 'interface')?.status, 'warn', 'loopback mode is a warning');
  const text = await runCli(['doctor', '--daemon', d1!.ready.admin], { timeoutMs: 30_000 });
  t.match(text.stdout, /^PASS {2}multicast: other daemons\s+1 other daemon answered: 127\.0\.0\.42:\d+ in \d+ ms$/m);
  t.match(text.stdout, /^peer caching: ready$/m);

  // No daemon; the retrieval port is taken; the origin key is garbage.
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const taken = (busy.address() as { port: number }).port;
  await writeFile(join(root, 'bad.pem'), 'not a key\n');
  const bad = await runCli(
    [
      'doctor',
      '--daemon',
      '127.0.0.1:1',
      '--state-dir',
      join(root, 'none'),
      '--listen',
      `127.0.0.1:${taken}`,
      '--admin',
      '127.0.0.1:0',
      '--discovery-port',
      String(port),
      '--interface',
      '127.0.0.1',
      '--origin-public-key',
      join(root, 'bad.pem'),
      '--timeout',
      '800',
      '--json',
    ],
    { timeoutMs: 30_000 },
  );
  t.equal(bad.code, 1, 'exit 1: something blocks peer caching');
  const b = JSON.parse(bad.stdout) as Report;
  t.equal(b.ok, false);
  t.match(byId(b, 'daemon'), { status: 'fail', blocking: true, remedy: /peerdist daemon/ });
  t.match(byId(b, 'retrieval-port'), { status: 'fail', detail: /EADDRINUSE/, remedy: /--listen/ });
  t.match(byId(b, 'origin-key'), { status: 'fail', remedy: /public-key/ });
  t.equal(byId(b, 'state-dir')?.status, 'pass');
  t.equal(byId(b, 'multicast-self')?.status, 'pass', 'multicast itself works on loopback');
});
