/**
 * Issue 22, item 7: a download whose origin node dies mid-way finishes from another node, either
 * named with `peerdist get --mirror` or behind a balancer (testkit/balancer.ts). Real `peerdist
 * serve` nodes over one directory (one secret: identical content information), a real daemon and
 * `peerdist get`; the node dies at an exact byte count (a relay in front of it cuts every
 * connection and refuses new ones, and the node process is killed). A mirror with other content
 * information (another secret) is never used.
 */
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startBalancer, startRelay } from '../../testkit/balancer.js';
import { runCli } from '../helpers/cli.js';
import { startServeChild, type ServeChild } from '../origin/serve-child.js';
import { tempDir } from '../origin/tmp.js';
import { loopbackDaemonArgs, startDaemonChild } from './daemon-child.js';

const SIZE = 4 * 1024 * 1024 + 4321;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Site {
  dir: string;
  data: Buffer;
  /** A second file (a download the daemon has not cached yet). */
  data2: Buffer;
  node(secret: 'a' | 'b'): Promise<ServeChild>;
  daemon: string;
}

async function site(t: Test): Promise<Site> {
  const dir = await tempDir(t);
  const www = join(dir, 'www');
  await mkdir(www);
  const data = randomBytes(SIZE);
  await writeFile(join(www, 'f.bin'), data);
  const data2 = randomBytes(SIZE);
  await writeFile(join(www, 'g.bin'), data2);
  const secrets = { a: join(dir, 'secret-a'), b: join(dir, 'secret-b') };
  await writeFile(secrets.a, randomBytes(32), { mode: 0o600 });
  await writeFile(secrets.b, randomBytes(32), { mode: 0o600 });
  let n = 0;
  const published = new Map<string, Promise<string>>();
  // Hashed ahead (publish, once per secret; each node gets a copy of the state), so each node's
  // first PeerDist answer is content information.
  const publish = (secret: 'a' | 'b') => {
    let p = published.get(secret);
    if (!p) {
      const state = join(dir, `published-${secret}`);
      p = runCli([
        'publish',
        www,
        '--state-dir',
        state,
        '--secret-file',
        secrets[secret],
        '--content-version',
        '2',
      ]).then((r) => {
        if (r.code !== 0) throw new Error(`publish failed: ${r.stderr}`);
        return state;
      });
      published.set(secret, p);
    }
    return p;
  };
  const node = async (secret: 'a' | 'b') => {
    const state = join(dir, `node${++n}`);
    await cp(await publish(secret), state, { recursive: true });
    return startServeChild(t, [www, '--state-dir', state, '--secret-file', secrets[secret]]);
  };
  const d = await startDaemonChild(await loopbackDaemonArgs(join(dir, 'daemon'), '127.0.0.1:0'));
  t.teardown(() => d.stop(3000));
  return { dir, data, data2, node, daemon: d.ready.admin };
}

async function stats(port: number): Promise<{ bytesMissingData: number; missingDataRequests: number }> {
  const r = await request(`http://127.0.0.1:${port}/.peerdist/stats`);
  return (await r.body.json()) as { bytesMissingData: number; missingDataRequests: number };
}

async function get(s: Site, url: string, extra: string[]) {
  const out = join(s.dir, `out-${randomBytes(4).toString('hex')}`);
  const r = await runCli(['get', url, '-o', out, '--daemon', s.daemon, '--json', ...extra], { timeoutMs: 90_000 });
  const body = r.code === 0 ? await readFile(out) : undefined;
  await rm(out, { force: true });
  return {
    ...r,
    body,
    json: r.code === 0 ? (JSON.parse(r.stdout) as { fromOrigin: number; peerdist: boolean }) : undefined,
  };
}

/** Kills the node (and cuts its relay) once `after` bytes went through the relay. */
async function dyingFront(node: ServeChild, after: number) {
  let killed = false;
  const relay = await startRelay({
    target: `127.0.0.1:${node.port}`,
    onBytes: (n) => {
      if (killed || n < after) return;
      killed = true;
      node.child.kill('SIGKILL');
      void relay.cut();
    },
  });
  return { relay, killed: () => killed };
}

t.test('get --mirror: the origin node dies mid-download, the mirror finishes it, every byte correct', async (t) => {
  const s = await site(t);
  const a = await s.node('a');
  const b = await s.node('a');
  const front = await dyingFront(a, SIZE / 3);
  const r = await get(s, `http://${front.relay.address}/f.bin`, ['--mirror', `http://127.0.0.1:${b.port}`]);
  t.equal(r.code, 0, r.stderr);
  t.ok(front.killed(), 'node A was killed mid-download');
  t.ok(r.json?.peerdist, 'PeerDist download');
  t.equal(r.body && sha(r.body), sha(s.data), 'every byte correct');
  t.equal(r.json?.fromOrigin, SIZE, 'all from the origin nodes');
  const sb = await stats(b.port);
  t.ok(sb.bytesMissingData > 0, `the mirror served the rest (${sb.bytesMissingData} bytes)`);
  t.ok(sb.bytesMissingData < SIZE, 'not the whole file: node A served its part');
});

t.test('a mirror with other content information is refused: no byte of it is used', async (t) => {
  const s = await site(t);
  const a = await s.node('a');
  const good = await s.node('a');
  const other = await s.node('b'); // same bytes, another server secret: other segment IDs
  const front = await dyingFront(a, SIZE / 3);
  const r = await get(s, `http://${front.relay.address}/f.bin`, [
    '--mirror',
    `http://127.0.0.1:${other.port}/f.bin`,
    '--mirror',
    `http://127.0.0.1:${good.port}`,
  ]);
  t.equal(r.code, 0, r.stderr);
  t.ok(front.killed());
  t.equal(r.body && sha(r.body), sha(s.data), 'every byte correct');
  const so = await stats(other.port);
  t.equal(so.missingDataRequests, 0, 'the mismatching mirror was asked for no range');
  t.equal(so.bytesMissingData, 0);
  t.ok((await stats(good.port)).bytesMissingData > 0, 'the matching mirror finished the download');

  // With only the mismatching mirror, the download (of a file not cached yet) fails once the origin node is gone.
  const a2 = await s.node('a');
  const front2 = await dyingFront(a2, SIZE / 3);
  const r2 = await get(s, `http://${front2.relay.address}/g.bin`, ['--mirror', `http://127.0.0.1:${other.port}`]);
  t.not(r2.code, 0, 'the download fails rather than use a mirror with other content');
  t.ok(front2.killed());
  t.equal((await stats(other.port)).bytesMissingData, 0, 'still no byte from it');
});

t.test('behind a balancer: a node dies mid-download, the download completes from the others', async (t) => {
  const s = await site(t);
  const a = await s.node('a');
  const b = await s.node('a');
  const c = await s.node('a');
  const front = await dyingFront(a, SIZE / 6);
  const lb = await startBalancer({ backends: [front.relay.address, `127.0.0.1:${b.port}`, `127.0.0.1:${c.port}`] });
  t.teardown(() => lb.close());
  const r = await get(s, `http://${lb.address}/f.bin`, []);
  t.equal(r.code, 0, r.stderr);
  t.ok(front.killed(), 'node A was killed mid-download');
  t.equal(r.body && sha(r.body), sha(s.data), 'every byte correct');
  const views = lb.backends();
  t.notOk(views[0]!.up, 'the balancer took the dead node out');
  t.ok(views[1]!.bytes > 0 && views[2]!.bytes > 0, 'the live nodes served the rest');
});
