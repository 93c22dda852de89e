// `peerdist get` output targets (issue 16.1, 16.2): each get writes its own temporary file and
// renames only that; devices, FIFOs and symlinks to them are written in place, never renamed over;
// `-o -` writes to stdout; `-o DIR` writes DIR/<name from the URL>.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAdminServer } from '../../src/daemon/admin.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { cliEntry } from '../helpers/paths.js';
import { FakeEngine } from '../daemon/fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(200_000);
const SLOW = randomBytes(240_000); // 'slow': 4 KiB every 20 ms, about 1.2 s

async function rig(t: Test) {
  const engine = new FakeEngine(new Map([
    ['http://o.test/dir/good.bin', { data: DATA }],
    ['http://o.test/dir/slow.bin', { data: SLOW, behaviour: 'slow' as const }],
  ]));
  const jobs = new JobBook(engine);
  const admin = await startAdminServer({ kind: 'tcp', host: '127.0.0.1', port: 0 }, {
    jobs, status: () => ({}), metrics: () => '', cache: { stats: () => ({}), list: () => [], verifyAll: async () => ({}) },
  });
  const dir = await mkdtemp(join(tmpdir(), 'pd-out-'));
  t.teardown(async () => { await admin.close(); await rm(dir, { recursive: true, force: true }); });
  return { engine, admin, dir };
}

function startGet(args: string[], cwd: string): { done: Promise<CliResult> } {
  const child = spawn(process.execPath, [cliEntry, 'get', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERDIST_LOG: 'silent' } });
  let stdout = '', stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
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
    for (const f of await readdir(dir)) if (f.endsWith('.part')) n += (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
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
  const child = spawn(process.execPath, [cliEntry, 'get', 'http://o.test/dir/slow.bin', '-o', out, '--daemon', admin.address], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.teardown(() => { child.kill('SIGKILL'); });
  const partSize = async () => {
    for (const f of await readdir(dir)) if (f.endsWith('.part')) return (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
    return 0;
  };
  for (let i = 0; i < 400 && (await partSize()) === 0; i++) await sleep(10);
  child.kill('SIGINT');
  t.equal(await exited, 1);
  t.equal(sha(await readFile(out)), sha(DATA), 'the earlier complete file is untouched');
  t.same(await readdir(dir), ['keep.bin']);
});
