/**
 * A simulated site: one origin (`peerdist serve`, optionally behind a shaped, delayed WAN link) and
 * client hosts each running a real `peerdist daemon`, driven over any SimNetwork (namespaces or
 * loopback). Downloads run `peerdist get ... --json` on the client's host; every result is checked
 * against the payload's SHA-256. `close()` stops every process and removes every temp dir.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GetResult } from '../../src/client/get.js';
import { agentEntry, peerdistEntry } from './entrypoints.js';
import { SimError, onProcessExit, runCommand, type TrackedChild } from './proc.js';
import type { SimHost, SimNetwork } from './network.js';
import { digestFile, writePayload, type FileInfo } from './files.js';
import type { TarpitStats } from './evilpeer.js';

export interface WanLink {
  /** Origin downlink rate, bits/s (namespace network only). */
  rateBps?: number;
  burstBytes?: number;
  /** One-way delay added by the delay proxy in front of the origin, ms. */
  delayMs?: number;
}

export interface ClusterOptions {
  network: SimNetwork;
  /** Client hosts created up front (c1..cN). */
  clients: number;
  wan?: WanLink;
  /** Egress rate of every client host, bits/s (namespace network only). */
  lanRateBps?: number;
  /** Shared WS-Discovery port of the daemons (default: random per cluster, so parallel runs don't hear each other). */
  discoveryPort?: number;
  /** Extra `peerdist daemon` arguments. */
  daemonArgs?: string[];
  readyTimeoutMs?: number;
  /** Payloads written into the origin's directory before it starts. */
  files?: Array<{ name: string; size: number; seed?: string }>;
  /** Precompute their content information with `peerdist publish` before the origin starts (default true). */
  publish?: boolean;
  /** Environment for spawned peerdist processes (PEERDIST_LOG defaults to "warn"). */
  env?: NodeJS.ProcessEnv;
  /**
   * Run the origin as `peerdist serve --upstream` in front of a plain HTTP server on the origin
   * host's loopback that serves the origin directory, ignores Range and sends no validator.
   */
  upstreamPlain?: boolean;
  /**
   * Runs each `peerdist get` through a wrapper: given node and its arguments, returns the command
   * to run instead (e.g. `perf record ... -- node ...`; bench/loopback.ts --perf).
   */
  wrapGet?: (cmd: string, args: string[]) => { cmd: string; args: string[] };
}

/** The branch's hosted cache (`peerdist hosted-cache`) on a host of its own. */
export interface HostedCacheHandle {
  host: SimHost;
  /** HOST:PORT of its HTTP listener (MS-PCHC v2.0 and MS-PCCRR). */
  address: string;
  admin: string;
  stateDir: string;
  child: TrackedChild;
}

export interface DaemonHandle {
  index: number;
  host: SimHost;
  retrieval: string;
  admin: string;
  pid: number;
  stateDir: string;
  child: TrackedChild;
}

/** The `peerdist get --json` document (GetResult) of one client, plus what the harness checked. */
export interface SimDownload extends Omit<GetResult, 'peers'> {
  client: number;
  /** As the JSON said (not checked). */
  peers: unknown;
  /** CPU seconds of the `peerdist get` process (its own report; undefined from an older build). */
  cpuSeconds?: number;
  /** Wall-clock time of the whole `peerdist get` process, s. */
  wallSeconds: number;
  sha256: string;
  /** Output exists, has the payload's size and SHA-256. */
  correct: boolean;
}

export interface OriginCounters {
  bytesFull: number;
  bytesContentInfo: number;
  bytesMissingData: number;
  requests: number;
  [k: string]: number;
}

/** Bytes of file content the origin sent: full bodies plus missing-data (range) bodies. */
export function originBlockBytes(s: OriginCounters): number {
  return (s.bytesFull ?? 0) + (s.bytesMissingData ?? 0);
}

export function diffCounters(after: OriginCounters, before: OriginCounters): OriginCounters {
  const out: OriginCounters = { bytesFull: 0, bytesContentInfo: 0, bytesMissingData: 0, requests: 0 };
  for (const [k, v] of Object.entries(after))
    if (typeof v === 'number') out[k] = v - (typeof before[k] === 'number' ? before[k]! : 0);
  return out;
}

