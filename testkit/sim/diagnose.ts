/**
 * `--diagnose` for whole-site runs (issue 25, the 32-client flash crowd): per daemon, the CPU it
 * spent during the crowd (/proc/<pid>/stat, load-robust), its discovery traffic (probes and
 * ProbeMatches sent and parsed, drops by reason), its retrieval client's probation outcomes
 * (first requests overdue, answered late, quarantines by cause), why its origin blocks came from
 * the origin and how its peer requests failed (`peerdist explain --json`). Everything is read
 * from counters the daemon keeps anyway; nothing here changes what the daemons do.
 */
import { readFileSync, writeFileSync } from 'node:fs';
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
  /**
   * Proven peers' exchanges past the unstretched first-byte / between-reads limit, and of those
   * the ones answered within the limit stretched by our own lateness (src/retrieval/lateness.ts).
   */
  lateness: { stretched: number; answered: number };
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
  /** Who fetched each duplicate origin block, and what the fetchers knew (analyseDuplicates). */
  duplicates?: DuplicateAnalysis;
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
  const late = obj(obj(status.retrievalClient).lateness);
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
    lateness: { stretched: n(late.stretched), answered: n(late.answered) },
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
    lateness: { stretched: 0, answered: 0 },
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
    t.lateness.stretched += x.lateness.stretched;
    t.lateness.answered += x.lateness.answered;
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
  const crowd: CrowdTrace[] = [];
  const raw: Record<number, Json> = {};
  // Four at a time: each is a node child process on a machine the crowd just saturated.
  for (let k = 0; k < clients.length; k += 4) {
    const batch = clients.slice(k, k + 4);
    const got = await Promise.all(
      batch.map(async (i) => {
        const [status, trace] = await Promise.all([
          c.daemonStatus(i).catch(() => ({})),
          c.explainJson(i).catch(() => ({})),
        ]);
        const ct = crowdTrace(i, trace);
        if (ct) crowd.push(ct);
        if (process.env.PEERDIST_DIAGNOSE_DUMP)
          raw[i] = { origin: obj(trace).origin, crowd: obj(trace).crowd, startedAt: obj(trace).startedAt };
        return diagnoseDaemon(i, (cpuAfter[i - 1] ?? Number.NaN) - (cpuBefore[i - 1] ?? Number.NaN), status, trace);
      }),
    );
    out.push(...got);
  }
  // The raw traces, for a closer look than the summary (PEERDIST_DIAGNOSE_DUMP=file.json).
  if (process.env.PEERDIST_DIAGNOSE_DUMP) writeFileSync(process.env.PEERDIST_DIAGNOSE_DUMP, JSON.stringify(raw));
  return { ...sumDiagnoses(out), ...(crowd.length > 1 ? { duplicates: analyseDuplicates(crowd) } : {}) };
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
    `own lateness: ${t.lateness.stretched} proven peers' requests past the first-byte / between-reads limit, ${t.lateness.answered} of them answered within the limit stretched by our timers' lateness`,
    `origin blocks: ${t.originBlocks} (${kv(t.originByReason)}); failed peer requests: ${kv(t.peerFailures)}; peers that failed a daemon at least once: ${t.troublePeers}`,
    ...(g.duplicates ? [formatDuplicates(g.duplicates)] : []),
  ].join('\n');
}

/** One daemon's crowd view from its download trace (src/daemon/traces.ts `origin.picks`, `crowd`). */
export interface CrowdTrace {
  client: number;
  /** Our identity in the crowd ('' unknown). */
  self: string;
  /** Wall clock (ms) of the download's start. */
  startMs: number;
  /**
   * Origin blocks: [block, picked, stored (wall ms), rank (-1: not by ownership), owner, members,
   * why, re-check answers, members left out of the ranking that outscored us (`host:e` / `host:f`)].
   */
  picks: Array<[number, number, number, number, string, number, string, string?, string?]>;
  /** Other hosts: when first seen probing / as a holder / as a holder the peer cap refused (wall ms). */
  members: Map<string, { probe?: number; peer?: number; capped?: number }>;
}

export function crowdTrace(client: number, trace: Json): CrowdTrace | undefined {
  const startMs = Date.parse(String(trace.startedAt ?? ''));
  if (!Number.isFinite(startMs)) return undefined;
  const origin = obj(trace.origin);
  const picks: CrowdTrace['picks'] = [];
  for (const p of Array.isArray(origin.picks) ? origin.picks : []) {
    if (!Array.isArray(p) || p.length < 6) continue;
    const pick: CrowdTrace['picks'][number] = [
      n(p[0]),
      startMs + n(p[1]),
      startMs + n(p[2]),
      n(p[3]),
      String(p[4] ?? ''),
      n(p[5]),
      String(p[6] ?? '?'),
    ];
    if (typeof p[7] === 'string') pick.push(p[7]);
    if (typeof p[8] === 'string') pick.push(p[8]);
    picks.push(pick);
  }
  const crowd = obj(trace.crowd);
  const members = new Map<string, { probe?: number; peer?: number; capped?: number }>();
  for (const [host, v] of Object.entries(obj(crowd.members))) {
    const m = obj(v);
    members.set(host, {
      ...(typeof m.probeMs === 'number' ? { probe: startMs + m.probeMs } : {}),
      ...(typeof m.peerMs === 'number' ? { peer: startMs + m.peerMs } : {}),
      ...(typeof m.cappedMs === 'number' ? { capped: startMs + m.cappedMs } : {}),
    });
  }
  return { client, self: typeof crowd.self === 'string' ? crowd.self : '', startMs, picks, members };
}

