/**
 * The publishing side as the seed describes it (issue 22, item 8), over any SimNetwork: on the
 * site host, Azurite as the blob storage, three `peerdist serve --store azblob://...` nodes over
 * one container with one server secret and one signing key, and a balancer in front of them
 * (testkit/balancer.ts, run by the agent); eight client daemons, each on a host of its own. On
 * loopback every client probes from 127.0.0.1, so crowd members have no identity to each other;
 * in network namespaces (NetnsNetwork) each has its own address. Half the clients go through the
 * balancer, the other half name a node directly and the other two nodes as mirrors
 * (`get --mirror`). A sequential run on one blob, then a flash crowd on another during which node
 * 3 dies: its relay cuts every connection and refuses new ones once it has sent `killAfter`
 * bytes, then the process is killed. Used by test/sim/azblob-crowd.test.ts,
 * test/sim/azblob-netns.test.ts and bench/azblob-crowd.ts; everything it starts is stopped by
 * close().
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { AZURITE_ACCOUNT, azuriteArgs, azuriteConnectionString, azuriteListenPort } from '../azurite.js';
import { agentEntry, peerdistEntry } from './entrypoints.js';
import { digestFile, writePayload } from './files.js';
import { lastJsonLine, parseListenLine } from './harness.js';
import { LoopbackNetwork } from './loopback.js';
import type { SimHost, SimNetwork } from './network.js';
import { SimError, onProcessExit, type TrackedChild } from './proc.js';
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

const V2 = Object.entries(clientRequestHeaders({ maxContentVersion: 2 })).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

interface Node {
  child: TrackedChild;
  /** host:port of the process. */
  direct: string;
  /** host:port clients use (a relay for node 3). */
  front: string;
  relay?: TrackedChild;
}

export class AzblobSite {
  private readonly children: TrackedChild[] = [];
  private lb = '';
  readonly nodes: Node[] = [];
  private readonly daemons: Array<{ admin: string; host: SimHost; child: TrackedChild }> = [];
  private root = '';
  readonly blobs = new Map<string, { size: number; sha256: string }>();
  private killed3?: NodeStats;
  /** Node 3's content information of the crowd's blob, read as it died. */
  ci3: string | undefined;
  private killedAfter = 0;
  private unhook: (() => void) | undefined;
  private env: NodeJS.ProcessEnv = {};
  private readonly net: SimNetwork;
  /** Bound of one `peerdist get` (a hang ends the run; not a timing assertion). */
  getTimeoutMs = 300_000;
  /** Bound of a process's ready line (a node's start alone took over 15 s on a busy machine). */
  readyMs = 60_000;

  constructor(network?: SimNetwork) {
    this.net = network ?? new LoopbackNetwork({ base: 70 });
  }

  private spawnSite(args: string[], env?: NodeJS.ProcessEnv): TrackedChild {
    const c = this.net.spawn(this.net.origin, process.execPath, args, env ?? this.env);
    this.children.push(c);
    return c;
  }

