/**
 * The scale model (sim.ts) beside the namespace simulation (testkit/sim: real daemons in network
 * namespaces, tbf-shaped WAN, delay proxy) on the same case: clients, file size, WAN rate and
 * delay, sequential or flash (issue 24 item 3). Needs root and iproute2 for the namespace side.
 * Origin ratio: origin file bytes / file size. Time ratio: from the first start to the last
 * completion, over one plain download of the file over the same WAN (the namespace side measures
 * it in the same run; the model computes it: one round trip plus the bytes at the WAN rate).
 */
import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runScenario, type ScenarioReport } from '../sim/scenarios.js';
import { type CpuModel, DAEMON_DISCOVERY, type DaemonDiscovery, runScale, type ScaleResult } from './sim.js';

/**
 * What the model adds for a machine: a CPU model, a start-up per download, discovery as the
 * daemon does it and peer requests that time out (sim.ts).
 */
export interface Machine {
  cpu?: CpuModel;
  startupMs?: number;
  discovery?: DaemonDiscovery;
  peerTimeouts?: boolean;
}

/**
 * The namespace simulation's machine in the model: every daemon's work on one machine of 2
 * cores, at the daemon's CPU cost (bench/loopback.ts, 2026-12-07: receiving about 18, serving
 * about 12 CPU seconds per GiB), and about 0.8 s from a daemon's start to its first origin
 * request (content information, segment registration: the namespace runs, BENCHMARKS.md "Scale
 * simulation", validation). Without it (`BARE`) the model has no CPU and starts at once, and its
 * time ratios came out 28-96% below the namespace's. Its daemons discover as the real ones do, at
 * the CPU per datagram bench/discovery-cost.js measured (DAEMON_DISCOVERY), and their peer
 * requests time out as the retrieval client's do (BENCHMARKS.md, "The scale model reproduces the
 * namespace flash crowds").
 */
export const NAMESPACE_MACHINE: Machine = {
  cpu: { receiveSecPerGiB: 18, serveSecPerGiB: 12, cores: 2 },
  startupMs: 800,
  discovery: DAEMON_DISCOVERY,
  peerTimeouts: true,
};
export const BARE: Machine = {};

/**
 * This machine and this build, measured rather than assumed: one `bench/loopback.js` round (a peer
 * download of `size` bytes between two daemons on loopback) gives the receiving and the serving
 * daemon's CPU seconds per GiB, so the model's CPU costs follow the code being validated (they
 * fell from 18 / 12 to 16-17 / 11 within a day of the constants above being measured). The
 * start-up stays NAMESPACE_MACHINE's.
 */
export function measureMachine(size = 128 * 2 ** 20): Promise<Machine & { cpu: CpuModel }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'loopback.js');
  const args = [script, '--size', String(size), '--rounds', '1', '--json', '--yardstick', '/nonexistent'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { timeout: 600_000, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return reject(new Error(`bench/loopback.js failed: ${err.message}`));
      try {
        const r = (JSON.parse(stdout) as { rows: Array<{ clientCpu: number; serverCpu: number }> }).rows[0];
        if (!r) throw new Error('no round in its report');
        const gib = size / 2 ** 30;
        resolve({
          cpu: {
            receiveSecPerGiB: r.clientCpu / gib,
            serveSecPerGiB: r.serverCpu / gib,
            cores: availableParallelism(),
          },
          startupMs: NAMESPACE_MACHINE.startupMs,
          discovery: NAMESPACE_MACHINE.discovery,
          peerTimeouts: NAMESPACE_MACHINE.peerTimeouts,
        });
      } catch (e) {
        reject(new Error(`bench/loopback.js: unreadable report (${(e as Error).message})`));
      }
    });
  });
}

export interface ValidationCase {
  clients: number;
  size: number;
  wanRateBps: number;
  /** Added each way (the model's WAN round trip is twice this). */
  wanDelayMs: number;
  mode: 'sequential' | 'flash';
}

