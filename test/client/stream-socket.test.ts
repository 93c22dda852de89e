// `peerdist get` against a daemon whose admin API is on loopback TCP and that offers a stream
// socket beside it (issue 25): the content comes over the unix socket, the job is polled on the
// TCP address; a socket the client cannot reach falls back to TCP; a daemon offering none is
// answered 404 and used over TCP as before. Both ends are the real admin servers and the real CLI.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AdminDeps, startAdminServer } from '../../src/daemon/admin.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { streamSocketOf } from '../../src/client/get.js';
import { parseAdminAddress } from '../../src/util/address.js';
import { runCli } from '../helpers/cli.js';
import { FakeEngine } from '../daemon/fake-engine.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(300_000);

/** A JobBook that counts the downloads started or joined through it (which listener was asked). */
function counting(jobs: JobBook): { jobs: JobBook; fetches: () => number } {
  let n = 0;
  const j = Object.create(jobs) as JobBook;
  j.obtain = (...args: Parameters<JobBook['obtain']>) => {
    n++;
    return jobs.obtain(...args);
  };
  return { jobs: j, fetches: () => n };
}

async function setup(t: Test, offer: 'socket' | 'missing' | 'none') {
  const engine = new FakeEngine(new Map([['http://o.test/f.bin', { data: DATA }]]));
  const book = new JobBook(engine);
  const dir = await mkdtemp(join(tmpdir(), 'pd-sock-'));
  const base: Omit<AdminDeps, 'jobs'> = {
    status: () => ({}),
    metrics: () => '',
    cache: { stats: () => ({}), list: () => [], verifyAll: async () => ({}) },
  };
  const viaSocket = counting(book),
    viaTcp = counting(book);
  const sockPath = join(dir, 'admin.sock');
  const sock =
    offer === 'socket'
      ? await startAdminServer({ kind: 'socket', path: sockPath }, { ...base, jobs: viaSocket.jobs })
      : undefined;
  const tcp = await startAdminServer(
    { kind: 'tcp', host: '127.0.0.1', port: 0 },
    { ...base, jobs: viaTcp.jobs, ...(offer !== 'none' ? { streamSocket: sockPath } : {}) },
  );
  t.teardown(async () => {
    await tcp.close();
    await sock?.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, tcp, sockPath, viaSocket, viaTcp };
}

t.test('get streams over the stream socket the daemon names; the file is intact', async (t) => {
  const s = await setup(t, 'socket');
  t.same(await streamSocketOf(parseAdminAddress(s.tcp.address)), { kind: 'socket', path: s.sockPath });
  t.equal((await stat(s.sockPath)).mode & 0o777, 0o660, 'the socket is no wider than user and group');
  const r = await runCli(['get', 'http://o.test/f.bin', '--daemon', s.tcp.address, '--json'], { cwd: s.dir });
  t.equal(r.code, 0, r.stderr);
  t.equal(s.viaSocket.fetches(), 1, 'the content was asked for on the unix socket');
  t.equal(s.viaTcp.fetches(), 0, 'not on the TCP address');
  t.match(JSON.parse(r.stdout.trim()), { bytes: DATA.length, fromOrigin: DATA.length });
  t.equal(sha(await readFile(join(s.dir, 'f.bin'))), sha(DATA));
});

t.test('a stream socket the client cannot reach: get falls back to the TCP address', async (t) => {
  const s = await setup(t, 'missing');
  const r = await runCli(['get', 'http://o.test/f.bin', '--daemon', s.tcp.address, '--json'], { cwd: s.dir });
  t.equal(r.code, 0, r.stderr);
  t.equal(s.viaTcp.fetches(), 1, 'the content came over TCP');
  t.equal(sha(await readFile(join(s.dir, 'f.bin'))), sha(DATA));
});

t.test('a daemon that offers no stream socket answers 404 and is used over TCP', async (t) => {
  const s = await setup(t, 'none');
  t.equal(await streamSocketOf(parseAdminAddress(s.tcp.address)), undefined);
  const r = await runCli(['get', 'http://o.test/f.bin', '--daemon', s.tcp.address, '--json'], { cwd: s.dir });
  t.equal(r.code, 0, r.stderr);
  t.equal(s.viaTcp.fetches(), 1);
  t.equal(sha(await readFile(join(s.dir, 'f.bin'))), sha(DATA));
});
