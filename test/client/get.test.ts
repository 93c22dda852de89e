// `peerdist get` / `peerdist status` as child processes against an in-process admin API backed by
// a fake engine: atomic rename, no partial files on failure, the --json shape.
import t from 'tap';
import { startJobsAdmin } from '../helpers/admin.js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAdminServer } from '../../src/daemon/admin.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { defaultOutputName } from '../../src/client/get.js';
import { progressLine, finalLine, humanBytes } from '../../src/client/format.js';
import { runCli } from '../helpers/cli.js';
import { cliEntry } from '../helpers/paths.js';
import { spawn } from 'node:child_process';
import { FakeEngine } from '../daemon/fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(200_000);

t.test('default output names', async (t) => {
  t.equal(defaultOutputName('http://h/a/b/file.iso'), 'file.iso');
  t.equal(defaultOutputName('http://h/a/b%20c.txt?x=1'), 'b c.txt');
  t.equal(defaultOutputName('http://h/'), 'index.html');
  t.equal(defaultOutputName('http://h/a/..'), 'index.html');
  t.equal(defaultOutputName('http://h/a/%2e%2e'), 'index.html');
  t.equal(defaultOutputName('http://h/x%2fy'), 'x_y', 'no directory separators from the URL');
});

t.test('text formatting', async (t) => {
  t.equal(humanBytes(512), '512 B');
  t.equal(humanBytes(1536), '1.5 KiB');
  const line = progressLine({ received: 50, total: 100, seconds: 1 }, 10);
  t.match(line, /^\[#####\.\.\.\.\.\]\s+50 B \/ 100 B\s+50%\s+50 B\/s$/);
  t.match(
    finalLine({
      url: 'u',
      output: '/o',
      bytes: 2048,
      seconds: 2,
      fromOrigin: 0,
      fromPeers: 2048,
      fromCache: 0,
      contentInfoBytes: 1,
      peers: 2,
      peerdist: true,
    }),
    /peers 2\.0 KiB \(100%\)/,
  );
});

t.test('get and status through the admin API', async (t) => {
  const engine = new FakeEngine(
    new Map([
      ['http://o.test/dir/good.bin', { data: DATA }],
      ['http://o.test/dir/broken.bin', { data: randomBytes(150_000), behaviour: 'fail-mid' as const }],
      ['http://o.test/dir/slow.bin', { data: randomBytes(4_000_000), behaviour: 'slow' as const }],
    ]),
  );
  const jobs = new JobBook(engine);
  const admin = await startAdminServer(
    { kind: 'tcp', host: '127.0.0.1', port: 0 },
    {
      jobs,
      status: () => ({
        downloads: jobs.active(),
        totals: { fromOrigin: 5, fromPeers: 6, fromCache: 7, servedToPeers: 8 },
      }),
      metrics: () => '',
      cache: { stats: () => ({}), list: () => [], verifyAll: async () => ({}) },
    },
  );
  const dir = await mkdtemp(join(tmpdir(), 'pd-get-'));
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ok = await runCli(['get', 'http://o.test/dir/good.bin', '--daemon', admin.address, '--json'], { cwd: dir });
  t.equal(ok.code, 0, ok.stderr);
  const r = JSON.parse(ok.stdout.trim()) as Record<string, unknown>;
  t.same(
    Object.keys(r).sort(),
    [
      'bytes',
      'contentInfoBytes',
      'cpuSeconds',
      'fromCache',
      'fromOrigin',
      'fromPeers',
      'originAnswerSeconds',
      'output',
      'peerdist',
      'peers',
      'seconds',
      'url',
    ].sort(),
  );
  t.ok(
    (r.originAnswerSeconds as number) >= 0 && (r.originAnswerSeconds as number) <= (r.seconds as number),
    'the origin answered within the download',
  );
  t.match(r, {
    url: 'http://o.test/dir/good.bin',
    output: join(dir, 'good.bin'),
    bytes: DATA.length,
    fromOrigin: DATA.length,
    fromPeers: 0,
    peers: 2,
    peerdist: true,
  });
  t.equal(ok.stdout.trim().split('\n').length, 1, 'exactly one JSON line');
  t.equal(sha(await readFile(join(dir, 'good.bin'))), sha(DATA), 'file content equals the source');

  const out2 = join(dir, 'named.bin');
  const plain = await runCli(['get', 'http://o.test/dir/good.bin', '-o', out2], {
    cwd: dir,
    env: { PEERDIST_DAEMON: admin.address },
  });
  t.equal(plain.code, 0, plain.stderr);
  t.match(plain.stdout, /named\.bin: 195\.3 KiB in .* origin 195\.3 KiB/);
  t.equal(sha(await readFile(out2)), sha(DATA));

  const broken = await runCli(['get', 'http://o.test/dir/broken.bin', '--daemon', admin.address, '--json'], {
    cwd: dir,
  });
  t.equal(broken.code, 1);
  t.match(broken.stderr, /peerdist: error: /);
  const missing = await runCli(['get', 'http://o.test/dir/missing.bin', '--daemon', admin.address], { cwd: dir });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /404/);
  t.same((await readdir(dir)).sort(), ['good.bin', 'named.bin'], 'failed downloads leave neither FILE nor FILE.part');

  // Ctrl-C in the middle: FILE.part is removed, FILE never appears, exit status 1.
  const child = spawn(process.execPath, [cliEntry, 'get', 'http://o.test/dir/slow.bin', '--daemon', admin.address], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let childErr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    childErr += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const partSize = async () => {
    const part = (await readdir(dir)).find((f) => /^slow\.bin\.[0-9a-f]+\.part$/.test(f));
    return part
      ? stat(join(dir, part)).then(
          (s) => s.size,
          () => 0,
        )
      : 0;
  };
  for (let i = 0; i < 200 && (await partSize()) === 0; i++) await new Promise((r) => setTimeout(r, 25));
  t.ok((await partSize()) > 0, 'downloading into FILE.<random>.part');
  child.kill('SIGINT');
  t.equal(await exited, 1, childErr);
  t.match(childErr, /interrupted/);
  t.same((await readdir(dir)).sort(), ['good.bin', 'named.bin'], 'interrupted download leaves no file');

  const st = await runCli(['status', '--daemon', admin.address, '--json']);
  t.equal(st.code, 0, st.stderr);
  t.match(JSON.parse(st.stdout), { totals: { fromOrigin: 5, fromPeers: 6, fromCache: 7, servedToPeers: 8 } });
  const stText = await runCli(['status', '--daemon', admin.address]);
  t.match(stText.stdout, /served to peers 8 B/);
  t.match(
    stText.stdout,
    /job\d+ running .* http:\/\/o\.test\/dir\/slow\.bin/,
    'the abandoned slow download still runs in the daemon',
  );

  const noDaemon = await runCli(['get', 'http://o.test/x', '--daemon', '127.0.0.1:1'], { cwd: dir });
  t.equal(noDaemon.code, 1);
  t.match(noDaemon.stderr, /no peerdist daemon at 127\.0\.0\.1:1/);
});

t.test('an unwritable target fails before any download starts', async (t) => {
  const engine = new FakeEngine(new Map([['http://o.test/a', { data: DATA }]]));
  const jobs = new JobBook(engine);
  const admin = await startJobsAdmin(jobs);
  const dir = await mkdtemp(join(tmpdir(), 'pd-get-'));
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });
  const r = await runCli([
    'get',
    'http://o.test/a',
    '-o',
    join(dir, 'no', 'such', 'dir', 'a'),
    '--daemon',
    admin.address,
  ]);
  t.equal(r.code, 1);
  t.match(r.stderr, /OUTPUT: cannot write .*\/a\.[0-9a-f]+\.part/);
  t.equal(engine.started.length, 0, 'the daemon was not asked to download');
});