export interface Side {
  originRatio: number;
  timeRatio: number;
}

export interface Validation {
  case: ValidationCase;
  namespace: Side & { totalSeconds: number; baselineSeconds: number; allCorrect: boolean };
  model: Side & { simulatedSeconds: number; plainSeconds: number; machine: Machine };
  /** The model without a machine (no CPU, no start-up), for comparison. */
  bare: Side;
  /** (model - namespace) / namespace. */
  originDiff: number;
  timeDiff: number;
}

/**
 * The model's run of a case: one subnet, no hosted cache, LAN 1 Gbit/s, flash arrivals within
 * 100 ms, on `machine` (default: the namespace simulation's).
 */
export function modelOf(
  c: ValidationCase,
  seed = 1,
  machine: Machine = NAMESPACE_MACHINE,
): { side: Side; result: ScaleResult } {
  const result = runScale({
    ...machine,
    clients: c.clients,
    subnets: 1,
    hostedCaches: 0,
    fileBytes: c.size,
    wanBps: c.wanRateBps,
    lanBps: 1e9,
    wanRttMs: 2 * c.wanDelayMs,
    arrival: c.mode === 'flash' ? { kind: 'flash', jitterMs: 100 } : { kind: 'sequential' },
    seed,
  });
  return {
    side: { originRatio: result.originCopies, timeRatio: result.simulatedMs / result.plainMs },
    result,
  };
}

export async function validate(
  c: ValidationCase,
  onNote?: (m: string) => void,
  machine: Machine = NAMESPACE_MACHINE,
): Promise<Validation> {
  const r: ScenarioReport = await runScenario({
    clients: c.clients,
    size: c.size,
    mode: c.mode,
    network: 'netns',
    wanRateBps: c.wanRateBps,
    wanDelayMs: c.wanDelayMs,
    timeoutMs: 600_000,
    onNote,
  });
  const model = modelOf(c, 1, machine);
  const m = model.side;
  const bare = modelOf(c, 1, BARE).side;
  const ns = {
    originRatio: r.originRatio,
    timeRatio: r.timeRatio ?? NaN,
    totalSeconds: r.totalSeconds,
    baselineSeconds: r.baselineSeconds ?? NaN,
    allCorrect: r.allCorrect,
  };
  return {
    case: c,
    namespace: ns,
    model: {
      ...m,
      simulatedSeconds: model.result.simulatedMs / 1000,
      plainSeconds: model.result.plainMs / 1000,
      machine,
    },
    bare,
    originDiff: (m.originRatio - ns.originRatio) / ns.originRatio,
    timeDiff: (m.timeRatio - ns.timeRatio) / ns.timeRatio,
  };
}

export function formatValidation(v: Validation): string {
  const c = v.case;
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}%`;
  const ok = (x: number) => (Math.abs(x) <= 0.15 ? 'within 15%' : 'NOT within 15%');
  return (
    `${c.clients} clients, ${(c.size / 2 ** 20).toFixed(0)} MiB, ${c.wanRateBps / 1e6} Mbit/s + ${c.wanDelayMs} ms, ${c.mode}: ` +
    `origin ${v.namespace.originRatio.toFixed(3)} (namespace) / ${v.model.originRatio.toFixed(3)} (model) ${pct(v.originDiff)} ${ok(v.originDiff)}; ` +
    `time ${v.namespace.timeRatio.toFixed(2)} (${v.namespace.totalSeconds.toFixed(1)} s / ${v.namespace.baselineSeconds.toFixed(1)} s) / ` +
    `${v.model.timeRatio.toFixed(2)} (${v.model.simulatedSeconds.toFixed(1)} s / ${v.model.plainSeconds.toFixed(1)} s) ${pct(v.timeDiff)} ${ok(v.timeDiff)}` +
    ` (model without CPU and start-up: origin ${v.bare.originRatio.toFixed(3)}, time ${v.bare.timeRatio.toFixed(2)})`
  );
}
