// Issue 27.10: `peerdist doctor` ends, with a FAIL and a fix, whatever the paths it is given:
// a state directory under /proc (Node's recursive mkdir never returns there), a file instead of a
// directory, a read-only directory (checked as an unprivileged user: tests run as root), a FIFO as
// the origin key, and an origin that accepts and never answers. The runCli bound (60 s) only
// turns a hang into a failure; nothing here asserts a duration.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, type CliResult } from '../helpers/cli.js';
import { cliEntry } from '../helpers/paths.js';
import { freeUdpPort } from '../daemon/daemon-child.js';
import { makeDirs } from '../../src/util/mkdirs.js';

interface Report {
  ok: boolean;
  checks: Array<{ id: string; status: string; detail: string; remedy?: string; blocking?: boolean }>;
}

const root = await mkdtemp(join(tmpdir(), 'pd-doctor-bounded-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
// No daemon answers here (a port just closed): doctor checks the local settings.
const closed = await new Promise<number>((r) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as { port: number }).port;
    s.close(() => r(p));
  });
});
const discoveryPort = await freeUdpPort();
const base = [
  'doctor',
  '--json',
  '--daemon',
  `127.0.0.1:${closed}`,
  '--interface',
  '127.0.0.1',
  '--discovery-port',
  String(discoveryPort),
  '--listen',
  '127.0.0.1:0',
  '--admin',
  '127.0.0.1:0',
  '--timeout',
  '300',
];
const doctor = (extra: string[]) => runCli([...base, ...extra], { timeoutMs: 60_000 });
const parse = (r: CliResult): Report => {
  try {
    return JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`doctor did not finish with a report (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  }
};
const stateDir = (r: Report) => r.checks.find((c) => c.id === 'state-dir');

t.test('makeDirs settles under /proc and on files, and creates what it can', async (t) => {
  await t.rejects(makeDirs(`/proc/peerdist-${process.pid}`), { code: 'ENOENT' });
  await t.rejects(makeDirs('/proc/self/fd/x/y'), { code: 'ENOENT' });
  await writeFile(join(root, 'file'), 'x');
  await t.rejects(makeDirs(join(root, 'file')), { code: 'ENOTDIR' });
  await t.rejects(makeDirs(join(root, 'file', 'sub')), { code: 'ENOTDIR' });
  await makeDirs(join(root, 'a', 'b', 'c'));
  await makeDirs(join(root, 'a', 'b', 'c'));
  t.pass('nested directories created, twice');
});

t.test('--state-dir under /proc: FAIL with a fix, and doctor ends', async (t) => {
  for (const dir of [`/proc/peerdist-${process.pid}`, '/proc/self/fd/peerdist/x', '/proc']) {
    const r = await doctor(['--state-dir', dir]);
    t.equal(r.code, 1, `${dir}: exit 1`);
    const c = stateDir(parse(r));
    t.match(c, { status: 'fail', blocking: true }, `${dir}: ${c?.detail}`);
    t.match(c?.remedy, /virtual filesystem such as \/proc or \/sys.*--state-dir/);
  }
});

t.test('--state-dir naming a file: FAIL with a fix', async (t) => {
  await writeFile(join(root, 'not-a-dir'), 'x');
  for (const dir of [join(root, 'not-a-dir'), join(root, 'not-a-dir', 'sub')]) {
    const c = stateDir(parse(await doctor(['--state-dir', dir])));
    t.match(c, { status: 'fail', blocking: true, detail: /ENOTDIR/ }, dir);
    t.match(c?.remedy, /is a file, not a directory: choose another with --state-dir/);
  }
});

t.test('a read-only state directory: FAIL for the user who cannot write it', async (t) => {
  const ro = join(root, 'ro');
  await mkdir(join(ro, 'state'), { recursive: true });
  await chmod(root, 0o755);
  await chmod(ro, 0o755);
  await chmod(join(ro, 'state'), 0o555);
  const args = [cliEntry, ...base, '--state-dir', join(ro, 'state')];
  let user: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    // Root writes anywhere: run doctor as nobody, for whom the directory is read-only.
    let nobody: number;
    try {
      nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
    } catch {
      t.comment('no user "nobody" to run doctor as: not checked here');
      return;
    }
    user = { uid: nobody, gid: nobody };
  }
  const r = await new Promise<CliResult>((resolveP) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, PEERDIST_LOG: 'silent', HOME: ro },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ?? {}),
    });
    let stdout = '',
      stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveP({ code, stdout, stderr });
    });
  });
  const c = stateDir(parse(r));
  t.match(c, { status: 'fail', blocking: true, detail: /EACCES/ }, c?.detail ?? r.stderr);
  t.match(c?.remedy, /chown peerdist: .*--state-dir/);
});

t.test('a FIFO as the origin key, and an origin that never answers: doctor ends', async (t) => {
  const fifo = join(root, 'key.fifo');
  execFileSync('mkfifo', [fifo]);
  const held: Socket[] = [];
  const silent = createServer((s) => {
    held.push(s); // accepts, reads, never answers
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of held) s.destroy();
        silent.close(() => r());
      }),
  );
  const r = await doctor([
    '--state-dir',
    join(root, 'ok-state'),
    '--origin-public-key',
    fifo,
    '--origin',
    `http://127.0.0.1:${(silent.address() as { port: number }).port}/`,
    '--check-timeout',
    '1000',
  ]);
  t.equal(r.code, 1);
  const rep = parse(r);
  t.match(
    rep.checks.find((c) => c.id === 'origin-key'),
    {
      status: 'fail',
      blocking: true,
      detail: /not a regular file/,
    },
  );
  t.match(
    rep.checks.find((c) => c.id === 'clock'),
    { status: 'warn', detail: /did not finish within 1000 ms/ },
  );
  t.match(stateDir(rep), { status: 'pass' }, 'a usable state directory still passes');
});

t.test('every command that makes a state directory ends with an error under /proc', async (t) => {
  // Noticed with item 10: hosted-cache, cache and serve called Node's recursive mkdir too, and
  // hung on a state directory under /proc instead of failing.
  const dir = `/proc/peerdist-${process.pid}-x`;
  for (const args of [
    ['hosted-cache', '--state-dir', dir, '--http', '127.0.0.1:0', '--https', 'off', '--admin', '127.0.0.1:0'],
    ['cache', 'stats', '--state-dir', dir],
    ['serve', root, '--state-dir', dir, '--host', '127.0.0.1', '--port', '0'],
    ['daemon', '--state-dir', dir, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--interface', '127.0.0.1'],
  ]) {
    const r = await runCli(args, { timeoutMs: 60_000 });
    t.equal(r.code, 1, `${args[0]} ${args[1]}: exit 1`);
    t.match(r.stderr, /proc/, `${args[0]} ${args[1]}: the error names the path (${r.stderr.trim().slice(0, 120)})`);
  }
});
