/**
 * `--diagnose` for whole-site runs (issue 25, the 32-client flash crowd): per daemon, the CPU it
 * spent during the crowd (/proc/<pid>/stat, load-robust), its discovery traffic (probes and
 * ProbeMatches sent and parsed, drops by reason), its retrieval client's probation outcomes
 * (first requests overdue, answered late, quarantines by cause), why its origin blocks came from
 * the origin and how its peer requests failed (`peerdist explain --json`). Everything is read
 * from counters the daemon keeps anyway; nothing here changes what the daemons do.
 */
import { readFileSync } from 'node:fs';
import type { Cluster } from './harness.js';
import { table } from './report.js';
import type { DiscoveryStats } from '../../src/discovery/runtime.js';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux Node runs on). */
const USER_HZ = 100;

/** User + system CPU seconds of a process, or NaN once it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), ")" closes it: state is field 3.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / USER_HZ;
  } catch {
    return Number.NaN;
  }
}

export interface DaemonDiagnosis {
  client: number;
  /** CPU seconds of the daemon between the crowd's start and its end. */
  cpuSeconds: number;
  discovery: DiscoveryStats;
  probation: { overdue: number; provenLate: number; quarantined: number; byCode: Record<string, number> };
  /** Origin blocks of the client's download by OriginReason (src/engine/trace.ts). */
  originByReason: Record<string, number>;
  originBlocks: number;
  /** The download's failed peer requests, by why (all peers summed). */
  peerFailures: Record<string, number>;
  /** Peers that failed us at least once (all downloads of the daemon). */
  troublePeers: number;
}

export interface Diagnosis {
  daemons: DaemonDiagnosis[];
  /** Sums over the daemons. */
  totals: Omit<DaemonDiagnosis, 'client' | 'troublePeers'> & { troublePeers: number };
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' ? (v as Json) : {});
const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const counts = (v: unknown): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(obj(v))) if (typeof x === 'number') out[k] = x;
  return out;
};
function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** CPU seconds of every started daemon now (index = client - 1). */
export function daemonCpu(c: Cluster): number[] {
  return c.daemons.map((d) => (d ? processCpuSeconds(d.pid) : Number.NaN));
}

/** One daemon's diagnosis from its status document and the JSON trace of its latest download. */
export function diagnoseDaemon(client: number, cpuSeconds: number, status: Json, trace: Json): DaemonDiagnosis {
  const d = obj(status.discovery);
  const p = obj(obj(status.retrievalClient).probation);
  const origin = obj(trace.origin);
  const originByReason: Record<string, number> = {};
  for (const [k, v] of Object.entries(obj(origin.byReason))) originByReason[k] = n(obj(v).blocks);
  const peerFailures: Record<string, number> = {};
  for (const peer of Array.isArray(trace.peers) ? trace.peers : []) add(peerFailures, counts(obj(peer).failures));
  return {
    client,
    cpuSeconds,
    discovery: {
      probesSent: n(d.probesSent),
      probesReceived: n(d.probesReceived),
      matchesSent: n(d.matchesSent),
      matchesReceived: n(d.matchesReceived),
      followUpsSent: n(d.followUpsSent),
      dropped: counts(d.dropped),
    },
    probation: {
      overdue: n(p.overdue),
      provenLate: n(p.provenLate),
      quarantined: n(p.quarantined),
      byCode: counts(p.byCode),
    },
    originByReason,
    originBlocks: n(origin.blocks),
    peerFailures,
    troublePeers: Array.isArray(status.troublePeers) ? status.troublePeers.length : 0,
  };
}

export function sumDiagnoses(daemons: DaemonDiagnosis[]): Diagnosis {
  const t: Diagnosis['totals'] = {
    cpuSeconds: 0,
    discovery: { probesSent: 0, probesReceived: 0, matchesSent: 0, matchesReceived: 0, followUpsSent: 0, dropped: {} },
    probation: { overdue: 0, provenLate: 0, quarantined: 0, byCode: {} },
    originByReason: {},
    originBlocks: 0,
    peerFailures: {},
    troublePeers: 0,
  };
  for (const x of daemons) {
    t.cpuSeconds += Number.isFinite(x.cpuSeconds) ? x.cpuSeconds : 0;
    for (const k of ['probesSent', 'probesReceived', 'matchesSent', 'matchesReceived', 'followUpsSent'] as const)
      t.discovery[k] += x.discovery[k];
    add(t.discovery.dropped, x.discovery.dropped);
    t.probation.overdue += x.probation.overdue;
    t.probation.provenLate += x.probation.provenLate;
    t.probation.quarantined += x.probation.quarantined;
    add(t.probation.byCode, x.probation.byCode);
    add(t.originByReason, x.originByReason);
    t.originBlocks += x.originBlocks;
    add(t.peerFailures, x.peerFailures);
    t.troublePeers += x.troublePeers;
  }
  return { daemons, totals: t };
}

/** Reads every daemon's counters after a run; `cpuBefore` from daemonCpu() at the crowd's start. */
export async function diagnose(c: Cluster, clients: number[], cpuBefore: number[]): Promise<Diagnosis> {
  const cpuAfter = daemonCpu(c);
  const out: DaemonDiagnosis[] = [];
  // Four at a time: each is a node child process on a machine the crowd just saturated.
  for (let k = 0; k < clients.length; k += 4) {
    const batch = clients.slice(k, k + 4);
    const got = await Promise.all(
      batch.map(async (i) => {
        const [status, trace] = await Promise.all([
          c.daemonStatus(i).catch(() => ({})),
          c.explainJson(i).catch(() => ({})),
        ]);
        return diagnoseDaemon(i, (cpuAfter[i - 1] ?? Number.NaN) - (cpuBefore[i - 1] ?? Number.NaN), status, trace);
      }),
    );
    out.push(...got);
  }
  return sumDiagnoses(out);
}

const kv = (r: Record<string, number>) =>
  Object.entries(r)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '-';

export function formatDiagnosis(g: Diagnosis): string {
  const rows = g.daemons.map((x) => [
    `client ${x.client}`,
    x.cpuSeconds.toFixed(1),
    String(x.discovery.probesSent),
    String(x.discovery.probesReceived),
    String(x.discovery.matchesSent),
    String(x.discovery.matchesReceived),
    String(x.discovery.followUpsSent),
    String(x.probation.overdue),
    String(x.probation.provenLate),
    String(x.probation.quarantined),
    String(x.originBlocks),
    kv(x.originByReason),
  ]);
  const t = g.totals;
  const d = t.discovery;
  return [
    'diagnosis (per daemon, over the crowd):',
    table(
      [
        '',
        'CPU s',
        'probes',
        'probes in',
        'matches',
        'matches in',
        'follow-ups',
        'overdue',
        'late ok',
        'quarant.',
        'origin blk',
        'origin why',
      ],
      rows,
    ),
    `all daemons: ${t.cpuSeconds.toFixed(1)} CPU s; probes sent ${d.probesSent}, received ${d.probesReceived}; ProbeMatches sent ${d.matchesSent} (${d.followUpsSent} follow-ups), received ${d.matchesReceived}; discovery drops: ${kv(d.dropped)}`,
    `probation: ${t.probation.overdue} first requests overdue, ${t.probation.provenLate} of them answered validly later; ${t.probation.quarantined} quarantines (${kv(t.probation.byCode)})`,
    `origin blocks: ${t.originBlocks} (${kv(t.originByReason)}); failed peer requests: ${kv(t.peerFailures)}; peers that failed a daemon at least once: ${t.troublePeers}`,
  ].join('\n');
}