/** Parses the last JSON object line of a command's stdout. */
export function lastJsonLine(stdout: string): Record<string, unknown> | undefined {
  const lines = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      return JSON.parse(lines[i]!) as Record<string, unknown>;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** Finds "HOST:PORT" (IPv4) or a URL's authority in a line of `peerdist serve` output. */
export function parseListenLine(line: string): { host: string; port: number } | undefined {
  const s = line.trim();
  if (s.startsWith('{')) {
    try {
      const v = JSON.parse(s) as Record<string, unknown>;
      for (const k of ['address', 'listen', 'url', 'origin']) {
        if (typeof v[k] === 'string') {
          const r = parseListenLine(v[k] as string);
          if (r) return r;
        }
      }
      if (typeof v.port === 'number') return { host: typeof v.host === 'string' ? v.host : '127.0.0.1', port: v.port };
    } catch {
      /* fall through to text */
    }
  }
  const m = /(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})/.exec(s);
  if (m) return { host: m[1]!, port: Number(m[2]) };
  return undefined;
}

/**
 * The origin's RSA signing key, kept from the first origin this process started and given to later
 * ones (generating a key takes seconds; every cluster's origin would otherwise make its own).
 */
let signingKeyPem: string | undefined;
const SIGNING_KEY_FILE = join('origin', 'signing-key.pem');

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

export class Cluster {
  readonly hosts: SimHost[] = [];
  readonly daemons: Array<DaemonHandle | undefined> = [];
  readonly files = new Map<string, FileInfo>();
  /** Address clients use for the origin (the delay proxy's when there is one). */
  originFront = '';
  /** Address of the origin process itself, reachable from the origin host. */
  originDirect = '';
  readonly discoveryPort: number;
  private originChild?: TrackedChild;
  private proxyChild?: TrackedChild;
  private upstreamChild?: TrackedChild;
  private closed = false;
  private outCounter = 0;
  private evilCounter = 0;
  private readonly extraChildren: TrackedChild[] = [];
  /** Set by startHostedCache: daemons started afterwards offer to it and fetch from it. */
  hostedCache?: HostedCacheHandle;

  private readonly unhook: () => void;

  private constructor(
    readonly opts: ClusterOptions,
    readonly root: string,
  ) {
    this.discoveryPort = opts.discoveryPort ?? 20000 + Math.floor(Math.random() * 40000);
    // Temp dirs go even when the run is interrupted (children are killed by proc.ts's own hook).
    this.unhook = onProcessExit(() => rmSync(root, { recursive: true, force: true }));
  }

  get network(): SimNetwork {
    return this.opts.network;
  }
  get originRoot(): string {
    return join(this.root, 'www');
  }

  /** Creates the client hosts, shapes the links, and starts the origin (daemons start separately). */
  static async create(opts: ClusterOptions): Promise<Cluster> {
    const root = await mkdtemp(join(tmpdir(), 'pdsim-'));
    const c = new Cluster(opts, root);
    try {
      await mkdir(c.originRoot);
      for (let i = 1; i <= opts.clients; i++) c.hosts.push(await opts.network.addHost(`c${i}`));
      if (opts.wan?.rateBps)
        await opts.network.shapeOrigin({ rateBps: opts.wan.rateBps, burstBytes: opts.wan.burstBytes });
      if (opts.lanRateBps) for (const h of c.hosts) await opts.network.shapeHost(h, { rateBps: opts.lanRateBps });
      for (const f of opts.files ?? []) await c.addFile(f.name, f.size, f.seed);
      if ((opts.files?.length ?? 0) > 0 && opts.publish !== false) await c.publish();
      await c.startOrigin();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, PEERDIST_LOG: process.env.PEERDIST_LOG ?? 'warn', ...this.opts.env, PEERDIST_TEST: '' };
  }

  private get readyMs(): number {
    return this.opts.readyTimeoutMs ?? 60_000;
  }

  /** Writes a seeded payload into the origin's directory. */
  async addFile(name: string, size: number, seed = name): Promise<FileInfo> {
    const info = await writePayload(join(this.originRoot, name), size, seed);
    this.files.set(name, info);
    return info;
  }

  private get originState(): string {
    return join(this.root, 'origin-state');
  }

