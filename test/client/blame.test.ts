// `peerdist get` reports the daemon's real failure (issue 16.10 / 12.3): when the daemon is alive
// and the download failed (BLOCK_FAILED ...), the user sees that code and reason, never
// `DAEMON_GONE ... (shutting down?)`, and no output file (final or temporary) is left.
import t from 'tap';
import { startJobsAdmin } from '../helpers/admin.js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobBook } from '../../src/daemon/jobs.js';
import { runCli } from '../helpers/cli.js';
import { FakeEngine } from '../daemon/fake-engine.js';

t.test('a failed download reports its code and reason, and leaves no file', async (t) => {
  const engine = new FakeEngine(
    new Map([
      ['http://o.test/mid.bin', { data: randomBytes(400_000), behaviour: 'fail-mid' as const }],
      ['http://o.test/start.bin', { data: randomBytes(400_000), behaviour: 'fail-start' as const }],
    ]),
  );
  const jobs = new JobBook(engine);
  const admin = await startJobsAdmin(jobs);
  const dir = await mkdtemp(join(tmpdir(), 'pd-blame-'));
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(join(dir, 'keep.bin'), 'earlier content');

  for (const name of ['mid.bin', 'start.bin']) {
    const r = await runCli(['get', `http://o.test/${name}`, '--daemon', admin.address], { cwd: dir });
    t.equal(r.code, 1, name);
    t.notMatch(r.stderr, /DAEMON_GONE|shutting down|stopped or crashed/, `${name}: the daemon is not blamed`);
    t.match(
      r.stderr,
      /^peerdist: error: BLOCK_FAILED: .*block \d+ of segment 0 could not be obtained: peer and origin both failed/,
      `${name}: the real code and reason`,
    );
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    const js = JSON.parse((await runCli(['status', '--daemon', admin.address, '--json'])).stdout || '{}');
    t.ok(js, 'the daemon is alive');
  }
  // Into an existing file: the failure leaves it as it was.
  const r = await runCli(['get', 'http://o.test/mid.bin', '-o', 'keep.bin', '--daemon', admin.address], { cwd: dir });
  t.equal(r.code, 1);
  t.equal(await readFile(join(dir, 'keep.bin'), 'utf8'), 'earlier content');
  t.same(await readdir(dir), ['keep.bin'], 'no partial or temporary file');
});

t.test('the proxy logs the real cause when a download fails mid-stream', async (t) => {
  const { startProxyServer } = await import('../../src/daemon/proxy.js');
  const { TargetGuard } = await import('../../src/daemon/proxy-guard.js');
  const { createLogger } = await import('../../src/util/log.js');
  const { request } = await import('node:http');
  const lines: string[] = [];
  const engine = new FakeEngine(
    new Map([['http://o.test/mid.bin', { data: randomBytes(400_000), behaviour: 'fail-mid' as const }]]),
  );
  const proxy = await startProxyServer(
    { host: '127.0.0.1', port: 0 },
    {
      jobs: new JobBook(engine),
      logger: createLogger({}, 'info', (l) => lines.push(l)),
      // o.test resolves nowhere: the guard is told it is a public address (the fake engine never connects).
      guard: new TargetGuard({ resolve: async () => [{ address: '198.51.100.1', family: 4 }] }),
    },
  );
  t.teardown(() => proxy.close());
  const port = Number(proxy.address.split(':')[1]);
  const outcome = await new Promise<string>((resolveP) => {
    const req = request({ host: '127.0.0.1', port, path: 'http://o.test/mid.bin' }, (res) => {
      res.resume();
      res.on('end', () => resolveP('complete'));
      res.on('error', () => resolveP('cut'));
      res.on('aborted', () => resolveP('cut'));
    });
    req.on('error', () => resolveP('cut'));
    req.end();
  });
  t.equal(outcome, 'cut', 'the client sees the body cut short, never a clean end');
  for (let i = 0; i < 50 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const rec = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((r) => r.msg === 'proxy: download failed mid-stream');
  t.match(rec, { level: 'warn', code: 'BLOCK_FAILED', url: 'http://o.test/mid.bin', err: /could not be obtained/ });
});
