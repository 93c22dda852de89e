/**
 * The publishing side as the seed describes it, on loopback (issue 22, item 8): Azurite as the
 * blob storage, three `peerdist serve --store azblob://...` nodes over one container with one
 * server secret and one signing key, a balancer in front of them (testkit/balancer.ts), and eight
 * client daemons. Half the clients go through the balancer, the other half name a node directly
 * and the other two nodes as mirrors (`get --mirror`). A sequential run on one blob, then a flash
 * crowd on another during which node 3 dies (its relay cuts every connection and refuses new
 * ones, then the process is killed). Used by test/sim/azblob-crowd.test.ts and
 * bench/azblob-crowd.ts; everything it starts is stopped by close().
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { request } from 'undici';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { startAzurite, AZURITE_ACCOUNT, type Azurite } from '../azurite.js';
import { startBalancer, startRelay, type Balancer, type Relay } from '../balancer.js';
import { peerdistEntry } from './entrypoints.js';
import { lastJsonLine, parseListenLine } from './harness.js';
import { onProcessExit, runCommand, spawnTracked, type TrackedChild } from './proc.js';

export interface NodeStats {
  bytesFull: number;
  bytesMissingData: number;
  bytesContentInfo: number;
  hashJobs: number;
  recordHits?: number;
  lockWaits?: number;
  [k: string]: number | undefined;
}

export interface ClientResult {
  client: number;
  /** 'balancer' or the node (1-3) it named first. */
  via: string;
  correct: boolean;
  fromOrigin: number;
  fromPeers: number;
  fromCache: number;
  seconds: number;
}

export interface RunReport {
  blob: string;
  size: number;
  clients: ClientResult[];
  /** File bytes the nodes sent (full bodies + ranges), summed over the nodes, during the run. */
  originBytes: number;
  /** originBytes / size. */
  copies: number;
  seconds: number;
}

export interface AzblobSiteReport {
  sequential: RunReport;
  crowd: RunReport;
  /** Hash jobs per node over the whole session (node 3 as read when it was killed). */
  hashJobs: number[];
  /** Content information of each blob as each node answered it (sha256 of the body), node 1-3. */
  contentInfo: Record<string, string[]>;
  /** Node 3 was killed during the crowd, after it had sent this many bytes of the crowd's blob. */
  killedAfterBytes: number;
  nodeStats: NodeStats[];
}

const V2 = clientRequestHeaders({ maxContentVersion: 2 });

interface Node {
  child: TrackedChild;
  /** host:port of the process. */
  direct: string;
  /** host:port clients use (a relay for node 3). */
  front: string;
  relay?: Relay;
}

export class AzblobSite {
  private readonly children: TrackedChild[] = [];
  private az?: Azurite;
  private lb?: Balancer;
  readonly nodes: Node[] = [];
  private readonly daemons: Array<{ admin: string; child: TrackedChild }> = [];
  private root = '';
  readonly blobs = new Map<string, { size: number; sha256: string }>();
  private killed3?: NodeStats;
  /** Node 3's content information of the crowd's blob, read as it died. */
  ci3: string | undefined;
  private killedAfter = 0;
  private onNode3Bytes: ((n: number) => void) | undefined;
  private unhook: (() => void) | undefined;
  /** Bound of one `peerdist get` (a hang ends the run; not a timing assertion). */
  getTimeoutMs = 300_000;