  /** Precomputes content information for the origin's directory (only while the origin is not running). */
  async publish(): Promise<void> {
    if (this.originChild?.running)
      throw new SimError('SIM_CLUSTER', 'publish needs the origin stopped (the hash cache is single-process)');
    await this.seedSigningKey();
    const r = await runCommand(
      process.execPath,
      [peerdistEntry, 'publish', this.originRoot, '--state-dir', this.originState, '--json'],
      { timeoutMs: 600_000, env: this.env() },
    );
    if (r.code !== 0)
      throw new SimError('SIM_STEP', `peerdist publish failed (${r.code}): ${r.stderr.trim().slice(-1000)}`);
  }

  url(name: string): string {
    return `http://${this.originFront}/${name}`;
  }

  private async seedSigningKey(): Promise<void> {
    if (signingKeyPem === undefined) return;
    await mkdir(join(this.originState, 'origin'), { recursive: true, mode: 0o700 });
    await writeFile(join(this.originState, SIGNING_KEY_FILE), signingKeyPem, { mode: 0o600, flag: 'wx' }).catch(() => {
      /* already there */
    });
  }

  private async startOrigin(): Promise<void> {
    await this.seedSigningKey();
    const net = this.network;
    const o = net.origin;
    const delay = this.opts.wan?.delayMs ?? 0;
    // With a delay proxy the origin listens only on the origin host's loopback; the proxy is its front.
    const host = delay > 0 || net.kind === 'loopback' ? o.localAddress : o.address;
    const stateDir = this.originState;
    let served = [this.originRoot];
    if (this.opts.upstreamPlain) {
      this.upstreamChild = net.spawn(o, process.execPath, [
        agentEntry,
        'serve-file',
        '--listen',
        `${o.localAddress}:0`,
        '--dir',
        this.originRoot,
      ]);
      const up = await this.upstreamChild.firstJsonLine<{ address: string }>((v) => v.event === 'ready', this.readyMs);
      served = ['--upstream', `http://${up.address}/`];
    }
    const args = [peerdistEntry, 'serve', ...served, '--host', host, '--port', '0', '--state-dir', stateDir];
    this.originChild = net.spawn(o, process.execPath, args, this.env());
    const addr = await this.originChild.firstLine((l) => parseListenLine(l), this.readyMs);
    this.originDirect = `${addr.host}:${addr.port}`;
    signingKeyPem ??= await readFile(join(this.originState, SIGNING_KEY_FILE), 'utf8').catch(() => undefined);
    this.originFront = this.originDirect;
    if (delay > 0) {
      const listen = net.kind === 'loopback' ? `${o.address}:0` : `${o.address}:80`;
      this.proxyChild = net.spawn(o, process.execPath, [
        agentEntry,
        'delay-proxy',
        '--listen',
        listen,
        '--target',
        this.originDirect,
        '--delay-ms',
        String(delay),
      ]);
      const r = await this.proxyChild.firstJsonLine<{ address: string }>((v) => v.event === 'ready', this.readyMs);
      this.originFront = r.address;
    }
  }

  /** Starts the daemon of client `i` (1-based); reuses its state dir when restarted. */
  async startDaemon(i: number, extraArgs: string[] = []): Promise<DaemonHandle> {
    const host = this.hosts[i - 1];
    if (!host) throw new SimError('SIM_CLUSTER', `no client ${i}`);
    if (this.daemons[i - 1]?.child.running) throw new SimError('SIM_CLUSTER', `daemon ${i} already running`);
    const stateDir = join(this.root, `c${i}-state`);
    const args = [
      peerdistEntry,
      'daemon',
      '--state-dir',
      stateDir,
      '--listen',
      `${host.address}:0`,
      '--admin',
      `${host.localAddress}:0`,
      '--interface',
      host.discoveryInterface,
      '--discovery-port',
      String(this.discoveryPort),
      '--no-presence',
      ...(this.hostedCache ? ['--hosted-cache', this.hostedCache.address] : []),
      ...(this.opts.daemonArgs ?? []),
      ...extraArgs,
    ];
    const child = this.network.spawn(host, process.execPath, args, this.env());
    const ready = await child.firstJsonLine<{ retrieval: string; admin: string; pid: number }>(
      (v) => v.event === 'ready',
      this.readyMs,
    );
    const d: DaemonHandle = {
      index: i,
      host,
      retrieval: ready.retrieval,
      admin: ready.admin,
      pid: ready.pid ?? child.pid ?? 0,
      stateDir,
      child,
    };
    this.daemons[i - 1] = d;
    return d;
  }

