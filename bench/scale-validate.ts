/**
 * Issue 24 item 3: the scale model against the namespace simulation on the same cases (8 and 16
 * clients, sequential and flash, the file sizes and link rates of bench/sim.ts's published runs),
 * side by side, each within 15% or not, on the origin ratio and the time ratio. Root + iproute2.
 *   npm run build && node dist/bench/scale-validate.js [--only 8] [--json] [--model-only [--cpu-scale k]] [--fixed-cpu]
 * The model's machine is measured first, on this machine and build (bench/scale-machine.ts's
 * loopback rounds: what a fresh daemon's download costs, fixed and per GiB, and the time around it,
 * how the fixed part falls over the first bytes, what a block that comes or is served alone costs
 * more; measureMachine), then what a daemon spends on a probe it answers and on a ProbeMatch
 * (bench/discovery-daemon.js); --fixed-cpu uses NAMESPACE_DOWNLOADS's and NAMESPACE_DISCOVERY's
 * figures instead.
 * --model-only: the model's side alone, on the namespace machine (NAMESPACE_DOWNLOADS) and bare;
 * needs no root (the namespace side wants a quiet machine: eight daemons on 2 cores). --cpu-scale k
 * multiplies every CPU cost of the namespace machine (bytes received and served, a download's
 * fixed parts, datagrams): how the model answers a machine that gives its daemons 1/k of the CPU
 * it measured.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { netnsSupport } from '../testkit/sim/netns.js';
import {
  BARE,
  type DownloadCosts,
  formatCounts,
  formatValidation,
  type Machine,
  machineFor,
  measureMachine,
  modelOf,
  NAMESPACE_DOWNLOADS,
  type Validation,
  type ValidationCase,
  validate,
} from '../testkit/scale/validate.js';

const MiB = 2 ** 20;
const { values } = benchArgs(import.meta.url, {
  options: {
    only: { type: 'string' },
    json: { type: 'boolean' },
    'model-only': { type: 'boolean' },
    'fixed-cpu': { type: 'boolean' },
    'cpu-scale': { type: 'string' },
  },
});
const cases: ValidationCase[] = [];
for (const mode of ['sequential', 'flash'] as const) {
  cases.push({ clients: 8, size: 64 * MiB, wanRateBps: 50e6, wanDelayMs: 20, mode });
  cases.push({ clients: 16, size: 16 * MiB, wanRateBps: 20e6, wanDelayMs: 20, mode });
}
if (values['model-only']) {
  const k = Number(values['cpu-scale'] ?? 1);
  const machineOf = (c: ValidationCase): Machine => {
    const M = machineFor(NAMESPACE_DOWNLOADS, c);
    return {
      ...M,
      cpu: {
        ...M.cpu,
        receiveSecPerGiB: M.cpu.receiveSecPerGiB * k,
        serveSecPerGiB: M.cpu.serveSecPerGiB * k,
        receiveStartSec: (M.cpu.receiveStartSec ?? 0) * k,
        clientSec: (M.cpu.clientSec ?? 0) * k,
        ...(M.cpu.receiveRamp ? { receiveRamp: { ...M.cpu.receiveRamp, sec: M.cpu.receiveRamp.sec * k } } : {}),
        ...(M.cpu.alone
          ? { alone: { ...M.cpu.alone, receiveMs: M.cpu.alone.receiveMs * k, serveMs: M.cpu.alone.serveMs * k } }
          : {}),
      },
      discovery: M.discovery && {
        probeSentMs: M.discovery.probeSentMs * k,
        probeHandledMs: M.discovery.probeHandledMs * k,
        matchHandledMs: M.discovery.matchHandledMs * k,
        followUpMs: M.discovery.followUpMs * k,
      },
    };
  };
  for (const c of cases) {
    if (values.only && String(c.clients) !== values.only) continue;
    const run = modelOf(c, 1, machineOf(c));
    const m = run.side;
    const cpu = run.result.cpu;
    const b = modelOf(c, 1, BARE).side;
    process.stdout.write(
      `${c.clients} clients, ${c.size / MiB} MiB, ${c.wanRateBps / 1e6} Mbit/s + ${c.wanDelayMs} ms, ${c.mode}: ` +
        `model on the namespace machine${k !== 1 ? ` (CPU x ${k})` : ''} origin ${m.originRatio.toFixed(3)}, time ${m.timeRatio.toFixed(2)}, ` +
        `${run.result.peerTimeouts} peer timeouts, ${run.result.discoveryDatagrams} datagrams, ` +
        `CPU s: daemons ${cpu?.daemonSeconds.reduce((a, b) => a + b, 0).toFixed(1)}, get ${cpu?.clientSeconds.toFixed(1)}; ` +
        `per client s: ${run.result.completions.map((x) => (x / 1000).toFixed(2)).join(' ')}; ` +
        `bare origin ${b.originRatio.toFixed(3)}, time ${b.timeRatio.toFixed(2)}\n`,
    );
  }
  process.exit(0);
}
const support = await netnsSupport();
if (!support.ok) {
  process.stderr.write(`bench/scale-validate: ${support.reason}; the namespace side needs root and iproute2\n`);
  process.exit(2);
}
let costs: DownloadCosts = NAMESPACE_DOWNLOADS;
if (!values['fixed-cpu']) {
  process.stderr.write(
    '[validate] measuring this machine: fresh daemons on loopback, 1-64 MiB; a block stored alone; 64 MiB with uploads capped\n',
  );
  costs = await measureMachine((m) => process.stderr.write(`[validate] ${m}\n`));
  process.stderr.write('[validate] measuring discovery inside running daemons (bench/discovery-daemon.js)\n');
  const discovery = await measureDiscovery();
  if (discovery) costs = { ...costs, discovery };
  else process.stderr.write('[validate] discovery not measured: NAMESPACE_DISCOVERY figures\n');
}
/**
 * CPU ms per probe answered (the median of the daemons that hold the file) and per ProbeMatch
 * handled, from bench/discovery-daemon.js --json on this machine and build; undefined if it failed.
 */
