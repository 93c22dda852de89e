/**
 * End-to-end benchmark on the namespace network (root + iproute2): 8 clients fetch one file over a
 * shaped WAN link, once one after another and once all at once, each measured against one plain
 * HTTP download of the same file over the same link in the same run.
 *   npm run build && node dist/bench/sim.js [--clients 8] [--size 64MiB] [--wan-rate 50mbit] [--wan-delay 20] [--mode flash] [--explain-slowest] [--diagnose] [--json]
 * Prints origin bytes / file size (targets: <= 1.05 sequential, <= 1.2 flash), time for all
 * clients / one straight download (target <= 1.5 for the flash crowd) and how far the slowest
 * client finished after the median (flash: <= 3 s, issue 26); --explain-slowest adds
 * `peerdist explain` of the slowest client's download; --diagnose a table of every daemon's CPU,
 * discovery traffic, probation outcomes and origin reasons over the run (testkit/sim/diagnose.ts).
 * CPU profiles of some daemons: NODE_OPTIONS=--import=file://$PWD/dist/bench/cpu-profile-preload.js
 * PEERDIST_PROFILE_DIR=DIR PEERDIST_PROFILE_MATCH='c(1|9|17)-state' (bench/cpu-profile-preload.ts).
 */
import { benchArgs } from './args.js';
import { parseRate, parseSize } from '../testkit/sim/files.js';
import { runScenario, type ScenarioReport } from '../testkit/sim/scenarios.js';
import { formatScenario } from '../testkit/sim/report.js';
import { netnsSupport } from '../testkit/sim/netns.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    clients: { type: 'string', default: '8' },
    size: { type: 'string', default: '64MiB' },
    'wan-rate': { type: 'string', default: '50mbit' },
    'wan-delay': { type: 'string', default: '20' },
    'lan-rate': { type: 'string' },
    json: { type: 'boolean' },
    mode: { type: 'string' },
    'explain-slowest': { type: 'boolean' },
    diagnose: { type: 'boolean' },
  },
});

const support = await netnsSupport();
if (!support.ok) {
  process.stderr.write(`bench/sim: ${support.reason}; this benchmark needs the namespace network\n`);
  process.exit(2);
}
const common = {
  clients: Number(values.clients),
  size: parseSize(values.size!),
  network: 'netns' as const,
  wanRateBps: parseRate(values['wan-rate']!),
  wanDelayMs: Number(values['wan-delay']),
  lanRateBps: values['lan-rate'] ? parseRate(values['lan-rate']) : undefined,
  timeoutMs: 900_000,
  onNote: (m: string) => process.stderr.write(`[bench] ${m}\n`),
  explainSlowest: values['explain-slowest'] === true,
  diagnose: values.diagnose === true,
};
const modes = values.mode ? [values.mode as 'sequential' | 'flash'] : (['sequential', 'flash'] as const);
const reports: ScenarioReport[] = [];
for (const mode of modes) {
  const r = await runScenario({ ...common, mode });
  reports.push(r);
  if (!values.json) process.stdout.write(formatScenario(r) + '\n\n');
}
const target = (mode: string) => (mode === 'flash' ? 1.2 : 1.05);
const summary = reports.map((r) => ({
  mode: r.mode,
  originRatio: r.originRatio,
  originTarget: target(r.mode),
  originOk: r.originRatio <= target(r.mode),
  timeRatio: r.timeRatio,
  timeTarget: r.mode === 'flash' ? 1.5 : undefined,
  timeOk: r.mode === 'flash' ? (r.timeRatio ?? Infinity) <= 1.5 : undefined,
  totalSeconds: r.totalSeconds,
  baselineSeconds: r.baselineSeconds,
  medianSeconds: r.medianSeconds,
  slowestSeconds: r.slowestSeconds,
  // Issue 26: in a flash crowd the last client within 3 s of the median.
  spreadOk: r.mode === 'flash' ? r.slowestSeconds - r.medianSeconds <= 3 : undefined,
  allCorrect: r.allCorrect,
}));
if (values.json) process.stdout.write(JSON.stringify({ reports, summary }, null, 2) + '\n');
else {
  for (const s of summary) {
    process.stdout.write(
      `${s.mode}: origin bytes / file size ${s.originRatio.toFixed(3)} (target <= ${s.originTarget}: ${s.originOk ? 'met' : 'NOT met'}); ` +
        `time all / one straight ${s.timeRatio?.toFixed(2)}${s.timeTarget ? ` (target <= ${s.timeTarget}: ${s.timeOk ? 'met' : 'NOT met'})` : ''}; ` +
        `slowest client ${(s.slowestSeconds - s.medianSeconds).toFixed(2)} s after the median${s.spreadOk === undefined ? '' : ` (target <= 3: ${s.spreadOk ? 'met' : 'NOT met'})`}\n`,
    );
  }
}