  /**
   * Starts a hosted cache on a new host (on branch subnet `subnet`, default 1), HTTP on port 80
   * (MS-PCHC v2.0 + MS-PCCRR), no HTTPS. Daemons started after this use it (`--hosted-cache`).
   */
  async startHostedCache(opts: { subnet?: number; args?: string[] } = {}): Promise<HostedCacheHandle> {
    if (this.hostedCache) throw new SimError('SIM_CLUSTER', 'hosted cache already started');
    const host = await this.network.addHost('hc', { subnet: opts.subnet ?? 1 });
    const stateDir = join(this.root, 'hc-state');
    const listen = this.network.kind === 'loopback' ? `${host.address}:0` : `${host.address}:80`;
    const args = [
      peerdistEntry,
      'hosted-cache',
      '--state-dir',
      stateDir,
      '--http',
      listen,
      '--https',
      'off',
      '--admin',
      `${host.localAddress}:0`,
      ...(opts.args ?? []),
    ];
    const child = this.network.spawn(host, process.execPath, args, this.env());
    this.extraChildren.push(child);
    const ready = await child.firstJsonLine<{ http: string; admin: string }>((v) => v.event === 'ready', this.readyMs);
    this.hostedCache = { host, address: ready.http, admin: ready.admin, stateDir, child };
    return this.hostedCache;
  }

  /** The hosted cache's `/v1/status` document (hostedCache counters, cache, retrievalServer). */
  async hostedCacheStatus(): Promise<Record<string, unknown>> {
    const hc = this.hostedCache;
    if (!hc) throw new SimError('SIM_CLUSTER', 'no hosted cache');
    const r = await this.network.run(
      hc.host,
      process.execPath,
      [peerdistEntry, 'status', '--daemon', hc.admin, '--json'],
      { timeoutMs: this.readyMs, env: this.env() },
    );
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError('SIM_STEP', `status of the hosted cache failed: ${r.stderr.trim().slice(-500)}`);
    return j;
  }

  async startDaemons(): Promise<DaemonHandle[]> {
    return Promise.all(this.hosts.map((_, k) => this.startDaemon(k + 1)));
  }

  /** Stops client i's daemon: SIGTERM (graceful) or SIGKILL (a peer vanishing). */
  async stopDaemon(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.daemons[i - 1]?.child.stop(signal, 5000);
  }

  /** Stops the origin server (the delay proxy in front of it stays: connections to it then fail). */
  async stopOrigin(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.originChild?.stop(signal, 2000);
  }

