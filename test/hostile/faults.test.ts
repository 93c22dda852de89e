/**
 * Faults: SIGKILL of a real `peerdist daemon` mid-download then restart (resumes from its cache,
 * `peerdist cache verify` finds nothing bad); disk full while the cache writes blocks (a 3 MiB
 * tmpfs: the reader still gets the whole file, only verified blocks present and served); an origin whose bytes differ from
 * its own content information (detected, clear error, nothing bad cached).
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { Discovery } from '../../src/discovery/discovery.js';
import { DownloadEngine } from '../../src/engine/engine.js';
import { DownloadError } from '../../src/engine/errors.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { decodeResponse, encodeMessage, PCCRR_PATH } from '../../src/protocol/pccrr/codec.js';
import { fetchContentInfo } from '../../testkit/sim/evilpeer.js';
import { runCli } from '../helpers/cli.js';
import { freeUdpPort, loopbackDaemonArgs, startDaemonChild, type DaemonChild } from '../daemon/daemon-child.js';
import { mountedTmpfs, publishedOrigin, rawExchange, sha, splitResponse, tmpDir } from './rig.js';

const MiB = 1024 * 1024;

/**
 * An HTTP front for the origin that forwards everything and can rewrite or pace bodies:
 * `pace` bytes per 10 ms for plain bodies; `corrupt` flips one byte of every third plain (non-PeerDist) body.
 */
