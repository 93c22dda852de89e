/**
 * The Scheduler's answers kept across calls (issue 24: pickOwned's "nothing before time T", the
 * crowd members, assignPeers' ready list and its skip when nothing is open) against a Scheduler
 * that recomputes everything at every call (its private `noReuse`): both get the same seeded
 * random steps (crowd probes, sightings with and without growth, block lists, single blocks,
 * every peer failure kind, origin results, blocks marked missing and done, limits, a hosted
 * cache, addresses the retrieval client comes to know as proven, time jumps past member windows
 * and backoffs), and after every step the assignments of next(), its wake-up time and the crowd
 * rank of every block must be the same. The scale simulation's runs are compared with the
 * previous revision's by bench/scheduler-ab.ts.
 */
import t from 'tap';
import { type Assignment, type BlockDesc, type PeerFailure, Scheduler } from '../../src/engine/scheduler.js';
import { rng } from '../helpers/rng.js';

interface Mode {
  perSeg: number;
  segments: number;
  /** Give the Schedulers a `proven` callback (a set that grows during the run). */
  proven: boolean;
  steps: number;
  /** Requests per peer (small: peers fill their slots and free them again). */
  peerConcurrency?: number;
}

function run(seed: number, mode: Mode): { failed?: string; steps: number; assignments: number; owned: number } {
  const r = rng(seed);
  const n = mode.perSeg * mode.segments;
  const blocks: BlockDesc[] = Array.from({ length: n }, (_, g) => ({
    seg: Math.floor(g / mode.perSeg),
    index: g % mode.perSeg,
    length: 65536,
  }));
  const provenSet = new Set<string>();
  const make = (reuse: boolean) => {
    const s = new Scheduler({
      blocks,
      random: rng(seed * 7 + 1),
      present: (g) => g % 11 === 5,
      self: '10.0.0.1',
      originRunBlocks: 4,
      peerConcurrency: mode.peerConcurrency ?? 16,
      proven: mode.proven ? (a) => provenSet.has(a) : undefined,
    });
    if (!reuse) (s as unknown as { noReuse: boolean }).noReuse = true;
    return s;
  };
  const a = make(true);
  const b = make(false);
  const both = (f: (s: Scheduler) => void) => {
    f(a);
    f(b);
  };
  const peers = ['10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80', '10.0.0.5:80', '10.0.0.6:80', '[fe80::7]:80'];
  const probersOnly = ['10.0.0.8', '10.0.0.9'];
  const cache = '172.16.0.1:443';
  const pick = <T>(list: readonly T[]) => list[Math.floor(r() * list.length)]!;
  const inflight: Array<{ kind: 'peer' | 'origin'; block: number; peer?: string; last?: boolean }> = [];
  const failures: PeerFailure[] = ['not-available', 'timeout', 'busy', 'error', 'unusable', 'bad-block'];
  // Mostly small steps (calls within the times kept answers stand), some past a member window
  // (5 s) or a backoff.
  const jumps = [0, 0, 0, 1, 5, 20, 50, 100, 400, 1000, 2500, 6000];
  let now = 0;
  let assignments = 0;
  let owned = 0;
  for (let step = 0; step < mode.steps; step++) {
    now += pick(jumps);
    const op = Math.floor(r() * 16);
    const seg = Math.floor(r() * mode.segments);
    const peer = pick(peers);
    if (op <= 2) {
      const grew = r() < 0.7 ? now - Math.floor(r() * 3000) : undefined;
      both((s) => s.peerHasSegment(peer, seg, grew));
    } else if (op === 3) {
      const indices = Array.from({ length: mode.perSeg }, (_, i) => i).filter(() => r() < 0.6);
      both((s) => s.peerBlocks(peer, seg, indices, now));
    } else if (op === 4) {
      const index = Math.floor(r() * mode.perSeg);
      both((s) => s.peerHasBlock(peer, seg, index));
    } else if (op <= 6) {
      const who = r() < 0.8 ? pick([...peers, ...probersOnly]).replace(/^\[?([^\]]*?)\]?(:80)?$/, '$1') : undefined;
      both((s) => s.crowdSeen(who, now));
    } else if (op <= 10 && inflight.length > 0) {
      const x = inflight.splice(Math.floor(r() * inflight.length), 1)[0]!;
      const v = r();
      if (x.kind === 'peer') {
        // (Failures rare: a backoff running keeps the answers from being kept at all.)
        if (v < 0.9) {
          const ms = 1 + Math.floor(r() * 40);
          both((s) => s.peerSucceeded(x.peer!, x.block, 65536, ms));
        } else {
          const why = r() < 0.5 ? 'not-available' : pick(failures);
          both((s) => s.peerFailed(x.peer!, x.block, why, now));
        }
      } else if (v < 0.8) {
        const ms = 10 + Math.floor(r() * 300);
        both((s) => s.originSucceeded(x.block, ms, x.last));
        if (!x.last && !inflight.some((y) => y.kind === 'origin' && y.block > x.block && y.block < x.block + 8))
          both((s) => s.originRequestEnded());
      } else if (v < 0.9) both((s) => s.originFailed(x.block, 'error', now, x.last));
      else both((s) => s.originSkipped(x.block, x.last));
    } else if (op === 11) {
      const g = Math.floor(r() * n);
      if (r() < 0.5) both((s) => s.markMissing(g));
      else both((s) => s.markDone(g));
    } else if (op === 12 && r() < 0.3) {
      const limit = r() < 0.5 ? n : Math.floor(r() * n);
      both((s) => s.setLimit(limit));
    } else if (op === 13 && r() < 0.2) {
      both((s) => {
        s.addPeer(cache);
        s.peerIsRelay(cache);
        s.peerHasSegment(cache, seg);
      });
    } else if (op === 14 && mode.proven) provenSet.add(pick(peers));
    // Both decide at the same time; everything they say must be the same.
    const allow = r() < 0.9;
    const outA: Assignment[] = a.next(now, allow);
    const outB: Assignment[] = b.next(now, allow);
    const fail = (what: string) => ({
      failed: `seed ${seed} step ${step} (op ${op}): ${what}`,
      steps: step + 1,
      assignments,
      owned,
    });
    if (JSON.stringify(outA) !== JSON.stringify(outB))
      return fail(`next() ${JSON.stringify(outA)} with reuse, ${JSON.stringify(outB)} without`);
    if (a.nextWakeAt() !== b.nextWakeAt())
      return fail(`nextWakeAt ${a.nextWakeAt()} with reuse, ${b.nextWakeAt()} without`);
    for (let g = 0; g < n; g++)
      if (a.crowdRank(g) !== b.crowdRank(g)) return fail(`crowdRank(${g}) ${a.crowdRank(g)} / ${b.crowdRank(g)}`);
    if (a.crowdRank(0) !== undefined) owned++;
    for (const x of outA) {
      assignments++;
      if (x.kind === 'peer') inflight.push({ kind: 'peer', block: x.block, peer: x.peer });
      else {
        const count = x.count ?? 1;
        for (let k = 0; k < count; k++) inflight.push({ kind: 'origin', block: x.block + k, last: k === count - 1 });
      }
    }
  }
  return { steps: mode.steps, assignments, owned };
}