  /**
   * Runs `peerdist get` for `name` on client i and returns what the user sees (exit code, stdout,
   * stderr) and the output path, whatever the outcome.
   */
  async getRaw(
    i: number,
    name: string,
    timeoutMs = 120_000,
  ): Promise<{ code: number | null; stdout: string; stderr: string; output: string; ms: number }> {
    const d = this.daemons[i - 1];
    if (!d) throw new SimError('SIM_CLUSTER', `daemon ${i} not started`);
    if (!this.files.has(name)) throw new SimError('SIM_CLUSTER', `unknown file ${name}`);
    const output = join(this.root, `out-c${i}-${++this.outCounter}-${name}`);
    const getArgs = [peerdistEntry, 'get', this.url(name), '-o', output, '--daemon', d.admin, '--json'];
    const run = this.opts.wrapGet?.(process.execPath, getArgs) ?? { cmd: process.execPath, args: getArgs };
    const r = await this.network.run(d.host, run.cmd, run.args, { timeoutMs, env: this.env() });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr, output, ms: r.ms };
  }

  /** Runs `peerdist get` for `name` on client i and checks the output against the payload. */
  async download(i: number, name: string, timeoutMs = 120_000): Promise<SimDownload> {
    const file = this.files.get(name);
    if (!file) throw new SimError('SIM_CLUSTER', `unknown file ${name}`);
    const url = this.url(name);
    const r = await this.getRaw(i, name, timeoutMs);
    const output = r.output;
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError(
        'SIM_STEP',
        `client ${i}: peerdist get exited ${r.code}: ${r.stderr.trim().slice(-1500)} ${r.stdout.slice(-500)}`,
      );
    const dg = await digestFile(output);
    await rm(output, { force: true });
    return {
      client: i,
      url,
      output,
      bytes: num(j.bytes),
      seconds: num(j.seconds),
      ...(j.originAnswerSeconds !== undefined ? { originAnswerSeconds: num(j.originAnswerSeconds) } : {}),
      fromOrigin: num(j.fromOrigin),
      fromPeers: num(j.fromPeers),
      fromCache: num(j.fromCache),
      contentInfoBytes: num(j.contentInfoBytes),
      peers: j.peers,
      peerdist: j.peerdist === true,
      ...(typeof j.cpuSeconds === 'number' ? { cpuSeconds: j.cpuSeconds } : {}),
      wallSeconds: r.ms / 1000,
      sha256: dg?.sha256 ?? '',
      correct: dg !== undefined && dg.size === file.size && dg.sha256 === file.sha256,
    };
  }

  /** A plain HTTP GET of `name` from client i (no PeerDist headers): the straight-from-origin baseline. */
  async plainFetch(
    i: number,
    name: string,
    timeoutMs = 300_000,
  ): Promise<{ seconds: number; bytes: number; correct: boolean }> {
    const host = this.hosts[i - 1];
    if (!host) throw new SimError('SIM_CLUSTER', `no client ${i}`);
    const r = await this.network.run(
      host,
      process.execPath,
      [agentEntry, 'fetch', this.url(name), '--timeout-ms', String(timeoutMs)],
      { timeoutMs: timeoutMs + 5000 },
    );
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError('SIM_STEP', `plain fetch on client ${i} failed: ${r.stderr.trim().slice(-1000)}`);
    const f = this.files.get(name);
    return {
      seconds: num(j.seconds),
      bytes: num(j.bytes),
      correct: j.status === 200 && f !== undefined && j.sha256 === f.sha256,
    };
  }

  /**
   * Starts a malicious peer on a host of its own: it announces every segment of `name` and serves
   * corrupted blocks. Returns a stop function that resolves with what it served.
   */
  async startEvilPeer(
    name: string,
    corruption: 'flip' | 'random' = 'flip',
  ): Promise<{ address: string; stop: () => Promise<{ blocksServed: number; bytesServed: number }> }> {
    const file = this.files.get(name);
    if (!file) throw new SimError('SIM_CLUSTER', `unknown file ${name}`);
    const host = await this.network.addHost(`evil${++this.evilCounter}`);
    const args = [
      agentEntry,
      'evil-peer',
      '--url',
      this.url(name),
      '--file',
      file.path,
      '--listen',
      host.address,
      '--interface',
      host.discoveryInterface,
      '--discovery-port',
      String(this.discoveryPort),
      ...(corruption === 'random' ? ['--random'] : []),
    ];
    const child = this.network.spawn(host, process.execPath, args, this.env());
    this.extraChildren.push(child);
    const ready = await child.firstJsonLine<{ address: string }>((v) => v.event === 'ready', this.readyMs);
    return {
      address: ready.address,
      stop: async () => {
        const stats = child.firstJsonLine<{ blocksServed: number; bytesServed: number }>(
          (v) => v.event === 'stats',
          10_000,
        );
        await child.stop('SIGTERM', 5000);
        return stats;
      },
    };
  }

  /**
   * Starts a tarpit host (issue 16.5): it answers every probe with `sockets` ports that accept and
   * never answer, a 404-answering HTTP service, and `extraXAddrs`. `stats()` asks it for its
   * counters (connections and requests by source address) without stopping it.
   */
  async startTarpitPeer(
    opts: { sockets?: number; extraXAddrs?: string[] } = {},
  ): Promise<{ xaddrs: string[]; host: SimHost; stop: () => Promise<TarpitStats> }> {
    const host = await this.network.addHost(`tarpit${++this.evilCounter}`);
    const args = [
      agentEntry,
      'tarpit-peer',
      '--listen',
      host.address,
      '--interface',
      host.discoveryInterface,
      '--discovery-port',
      String(this.discoveryPort),
      ...(opts.sockets ? ['--sockets', String(opts.sockets)] : []),
      ...(opts.extraXAddrs ?? []).flatMap((x) => ['--xaddr', x]),
    ];
    const child = this.network.spawn(host, process.execPath, args, this.env());
    this.extraChildren.push(child);
    const ready = await child.firstJsonLine<{ xaddrs: string[] }>((v) => v.event === 'ready', this.readyMs);
    return {
      xaddrs: ready.xaddrs,
      host,
      stop: async () => {
        const stats = child.firstJsonLine<TarpitStats>((v) => v.event === 'stats', 10_000);
        await child.stop('SIGTERM', 5000);
        return stats;
      },
    };
  }

  /** Client i's daemon `/v1/status` document (totals, retrievalServer, cache ...). */
  async daemonStatus(i: number): Promise<Record<string, unknown>> {
    const d = this.daemons[i - 1];
    if (!d) throw new SimError('SIM_CLUSTER', `daemon ${i} not started`);
    const r = await this.network.run(
      d.host,
      process.execPath,
      [peerdistEntry, 'status', '--daemon', d.admin, '--json'],
      { timeoutMs: this.readyMs, env: this.env() },
    );
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError('SIM_STEP', `status of daemon ${i} failed: ${r.stderr.trim().slice(-500)}`);
    return j;
  }

  /** `peerdist explain` (text) of client i's latest download. */
  async explain(i: number): Promise<string> {
    const d = this.daemons[i - 1];
    if (!d) throw new SimError('SIM_CLUSTER', `daemon ${i} not started`);
    const r = await this.network.run(d.host, process.execPath, [peerdistEntry, 'explain', '--daemon', d.admin], {
      timeoutMs: 15_000,
      env: this.env(),
    });
    if (r.code !== 0) throw new SimError('SIM_STEP', `explain on daemon ${i} failed: ${r.stderr.trim().slice(-500)}`);
    return r.stdout;
  }

  /** `peerdist explain --json` of client i's latest download (the DownloadTrace document). */
  async explainJson(i: number): Promise<Record<string, unknown>> {
    const d = this.daemons[i - 1];
    if (!d) throw new SimError('SIM_CLUSTER', `daemon ${i} not started`);
    const r = await this.network.run(
      d.host,
      process.execPath,
      [peerdistEntry, 'explain', '--daemon', d.admin, '--json'],
      { timeoutMs: 15_000, env: this.env() },
    );
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j)
      throw new SimError('SIM_STEP', `explain on daemon ${i} failed: ${r.stderr.trim().slice(-500)}`);
    return j;
  }

  /** The origin's `/.peerdist/stats` counters (cumulative since it started). */
  async originStats(): Promise<OriginCounters> {
    const r = await this.network.run(
      this.network.origin,
      process.execPath,
      [agentEntry, 'fetch', `http://${this.originDirect}/.peerdist/stats`, '--body'],
      // A node child's start alone took over 15 s beside other work (issue 27.13): the ready bound.
      { timeoutMs: this.readyMs },
    );
    const j = lastJsonLine(r.stdout);
    if (r.code !== 0 || !j || typeof j.body !== 'string')
      throw new SimError('SIM_STEP', `origin stats failed: ${r.stderr.trim().slice(-500)}`);
    const body = JSON.parse(j.body) as Record<string, unknown>;
    const flat = (typeof body.bytesFull === 'number' ? body : (body.stats ?? body.totals ?? body)) as Record<
      string,
      unknown
    >;
    const out: OriginCounters = { bytesFull: 0, bytesContentInfo: 0, bytesMissingData: 0, requests: 0 };
    for (const [k, v] of Object.entries(flat)) if (typeof v === 'number') out[k] = v;
    return out;
  }

  /** Process id of the origin server (0 before it started). */
  get originPid(): number {
    return this.originChild?.pid ?? 0;
  }

  /** Address (host:port) of the origin host's front, for reports. */
  get originAddress(): string {
    return this.originFront;
  }

  /** Stops daemons, proxy and origin; destroys the network; removes temp dirs. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.daemons.map((d) => d?.child.stop('SIGTERM', 3000)));
    await Promise.all(this.extraChildren.map((c) => c.stop('SIGTERM', 2000)));
    await this.proxyChild?.stop('SIGTERM', 2000);
    await this.originChild?.stop('SIGTERM', 3000);
    await this.upstreamChild?.stop('SIGTERM', 2000);
    await this.network.destroy();
    await rm(this.root, { recursive: true, force: true });
    this.unhook();
  }
}
