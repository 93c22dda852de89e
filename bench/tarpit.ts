/**
 * Tarpit peers (issue 27.9) on the namespace network (root + iproute2): one client downloads fresh
 * v2 files from the origin over a shaped WAN link, alternately with and without a LAN host that
 * answers every probe as a complete holder under `--sockets` addresses that accept and never
 * answer (the download admits 16 of them). The daemon is restarted before every download, so each
 * one meets the tarpit fresh (no quarantine remembered). Prints each time side by side and the
 * ratio of the medians (target: at most 1.3).
 *   npm run build && node dist/bench/tarpit.js [--runs 3] [--size 100MiB] [--sockets 64] [--wan-rate 1gbit] [--wan-delay 5]
 */
import { benchArgs } from './args.js';
import { Cluster } from '../testkit/sim/harness.js';
import { NetnsNetwork } from '../testkit/sim/network.js';
import { netnsSupport } from '../testkit/sim/netns.js';
import { parseRate, parseSize } from '../testkit/sim/files.js';
import { processCpuSeconds } from '../testkit/sim/proc.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    runs: { type: 'string', default: '3' },
    size: { type: 'string', default: '100MiB' },
    sockets: { type: 'string', default: '64' },
    'wan-rate': { type: 'string', default: '1gbit' },
    'wan-delay': { type: 'string', default: '5' },
    json: { type: 'boolean' },
  },
});
const support = await netnsSupport();
if (!support.ok) {
  process.stderr.write(`bench/tarpit: ${support.reason}; this benchmark needs the namespace network\n`);
  process.exit(2);
}
const runs = Number(values.runs);
const size = parseSize(values.size!);
const files = Array.from({ length: runs }, (_, k) => [
  { name: `plain${k}.bin`, size },
  { name: `tarpit${k}.bin`, size },
]).flat();
const c = await Cluster.create({
  network: await NetnsNetwork.create(),
  clients: 1,
  wan: { rateBps: parseRate(values['wan-rate']!), delayMs: Number(values['wan-delay']) },
  files,
});
const rows: Array<{
  run: number;
  plain: number;
  tarpit: number;
  /** The daemon's CPU seconds (user + system) over each download: a load-robust measure. */
  plainCpu: number;
  tarpitCpu: number;
  tarpitConnections: number;
  fromPeers: number;
}> = [];
/** Runs client 1's download of `name` and measures its daemon's CPU seconds over it. */
const measured = async (name: string) => {
  const pid = c.daemons[0]!.pid;
  const cpu0 = await processCpuSeconds(pid);
  const d = await c.download(1, name, 600_000);
  return { d, cpu: (await processCpuSeconds(pid)) - cpu0 };
};
try {
  await c.startDaemon(1);
  for (let k = 0; k < runs; k++) {
    // Without: a fresh daemon, no tarpit.
    await c.stopDaemon(1);
    await c.startDaemon(1);
    const { d: plain, cpu: plainCpu } = await measured(`plain${k}.bin`);
    if (!plain.correct) throw new Error(`run ${k}: download without the tarpit is wrong`);
    // With: a fresh daemon, the tarpit answering every probe.
    const tarpit = await c.startTarpitPeer({ sockets: Number(values.sockets) });
    await c.stopDaemon(1);
    await c.startDaemon(1);
    const { d: slow, cpu: tarpitCpu } = await measured(`tarpit${k}.bin`);
    const st = await tarpit.stop();
    if (!slow.correct) throw new Error(`run ${k}: download with the tarpit is wrong`);
    const conns = Object.values(st.connections).reduce((a, b) => a + b, 0);
    // Per tarpit address: how often the daemon connected, and the gaps between connections.
    const per = Object.values(st.attempts);
    const most = Math.max(0, ...per.map((x) => x.length));
    const gaps = per.flatMap((x) => x.slice(1).map((at, i) => ((at - x[i]!) / 1000).toFixed(1)));
    rows.push({
      run: k + 1,
      plain: plain.wallSeconds,
      tarpit: slow.wallSeconds,
      plainCpu,
      tarpitCpu,
      tarpitConnections: conns,
      fromPeers: slow.fromPeers,
    });
    if (!values.json)
      process.stdout.write(
        `run ${k + 1}: without ${plain.wallSeconds.toFixed(2)} s, with ${values.sockets} tarpit addresses ${slow.wallSeconds.toFixed(2)} s (${(slow.wallSeconds / plain.wallSeconds).toFixed(2)}x; daemon CPU ${plainCpu.toFixed(2)} s / ${tarpitCpu.toFixed(2)} s; ${conns} tarpit connections to ${per.length} addresses, at most ${most} to one${gaps.length ? `, reconnected after ${gaps.join(', ')} s` : ''})\n`,
      );
  }
} finally {
  await c.close();
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mPlain = median(rows.map((r) => r.plain));
const mTarpit = median(rows.map((r) => r.tarpit));
const ratio = mTarpit / mPlain;
const summary = { size, runs: rows, medianPlain: mPlain, medianTarpit: mTarpit, ratio, target: 1.3, ok: ratio <= 1.3 };
if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
else
  process.stdout.write(
    `median: without ${mPlain.toFixed(2)} s, with tarpit ${mTarpit.toFixed(2)} s: ${ratio.toFixed(2)}x (target <= 1.3: ${ratio <= 1.3 ? 'met' : 'NOT met'})\n`,
  );
