/**
 * What one download costs on this machine and build, measured on loopback (issue 24 item 3): the
 * figures the scale model needs to stand for the namespace simulation's daemons. For each size, a
 * cluster of 1 + `rounds` fresh daemons: client 1 fills its cache from the origin, then clients
 * 2, 3, ... each download the file from the daemons that hold it, one after another, as the
 * namespace simulation's sequential mode does (testkit/sim/scenarios.ts runDownloads). Per
 * download it records:
 * - the receiving daemon's CPU seconds, and those of the daemons serving it (all holders);
 * - `peerdist get`'s own CPU seconds, its `seconds` (request to last byte), its time to the
 *   origin's answer (content information), and the harness's whole `download` call (process
 *   start and exit, the output's SHA-256 check): what lies around the transfer.
 * Costs are then fitted as a fixed part per download plus a part per GiB (a line through the
 * medians of the two sizes): a fresh daemon pays V8's compilation and its state's set-up once per
 * download, which a per-GiB figure from one size cannot tell apart.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Cluster } from '../sim/harness.js';
import { LoopbackNetwork } from '../sim/loopback.js';
import { processCpuSeconds } from '../sim/proc.js';

export interface DownloadSample {
  size: number;
  receiveCpu: number;
  /** Of receiveCpu, the main thread's (the event loop; the rest is V8's and libuv's helper threads). */
  receiveMainCpu: number;
  serveCpu: number;
  getCpu: number;
  /** `peerdist get`'s own `seconds` and `originAnswerSeconds`. */
  getSeconds: number;
  originAnswerSeconds: number;
  /** The harness's download call, wall seconds (process start to output checked). */
  callSeconds: number;
}

/** A cost of `fixed` per download plus `perGiB` per GiB of the file. */
export interface Line {
  fixed: number;
  perGiB: number;
}

