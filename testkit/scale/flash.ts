/**
 * What a flash-crowd daemon spends beyond what the scale model charges it (issue 24 item 3): on
 * loopback, one daemon (the seed) fills its cache from the origin, then `crowd` fresh daemons all
 * download the file at once, from the seed and from each other, as the namespace simulation's
 * flash mode does (testkit/sim/scenarios.ts runDownloads) but without a shaped WAN. Per daemon it
 * records, over the crowd: its CPU (/proc), the bytes it received from peers and from the origin,
 * the blocks and bytes it served and the MS-PCCRR requests it answered (its retrieval server's
 * counters), and its discovery datagrams (its status document). `charge` then prices those counts
 * at the model's figures (a sequential download's measured costs, testkit/scale/machine.ts, and
 * discovery per datagram): what is left over is what the model does not charge.
 */
import { Cluster } from '../sim/harness.js';
import { LoopbackNetwork } from '../sim/loopback.js';
import { processCpuSeconds } from '../sim/proc.js';
import type { DaemonDiscovery } from './sim.js';
import { type Line, measureDownloads } from './machine.js';

export interface FlashDaemon {
  client: number;
  /** Downloading in the crowd (false: the seed, which only serves). */
  downloading: boolean;
  cpu: number;
  fromPeers: number;
  fromOrigin: number;
  served: number;
  blocksServed: number;
  /** HTTP requests its retrieval server received. */
  serverRequests: number;
  probesSent: number;
  probesReceived: number;
  matchesReceived: number;
  followUpsSent: number;
  /** The `peerdist get` process's wall seconds (downloading daemons). */
  seconds: number;
}

export interface FlashMeasurement {
  size: number;
  crowd: number;
  daemons: FlashDaemon[];
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' ? (v as Json) : {});
const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function counters(s: Json) {
  const rs = obj(s.retrievalServer);
  const d = obj(s.discovery);
  return {
    served: n(rs.bytesServed),
    blocksServed: n(rs.blocksServed),
    serverRequests: n(rs.requests),
    probesSent: n(d.probesSent),
    probesReceived: n(d.probesReceived),
    matchesReceived: n(d.matchesReceived),
    followUpsSent: n(d.followUpsSent),
  };
}

export async function measureFlash(
  size: number,
  crowd: number,
  log: (m: string) => void = () => {},
): Promise<FlashMeasurement> {
  const c = await Cluster.create({
    network: new LoopbackNetwork({ base: 200 }),
    clients: 1 + crowd,
    files: [{ name: 'f.bin', size }],
  });
  try {
    await c.startDaemons();
    log(`loopback flash, ${size} bytes: the seed from the origin, then ${crowd} fresh daemons at once`);
    if (!(await c.download(1, 'f.bin', 600_000)).correct) throw new Error('seed download wrong');
    const ids = Array.from({ length: 1 + crowd }, (_, k) => k + 1);
    const before = await Promise.all(ids.map(async (i) => counters(await c.daemonStatus(i))));
    const cpu0 = await Promise.all(ids.map((i) => processCpuSeconds(c.daemons[i - 1]!.pid)));
    const got = await Promise.all(ids.slice(1).map((i) => c.download(i, 'f.bin', 600_000)));
    const cpu1 = await Promise.all(ids.map((i) => processCpuSeconds(c.daemons[i - 1]!.pid)));
    const after = await Promise.all(ids.map(async (i) => counters(await c.daemonStatus(i))));
    if (!got.every((g) => g.correct)) throw new Error('a crowd download was wrong');
    const daemons = ids.map((i, k): FlashDaemon => {
      const g = got[k - 1];
      const a = after[k]!;
      const b = before[k]!;
      return {
        client: i,
        downloading: k > 0,
        cpu: cpu1[k]! - cpu0[k]!,
        fromPeers: g?.fromPeers ?? 0,
        fromOrigin: g?.fromOrigin ?? 0,
        served: a.served - b.served,
        blocksServed: a.blocksServed - b.blocksServed,
        serverRequests: a.serverRequests - b.serverRequests,
        probesSent: a.probesSent - b.probesSent,
        probesReceived: a.probesReceived - b.probesReceived,
        matchesReceived: a.matchesReceived - b.matchesReceived,
        followUpsSent: a.followUpsSent - b.followUpsSent,
        seconds: g?.wallSeconds ?? 0,
      };
    });
    return { size, crowd, daemons };
  } finally {
    await c.close();
  }
}

/** What the model charges a daemon for its counts, CPU s, by part. */
export interface Charge {
  receive: number;
  serve: number;
  discovery: number;
}

/**
 * A daemon's counts at the model's prices: a download's receiving cost (fixed part plus per GiB of
 * what it received, origin or peers alike, as sim.ts charges it), its serving per GiB served, and
 * its datagrams as sim.ts charges them (a probe sent, a probe handled, a ProbeMatch handled, a
 * follow-up sent; the follow-ups it received are charged as ProbeMatches handled).
 */
export function charge(d: FlashDaemon, costs: { receive: Line; serve: Line }, disc: DaemonDiscovery): Charge {
  const g = (b: number) => b / 2 ** 30;
  const received = d.fromPeers + d.fromOrigin;
  return {
    receive: d.downloading ? costs.receive.fixed + costs.receive.perGiB * g(received) : 0,
    serve: costs.serve.perGiB * g(d.served),
    discovery:
      (d.probesSent * disc.probeSentMs +
        d.probesReceived * disc.probeHandledMs +
        d.matchesReceived * disc.matchHandledMs +
        d.followUpsSent * disc.followUpMs) /
      1000,
  };
}

/**
 * What a block costs when blocks trickle in one at a time (issue 24 item 3): the same sequential
 * loopback downloads as testkit/scale/machine.ts, once as they are and once with every daemon's
 * upload capped at `capBytesPerSec` (`peerdist daemon --upload-rate-limit`), so that a block
 * reaches the receiver every few ms as over a WAN-bound or CPU-starved crowd's links, and nothing
 * arrives while the previous block is still being worked through. Alternated `rounds` times, one
 * fresh cluster each; the differences of the medians, per 64 KiB of the file (the scale model's
 * unit): what the receiving daemon and the serving daemons spend more on a block that arrives
 * (is served) alone than on one of a stream.
 */
export async function measureTrickle(
  size: number,
  capBytesPerSec: number,
  rounds = 2,
  log: (m: string) => void = () => {},
): Promise<{ receiveMsPerUnit: number; serveMsPerUnit: number; cappedSeconds: number; streamSeconds: number }> {
  const stream: number[][] = [];
  const capped: number[][] = [];
  for (let r = 0; r < rounds; r++) {
    for (const [into, args] of [
      [stream, []],
      [capped, ['--upload-rate-limit', String(capBytesPerSec)]],
    ] as const) {
      const m = await measureDownloads([size], 2, log, [...args]);
      for (const s of m.samples) into.push([s.receiveCpu, s.serveCpu, s.getSeconds]);
    }
  }
  const med = (xs: number[][], k: number) => {
    const v = xs.map((x) => x[k]!).sort((a, b) => a - b);
    const h = v.length >> 1;
    return v.length % 2 ? v[h]! : (v[h - 1]! + v[h]!) / 2;
  };
  const units = size / 65536;
  return {
    receiveMsPerUnit: ((med(capped, 0) - med(stream, 0)) * 1000) / units,
    serveMsPerUnit: ((med(capped, 1) - med(stream, 1)) * 1000) / units,
    cappedSeconds: med(capped, 2),
    streamSeconds: med(stream, 2),
  };
}
