/**
 * Whole-site runs used by `npm run sim`, the benchmarks and the demo: N clients fetch one payload
 * one after another (sequential) or all at once (flash), measured against one plain HTTP download
 * of the same file over the same WAN link in the same run.
 */
import { Cluster, diffCounters, originBlockBytes, type SimDownload, type OriginCounters } from './harness.js';
import { LoopbackNetwork } from './loopback.js';
import { NetnsNetwork, type SimNetwork } from './network.js';
import { netnsSupport } from './netns.js';
import { daemonCpu, diagnose, type Diagnosis } from './diagnose.js';

export type Mode = 'sequential' | 'flash';

export interface ScenarioOptions {
  clients: number;
  size: number;
  mode: Mode;
  network: 'netns' | 'loopback';
  wanRateBps?: number;
  wanDelayMs?: number;
  lanRateBps?: number;
  /** Measure the plain-HTTP baseline (default true). */
  baseline?: boolean;
  /** Per-download timeout, ms. */
  timeoutMs?: number;
  /** Called after each finished download (progress output). */
  onDownload?: (r: SimDownload) => void;
  /** Called with progress notes ("starting daemons" ...). */
  onNote?: (msg: string) => void;
  /** Keep `peerdist explain` of the slowest client's download (issue 26: what did it wait for). */
  explainSlowest?: boolean;
  /** Collect every daemon's counters after the run (CPU, discovery, probation, origin reasons). */
  diagnose?: boolean;
}

export interface ScenarioReport {
  mode: Mode;
  network: 'netns' | 'loopback';
  clients: number;
  size: number;
  wanRateBps?: number;
  wanDelayMs?: number;
  lanRateBps?: number;
  downloads: SimDownload[];
  /** Origin counters for the clients' downloads only (baseline excluded). */
  origin: OriginCounters;
  originBlockBytes: number;
  /** originBlockBytes / size. */
  originRatio: number;
  /** From the first download's start to the last one's end, s. */
  totalSeconds: number;
  /** One plain HTTP GET of the file straight from the origin over the same link, s. */
  baselineSeconds?: number;
  /** totalSeconds / baselineSeconds. */
  timeRatio?: number;
  /** Median and slowest client download time (s), and the slowest client's number. */
  medianSeconds: number;
  slowestSeconds: number;
  slowestClient: number;
  /** `peerdist explain` of the slowest client's download (explainSlowest). */
  slowestExplain?: string;
  /** Per-daemon counters over the run (`diagnose`). */
  diagnosis?: Diagnosis;
  allCorrect: boolean;
}

/** Median, slowest time and slowest client of a run's downloads. */
export function spread(ds: SimDownload[]): { medianSeconds: number; slowestSeconds: number; slowestClient: number } {
  const sorted = [...ds].sort((a, b) => a.seconds - b.seconds);
  const slowest = sorted[sorted.length - 1];
  return {
    medianSeconds: sorted[Math.floor((sorted.length - 1) / 2)]?.seconds ?? 0,
    slowestSeconds: slowest?.seconds ?? 0,
    slowestClient: slowest?.client ?? 0,
  };
}

export async function makeNetwork(kind: 'netns' | 'loopback'): Promise<SimNetwork> {
  if (kind === 'loopback') return new LoopbackNetwork();
  const s = await netnsSupport();
  if (!s.ok) throw new Error(`netns network unavailable: ${s.reason} (use --network loopback)`);
  return NetnsNetwork.create();
}

/** Runs the clients' downloads on an already started cluster and returns the report. */
export async function runDownloads(
  c: Cluster,
  name: string,
  opts: Pick<ScenarioOptions, 'mode' | 'timeoutMs' | 'onDownload'> & { clients: number[] },
): Promise<{ downloads: SimDownload[]; origin: OriginCounters; totalSeconds: number }> {
  const before = await c.originStats();
  const started = performance.now();
  const one = async (i: number) => {
    const r = await c.download(i, name, opts.timeoutMs);
    opts.onDownload?.(r);
    return r;
  };
  let downloads: SimDownload[];
  if (opts.mode === 'flash') downloads = await Promise.all(opts.clients.map(one));
  else {
    downloads = [];
    for (const i of opts.clients) downloads.push(await one(i));
  }
  const totalSeconds = (performance.now() - started) / 1000;
  const after = await c.originStats();
  return { downloads, origin: diffCounters(after, before), totalSeconds };
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioReport> {
  const note = o.onNote ?? (() => {});
  note(`building a ${o.network} network with ${o.clients} clients`);
  const network = await makeNetwork(o.network);
  note(`writing and publishing a ${o.size}-byte payload`);
  const c = await Cluster.create({
    network,
    clients: o.clients,
    wan: { rateBps: o.wanRateBps, delayMs: o.wanDelayMs },
    lanRateBps: o.lanRateBps,
    files: [{ name: 'payload.bin', size: o.size, seed: `sim-${o.size}` }],
  });
  try {
    let baselineSeconds: number | undefined;
    if (o.baseline !== false) {
      note('baseline: one plain HTTP download straight from the origin');
      const b = await c.plainFetch(1, 'payload.bin', o.timeoutMs);
      if (!b.correct) throw new Error('baseline download was not intact');
      baselineSeconds = b.seconds;
    }
    note('starting daemons');
    await c.startDaemons();
    note(`${o.mode} downloads`);
    const ids = c.hosts.map((_, k) => k + 1);
    const cpuBefore = o.diagnose ? daemonCpu(c) : [];
    const r = await runDownloads(c, 'payload.bin', {
      mode: o.mode,
      timeoutMs: o.timeoutMs,
      onDownload: o.onDownload,
      clients: ids,
    });
    const blocks = originBlockBytes(r.origin);
    const sp = spread(r.downloads);
    const diagnosis = o.diagnose ? await diagnose(c, ids, cpuBefore) : undefined;
    const slowestExplain = o.explainSlowest ? await c.explain(sp.slowestClient).catch((e) => String(e)) : undefined;
    return {
      mode: o.mode,
      network: o.network,
      clients: o.clients,
      size: o.size,
      wanRateBps: o.wanRateBps,
      wanDelayMs: o.wanDelayMs,
      lanRateBps: o.lanRateBps,
      downloads: r.downloads,
      origin: r.origin,
      originBlockBytes: blocks,
      originRatio: blocks / o.size,
      totalSeconds: r.totalSeconds,
      baselineSeconds,
      timeRatio: baselineSeconds ? r.totalSeconds / baselineSeconds : undefined,
      ...sp,
      ...(slowestExplain !== undefined ? { slowestExplain } : {}),
      ...(diagnosis ? { diagnosis } : {}),
      allCorrect: r.downloads.every((d) => d.correct),
    };
  } finally {
    await c.close();
  }
}