  /** Runs the agent's `fetch` on the site host (where every node is reachable). */
  private async siteFetch(url: string, extra: string[] = []): Promise<Record<string, unknown>> {
    const r = await this.net.run(this.net.origin, process.execPath, [agentEntry, 'fetch', url, ...extra], {
      timeoutMs: this.readyMs,
    });
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j) throw new SimError('SIM_STEP', `fetch ${url} failed: ${r.stderr.trim().slice(-500)}`);
    return j;
  }

  async start(o: {
    blobs: Record<string, number>;
    clients?: number;
    env?: NodeJS.ProcessEnv;
    /** Node 3 dies once it has sent this many bytes in the crowd (default 256 KiB). */
    killAfter?: number;
  }): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'pd-azsite-'));
    // An interrupted run (a test timeout, ^C) leaves no file behind (proc.ts kills the children).
    const root = this.root;
    this.unhook = onProcessExit(() => rmSync(root, { recursive: true, force: true }));
    const site = this.net.origin;
    const daemonEnv = {
      ...process.env,
      PEERDIST_LOG: process.env.PEERDIST_LOG ?? 'warn',
      ...o.env,
      PEERDIST_TEST: '',
    };
    // The client daemons start while the site comes up.
    const discoveryPort = 20000 + Math.floor(Math.random() * 40000);
    const hosts: SimHost[] = [];
    for (let k = 1; k <= (o.clients ?? 8); k++) hosts.push(await this.net.addHost(`c${k}`));
    const daemonsReady = Promise.all(
      hosts.map(async (host, k) => {
        const child = this.net.spawn(
          host,
          process.execPath,
          [
            peerdistEntry,
            'daemon',
            '--state-dir',
            join(this.root, `c${k + 1}`),
            '--listen',
            `${host.address}:0`,
            '--admin',
            `${host.localAddress}:0`,
            '--interface',
            host.discoveryInterface,
            '--discovery-port',
            String(discoveryPort),
            '--no-presence',
          ],
          daemonEnv,
        );
        this.children.push(child);
        const ready = await child.firstJsonLine<{ admin: string }>((v) => v.event === 'ready', this.readyMs);
        return { admin: ready.admin, host, child };
      }),
    );

    daemonsReady.catch(() => {
      /* awaited below */
    });
    const azDir = join(this.root, 'azurite');
    await mkdir(azDir);
    const az = this.spawnSite(azuriteArgs(azDir), process.env);
    const azPort = await az.firstLine((l) => azuriteListenPort(l), this.readyMs);
    const connectionString = azuriteConnectionString(`http://127.0.0.1:${azPort}/${AZURITE_ACCOUNT}`);
    const secretFile = join(this.root, 'secret');
    const keyFile = join(this.root, 'signing-key.pem');
    await writeFile(secretFile, randomBytes(32), { mode: 0o600 });
    const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await writeFile(keyFile, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    this.env = {
      ...daemonEnv,
      AZURE_STORAGE_CONNECTION_STRING: connectionString,
      PEERDIST_SECRET_FILE: secretFile,
      PEERDIST_SIGNING_KEY_FILE: keyFile,
    };
    // The blobs go up while the nodes start (a node needs none of them to start).
    const uploaded = Promise.all(
      Object.entries(o.blobs).map(async ([name, size]) => {
        const file = join(this.root, `blob-${name}`);
        const info = await writePayload(file, size, `${name}:${randomBytes(8).toString('hex')}`);
        const r = await this.net.run(
          site,
          process.execPath,
          [agentEntry, 'az-upload', '--container', 'media', '--name', name, '--file', file],
          { timeoutMs: this.readyMs, env: this.env },
        );
        if (r.code !== 0) throw new SimError('SIM_STEP', `upload of ${name} failed: ${r.stderr.trim().slice(-500)}`);
        await rm(file);
        this.blobs.set(name, { size, sha256: info.sha256 });
      }),
    );
    uploaded.catch(() => {
      /* awaited below */
    });
    await Promise.all(
      [1, 2, 3].map(async (i) => {
        const child = this.spawnSite([
          peerdistEntry,
          'serve',
          '--store',
          `azblob://${AZURITE_ACCOUNT}/media`,
          '--host',
          site.address,
          '--port',
          '0',
          '--state-dir',
          join(this.root, `node${i}`),
        ]);
        const a = await child.firstLine((l) => parseListenLine(l), this.readyMs);
        const direct = `${a.host}:${a.port}`;
        if (i !== 3) {
          this.nodes[i - 1] = { child, direct, front: direct };
          return;
        }
        // Node 3 behind a relay that can make it vanish at an exact point (crowd()).
        const relay = this.spawnSite([
          agentEntry,
          'relay',
          '--listen',
          `${site.address}:0`,
          '--target',
          direct,
          '--cut-after',
          String(o.killAfter ?? 256 * 1024),
        ]);
        const r = await relay.firstJsonLine<{ address: string }>((v) => v.event === 'ready', this.readyMs);
        this.nodes[i - 1] = { child, direct, front: r.address, relay };
      }),
    );
    const lb = this.spawnSite([
      agentEntry,
      'balancer',
      '--listen',
      `${site.address}:0`,
      ...this.nodes.flatMap((n) => ['--backend', n.front]),
    ]);
    this.lb = (await lb.firstJsonLine<{ address: string }>((v) => v.event === 'ready', this.readyMs)).address;
    await uploaded;
    this.daemons.push(...(await daemonsReady));
  }

  /**
   * Arms node 3's relay: once it has sent `killAfter` (start()) more bytes it cuts every connection
   * and stops listening. Resolves when armed, with a promise of the bytes sent when the cut came
   * (0: never).
   */
  private async armNode3(): Promise<{ cut: Promise<number> }> {
    const relay = this.nodes[2]!.relay!;
    const armed = relay.firstJsonLine((v) => v.event === 'armed', this.readyMs);
    relay.child.kill('SIGUSR2');
    await armed;
    const cut = relay
      .firstJsonLine<{ bytes: number }>((v) => v.event === 'cut', 24 * 3600_000)
      .then(
        (v) => v.bytes,
        () => 0,
      );
    return { cut };
  }

  /** Client i (1-based): odd clients through the balancer, even ones name node (i/2 mod 3)+1 and mirror the others. */
  route(i: number): { via: string; base: string; mirrors: string[] } {
    if (i % 2 === 1) return { via: 'balancer', base: this.lb, mirrors: [] };
    const k = (i / 2) % 3;
    return {
      via: `node${k + 1}`,
      base: this.nodes[k]!.front,
      mirrors: this.nodes.filter((_, j) => j !== k).map((x) => `http://${x.front}`),
    };
  }

  async stats(i: number): Promise<NodeStats> {
    if (i === 3 && this.killed3) return this.killed3;
    const j = await this.siteFetch(`http://${this.nodes[i - 1]!.direct}/.peerdist/stats`, ['--body']);
    return JSON.parse(String(j.body)) as NodeStats;
  }

  private async allStats(): Promise<NodeStats[]> {
    return Promise.all([1, 2, 3].map((i) => this.stats(i)));
  }

  /** sha256 of the content information each node answers for `blob` ('': not PeerDist). */
  async contentInfo(blob: string, nodes = [1, 2, 3]): Promise<string[]> {
    return Promise.all(
      nodes.map(async (i) => {
        const j = await this.siteFetch(`http://${this.nodes[i - 1]!.direct}/${blob}`, V2);
        return j.status === 200 && j.encoding === 'peerdist' ? String(j.sha256) : '';
      }),
    );
  }

  async get(i: number, blob: string, route = this.route(i)): Promise<ClientResult> {
    const d = this.daemons[i - 1]!;
    const out = join(this.root, `out-${i}-${blob}`);
    const args = [peerdistEntry, 'get', `http://${route.base}/${blob}`, '-o', out, '--daemon', d.admin, '--json'];
    for (const m of route.mirrors) args.push('--mirror', m);
    const r = await this.net.run(d.host, process.execPath, args, { timeoutMs: this.getTimeoutMs, env: this.env });
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError('SIM_STEP', `client ${i} (${route.via}): get exited ${r.code}: ${r.stderr.slice(-1500)}`);
    const dg = await digestFile(out);
    await rm(out, { force: true });
    const want = this.blobs.get(blob)!;
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    return {
      client: i,
      via: route.via,
      correct: dg !== undefined && dg.size === want.size && dg.sha256 === want.sha256,
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
   * All clients at once; node 3 dies once it has sent `killAfter` (start()) bytes during the crowd:
   * its relay cuts every connection and refuses new ones, its counters are read, and its process is
   * killed.
   */
  async crowd(blob: string, clients: number[]): Promise<RunReport> {
    const before = await this.allStats();
    const { cut } = await this.armNode3();
    const dying = cut.then(async (n) => {
      if (n === 0) return;
      this.killedAfter = n;
      this.killed3 = await this.stats(3);
      [this.ci3] = await this.contentInfo(blob, [3]);
      await this.nodes[2]!.child.stop('SIGKILL', 2000);
    });
    const t0 = performance.now();
    const out = await Promise.all(clients.map((i) => this.get(i, blob)));
    const seconds = (performance.now() - t0) / 1000;
    // Unless too few bytes went through node 3 to reach the cut (the report says so).
    if (this.killedAfter > 0) await dying;
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
    await this.net.destroy();
    if (this.root) await rm(this.root, { recursive: true, force: true });
    this.unhook?.();
  }
}

/** The whole scenario: sequential run (one client per route), then the crowd with node 3 dying. */
export async function runAzblobSite(
  o: {
    seqSize?: number;
    crowdSize?: number;
    clients?: number;
    killAfter?: number;
    env?: NodeJS.ProcessEnv;
    /** Default: loopback (every client probes from 127.0.0.1). */
    network?: SimNetwork;
  } = {},
): Promise<AzblobSiteReport> {
  const site = new AzblobSite(o.network);
  try {
    await site.start({
      blobs: { 'seq.bin': o.seqSize ?? 1024 * 1024 + 99, 'crowd.bin': o.crowdSize ?? 2 * 1024 * 1024 + 7 },
      clients: o.clients ?? 8,
      ...(o.killAfter !== undefined ? { killAfter: o.killAfter } : {}),
      ...(o.env ? { env: o.env } : {}),
    });
    const contentInfo: Record<string, string[]> = {};
    const sequential = await site.sequential('seq.bin', [1, 2, 4, 6]);
    contentInfo['seq.bin'] = await site.contentInfo('seq.bin');
    const n = o.clients ?? 8;
    const crowd = await site.crowd(
      'crowd.bin',
      Array.from({ length: n }, (_, k) => k + 1),
    );
    // Node 3's answer as it died (its relay already cut), then nodes 1 and 2; all three if it lived.
    contentInfo['crowd.bin'] = site.node3Killed
      ? [...(await site.contentInfo('crowd.bin', [1, 2])), site.ci3 ?? '']
      : await site.contentInfo('crowd.bin');
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