async function front(t: Test, target: string, opts: { pace?: number; corrupt?: boolean }): Promise<string> {
  const up = new URL(target);
  let plainBodies = 0;
  const server: Server = createServer((req, res) => {
    const fwd = request(
      { host: up.hostname, port: up.port, path: req.url, method: req.method, headers: req.headers },
      (r: IncomingMessage) => {
        const peerdist = r.headers['content-encoding'] === 'peerdist';
        res.writeHead(r.statusCode!, r.headers);
        let first = !peerdist && ++plainBodies % 3 === 0;
        r.on('data', (c: Buffer) => {
          if (opts.corrupt && first && c.length > 0) {
            c = Buffer.from(c);
            c[0]! ^= 0xff;
          }
          first = false;
          if (!peerdist && opts.pace) {
            r.pause();
            setTimeout(() => r.resume(), Math.ceil((10 * c.length) / opts.pace!));
          }
          res.write(c);
        });
        r.on('end', () => res.end());
        r.on('error', () => res.destroy());
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  server.on('connection', (s) => t.teardown(() => s.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function statusJson(admin: string): Promise<{ downloads: Array<{ bytesDone: number }> }> {
  const [host, port] = admin.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path: '/v1/status' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString()));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('SIGKILL of the daemon mid-download, restart: resumes, cache consistent', async (t) => {
  const root = await tmpDir(t, 'kill');
  const size = 8 * MiB + 4321;
  const data = randomBytes(size);
  const { base } = await publishedOrigin(t, root, { 'big.bin': data });
  const slow = await front(t, base, { pace: 32 * 1024 }); // ~3 MiB/s for block bodies
  const url = `${slow}/big.bin`;
  const stateDir = join(root, 'd');
  const args = async () => [...(await loopbackDaemonArgs(stateDir)), '--max-content-version', '1'];
  const children: DaemonChild[] = [];
  t.teardown(() => Promise.all(children.map((c) => c.stop(2000))));
  const d1 = await startDaemonChild(await args());
  children.push(d1);
  const out = join(root, 'out.bin');
  const first = runCli(['get', url, '-o', out, '--daemon', d1.ready.admin, '--json'], { timeoutMs: 60_000 });
  let done = 0;
  for (let k = 0; k < 300 && done < 2 * MiB; k++) {
    await new Promise((r) => setTimeout(r, 50));
    done = (await statusJson(d1.ready.admin)).downloads[0]?.bytesDone ?? 0;
  }
  t.ok(done >= 2 * MiB && done < size, `killed with ${done} of ${size} bytes done`);
  d1.proc.kill('SIGKILL');
  const r1 = await first;
  t.not(r1.code, 0, 'the interrupted get fails');
  // Regression: this used to say "DOWNLOAD_FAILED: download of out.bin failed: aborted".
  t.match(
    r1.stderr,
    /DAEMON_GONE: the daemon (at \S+ )?closed the connection/,
    `clear error: ${r1.stderr.trim().split('\n')[0]}`,
  );
  await t.rejects(stat(out), { code: 'ENOENT' }, 'no partial output file under the final name');

  const d2 = await startDaemonChild(await args());
  children.push(d2);
  const r2 = await runCli(['get', url, '-o', out, '--daemon', d2.ready.admin, '--json'], { timeoutMs: 60_000 });
  t.equal(r2.code, 0, r2.stderr);
  const j = JSON.parse(r2.stdout) as { fromCache: number; fromOrigin: number; bytes: number };
  t.ok(j.fromCache >= MiB, `resumed: ${j.fromCache} bytes from the cache the killed daemon left`);
  t.equal(j.fromCache + j.fromOrigin, size, 'the rest from the origin');
  t.equal(sha(await readFile(out)), sha(data), 'output exact');
  await d2.stop(5000);
  const v = await runCli(['cache', 'verify', '--state-dir', stateDir, '--json']);
  t.equal(v.code, 0, v.stderr);
  const rep = JSON.parse(v.stdout) as { blocks: number; bytes: number; bad: unknown[] };
  t.same(rep.bad, [], 'peerdist cache verify: nothing bad');
  t.equal(rep.bytes, size, 'every block present once');
});

t.test(
  'disk full while writing blocks: the download completes without caching; only verified blocks kept and served',
  async (t) => {
    const root = await tmpDir(t, 'full');
    const mnt = await mountedTmpfs(t, '3m');
    if (mnt === null) {
      t.plan(0, 'cannot mount a tmpfs here (needs root): disk-full fault not exercised');
      return;
    }
    const size = 8 * MiB;
    const data = randomBytes(size);
    const { base } = await publishedOrigin(t, root, { 'f.bin': data });
    const store = await BlockStore.open({ dir: join(mnt, 'cache'), limitBytes: 64 * MiB });
    const discovery = new Discovery({
      port: await freeUdpPort(),
      interfaces: ['127.0.0.1'],
      loopback: true,
      xaddrs: () => ['127.0.0.30:1'],
      lookup: (ids) => ids.map(() => undefined),
    });
    await discovery.start();
    const retrieval = new RetrievalClient({ requestTimeoutMs: 2000 });
    const engine = new DownloadEngine({ store, discovery, retrieval, maxContentVersion: 1, tmpDir: root });
    const server = createRetrievalServer({ source: store, host: '127.0.0.30', port: 0 });
    const { port } = await server.listen();
    t.teardown(async () => {
      await server.close();
      await engine.close();
      await retrieval.close();
      await discovery.close();
      await store.close();
    });

    const job = engine.download(`${base}/f.bin`);
    // Issue 16.4: the cache is an optimisation. What does not fit goes to the reader from memory.
    const streamed = readAll(job.createReadStream());
    const r = await job.done.then(
      (v) => v,
      (e: unknown) => e,
    );
    t.notOk(r instanceof Error, `download completes (${r instanceof Error ? r.message : 'ok'})`);
    t.equal(sha(await streamed), sha(data), 'the reader got every byte, exact');
    const rep = await store.verifyAll();
    t.same(rep.bad, [], 'no bad block in the cache');
    t.ok(rep.bytes < size, `only part of the file fitted (${rep.bytes} bytes)`);
    const ci = (await fetchContentInfo(`${base}/f.bin`, 1))!;
    const seg = ci.segments[0]!;
    const present = store.presentBlocks(seg.segmentId);
    const inexact: number[] = [];
    for (const i of present)
      if (!(await store.readBlock(seg.segmentId, i))?.equals(data.subarray(i * 65536, (i + 1) * 65536)))
        inexact.push(i);
    t.same(inexact, [], `all ${present.length} stored blocks read back exact`);
    // A block that did not fit is not served (empty MSG_BLK), whatever is on disk.
    const missing = Array.from({ length: 128 }, (_, i) => i).find((i) => !present.includes(i));
    t.ok(missing !== undefined, 'some block is missing');
    const body = encodeMessage({ type: 'GETBLKS', segmentId: seg.segmentId, ranges: [[missing!, 1]] });
    const raw = await rawExchange(
      '127.0.0.30',
      port,
      Buffer.concat([
        Buffer.from(
          `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        ),
        body,
      ]),
    );
    const m = decodeResponse(splitResponse(raw).body);
    t.ok(m.type === 'BLK' && m.block.length === 0, `block ${missing} (not stored) is not served`);
  },
);

t.test('origin bytes differ from its content information: detected, clear error, nothing bad cached', async (t) => {
  const root = await tmpDir(t, 'liar');
  const size = 3 * MiB + 99;
  const data = randomBytes(size);
  const { base } = await publishedOrigin(t, root, { 'f.bin': data });
  const liar = await front(t, base, { corrupt: true });
  const store = await BlockStore.open({ dir: join(root, 'cache'), limitBytes: 64 * MiB, fsync: false });
  const discovery = new Discovery({
    port: await freeUdpPort(),
    interfaces: ['127.0.0.1'],
    loopback: true,
    xaddrs: () => ['127.0.0.31:1'],
    lookup: (ids) => ids.map(() => undefined),
  });
  await discovery.start();
  const retrieval = new RetrievalClient({ requestTimeoutMs: 2000 });
  const engine = new DownloadEngine({ store, discovery, retrieval, maxContentVersion: 1, tmpDir: root });
  t.teardown(async () => {
    await engine.close();
    await retrieval.close();
    await discovery.close();
    await store.close();
  });
  const job = engine.download(`${liar}/f.bin`);
  const err = await job.done.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof DownloadError, 'download fails');
  t.equal((err as DownloadError).code, 'ORIGIN_MISMATCH', `code ORIGIN_MISMATCH: ${(err as Error).message}`);
  const rep = await store.verifyAll();
  t.same(rep.bad, [], 'cache verifies clean');
  const ci = (await fetchContentInfo(`${base}/f.bin`, 1))!;
  let cached = 0;
  const wrong: number[] = [];
  for (const seg of ci.segments) {
    for (const i of store.presentBlocks(seg.segmentId)) {
      const b = (await store.readBlock(seg.segmentId, i))!;
      cached++;
      if (!b.equals(data.subarray(seg.offset + i * 65536, seg.offset + i * 65536 + b.length))) wrong.push(i);
    }
  }
  t.same(wrong, [], `every cached block (${cached}) is the genuine one`);
  t.ok(cached > 0, 'the blocks the origin sent correctly were kept');
});