  async start(o: { blobs: Record<string, number>; clients?: number; env?: NodeJS.ProcessEnv }): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'pd-azsite-'));
    // An interrupted run (a test timeout, ^C) leaves no node or daemon behind, nor its files.
    const root = this.root;
    this.unhook = onProcessExit(() => {
      for (const c of this.children)
        try {
          if (c.pid) process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      rmSync(root, { recursive: true, force: true });
    });
    this.az = await startAzurite();
    const container = BlobServiceClient.fromConnectionString(this.az.connectionString).getContainerClient('media');
    await container.create();
    for (const [name, size] of Object.entries(o.blobs)) {
      const data = randomBytes(size);
      await container.getBlockBlobClient(name).uploadData(data);
      this.blobs.set(name, { size, sha256: createHash('sha256').update(data).digest('hex') });
    }
    const secretFile = join(this.root, 'secret');
    const keyFile = join(this.root, 'signing-key.pem');
    await writeFile(secretFile, randomBytes(32), { mode: 0o600 });
    const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await writeFile(keyFile, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const env = {
      ...process.env,
      PEERDIST_LOG: process.env.PEERDIST_LOG ?? 'warn',
      ...o.env,
      PEERDIST_TEST: '',
      AZURE_STORAGE_CONNECTION_STRING: this.az.connectionString,
      PEERDIST_SECRET_FILE: secretFile,
      PEERDIST_SIGNING_KEY_FILE: keyFile,
    };
    await Promise.all(
      [1, 2, 3].map(async (i) => {
        const child = spawnTracked(
          process.execPath,
          [
            peerdistEntry,
            'serve',
            '--store',
            `azblob://${AZURITE_ACCOUNT}/media`,
            '--host',
            '127.0.0.1',
            '--port',
            '0',
            '--state-dir',
            join(this.root, `node${i}`),
          ],
          { env },
        );
        this.children.push(child);
        const a = await child.firstLine((l) => parseListenLine(l), 60_000);
        const direct = `${a.host}:${a.port}`;
        let relay: Relay | undefined;
        if (i === 3) relay = await startRelay({ target: direct, onBytes: (n) => this.onNode3Bytes?.(n) });
        this.nodes[i - 1] = { child, direct, front: relay?.address ?? direct, ...(relay ? { relay } : {}) };
      }),
    );
    this.lb = await startBalancer({ backends: this.nodes.map((n) => n.front) });
    const discoveryPort = 20000 + Math.floor(Math.random() * 40000);
    const n = o.clients ?? 8;
    const started = await Promise.all(
      Array.from({ length: n }, async (_, k) => {
        const child = spawnTracked(
          process.execPath,
          [
            peerdistEntry,
            'daemon',
            '--state-dir',
            join(this.root, `c${k + 1}`),
            '--listen',
            `127.0.0.${70 + k}:0`,
            '--admin',
            `127.0.0.${70 + k}:0`,
            '--interface',
            '127.0.0.1',
            '--discovery-port',
            String(discoveryPort),
            '--no-presence',
          ],
          { env },
        );
        this.children.push(child);
        const ready = await child.firstJsonLine<{ admin: string }>((v) => v.event === 'ready', 60_000);
        return { admin: ready.admin, child };
      }),
    );
    this.daemons.push(...started);
  }

  /** Client i (1-based): odd clients through the balancer, even ones name node (i/2 mod 3)+1 and mirror the others. */
  route(i: number): { via: string; base: string; mirrors: string[] } {
    if (i % 2 === 1) return { via: 'balancer', base: this.lb!.address, mirrors: [] };
    const k = (i / 2) % 3;
    return {
      via: `node${k + 1}`,
      base: this.nodes[k]!.front,
      mirrors: this.nodes.filter((_, j) => j !== k).map((x) => `http://${x.front}`),
    };
  }

  async stats(i: number): Promise<NodeStats> {
    if (i === 3 && this.killed3) return this.killed3;
    const r = await request(`http://${this.nodes[i - 1]!.direct}/.peerdist/stats`);
    return (await r.body.json()) as NodeStats;
  }

  private async allStats(): Promise<NodeStats[]> {
    return Promise.all([1, 2, 3].map((i) => this.stats(i)));
  }

  /** sha256 of the content information each node answers for `blob` (undefined: not PeerDist). */
  async contentInfo(blob: string, nodes = [1, 2, 3]): Promise<string[]> {
    return Promise.all(
      nodes.map(async (i) => {
        const r = await request(`http://${this.nodes[i - 1]!.direct}/${blob}`, { headers: V2 });
        const body = Buffer.from(await r.body.arrayBuffer());
        return r.headers['content-encoding'] === 'peerdist' ? createHash('sha256').update(body).digest('hex') : '';
      }),
    );
  }

  async get(i: number, blob: string): Promise<ClientResult> {
    const d = this.daemons[i - 1]!;
    const rt = this.route(i);
    const out = join(this.root, `out-${i}-${blob}`);
    const args = [peerdistEntry, 'get', `http://${rt.base}/${blob}`, '-o', out, '--daemon', d.admin, '--json'];
    for (const m of rt.mirrors) args.push('--mirror', m);
    const r = await runCommand(process.execPath, args, { timeoutMs: this.getTimeoutMs });
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j) throw new Error(`client ${i} (${rt.via}): get exited ${r.code}: ${r.stderr.slice(-1500)}`);
    const body = await readFile(out);
    await rm(out, { force: true });
    const want = this.blobs.get(blob)!;
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    return {
      client: i,
      via: rt.via,
      correct: body.length === want.size && createHash('sha256').update(body).digest('hex') === want.sha256,
      fromOrigin: num(j.fromOrigin),
      fromPeers: num(j.fromPeers),
      fromCache: num(j.fromCache),
      seconds: num(j.seconds),
    };
  }

  private origin(s: NodeStats[]): number {
    return s.reduce((n, x) => n + x.bytesFull + x.bytesMissingData, 0);
  }

  async sequential(blob: string, clients: number[]): Promise<RunReport> {
    const before = this.origin(await this.allStats());
    const t0 = performance.now();
    const out: ClientResult[] = [];
    for (const i of clients) out.push(await this.get(i, blob));
    const seconds = (performance.now() - t0) / 1000;
    const bytes = this.origin(await this.allStats()) - before;
    const size = this.blobs.get(blob)!.size;
    return { blob, size, clients: out, originBytes: bytes, copies: bytes / size, seconds };
  }

  /**
   * All clients at once; node 3 dies once it has sent `killAfter` bytes during the crowd: its relay
   * cuts every connection and refuses new ones, its counters are read, and its process is killed.
   */
  async crowd(blob: string, clients: number[], killAfter: number): Promise<RunReport> {
    const before = await this.allStats();
    const node3 = this.nodes[2]!;
    const base3 = node3.relay!.bytesDown();
    let dying: Promise<void> | undefined;
    this.onNode3Bytes = (n) => {
      if (dying || n - base3 < killAfter) return;
      dying = (async () => {
        this.killedAfter = n - base3;
        await node3.relay!.cut();
        this.killed3 = await this.stats(3);
        [this.ci3] = await this.contentInfo(blob, [3]);
        await node3.child.stop('SIGKILL', 2000);
      })();
    };
    const t0 = performance.now();
    const out = await Promise.all(clients.map((i) => this.get(i, blob)));
    const seconds = (performance.now() - t0) / 1000;
    await dying;
    const after = await this.allStats();
    const bytes = this.origin(after) - this.origin(before);
    const size = this.blobs.get(blob)!.size;
    return { blob, size, clients: out, originBytes: bytes, copies: bytes / size, seconds };
  }

  get node3Killed(): boolean {
    return this.killed3 !== undefined;
  }
  get killedAfterBytes(): number {
    return this.killedAfter;
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop('SIGTERM', 3000)));
    await this.lb?.close();
    await Promise.all(this.nodes.map((n) => n.relay?.cut()));
    await this.az?.stop();
    if (this.root) await rm(this.root, { recursive: true, force: true });
    this.unhook?.();
  }
}

