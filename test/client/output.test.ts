// `peerdist get` output targets (issue 16.1, 16.2): each get writes its own temporary file and
// renames only that; devices, FIFOs and symlinks to them are written in place, never renamed over;
// `-o -` writes to stdout; `-o DIR` writes DIR/<name from the URL>.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobBook } from '../../src/daemon/jobs.js';
import { openOutput } from '../../src/client/get.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startJobsAdmin } from '../helpers/admin.js';
import { cliEntry } from '../helpers/paths.js';
import { FakeEngine } from '../daemon/fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(200_000);
const SLOW = randomBytes(240_000); // 'slow': 4 KiB every 20 ms, about 1.2 s

async function rig(t: Test) {
  const engine = new FakeEngine(
    new Map([
      ['http://o.test/dir/good.bin', { data: DATA }],
      ['http://o.test/dir/slow.bin', { data: SLOW, behaviour: 'slow' as const }],
    ]),
  );
  const jobs = new JobBook(engine);
  const admin = await startJobsAdmin(jobs);
  const dir = await mkdtemp(join(tmpdir(), 'pd-out-'));
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { engine, admin, dir };
}

function startGet(args: string[], cwd: string): { done: Promise<CliResult> } {
  const child = spawn(process.execPath, [cliEntry, 'get', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEERDIST_LOG: 'silent' },
  });
  let stdout = '',
    stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  return { done: new Promise((r) => child.once('close', (code) => r({ code, stdout, stderr }))) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('two gets with the same -o: each writes and renames only its own file', async (t) => {
  const { admin, dir } = await rig(t);
  const out = join(dir, 'same.bin');
  const url = 'http://o.test/dir/slow.bin';
  const a = startGet([url, '-o', out, '--daemon', admin.address, '--json'], dir);
  // B starts once A is writing.
  const partBytes = async () => {
    let n = 0;
    for (const f of await readdir(dir))
      if (f.endsWith('.part')) n += (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
    return n;
  };
  for (let i = 0; i < 400 && (await partBytes()) < 40_000; i++) await sleep(10);
  const b = startGet([url, '-o', out, '--daemon', admin.address, '--json'], dir);
  const ra = await a.done;
  // The moment A reports success, the file under the final name is complete.
  const atA = await readFile(out).catch(() => Buffer.alloc(0));
  t.equal(ra.code, 0, ra.stderr);
  t.equal(atA.length, SLOW.length, 'A exited 0: the output holds the whole content');
  t.equal(sha(atA), sha(SLOW));
  t.equal((JSON.parse(ra.stdout) as { bytes: number }).bytes, SLOW.length);
  const rb = await b.done;
  t.equal(rb.code, 0, rb.stderr);
  t.equal(sha(await readFile(out)), sha(SLOW), 'after both, the output is exact');
  t.same(await readdir(dir), ['same.bin'], 'no temporary file left behind');
});

t.test('an interrupted get leaves an existing output untouched and no temporary file', async (t) => {
  const { admin, dir } = await rig(t);
  const out = join(dir, 'keep.bin');
  const first = await runCli(['get', 'http://o.test/dir/good.bin', '-o', out, '--daemon', admin.address], { cwd: dir });
  t.equal(first.code, 0, first.stderr);
  const child = spawn(
    process.execPath,
    [cliEntry, 'get', 'http://o.test/dir/slow.bin', '-o', out, '--daemon', admin.address],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const partSize = async () => {
    for (const f of await readdir(dir))
      if (f.endsWith('.part')) return (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
    return 0;
  };
  for (let i = 0; i < 400 && (await partSize()) === 0; i++) await sleep(10);
  child.kill('SIGINT');
  t.equal(await exited, 1);
  t.equal(sha(await readFile(out)), sha(DATA), 'the earlier complete file is untouched');
  t.same(await readdir(dir), ['keep.bin']);
});

/** Reads a FIFO with `cat` (a child process: a blocked open never holds up this process). */
function readFifo(path: string): { data: Promise<Buffer>; kill: () => void } {
  const child = spawn('cat', [path], { stdio: ['ignore', 'pipe', 'ignore'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  return {
    data: new Promise((r) => child.once('close', () => r(Buffer.concat(chunks)))),
    kill: () => child.kill('SIGKILL'),
  };
}

t.test('a FIFO, and a symlink to one, is written in place, never renamed over', async (t) => {
  const { admin, dir } = await rig(t);
  const fifo = join(dir, 'pipe');
  t.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const link = join(dir, 'link');
  await symlink(fifo, link);
  for (const target of [fifo, link]) {
    const reader = readFifo(fifo);
    t.teardown(reader.kill);
    const r = await runCli(['get', 'http://o.test/dir/good.bin', '-o', target, '--daemon', admin.address, '--json'], {
      cwd: dir,
      timeoutMs: 20_000,
    });
    t.equal(r.code, 0, r.stderr);
    t.ok((await lstat(fifo)).isFIFO(), `${target}: the FIFO is still a FIFO`);
    t.ok((await lstat(link)).isSymbolicLink(), `${target}: the symlink is still a symlink`);
    reader.kill();
    const got = await reader.data;
    t.equal(got.length, DATA.length, `${target}: the reader got every byte`);
    t.equal(sha(got), sha(DATA));
    t.equal((JSON.parse(r.stdout) as { bytes: number }).bytes, DATA.length);
  }
  t.same((await readdir(dir)).sort(), ['link', 'pipe'], 'no temporary file, nothing else created');
});

t.test('a character device (a private copy of /dev/null) is written in place', async (t) => {
  const { admin, dir } = await rig(t);
  const dev = join(dir, 'null');
  // mknod needs root (CAP_MKNOD); the node lives in the test's own temp dir, never /dev.
  if (spawnSync('mknod', ['-m', '666', dev, 'c', '1', '3']).status !== 0) {
    t.comment('mknod not permitted here: device case not run');
    return;
  }
  const r = await runCli(['get', 'http://o.test/dir/good.bin', '-o', dev, '--daemon', admin.address], { cwd: dir });
  const st = await lstat(dev);
  t.ok(st.isCharacterDevice(), 'still the device node, not a regular file');
  t.equal(r.code, 0, r.stderr);
  t.same((await readdir(dir)).sort(), ['null']);
});

t.test('-o - writes the content to stdout; the result line goes to stderr', async (t) => {
  const { admin, dir } = await rig(t);
  const child = spawn(
    process.execPath,
    [cliEntry, 'get', 'http://o.test/dir/good.bin', '-o', '-', '--daemon', admin.address, '--json'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERDIST_LOG: 'silent' } },
  );
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  t.equal(code, 0, err);
  t.equal(sha(Buffer.concat(out)), sha(DATA), 'stdout is exactly the content');
  t.match(JSON.parse(err.trim()) as object, { output: '-', bytes: DATA.length });
  t.same(await readdir(dir), [], 'no file named "-" or temporary file');
});

t.test('-o EXISTING_DIR writes DIR/<name from the URL>', async (t) => {
  const { admin, dir } = await rig(t);
  const sub = join(dir, 'sub');
  await mkdir(sub);
  const r = await runCli(['get', 'http://o.test/dir/good.bin', '-o', sub, '--daemon', admin.address, '--json'], {
    cwd: dir,
  });
  t.equal(r.code, 0, r.stderr);
  t.equal(sha(await readFile(join(sub, 'good.bin'))), sha(DATA));
  t.match(JSON.parse(r.stdout) as object, { output: join(sub, 'good.bin') });
  t.same((await readdir(dir)).sort(), ['sub']);
  t.same(await readdir(sub), ['good.bin']);
  // DIR/<name> that is itself a directory: refused before the daemon is asked to download.
  const { engine, admin: admin2, dir: dir2 } = await rig(t);
  await mkdir(join(dir2, 'good.bin'));
  const r2 = await runCli(['get', 'http://o.test/dir/good.bin', '-o', dir2, '--daemon', admin2.address], { cwd: dir2 });
  t.equal(r2.code, 1);
  t.match(r2.stderr, /OUTPUT: .*good\.bin is a directory/);
  t.equal(engine.started.length, 0, 'refused before downloading');
});

t.test('/dev/stdout and friends mean stdout (checked without writing anything under /dev)', async (t) => {
  for (const p of ['-', '/dev/stdout', '/proc/self/fd/1', '/dev/fd/1'])
    t.equal((await openOutput('http://h/a.bin', p)).output, '-', p);
});
