/**
 * An origin node over Azure Blob Storage (Azurite started here on 127.0.0.1) against the storage
 * itself, side by side:
 *   1. throughput: a plain GET of the whole blob through the node versus a ranged GET of the same
 *      blob straight from Azurite (SAS URL), same HTTP client, alternating, best of --runs.
 *      Target: the node at least 0.9x.
 *   2. first-request latency of a PeerDist request (HashRequest=true: answered once content
 *      information exists) on a blob nobody hashed, versus on a blob `publish --store` hashed.
 *   npm run build && node dist/bench/azblob.js [--size 256M] [--runs 3] [--throughput-only]
 *     [--profile DIR] [--compare-bin OTHER/bin/peerdist.js] [--storage-rate 100M] [--storage-delay-ms 2]
 * With --storage-rate (bytes per second, per connection) both paths reach Azurite through a link of
 * that rate (testkit's delay proxy, in this process): storage as a remote service, not a process
 * sharing the 2 cores with the node and the client.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { benchArgs } from './args.js';
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
import { tmpdir, cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AZURITE_ACCOUNT, azuriteConnectionString, startAzurite } from '../testkit/azurite.js';
import { startDelayProxy } from '../testkit/sim/delayproxy.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '256M' },
    runs: { type: 'string', default: '3' },
    /** Write a V8 CPU profile of each serve process (node --cpu-prof) into this directory. */
    profile: { type: 'string' },
    /** Only the throughput comparison (skip the first-request latencies). */
    'throughput-only': { type: 'boolean', default: false },
    /**
     * bin/peerdist.js of another build (a checkout of main, say): a second node runs it, and its
     * downloads interleave with the others, so a before/after comparison sees the same load.
     */
    'compare-bin': { type: 'string' },
    'storage-rate': { type: 'string' },
    'storage-delay-ms': { type: 'string', default: '0' },
  },
});
const size = parseSize(values.size!);
const runs = Number(values.runs);
const CHUNK = 8 * 1024 * 1024;

interface Sample {
  /** Wall-clock seconds. */
  s: number;
  azurite: number;
  node: number;
  client: number;
}
/** user+system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15, in clock ticks). */
function procCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function childPids(): number[] {
  const p = process.pid;
  return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}
function cmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
}

const az = await startAzurite();
// Storage as a remote service: a link of --storage-rate in front of Azurite, for both paths.
const link = values['storage-rate']
  ? await startDelayProxy({
      listenHost: '127.0.0.1',
      targetHost: '127.0.0.1',
      targetPort: az.port,
      delayMs: Number(values['storage-delay-ms']),
      rateBytesPerSecond: parseSize(values['storage-rate']),
    })
  : undefined;