const role = (rank: number) => (rank < 0 ? 'no-ownership' : rank === 0 ? 'owner' : rank === 1 ? 'rank 1' : 'rank 2+');

function quantiles(xs: number[]): string {
  if (xs.length === 0) return '-';
  const s = [...xs].sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))]!;
  return `p10 ${(q(0.1) / 1000).toFixed(2)} / p50 ${(q(0.5) / 1000).toFixed(2)} / p90 ${(q(0.9) / 1000).toFixed(2)} / max ${(s[s.length - 1]! / 1000).toFixed(2)} s`;
}

export interface DuplicateAnalysis {
  crowd: number;
  originBlocks: number;
  distinct: number;
  second: number;
  /** Second copies by [when picked: 'in flight' | 'after stored'] x [fetcher role / earlier role] x views. */
  byClass: Record<string, number>;
  /** Second copies picked after the earlier copy was stored: how long after (ms). */
  afterStoredMs: number[];
  /** Second copies picked after the earlier was stored, when the fetcher first saw the earlier fetcher as a holder: after its pick (ms), or never. */
  holderSeenAfterPickMs: number[];
  holderNeverSeen: number;
  /** Per ordered pair (A learns of B): B's first stored origin block -> A's first sighting of B as a holder (ms). */
  firstSightingLagMs: number[];
  /** Per ordered pair: B's start -> A's first sight of B's probe (ms), and pairs where A never saw one. */
  probeLagMs: number[];
  probeNeverSeen: number;
  /** Members each fetcher ranked over at its picks (excluding itself): quantiles of the count. */
  membersAtPick: number[];
  /** Second copies by the second of the crowd (from its first start) they were picked in. */
  secondBySecond: Record<string, number>;
  /**
   * Second copies picked after the earlier copy was stored: what the later fetcher's pre-origin
   * re-check asked the earlier fetcher (its answer y/n in time, Y/N late, x failed), or that it did
   * not ask it (and how many others it asked).
   */
  recheck: Record<string, number>;
  /**
   * Later copies by whether each fetcher's pick named the other among the members left out of its
   * ranking that outscored it (the pick's shadow): 'expired' (not seen within the member window),
   * 'failing' (failing that fetcher), '-' (not named).
   */
  viewGaps: Record<string, number>;
}

/** What a pick's re-check (`asked`, "host=a host=a") got from `host`. */
export function recheckOf(asked: string | undefined, host: string): string {
  if (asked === undefined || asked === '') return 'no re-check';
  const all = asked.split(' ');
  const mine = all.find((x) => x.startsWith(`${host}=`));
  if (mine) return `asked it: ${mine.slice(host.length + 1)}`;
  return `not asked (${all.length} others asked)`;
}

