// Plain (non-PeerDist) download bodies (issue 16.8): once kept in peerdist-dl-* temp dirs until
// 32 later jobs finished (5 GiB held minutes after its download). Now a body is dropped once its
// job finished and its last reader is done; stale dirs are cleared at daemon startup.
import t, { type Test } from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadEngine } from '../../src/engine/engine.js';
import { clearStaleBuffers } from '../../src/engine/plain.js';
import type { DiscoveryLike, RetrievalLike, StoreLike } from '../../src/engine/types.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(3_000_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rig(t: Test) {
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': DATA.length });
    res.end(DATA);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const tmp = await mkdtemp(join(tmpdir(), 'pd-plainbuf-'));
  const none = {} as unknown;
  const engine = new DownloadEngine({
    store: none as StoreLike,
    discovery: none as DiscoveryLike,
    retrieval: none as RetrievalLike,
    tmpDir: tmp,
    plainLingerMs: 50,
  });
  t.teardown(async () => {
    await engine.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
    await rm(tmp, { recursive: true, force: true });
  });
  return { engine, tmp, url: `http://127.0.0.1:${(origin.address() as AddressInfo).port}/f.bin` };
}

const bodies = async (dir: string) => (await readdir(dir)).filter((n) => n.startsWith('peerdist-dl-'));

async function until(cond: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (await cond()) return true;
  return cond();
}

t.test('a plain body is dropped when its job finished and its last reader is done', async (t) => {
  const { engine, tmp, url } = await rig(t);
  const job = engine.download(url);
  const parts: Buffer[] = [];
  for await (const c of job.createReadStream() as AsyncIterable<Buffer>) parts.push(c);
  await job.done;
  t.equal(sha(Buffer.concat(parts)), sha(DATA), 'the reader got the content');
  t.ok(await until(async () => (await bodies(tmp)).length === 0), 'the temp body is gone (no later jobs needed)');
});

t.test('a body stays while a reader still streams it, and goes when that reader ends', async (t) => {
  const { engine, tmp, url } = await rig(t);
  const job = engine.download(url);
  const slow = job.createReadStream();
  const first = await new Promise<Buffer>((r) =>
    (slow as NodeJS.ReadableStream).once('data', (c: Buffer) => {
      (slow as NodeJS.ReadableStream).pause();
      r(c);
    }),
  );
  t.ok(first.length > 0);
  await job.done;
  await sleep(300);
  t.equal((await bodies(tmp)).length, 1, 'kept while a reader has not finished');
  const rest: Buffer[] = [first];
  (slow as NodeJS.ReadableStream).resume();
  for await (const c of slow as AsyncIterable<Buffer>) rest.push(c);
  t.equal(sha(Buffer.concat(rest)), sha(DATA), 'the slow reader still gets every byte after the job finished');
  t.ok(await until(async () => (await bodies(tmp)).length === 0), 'dropped after the last reader');
});

t.test('stale peerdist-dl-* dirs are cleared; nothing else is touched', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-stale-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const n of ['peerdist-dl-aaaa', 'peerdist-dl-bbbb']) {
    await mkdir(join(dir, n));
    await writeFile(join(dir, n, 'body'), 'x');
  }
  await writeFile(join(dir, 'other'), 'keep');
  await mkdir(join(dir, 'peerdist-other'));
  t.equal(await clearStaleBuffers(dir), 2);
  t.same((await readdir(dir)).sort(), ['other', 'peerdist-other']);
  t.equal(await clearStaleBuffers(join(dir, 'missing')), 0, 'a missing dir is fine');
});
