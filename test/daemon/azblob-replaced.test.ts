/**
 * Issue 22, "Bad input and faults": a blob replaced in the container in the middle of a download.
 * The client gets a clear error or the new version, never a mix of the two.
 *
 * Azurite (started here), one `peerdist serve --store azblob://...` node in-process, a real daemon
 * and `peerdist get`. Between the node and the daemon a small HTTP relay lets the content
 * information and the first range request through, holds every later range request, replaces the
 * blob once the first range has been answered, then lets the held requests go: the first blocks
 * come from version 1, everything after from version 2.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { AzblobStore } from '../../src/origin/store-azblob.js';
import { parseStoreUrl } from '../../src/origin/store.js';
import { createLogger } from '../../src/util/log.js';
import { AZURITE_ACCOUNT, startAzurite } from '../../testkit/azurite.js';
import { runCli } from '../helpers/cli.js';
import { get, startOrigin } from '../origin/http.js';
import { tempDir } from '../origin/tmp.js';
import { loopbackDaemonArgs, startDaemonChild } from './daemon-child.js';

const SIZE = 2 * 1024 * 1024 + 777;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Relays requests to `target`; the first range request goes through, later ones wait until
 * `between()` (called once that first range's response has ended) has resolved.
 */
async function gate(target: number, between: () => Promise<void>) {
  let first: Promise<void> | undefined;
  const ranges: string[] = [];
  const server = http.createServer((req, res) => {
    const go = () => {
      const up = http.request(
        { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent: false },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.once('error', () => res.destroy());
      up.end();
      return new Promise<void>((resolve) => res.once('close', () => resolve()));
    };
    const range = req.headers.range;
    if (range === undefined) return void go();
    ranges.push(range);
    if (!first) {
      first = go().then(between);
      return;
    }
    void first.then(go);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const closeAll = () => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return { port: (server.address() as AddressInfo).port, ranges, close: closeAll };
}

t.test('a blob replaced mid-download: a clear error or the new version, never a mix', async (t) => {
  const az = await startAzurite();
  t.teardown(() => az.stop());
  const c = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('media');
  await c.create();
  const v1 = randomBytes(SIZE);
  const v2 = randomBytes(SIZE);
  await c.getBlockBlobClient('f.bin').uploadData(v1);
  const store = await AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/media`), {
    env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
  });
  const dir = await tempDir(t);
  const node = await startOrigin(t, {
    store,
    stateDir: join(dir, 'node'),
    secret: randomBytes(32),
    logger: createLogger({ component: 'origin' }, 'silent'),
  });
  // Hashed ahead, so the daemon's first request gets content information (version 1).
  const ci = await get(node, '/f.bin', clientRequestHeaders({ maxContentVersion: 2, hashRequest: true }));
  t.equal(ci.headers['content-encoding'], 'peerdist', 'version 1 hashed ahead');
  let replaced = false;
  const g = await gate(node.port, async () => {
    await c.getBlockBlobClient('f.bin').uploadData(v2);
    replaced = true;
  });
  t.teardown(() => g.close());
  const d = await startDaemonChild(await loopbackDaemonArgs(join(dir, 'daemon'), '127.0.0.1:0'));
  t.teardown(() => d.stop(3000));
  const out = join(dir, 'out.bin');
  const r = await runCli(['get', `http://127.0.0.1:${g.port}/f.bin`, '-o', out, '--daemon', d.ready.admin, '--json'], {
    timeoutMs: 120_000,
  });
  t.comment(`get exited ${r.code}; ranges asked ${JSON.stringify(g.ranges)}; stderr ${r.stderr.trim().slice(-500)}`);
  t.ok(replaced, 'the blob was replaced after the first range was answered');
  t.ok(g.ranges.length >= 2, 'the download asked more than one range (some before, some after the replacement)');
  const body = await readFile(out).catch(() => undefined);
  if (r.code === 0) {
    t.ok(body !== undefined && sha(body) === sha(v2), 'a successful download has exactly the new version');
  } else {
    t.match(
      r.stderr,
      /ORIGIN_CHANGED: .*changed at the origin during the download/,
      'the error says the content changed at the origin',
    );
    t.ok(body === undefined || body.length === 0, 'no partial mix left at the output path');
  }
  await rm(out, { force: true });
});