/** The whole scenario: sequential run (one client per route), then the crowd with node 3 dying. */
export async function runAzblobSite(
  o: { seqSize?: number; crowdSize?: number; clients?: number; killAfter?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<AzblobSiteReport> {
  const site = new AzblobSite();
  try {
    await site.start({
      blobs: { 'seq.bin': o.seqSize ?? 1024 * 1024 + 99, 'crowd.bin': o.crowdSize ?? 2 * 1024 * 1024 + 7 },
      clients: o.clients ?? 8,
      ...(o.env ? { env: o.env } : {}),
    });
    const contentInfo: Record<string, string[]> = {};
    const sequential = await site.sequential('seq.bin', [1, 2, 4, 6]);
    contentInfo['seq.bin'] = await site.contentInfo('seq.bin');
    const n = o.clients ?? 8;
    const crowd = await site.crowd(
      'crowd.bin',
      Array.from({ length: n }, (_, k) => k + 1),
      o.killAfter ?? 256 * 1024,
    );
    // Node 3's answer as it died (its relay already cut), then nodes 1 and 2.
    contentInfo['crowd.bin'] = [...(await site.contentInfo('crowd.bin', [1, 2])), site.ci3 ?? ''];
    const nodeStats = await Promise.all([1, 2, 3].map((i) => site.stats(i)));
    return {
      sequential,
      crowd,
      hashJobs: nodeStats.map((s) => s.hashJobs),
      contentInfo,
      killedAfterBytes: site.node3Killed ? site.killedAfterBytes : 0,
      nodeStats,
    };
  } finally {
    await site.close();
  }
}