/** Who fetched each duplicate origin block, how they ranked it and what each knew of the other. */
export function analyseDuplicates(traces: CrowdTrace[]): DuplicateAnalysis {
  const t0 = Math.min(...traces.map((t) => t.startMs));
  type Copy = {
    t: CrowdTrace;
    block: number;
    picked: number;
    stored: number;
    rank: number;
    owner: string;
    members: number;
    why: string;
    asked?: string;
    shadow?: string;
  };
  const byBlock = new Map<number, Copy[]>();
  const a: DuplicateAnalysis = {
    crowd: traces.length,
    originBlocks: 0,
    distinct: 0,
    second: 0,
    byClass: {},
    afterStoredMs: [],
    holderSeenAfterPickMs: [],
    holderNeverSeen: 0,
    firstSightingLagMs: [],
    probeLagMs: [],
    probeNeverSeen: 0,
    membersAtPick: [],
    secondBySecond: {},
    recheck: {},
    viewGaps: {},
  };
  for (const t of traces)
    for (const [block, picked, stored, rank, owner, members, why, asked, shadow] of t.picks) {
      a.originBlocks++;
      if (rank >= 0) a.membersAtPick.push(members);
      let list = byBlock.get(block);
      if (!list) {
        list = [];
        byBlock.set(block, list);
      }
      list.push({
        t,
        block,
        picked,
        stored,
        rank,
        owner,
        members,
        why,
        ...(asked ? { asked } : {}),
        ...(shadow ? { shadow } : {}),
      });
    }
  a.distinct = byBlock.size;
  for (const copies of byBlock.values()) {
    copies.sort((x, y) => x.picked - y.picked);
    for (let i = 1; i < copies.length; i++) {
      const l = copies[i]!;
      let e = copies[0]!;
      for (let j = 1; j < i; j++) if (copies[j]!.stored < e.stored) e = copies[j]!;
      a.second++;
      const inFlight = l.picked < e.stored;
      const views =
        l.rank < 0 || e.rank < 0
          ? 'no ranking'
          : l.owner === e.owner
            ? 'same owner'
            : l.rank === 0 && e.rank === 0
              ? 'both owner'
              : 'owners differ';
      const knew = l.t.members.get(e.t.self);
      const knewProbe = knew?.probe !== undefined && knew.probe <= l.picked;
      const knewPeer = knew?.peer !== undefined && knew.peer <= l.picked;
      const k = `${inFlight ? 'in flight' : 'after stored'}: ${role(l.rank)} / ${role(e.rank)}, ${views}, knew it ${knewPeer ? 'as holder' : knewProbe ? 'by probe' : 'not'}; ${l.why}`;
      a.byClass[k] = (a.byClass[k] ?? 0) + 1;
      // Why the two views differed, when one of the two left the other out of its ranking (the
      // other scoring higher for the unit): not seen within the member window, failing us, or
      // neither (never seen, or its sighting older than the shadow's memory).
      const views2 = [
        [l, e],
        [e, l],
      ].map(([x, y]) => {
        const m = x!.shadow?.split(' ').find((s) => s.startsWith(`${y!.t.self}:`));
        return m ? (m.endsWith(':f') ? 'failing' : 'expired') : '-';
      });
      const sk = `later lacked earlier: ${views2[0]}; earlier lacked later: ${views2[1]}`;
      a.viewGaps[sk] = (a.viewGaps[sk] ?? 0) + 1;
      const sec = String(Math.floor((l.picked - t0) / 1000));
      a.secondBySecond[sec] = (a.secondBySecond[sec] ?? 0) + 1;
      if (!inFlight) {
        a.afterStoredMs.push(l.picked - e.stored);
        const capped = !knewPeer && knew?.capped !== undefined && knew.capped <= l.picked;
        const rk = `${knewPeer ? 'knew it as holder' : capped ? 'its sightings refused by the peer cap' : 'did not know it as holder'}, ${recheckOf(l.asked, e.t.self)}`;
        a.recheck[rk] = (a.recheck[rk] ?? 0) + 1;
        if (knew?.peer === undefined) a.holderNeverSeen++;
        else if (knew.peer > l.picked) a.holderSeenAfterPickMs.push(knew.peer - l.picked);
      }
    }
  }
  for (const x of traces) {
    for (const y of traces) {
      if (x === y || !y.self) continue;
      const seen = x.members.get(y.self);
      if (seen?.probe !== undefined) a.probeLagMs.push(seen.probe - y.startMs);
      else a.probeNeverSeen++;
      const firstStored = Math.min(...y.picks.map((p) => p[2]));
      if (seen?.peer !== undefined && Number.isFinite(firstStored)) a.firstSightingLagMs.push(seen.peer - firstStored);
    }
  }
  return a;
}

export function formatDuplicates(a: DuplicateAnalysis): string {
  const rows = Object.entries(a.byClass)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `  ${String(v).padStart(4)}  ${k}`);
  const secs = Object.entries(a.secondBySecond)
    .sort((x, y) => Number(x[0]) - Number(y[0]))
    .map(([s, v]) => `${s}s:${v}`)
    .join(' ');
  return [
    `duplicate origin blocks (${a.crowd} traces): ${a.originBlocks} origin blocks, ${a.distinct} distinct, ${a.second} later copies`,
    'later copies by: when picked (earlier copy in flight / already stored), fetcher role / earlier fetcher role, their owners, whether the fetcher knew the earlier fetcher at its pick; why the later copy came from the origin:',
    ...rows,
    `later copies by second of the crowd: ${secs || '-'}`,
    `picked after the earlier copy was stored, by: ${quantiles(a.afterStoredMs)}; the earlier fetcher first seen as a holder after the pick by ${quantiles(a.holderSeenAfterPickMs)}, never: ${a.holderNeverSeen}`,
    `picked after the earlier copy was stored: the later fetcher's pre-origin re-check of the earlier fetcher: ${kv(a.recheck)}`,
    `first sighting of a member as holder after its first origin block was stored: ${quantiles(a.firstSightingLagMs)} (${a.firstSightingLagMs.length} pairs)`,
    `first probe of a member seen after it started: ${quantiles(a.probeLagMs)} (${a.probeLagMs.length} pairs; never seen: ${a.probeNeverSeen})`,
    `why the two fetchers' views differed (a member left out that outscored the fetcher): ${kv(a.viewGaps)}`,
    `members ranked over at ownership picks: ${a.membersAtPick.length ? quantiles(a.membersAtPick.map((m) => m * 1000)).replaceAll(' s', '') : '-'}`,
  ].join('\n');
}
