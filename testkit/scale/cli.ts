/**
 * npm run scale -- --clients 1000 --subnets 10 --hosted-caches 1-per-subnet --file 1GiB
 *   --wan 100mbit --lan 1gbit --arrival flash|spread:60m --seed 1 [--json] [--svg out.svg]
 * Discrete-event simulation of a rollout with the real block scheduler (testkit/scale/sim.ts).
 * Several --seed values (comma separated) or --compare-hc run side by side in one SVG.
 */
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { parseSize } from '../../src/util/size.js';
import { describe, summary, svg } from './report.js';
import { REAL_LIMITS, type RealLimits } from './limits.js';
import { type Arrival, DAEMON_DISCOVERY, type ScaleConfig, measureScale } from './sim.js';

function rate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|b)?(?:\/s)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a rate: ${text} (e.g. 100mbit, 1gbit)`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

function duration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a duration: ${text} (e.g. 60m, 30s)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

function arrival(text: string): Arrival {
  if (text === 'flash') return { kind: 'flash', jitterMs: 1000 };
  if (text === 'sequential') return { kind: 'sequential' };
  if (text.startsWith('flash:')) return { kind: 'flash', jitterMs: duration(text.slice(6)) };
  if (text.startsWith('spread:')) return { kind: 'spread', overMs: duration(text.slice(7)) };
  throw new InvalidArgumentError('arrival: flash, flash:<jitter>, spread:<duration> or sequential');
}

function int(text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`not a count: ${text}`);
  return v;
}

function bytes(text: string): number {
  let v: number;
  try {
    v = parseSize(text);
  } catch {
    throw new InvalidArgumentError(`not a size: ${text} (e.g. 1GiB, 64MiB)`);
  }
  if (!(v > 0)) throw new InvalidArgumentError(`not a size: ${text}`);
  return v;
}

const program = new Command('scale')
  .description('discrete-event simulation of a rollout with the real block scheduler (issue 24)')
  .option('--clients <n>', 'clients', int, 1000)
  .option('--subnets <n>', 'subnets (each a site with its own WAN link)', int, 10)
  .option('--hosted-caches <mode>', '1-per-subnet, a count (subnet s served by cache s mod N), or 0', '0')
  .option('--file <size>', 'file size', bytes, 2 ** 30)
  .option('--unit <size>', 'bytes per token (default: 64KiB up to 64MiB files, else file/1024)', bytes)
  .option('--wan <rate>', 'WAN downlink per subnet', rate, 100e6)
  .option('--lan <rate>', 'LAN NIC rate (each direction)', rate, 1e9)
  .option('--origin-up <rate>', 'origin uplink (default: unlimited)', rate)
  .option('--wan-rtt <ms>', 'WAN round trip', Number, 20)
  .option('--lan-rtt <ms>', 'LAN round trip', Number, 1)
  .option('--arrival <mode>', 'flash, flash:<jitter>, spread:<duration> or sequential', arrival, arrival('flash'))
  .option('--holders <n>', 'holders a client learns per block (ProbeMatch damping)', int, 8)
  .option('--view <n>', 'members of its subnet a client hears and learns holdings from', int, 32)
  .option('--seed <list>', 'seed, or several comma separated (side by side)', '1')
  .option('--caches-name-crowd', 'hosted caches name their crowd (peerdist, one per subnet): crowd ownership')
  .option('--cpu-receive <s>', 'CPU seconds per GiB a client spends receiving (default: no CPU model)', Number)
  .option('--cpu-serve <s>', 'CPU seconds per GiB a client spends serving peers', Number, 0)
  .option('--cpu-cores <n>', 'cores all clients share (one machine); default: a core per client', int)
  .option('--startup <duration>', "from a client's arrival to its first request", duration, 0)
  .option(
    '--daemon-discovery',
    "discovery as the daemon does it, at validate.ts's measured CPU per datagram (needs --cpu-receive for the CPU)",
  )
  .option(
    '--real-limits',
    "discovery over the whole subnet through the daemon's real limits (testkit/scale/limits.ts; --view ignored)",
  )
  .option(
    '--limit <name=value>',
    'a real limit changed, e.g. globalRate=1000 (repeatable; with --real-limits)',
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .option('--peer-timeouts', "peer requests with the retrieval client's first-byte timeouts")
  .option('--diagnose', 'classify the origin fetches of blocks a subnet already fetched (why duplicates)')
  .option('--json', 'print JSON')
  .option('--svg <file>', 'write the completion CDF and origin rate over time as SVG')
  .parse();

const o = program.opts();

function limitsOf(changes: string[], withCpu: boolean): RealLimits {
  const l: RealLimits = { ...REAL_LIMITS, ...(withCpu ? { costs: DAEMON_DISCOVERY } : {}) };
  for (const ch of changes) {
    const [k, v] = ch.split('=');
    if (!k || !(k in REAL_LIMITS) || k === 'costs' || !(Number(v) >= 0))
      throw new InvalidArgumentError(`--limit ${ch}`);
    (l as unknown as Record<string, number>)[k] = Number(v);
  }
  return l;
}
const hcText = String(o.hostedCaches);
const hostedCaches: ScaleConfig['hostedCaches'] =
  hcText === '1-per-subnet' || hcText === 'per-subnet' ? 'per-subnet' : int(hcText);
const runs = String(o.seed)
  .split(',')
  .map((seedText) => {
    const cfg: ScaleConfig = {
      clients: o.clients,
      subnets: o.subnets,
      hostedCaches,
      fileBytes: o.file,
      unitBytes: o.unit,
      wanBps: o.wan,
      lanBps: o.lan,
      originUpBps: o.originUp,
      wanRttMs: o.wanRtt,
      lanRttMs: o.lanRtt,
      arrival: o.arrival,
      seed: int(seedText),
      holdersPerBlock: o.holders,
      view: o.view,
      diagnose: o.diagnose === true,
      cachesNameCrowd: o.cachesNameCrowd === true,
      ...(o.cpuReceive !== undefined
        ? { cpu: { receiveSecPerGiB: o.cpuReceive, serveSecPerGiB: o.cpuServe, cores: o.cpuCores } }
        : {}),
      startupMs: o.startup,
      ...(o.daemonDiscovery ? { discovery: DAEMON_DISCOVERY } : {}),
      peerTimeouts: o.peerTimeouts === true,
      ...(o.realLimits ? { limits: limitsOf(o.limit as string[], o.cpuReceive !== undefined) } : {}),
    };
    const run = measureScale(cfg);
    if (!o.json) console.log(describe(run));
    if (o.diagnose && !o.json) console.log(`duplicates: ${JSON.stringify(run.result.duplicates)}`);
    return run;
  });
if (o.json) console.log(JSON.stringify(runs.length === 1 ? summary(runs[0]!) : runs.map(summary), null, 2));
if (o.svg)
  writeFileSync(
    o.svg,
    svg(
      runs.map((r) => ({
        label: `${r.result.config.clients} clients, ${r.result.config.subnets} subnets, hc ${r.result.config.hostedCaches}, seed ${r.result.config.seed}`,
        result: r.result,
      })),
    ),
  );