const storageConnectionString = link
  ? azuriteConnectionString(`http://127.0.0.1:${link.port}/${AZURITE_ACCOUNT}`)
  : az.connectionString;
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
  for (const name of values['throughput-only'] ? ['big.bin'] : ['big.bin', 'cold.bin', 'published.bin']) {
    await container.getBlockBlobClient(name).uploadStream(randomStream(), CHUNK, 4);
  }
  const store = () =>
    AzblobStore.open(parseStoreUrl(`azblob://${AZURITE_ACCOUNT}/bench`), {
      env: { AZURE_STORAGE_CONNECTION_STRING: az.connectionString },
    });
  const secret = randomBytes(32);
  await writeFile(join(state, 'secret'), secret, { mode: 0o600 });
  // Each node is a `peerdist serve --store` process of its own, as deployed.
  const node = async (bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'peerdist.js')) => {
    const child = spawn(
      process.execPath,
      [
        ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : []),
        bin,
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
        env: { ...process.env, PEERDIST_LOG: 'error', AZURE_STORAGE_CONNECTION_STRING: storageConnectionString },
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
  const other = values['compare-bin'] ? await node(values['compare-bin']) : undefined;
  const agent = new Agent({ bodyTimeout: 600_000, headersTimeout: 600_000 });

  const viaNode = async (url = base): Promise<number> => {
    const t0 = performance.now();
    const r = await request(`${url}/big.bin`, { dispatcher: agent });
    let n = 0;
    for await (const c of r.body) n += (c as Buffer).length;
    if (n !== size) throw new Error(`node sent ${n} bytes`);
    return (performance.now() - t0) / 1000;
  };
  // The same client (undici) and a ranged GET on the blob's SAS URL: only the path differs.
  const sasUrl = new URL(
    await container.getBlobClient('big.bin').generateSasUrl({
      permissions: BlobSASPermissions.parse('r'),
      expiresOn: new Date(Date.now() + 3600_000),
    }),
  );
  if (link) sasUrl.port = String(link.port);
  const sas = sasUrl.toString();
  const direct = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await request(sas, { dispatcher: agent, headers: { Range: `bytes=0-${size - 1}` } });
    if (r.statusCode !== 206) throw new Error(`Azurite answered ${r.statusCode}`);
    let n = 0;
    for await (const c of r.body) n += (c as Buffer).length;
    if (n !== size) throw new Error(`Azurite sent ${n} bytes`);
    return (performance.now() - t0) / 1000;
  };
  await viaNode(); // warm the paths once (Azurite's extent files into the page cache)
  if (other) await viaNode(other);
  await direct();
  // CPU-seconds (user+system) of each process over one download: load-robust where wall-clock
  // is not. Azurite and the node are children of this process; /proc gives their CPU time.
  const azuritePid = childPids().find((p) => /azurite/.test(cmdline(p)));
  const measure = async (path: () => Promise<number>, nodePid = nodes[0]!.pid!): Promise<Sample> => {
    const c0 = process.cpuUsage();
    const a0 = azuritePid ? procCpu(azuritePid) : Number.NaN;
    const n0 = procCpu(nodePid);
    const s = await path();
    const c = process.cpuUsage(c0);
    return {
      s,
      client: (c.user + c.system) / 1e6,
      azurite: azuritePid ? procCpu(azuritePid) - a0 : Number.NaN,
      node: procCpu(nodePid) - n0,
    };
  };
  const nodeRuns: Sample[] = [];
  const directRuns: Sample[] = [];
  const otherRuns: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    directRuns.push(await measure(direct));
    nodeRuns.push(await measure(() => viaNode()));
    if (other) otherRuns.push(await measure(() => viaNode(other), nodes[1]!.pid!));
  }
  const best = (xs: Sample[]) => xs.reduce((a, b) => (b.s < a.s ? b : a));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const bestNode = best(nodeRuns).s;
  const bestDirect = best(directRuns).s;
  const mbps = (s: number) => (size / s / 1e6).toFixed(0);
  const cpuCols = (xs: Sample[]) =>
    (['azurite', 'node', 'client'] as const)
      .map((k) => (k === 'node' && xs === directRuns ? '-' : median(xs.map((x) => x[k])).toFixed(2)))
      .join(' | ');
  console.log(
    `blob: ${values.size} pseudo-random in Azurite 3.35 (127.0.0.1${link ? `, through a link of ${values['storage-rate']}B/s + ${values['storage-delay-ms']} ms` : ''}); ${cpus().length} CPUs; node ${process.version}; best of ${runs}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log('| path | seconds | MB/s | ratio | CPU s Azurite | CPU s node | CPU s client |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  console.log(
    `| straight from Azurite (ranged GET, SAS URL) | ${bestDirect.toFixed(2)} | ${mbps(bestDirect)} | 1.00 | ${cpuCols(directRuns)} |`,
  );
  console.log(
    `| through the origin node (plain GET) | ${bestNode.toFixed(2)} | ${mbps(bestNode)} | ${(bestDirect / bestNode).toFixed(2)} | ${cpuCols(nodeRuns)} |`,
  );
  if (other) {
    const s = best(otherRuns).s;
    console.log(
      `| through a node of ${values['compare-bin']} | ${s.toFixed(2)} | ${mbps(s)} | ${(bestDirect / s).toFixed(2)} | ${cpuCols(otherRuns)} |`,
    );
  }
  console.log(`(CPU columns: median over the ${runs} runs; seconds: best of ${runs})`);
  if (!values['throughput-only']) {
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
  }
  await agent.close();
} finally {
  for (const n of nodes) {
    if (n.exitCode !== null || n.signalCode !== null) continue;
    const exited = new Promise((r) => n.once('exit', r));
    n.kill('SIGTERM');
    await exited;
  }
  await link?.close();
  await az.stop();
  await rm(state, { recursive: true, force: true });
}
