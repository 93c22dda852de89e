/**
 * An origin node over Azure Blob Storage (Azurite started here on 127.0.0.1) against the storage
 * itself, side by side:
 *   1. throughput: a plain GET of the whole blob through the node versus a ranged GET of the same
 *      blob straight from Azurite (SAS URL), same HTTP client, alternating, best of --runs.
 *      Target: the node at least 0.9x.
 *   2. first-request latency of a PeerDist request (HashRequest=true: answered once content
 *      information exists) on a blob nobody hashed, versus on a blob `publish --store` hashed.
 *   npm run build && node dist/bench/azblob.js [--size 256M] [--runs 3]
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { BlobSASPermissions, BlobServiceClient } from '@azure/storage-blob';
import { Agent, request } from 'undici';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publishStore } from '../src/origin/publish-store.js';
import { AzblobStore } from '../src/origin/store-azblob.js';
import { parseStoreUrl } from '../src/origin/store.js';
import { clientRequestHeaders } from '../src/protocol/pccrtp/headers.js';
import { parseSize } from '../src/util/size.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { AZURITE_ACCOUNT, startAzurite } from '../testkit/azurite.js';

const { values } = parseArgs({
  options: { size: { type: 'string', default: '256M' }, runs: { type: 'string', default: '3' } },
});
const size = parseSize(values.size!);
const runs = Number(values.runs);
const CHUNK = 8 * 1024 * 1024;

const az = await startAzurite();
const state = await mkdtemp(join(tmpdir(), 'pd-bench-az-'));
const nodes: ChildProcess[] = [];
try {
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('bench');
  await container.create();
  const randomStream = () => {
    let left = size;
    return Readable.from(
      (function* () {
        while (left > 0) {
          const n = Math.min(CHUNK, left);
          left -= n;
          yield randomBytes(n);
        }
      })(),
    );
  };
  for (const name of ['big.bin', 'cold.bin', 'published.bin']) {
    await container.getBlockBlobClient(name).uploadStream(randomStream(), CHUNK, 4);
  }
  const store = () =>
    AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/bench`), {
      env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
    });
  const secret = randomBytes(32);
  await writeFile(join(state, 'secret'), secret, { mode: 0o600 });
  // Each node is a `peerdist serve --store` process of its own, as deployed.
  const node = async () => {
    const child = spawn(
      process.execPath,
      [
        join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'peerdist.js'),
        'serve',
        '--store',
        `azblob://${AZURITE_ACCOUNT}/bench`,
        '--port',
        '0',
        '--state-dir',
        join(state, `n${nodes.length}`),
        '--secret-file',
        join(state, 'secret'),
      ],
      {
        env: { ...process.env, PEERDIST_LOG: 'error', AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    nodes.push(child);
    let out = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', () => reject(new Error(`serve exited: ${out}`)));
    });
    return `http://127.0.0.1:${port}`;
  };
  const base = await node();
  const agent = new Agent({ bodyTimeout: 600_000, headersTimeout: 600_000 });

  const viaNode = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await request(`${base}/big.bin`, { dispatcher: agent });
    let n = 0;
    for await (const c of r.body) n += (c as Buffer).length;
    if (n !== size) throw new Error(`node sent ${n} bytes`);
    return (performance.now() - t0) / 1000;
  };
  // The same client (undici) and a ranged GET on the blob's SAS URL: only the path differs.
  const sas = await container.getBlobClient('big.bin').generateSasUrl({
    permissions: BlobSASPermissions.parse('r'),
    expiresOn: new Date(Date.now() + 3600_000),
  });
  const direct = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await request(sas, { dispatcher: agent, headers: { Range: `bytes=0-${size - 1}` } });
    if (r.statusCode !== 206) throw new Error(`Azurite answered ${r.statusCode}`);
    let n = 0;
    for await (const c of r.body) n += (c as Buffer).length;
    if (n !== size) throw new Error(`Azurite sent ${n} bytes`);
    return (performance.now() - t0) / 1000;
  };
  await viaNode(); // warm both paths once (Azurite's extent files into the page cache)
  await direct();
  let bestNode = Infinity;
  let bestDirect = Infinity;
  for (let i = 0; i < runs; i++) {
    bestDirect = Math.min(bestDirect, await direct());
    bestNode = Math.min(bestNode, await viaNode());
  }
  const mbps = (s: number) => (size / s / 1e6).toFixed(0);
  console.log(
    `blob: ${values.size} pseudo-random in Azurite 3.35 (127.0.0.1); ${cpus().length} CPUs; node ${process.version}; best of ${runs}`,
  );
  console.log('| path | seconds | MB/s | ratio |');
  console.log('|---|---:|---:|---:|');
  console.log(
    `| straight from Azurite (ranged GET, SAS URL) | ${bestDirect.toFixed(2)} | ${mbps(bestDirect)} | 1.00 |`,
  );
  console.log(
    `| through the origin node (plain GET) | ${bestNode.toFixed(2)} | ${mbps(bestNode)} | ${(bestDirect / bestNode).toFixed(2)} |`,
  );

  // First-request latency: HashRequest=true waits for the content information.
  const hashReq = clientRequestHeaders({ maxContentVersion: 2, hashRequest: true });
  const firstRequest = async (url: string): Promise<number> => {
    const t0 = performance.now();
    const r = await request(url, { dispatcher: agent, headers: hashReq });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (r.headers['content-encoding'] !== 'peerdist') throw new Error(`no content information (${body.length} B)`);
    return (performance.now() - t0) / 1000;
  };
  const cold = await firstRequest(`${base}/cold.bin`);
  const t0 = performance.now();
  const pub = await publishStore({ store: await store(), secret, versions: [2] });
  const publishSeconds = (performance.now() - t0) / 1000;
  const fresh = await node(); // a node that never saw the blob
  const warm = await firstRequest(`${fresh}/published.bin`);
  console.log('');
  console.log('| first PeerDist request (HashRequest=true) | seconds |');
  console.log('|---|---:|');
  console.log(`| not hashed yet (the node hashes it from storage) | ${cold.toFixed(3)} |`);
  console.log(`| after publish --store (another node hashed it) | ${warm.toFixed(3)} |`);
  console.log(
    `\npublish --store: ${pub.hashed} hashed, ${pub.cached} already hashed, in ${publishSeconds.toFixed(1)} s`,
  );
  await agent.close();
} finally {
  for (const n of nodes) {
    if (n.exitCode !== null || n.signalCode !== null) continue;
    const exited = new Promise((r) => n.once('exit', r));
    n.kill('SIGTERM');
    await exited;
  }
  await az.stop();
  await rm(state, { recursive: true, force: true });
}