t.test('the same decisions with and without the answers kept across calls', async (t) => {
  const modes: Array<[string, Mode]> = [
    ['v2 (one block per segment), no proven callback', { perSeg: 1, segments: 70, proven: false, steps: 1500 }],
    ['v2, addresses proven as the run goes', { perSeg: 1, segments: 70, proven: true, steps: 1500 }],
    ['v1-like segments of 4 blocks', { perSeg: 4, segments: 20, proven: false, steps: 1500 }],
    ['v1-like segments of 4 blocks, proven', { perSeg: 4, segments: 20, proven: true, steps: 1500 }],
    [
      'v2, 12 blocks (peers come to hold them all), 2 requests per peer',
      { perSeg: 1, segments: 12, proven: false, steps: 1500, peerConcurrency: 2 },
    ],
    ['v2, 40 blocks, 1 request per peer', { perSeg: 1, segments: 40, proven: false, steps: 2500, peerConcurrency: 1 }],
  ];
  for (const [name, mode] of modes)
    for (let seed = 1; seed <= 8; seed++) {
      const res = run(seed, mode);
      t.equal(res.failed, undefined, `${name}, seed ${seed}: ${res.steps} steps, ${res.assignments} assignments`);
      // The runs must exercise what they compare: assignments, and origin picks by ownership.
      t.ok(
        res.assignments > 30 && res.owned > 20,
        `${name}, seed ${seed}: ${res.assignments} assignments, ${res.owned} owned picks`,
      );
    }
});