async function measureDiscovery(): Promise<{ probeMs: number; matchMs: number } | undefined> {
  const script = fileURLToPath(new URL('./discovery-daemon.js', import.meta.url));
  const out = await new Promise<string | undefined>((resolve) =>
    execFile(process.execPath, [script, '--json'], { maxBuffer: 1 << 20, timeout: 300_000 }, (err, stdout) =>
      resolve(err ? undefined : stdout),
    ),
  );
  if (out === undefined) return undefined;
  try {
    const r = JSON.parse(out) as {
      rows: Array<{ holds: boolean; msPerProbe: number }>;
      matches?: { msPerMatch: number };
    };
    const answering = r.rows
      .filter((x) => x.holds)
      .map((x) => x.msPerProbe)
      .sort((a, b) => a - b);
    const probeMs = answering[Math.floor((answering.length - 1) / 2)];
    const matchMs = r.matches?.msPerMatch;
    if (!(probeMs! > 0) || !(matchMs! > 0)) return undefined;
    return { probeMs: probeMs!, matchMs: matchMs! };
  } catch {
    return undefined;
  }
}
const line = (l: { fixed: number; perGiB: number }) => `${l.fixed.toFixed(3)} + ${l.perGiB.toFixed(2)}/GiB`;
process.stdout.write(
  `model machine: CPU s receiving ${line(costs.receive)} (main thread ${(100 * costs.mainShare).toFixed(0)}%), ` +
    `serving ${line(costs.serve)}, get ${line(costs.get)}; around a transfer ${line(costs.around)} s; ` +
    `${costs.cores} cores${values['fixed-cpu'] ? ' (fixed)' : ' (measured)'}` +
    (costs.receiveRamp
      ? `; fixed part ${costs.receiveRamp.startSec.toFixed(3)} s at the start, ${costs.receiveRamp.rampSec.toFixed(3)} s over the first ${(costs.receiveRamp.rampBytes / MiB).toFixed(2)} MiB`
      : '') +
    (costs.alone
      ? `; a 64 KiB unit alone (${
          costs.alone.streamGapMs !== undefined && costs.alone.trickleGapMs !== undefined
            ? `none of it ${costs.alone.streamGapMs.toFixed(2)} ms after the previous, all ${costs.alone.trickleGapMs.toFixed(2)} ms after`
            : `${costs.alone.windowMs.toFixed(2)} ms apart`
        }) receiving +${costs.alone.receiveMs.toFixed(3)}, serving +${costs.alone.serveMs.toFixed(3)} CPU ms`
      : '') +
    (costs.discovery
      ? `; in a daemon a probe answered ${costs.discovery.probeMs.toFixed(3)}, a ProbeMatch ${costs.discovery.matchMs.toFixed(3)} CPU ms (measured)`
      : '') +
    '\n',
);
const out: Validation[] = [];
for (const c of cases) {
  if (values.only && String(c.clients) !== values.only) continue;
  const v = await validate(c, (m) => process.stderr.write(`[validate] ${m}\n`), costs, true);
  out.push(v);
  if (!values.json) process.stdout.write(`${formatValidation(v)}\n${formatCounts(v)}\n`);
}
if (values.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