export interface MachineMeasurement {
  cores: number;
  samples: DownloadSample[];
  receive: Line;
  /** With more than two sizes: how the receiving daemon's fixed part falls over its first bytes (fitRamp). */
  receiveRamp?: { startSec: number; rampSec: number; rampBytes: number };
  /** Main-thread CPU over all CPU of the receiving daemons, all samples together. */
  mainShare: number;
  serve: Line;
  get: Line;
  /** Call seconds minus get seconds plus the origin's answer: from one download's end to the next one's first request. */
  around: Line;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The line through (size, median) of two or more sizes (least squares on the medians). */
export function fitLine(points: Array<{ size: number; value: number }>): Line {
  const bySize = new Map<number, number[]>();
  for (const p of points) bySize.set(p.size, [...(bySize.get(p.size) ?? []), p.value]);
  const xs = [...bySize.keys()].map((s) => s / 2 ** 30);
  const ys = [...bySize.values()].map(median);
  if (xs.length === 1) return { fixed: 0, perGiB: ys[0]! / xs[0]! };
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < xs.length; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const perGiB = sxy / sxx;
  // A negative part would be noise; the cost is then all per GiB (through the origin).
  const fixed = my - perGiB * mx;
  if (fixed < 0 || perGiB < 0) {
    const r = ys.reduce((a, y, i) => a + y / xs[i]!, 0) / xs.length;
    return { fixed: 0, perGiB: r };
  }
  return { fixed, perGiB };
}

/**
 * When a fresh download's fixed cost falls (issue 24 item 3): a daemon compiles the code its
 * blocks run as they first come, so a download smaller than the ramp costs less than the fixed
 * part. Given the line (fixed + per GiB) and the medians of several sizes, fits what each size
 * costs above its per-GiB part as `startSec` before the first block plus the rest of the fixed part
 * spread evenly over the first `rampBytes` (least squares over a grid of ramp lengths from 64 KiB
 * to the largest size; `startSec` within 0..fixed). Needs sizes below the ramp's end to tell it.
 */
export function fitRamp(
  points: Array<{ size: number; value: number }>,
  line: Line,
): { startSec: number; rampSec: number; rampBytes: number } {
  const bySize = new Map<number, number[]>();
  for (const p of points) bySize.set(p.size, [...(bySize.get(p.size) ?? []), p.value]);
  const pts = [...bySize].map(([size, vs]) => ({ size, excess: median(vs) - (line.perGiB * size) / 2 ** 30 }));
  const max = Math.max(...pts.map((p) => p.size));
  let best = { err: Infinity, startSec: line.fixed, rampBytes: 0 };
  for (let n = 64 * 1024; n <= max; n = Math.ceil(n * 1.05)) {
    // excess = a + (F - a) * m  =>  excess - F * m = a * (1 - m)
    let sxy = 0;
    let sxx = 0;
    for (const p of pts) {
      const m = Math.min(1, p.size / n);
      sxy += (p.excess - line.fixed * m) * (1 - m);
      sxx += (1 - m) ** 2;
    }
    const a = sxx > 0 ? Math.min(line.fixed, Math.max(0, sxy / sxx)) : line.fixed;
    let err = 0;
    for (const p of pts) {
      const m = Math.min(1, p.size / n);
      err += (p.excess - a - (line.fixed - a) * m) ** 2;
    }
    if (err < best.err) best = { err, startSec: a, rampBytes: n };
  }
  return { startSec: best.startSec, rampSec: line.fixed - best.startSec, rampBytes: best.rampBytes };
}

/** CPU seconds of the main thread of `pid` (its thread id is the pid). */
async function mainThreadCpu(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export async function measureDownloads(
  sizes: number[],
  rounds = 3,
  log: (m: string) => void = () => {},
  /** Extra `peerdist daemon` arguments (e.g. an upload cap: testkit/scale/flash.ts measureTrickle). */
  daemonArgs: string[] = [],
): Promise<MachineMeasurement> {
  const samples: DownloadSample[] = [];
  for (const size of sizes) {
    log(
      `loopback, ${size} bytes: client 1 from the origin, then ${rounds} fresh daemons from peers${daemonArgs.length ? ` (daemons: ${daemonArgs.join(' ')})` : ''}`,
    );
    const c = await Cluster.create({
      network: new LoopbackNetwork({ base: 170 }),
      clients: 1 + rounds,
      files: [{ name: 'f.bin', size }],
      daemonArgs,
    });
    try {
      await c.startDaemons();
      if (!(await c.download(1, 'f.bin', 600_000)).correct) throw new Error('client 1 download wrong');
      for (let k = 0; k < rounds; k++) {
        const servers = c.daemons.slice(0, 1 + k).map((d) => d!.pid);
        const serving = async () => (await Promise.all(servers.map(processCpuSeconds))).reduce((a, b) => a + b, 0);
        const client = c.daemons[1 + k]!.pid;
        const s0 = await serving();
        const r0 = await processCpuSeconds(client);
        const m0 = await mainThreadCpu(client);
        const t0 = performance.now();
        const p = await c.download(2 + k, 'f.bin', 600_000);
        const callSeconds = (performance.now() - t0) / 1000;
        const serveCpu = (await serving()) - s0;
        const receiveCpu = (await processCpuSeconds(client)) - r0;
        const receiveMainCpu = (await mainThreadCpu(client)) - m0;
        if (!p.correct || p.fromPeers !== size) throw new Error(`client ${2 + k}: not all from peers, or wrong`);
        samples.push({
          size,
          receiveCpu,
          receiveMainCpu,
          serveCpu,
          getCpu: p.cpuSeconds ?? 0,
          getSeconds: p.seconds,
          originAnswerSeconds: p.originAnswerSeconds ?? 0,
          callSeconds,
        });
        log(
          `  client ${2 + k}: receiving ${receiveCpu.toFixed(2)} CPU s (main thread ${receiveMainCpu.toFixed(2)}), serving ${serveCpu.toFixed(2)}, get ${(p.cpuSeconds ?? 0).toFixed(2)}; ` +
            `get ${p.seconds.toFixed(2)} s (origin answer ${(p.originAnswerSeconds ?? 0).toFixed(3)} s), call ${callSeconds.toFixed(2)} s`,
        );
      }
    } finally {
      await c.close();
    }
  }
  // With more than two sizes the lines go through the two largest (past the ramp) and the smaller
  // ones tell the ramp (fitRamp).
  const large = [...new Set(sizes)].sort((a, b) => b - a).slice(0, 2);
  const line = (f: (s: DownloadSample) => number) =>
    fitLine(samples.filter((s) => large.includes(s.size)).map((s) => ({ size: s.size, value: f(s) })));
  const receive = line((s) => s.receiveCpu);
  return {
    ...(new Set(sizes).size > 2
      ? {
          receiveRamp: fitRamp(
            samples.map((s) => ({ size: s.size, value: s.receiveCpu })),
            receive,
          ),
        }
      : {}),
    cores: availableParallelism(),
    samples,
    receive,
    mainShare: samples.reduce((a, s) => a + s.receiveMainCpu, 0) / samples.reduce((a, s) => a + s.receiveCpu, 0),
    serve: line((s) => s.serveCpu),
    get: line((s) => s.getCpu),
    around: line((s) => s.callSeconds - s.getSeconds + s.originAnswerSeconds),
  };
}
