import t from 'tap';
import { type Assignment, type BlockDesc, Scheduler, type SchedulerOptions } from '../../src/engine/scheduler.js';
import { rng } from '../helpers/rng.js';

const BS = 65536;
function blocks(n: number, perSeg = n): BlockDesc[] {
  return Array.from({ length: n }, (_, g) => ({ seg: Math.floor(g / perSeg), index: g % perSeg, length: BS }));
}
const mk = (n: number, o: Partial<SchedulerOptions> = {}) => new Scheduler({ blocks: blocks(n), random: rng(1), ...o });
const peersOf = (as: Assignment[]) => as.filter((a): a is Extract<Assignment, { kind: 'peer' }> => a.kind === 'peer');
const originOf = (as: Assignment[]) => as.filter((a) => a.kind === 'origin');
/**
 * A crowd member's first origin pick waits until its crowd has been the same for one visibility lag
 * (400 ms by default; protocol/engine.md "Flash crowds" 11): the ownership tests below start then.
 */
const SETTLE_MS = 400;
/** Completes an origin assignment (every block of its range, the request ending with the last) and returns its blocks. */
function originDone(s: Scheduler, a: Assignment, ms: number): number[] {
  const n = a.kind === 'origin' ? (a.count ?? 1) : 1;
  const out: number[] = [];
  for (let g = a.block; g < a.block + n; g++) {
    s.originSucceeded(g, ms, g === a.block + n - 1);
    out.push(g);
  }
  return out;
}

t.test('blocks present at start count as done; nothing to do when all present', async (t) => {
  const s = mk(4, { present: () => true });
  t.ok(s.isDone());
  t.same(s.next(0), []);
  const s2 = mk(4, { present: (g) => g !== 2 });
  t.equal(s2.completed, 3);
  const a = s2.next(0);
  t.same(a, [{ kind: 'origin', block: 2 }]);
});

t.test('origin concurrency cap and allowOrigin gate', async (t) => {
  const s = mk(20, { originConcurrency: 2 });
  t.same(s.next(0, false), [], 'gate closed: no origin fetch');
  const first = s.next(0);
  t.equal(first.length, 1, 'one blind origin stream until the first block arrived');
  t.same(s.next(1), [], 'cap reached');
  s.originSucceeded(first[0]!.block, 100);
  const a = s.next(2);
  t.equal(a.length, 2, 'then the full origin concurrency');
  t.ok(a.every((x) => x.kind === 'origin'));
  t.equal(a[0]!.block, (first[0]!.block + 1) % 20, 'continues its sequential run');
  t.equal(a[1]!.block, (first[0]!.block + 2) % 20);
  s.originSucceeded(a[0]!.block, 100);
  const b = s.next(3);
  t.equal(b.length, 1, 'one slot freed');
  t.equal(b[0]!.block, (a[1]!.block + 1) % 20, 'continues its sequential run');
  // Another peer downloading the same content: back to one stream.
  s.peerBlocks('p:1', 0, [15], 4);
  s.originSucceeded(b[0]!.block, 100);
  t.equal(originOf(s.next(5)).length, 0, 'two already in flight, limit is now one');
});

t.test('random origin start differs between jobs', async (t) => {
  const starts = new Set<number>();
  for (let seed = 1; seed <= 8; seed++) {
    const s = new Scheduler({ blocks: blocks(512), random: rng(seed), originConcurrency: 1 });
    starts.add(s.next(0)[0]!.block);
  }
  t.ok(starts.size >= 7, `8 jobs start at ${starts.size} distinct blocks`);
});

t.test('a full holder gets the blocks, not the origin', async (t) => {
  const s = mk(8, { peerConcurrency: 4, originConcurrency: 2 });
  s.peerHasSegment('10.0.0.1:80', 0);
  const a = s.next(0);
  t.equal(peersOf(a).length, 4, 'per-peer cap');
  t.equal(originOf(a).length, 0, 'blocks a usable peer holds never go to the origin');
});

t.test(
  'peers that never answered get one request each until they do (issue 16.5: tarpits are tried side by side)',
  async (t) => {
    const answered = new Set(['good:1']);
    const s = mk(256, {
      peerConcurrency: 16,
      totalPeerConcurrency: 64,
      originConcurrency: 2,
      proven: (a) => answered.has(a),
    });
    for (let i = 0; i < 16; i++) s.peerHasSegment(`tarpit:${i}`, 0);
    const a = peersOf(s.next(0, false));
    const perPeer = new Map<string, number>();
    for (const x of a) perPeer.set(x.peer, (perPeer.get(x.peer) ?? 0) + 1);
    t.equal(perPeer.size, 16, 'every unproven holder gets a trial request at once');
    t.ok(
      [...perPeer.values()].every((n) => n === 1),
      'one request each while unproven',
    );
    // One answers (a valid MS-PCCRR answer): it gets the full concurrency from then on.
    const first = a.find((x) => x.peer === 'tarpit:3')!;
    s.peerSucceeded('tarpit:3', first.block, BS, 5);
    const b = peersOf(s.next(6, false));
    t.equal(b.filter((x) => x.peer === 'tarpit:3').length, 16, 'answered: full per-peer concurrency');
    t.equal(b.filter((x) => x.peer !== 'tarpit:3').length, 0, 'the others still wait for their trial');
    // Blocks held only by peers busy with their trial are not kept from the origin.
    const s4 = mk(64, { peerConcurrency: 8, originConcurrency: 2, proven: () => false });
    s4.peerHasSegment('tarpit:a', 0);
    s4.peerHasSegment('tarpit:b', 0);
    const c4 = s4.next(0);
    t.equal(peersOf(c4).length, 2, 'one trial request per unproven holder');
    t.equal(originOf(c4).length, 0, 'a young trial keeps the blocks from the origin (a genuine peer answers in time)');
    t.ok(s4.nextWakeAt() !== undefined && s4.nextWakeAt()! <= 300, 'a wake-up at the end of the grace');
    const late = s4.next(300);
    t.equal(originOf(late).length, 1, 'then the origin goes on meanwhile (one blind stream)');
    const o = originOf(late)[0]!.block;
    t.equal(s4.whyOrigin(o, 300), 'peer-unproven', 'explain says why');
    s4.originSucceeded(o, 50);
    t.equal(originOf(s4.next(360)).length, 2, 'full origin concurrency while the trials are pending');
    // A block whose trial failed goes to the origin, not to the next new address that claims it.
    const s6 = mk(2, { peerConcurrency: 8, originConcurrency: 2, proven: () => false });
    s6.peerHasSegment('tarpit:a', 0);
    const [tr] = peersOf(s6.next(0, false));
    s6.peerFailed('tarpit:a', tr!.block, 'unusable', 1500);
    s6.peerHasSegment('tarpit:b', 0);
    const c6 = s6.next(1501);
    t.notOk(
      peersOf(c6).some((x) => x.block === tr!.block),
      'the failed block is not a new trial',
    );
    t.ok(
      originOf(c6).some((x) => x.block === tr!.block),
      'the origin takes it',
    );
    // A proven peer busy with all its slots still keeps its blocks from the origin.
    const s5 = mk(64, { peerConcurrency: 4, originConcurrency: 2, proven: () => true });
    s5.peerHasSegment('good:1', 0);
    const c5 = s5.next(0);
    t.equal(peersOf(c5).length, 4);
    t.equal(originOf(c5).length, 0, 'a busy proven holder: nothing from the origin');
    // A peer the retrieval client already knows as proven is not put on trial.
    const s2 = mk(64, { peerConcurrency: 8, proven: (a) => answered.has(a) });
    s2.peerHasSegment('good:1', 0);
    t.equal(peersOf(s2.next(0)).length, 8, 'proven elsewhere: full concurrency at once');
    // A valid "not available" answer also ends the trial.
    const s3 = mk(64, { peerConcurrency: 8, proven: () => false });
    s3.peerHasSegment('p:1', 0);
    const [c] = peersOf(s3.next(0, false));
    s3.peerFailed('p:1', c!.block, 'not-available', 1);
    t.equal(peersOf(s3.next(2, false)).length, 8, 'answered (not available): full concurrency');
  },
);

t.test('balancing by throughput and outstanding requests', async (t) => {
  const s = mk(64, { peerConcurrency: 8, totalPeerConcurrency: 8, originConcurrency: 0 });
  s.peerHasSegment('fast:1', 0);
  s.peerHasSegment('slow:1', 0);
  // Measure: fast does 64 KiB in 1 ms, slow in 100 ms.
  let a = peersOf(s.next(0));
  t.equal(a.length, 8);
  for (const x of a) s.peerSucceeded(x.peer, x.block, BS, x.peer === 'fast:1' ? 1 : 100);
  a = peersOf(s.next(20));
  const fast = a.filter((x) => x.peer === 'fast:1').length;
  t.equal(a.length, 8);
  t.ok(fast >= 7, `fast peer gets most of the work (${fast}/8)`);
  // With equal rates, outstanding requests spread the load.
  const e = mk(16, { peerConcurrency: 8, totalPeerConcurrency: 8, originConcurrency: 0 });
  e.peerHasSegment('a:1', 0);
  e.peerHasSegment('b:1', 0);
  const eq = peersOf(e.next(0));
  t.equal(eq.filter((x) => x.peer === 'a:1').length, 4);
  t.equal(eq.filter((x) => x.peer === 'b:1').length, 4);
});

t.test('transient failure: backoff, re-queue elsewhere, origin when no peer left', async (t) => {
  const s = mk(2, { peerConcurrency: 1, originConcurrency: 1 });
  s.peerHasSegment('p:1', 0);
  const [a] = peersOf(s.next(0));
  t.ok(a);
  s.peerFailed('p:1', a!.block, 'timeout', 5);
  const stat = s.peerStats()[0]!;
  t.equal(stat.failures, 1);
  t.ok(stat.backoffUntil > 5, 'backing off');
  const b = s.next(6);
  t.ok(
    b.every((x) => x.kind === 'origin'),
    'peer in backoff: origin takes over',
  );
  t.ok(s.nextWakeAt() !== undefined, 'a wake-up is scheduled for the end of the backoff');
  s.peerFailed('p:1', 1, 'timeout', 7); // (counts even when not its block; consecutive failures grow)
  t.ok(s.peerStats()[0]!.backoffUntil - 7 > stat.backoffUntil - 5, 'exponential backoff');
});

t.test('bad block bans the peer for the job; block re-queued to another peer', async (t) => {
  const s = mk(1, { originConcurrency: 1 });
  s.peerHasSegment('evil:1', 0);
  s.peerHasSegment('good:1', 0);
  s.peerSucceeded('good:1', 0, 1, 1000); // (make good slow so evil is chosen first)
  const s2 = mk(1, { originConcurrency: 1 });
  s2.peerHasSegment('evil:1', 0);
  const [a] = peersOf(s2.next(0));
  t.equal(a!.peer, 'evil:1');
  s2.peerHasSegment('good:1', 0);
  s2.peerFailed('evil:1', 0, 'bad-block', 1);
  const st = s2.peerStats().find((p) => p.address === 'evil:1')!;
  t.ok(st.banned);
  t.equal(st.badBlocks, 1);
  const [b] = s2.next(2);
  t.same(b, { kind: 'peer', block: 0, peer: 'good:1' }, 're-queued to the good peer');
  s2.peerSucceeded('good:1', 0, BS, 2);
  t.ok(s2.isDone());
});

t.test('not-available: peer forgets the block, origin takes it', async (t) => {
  const s = mk(3, { originConcurrency: 1 });
  s.peerHasSegment('p:1', 0);
  const a = peersOf(s.next(0));
  t.equal(a.length, 3);
  s.peerFailed('p:1', 1, 'not-available', 1);
  t.equal(s.peerStats()[0]!.notAvailable, 1);
  t.equal(s.peerStats()[0]!.backoffUntil, 0, 'no backoff for a plain miss');
  t.same(s.next(2), [{ kind: 'origin', block: 1 }]);
});

t.test('partial holders: only listed blocks go to the peer; growth marks it active', async (t) => {
  const s = mk(10, { originConcurrency: 0, peerConcurrency: 10 });
  s.peerBlocks('p:1', 0, [1, 3, 99, -1], 100);
  const a = peersOf(s.next(100));
  t.same(a.map((x) => x.block).sort(), [1, 3]);
  s.peerBlocks('p:1', 0, [...Array(10).keys()], 200);
  const b = peersOf(s.next(200));
  t.equal(b.length, 8, 'a complete list makes it a full holder');
});

t.test('origin failures: retry with backoff, then the job fails', async (t) => {
  const s = mk(1, { maxOriginAttempts: 3 });
  let now = 0;
  for (let i = 0; i < 3; i++) {
    let a = s.next(now);
    while (a.length === 0) {
      now = s.nextWakeAt()!;
      t.ok(now !== undefined);
      a = s.next(now);
    }
    t.same(a, [{ kind: 'origin', block: 0 }]);
    s.originFailed(0, 'error', now);
  }
  t.same(s.failed(), { block: 0, reason: 'origin', attempts: 3 });
  t.same(s.next(now + 1e6), []);
});

t.test('origin mismatch twice fails with reason mismatch', async (t) => {
  const s = mk(1);
  s.next(0);
  s.originFailed(0, 'mismatch', 0);
  t.equal(s.failed(), undefined, 'one retry');
  let a = s.next(0);
  if (a.length === 0) a = s.next(s.nextWakeAt()!);
  t.equal(a.length, 1);
  s.originFailed(0, 'mismatch', 1000);
  t.equal(s.failed()?.reason, 'mismatch');
});

t.test('origin failure with a peer holding the block does not fail the job', async (t) => {
  const s = mk(1, { maxOriginAttempts: 1 });
  s.next(0);
  s.peerHasSegment('p:1', 0);
  s.originFailed(0, 'error', 1);
  t.equal(s.failed(), undefined);
  t.same(s.next(2), [{ kind: 'peer', block: 0, peer: 'p:1' }]);
});

t.test('re-check before each origin fetch: a block a peer gained is not fetched from the origin', async (t) => {
  const s = mk(6, { originConcurrency: 1, random: () => 0 });
  const [a] = s.next(0);
  t.same(a, { kind: 'origin', block: 0 });
  s.peerBlocks('p:1', 0, [1], 10);
  s.originSucceeded(0, 50);
  const next = s.next(60);
  t.ok(next.some((x) => x.kind === 'peer' && x.block === 1));
  t.notOk(
    next.some((x) => x.kind === 'origin' && x.block === 1),
    'block 1 goes to the peer that has it',
  );
});

t.test('gap splitting: a long gap behind an active peer is entered in its middle half', async (t) => {
  for (const r of [0, 0.5, 0.99]) {
    const s = mk(100, { originConcurrency: 1, random: () => r });
    // Peer holds 0..9 and is growing (actively downloading from block 10 on).
    s.peerBlocks('p:1', 0, [...Array(10).keys()], 1000);
    const first = s.next(1000);
    t.ok(peersOf(first).length > 0, 'the peer gets the blocks it has');
    const [o] = originOf(first);
    // Candidates are 10..99 (90 blocks) consumed from 10 by the peer: start in [10+22, 10+68).
    t.ok(o && o.block >= 32 && o.block < 78, `entered at ${o?.block}, away from the consumer`);
  }
});

t.test('short gap behind an active peer: wait a bounded time, then fetch the far end', async (t) => {
  const s = mk(12, {
    originConcurrency: 1,
    visibilityLagMs: 100,
    originBlockMsPrior: 100,
    maxDeferMs: 2000,
    peerConcurrency: 16,
  });
  s.peerBlocks('p:1', 0, [...Array(10).keys()], 0);
  const a = s.next(0);
  t.equal(originOf(a).length, 0, 'blocks 10 and 11 are left to the active peer for now');
  const wake = s.nextWakeAt();
  t.ok(wake !== undefined && wake > 0 && wake <= 2000, `bounded wait (${wake} ms)`);
  // The peer gets block 10 meanwhile: only 11 remains, and it still waits.
  s.peerBlocks('p:1', 0, [...Array(11).keys()], 300);
  t.equal(originOf(s.next(300)).length, 0);
  // The peer stalls: after the bound, the origin fetches it.
  let now = 300;
  let got: Assignment[] = [];
  for (let i = 0; i < 10 && got.length === 0; i++) {
    now = s.nextWakeAt() ?? now + 500;
    got = originOf(s.next(now));
  }
  t.same(got, [{ kind: 'origin', block: 11 }]);
  t.ok(now <= 2300, `within the bound (${now} ms)`);
});

t.test('a gap nobody consumes is fetched without waiting', async (t) => {
  const s = mk(12, { originConcurrency: 1 });
  s.peerHasSegment('p:1', 0); // full holder is not downloading
  s.peerFailed('p:1', 0, 'bad-block', 0); // ...and banned
  t.same(
    s.next(1).map((x) => x.kind),
    ['origin'],
  );
});

/**
 * Discrete-time flash-crowd model: C schedulers for one file of N blocks; an origin request takes
 * T_ORIGIN ms, a peer block T_PEER ms; each client sees the others' blocks `lag` ms late (block
 * lists, or follow-up ProbeMatches). With `crowd`, clients know each other as crowd members (their
 * probes) from their start on, and use their identity for ownership. Client c starts at starts[c].
 */
function simulateCrowd(o: {
  n: number;
  clients: number;
  lag: number;
  crowd: boolean;
  starts?: number[];
  seed?: number;
}): { ratio: number; time: number; done: boolean } {
  const { n: N, clients: C, lag: LAG } = o;
  const T_ORIGIN = 100,
    T_PEER = 5;
  const starts = o.starts ?? new Array(C).fill(0);
  const names = Array.from({ length: C }, (_, i) => `c${i}:1`);
  const scheds = Array.from(
    { length: C },
    (_, i) =>
      new Scheduler({
        blocks: blocks(N),
        random: rng((o.seed ?? 100) + i),
        originConcurrency: 2,
        visibilityLagMs: LAG,
        originBlockMsPrior: T_ORIGIN,
        self: o.crowd ? `c${i}` : undefined,
      }),
  );
  const haveAt = Array.from({ length: C }, () => new Float64Array(N).fill(Infinity));
  // An origin range lands block by block (T_ORIGIN each), its request ending with the last block.
  type Flight = { c: number; a: Assignment; end: number; last: boolean };
  let flights: Flight[] = [];
  let originFetches = 0;
  let now = 0;
  for (; now < 120_000 && scheds.some((s) => !s.isDone()); now += 5) {
    const still: Flight[] = [];
    for (const f of flights) {
      if (f.end > now) {
        still.push(f);
        continue;
      }
      const s = scheds[f.c]!;
      if (f.a.kind === 'origin') s.originSucceeded(f.a.block, T_ORIGIN, f.last);
      else s.peerSucceeded(f.a.peer, f.a.block, BS, T_PEER);
      haveAt[f.c]![f.a.block] = Math.min(haveAt[f.c]![f.a.block]!, now);
    }
    flights = still;
    if (now % LAG === 0) {
      for (let c = 0; c < C; c++)
        for (let x = 0; x < C; x++) {
          if (x === c || starts[c]! > now) continue;
          const held: number[] = [];
          for (let g = 0; g < N; g++) if (haveAt[x]![g]! <= now) held.push(g);
          if (held.length) scheds[c]!.peerBlocks(names[x]!, 0, held, now);
        }
    }
    // Probes: a running client probes at its start and every 1000 ms; the others that run see it.
    if (o.crowd)
      for (let x = 0; x < C; x++)
        if (now >= starts[x]! && (now - starts[x]!) % 1000 === 0 && !scheds[x]!.isDone())
          for (let c = 0; c < C; c++) if (c !== x && now >= starts[c]!) scheds[c]!.crowdSeen(`c${x}`, now);
    for (let c = 0; c < C; c++) {
      if (now < starts[c]!) continue;
      for (const a of scheds[c]!.next(now)) {
        if (a.kind === 'origin') originFetches += a.count ?? 1;
        else if (haveAt[Number(a.peer.slice(1, -2))]![a.block]! > now) {
          scheds[c]!.peerFailed(a.peer, a.block, 'not-available', now);
          continue;
        }
        if (a.kind === 'peer') flights.push({ c, a, end: now + T_PEER, last: true });
        else
          for (let k = 0; k < (a.count ?? 1); k++)
            flights.push({
              c,
              a: { kind: 'origin', block: a.block + k },
              end: now + T_ORIGIN * (k + 1),
              last: k === (a.count ?? 1) - 1,
            });
      }
    }
  }
  return { ratio: originFetches / N, time: now, done: scheds.every((s) => s.isDone()) };
}

t.test('simulated flash crowd: 8 schedulers, shared view with lag, origin bytes close to 1x', async (t) => {
  // The view of other peers' blocks lags 300 ms; nobody knows the crowd before it sees blocks.
  const N = 256;
  const r = simulateCrowd({ n: N, clients: 8, lag: 300, crowd: false });
  t.ok(r.done, `all done at ${r.time} ms`);
  t.ok(r.ratio <= 1.15, `origin blocks / file blocks = ${r.ratio.toFixed(3)}`);
  // One client alone with 2 origin streams needs N/2 * 100 ms.
  const alone = (N / 2) * 100;
  t.ok(r.time <= 1.5 * alone, `all 8 done in ${r.time} ms vs ${alone} ms for one straight download`);
  t.comment(`flash crowd model: ratio ${r.ratio.toFixed(3)}, time ${r.time} ms (one client alone ${alone} ms)`);
});

t.test(
  'simulated small-file flash crowd: crowd members known by their probes share the origin blocks out',
  async (t) => {
    // 60 blocks (a 4 MiB v2 file), clients starting over 400 ms, view lag 100 ms (follow-ups).
    for (const seed of [100, 200, 300]) {
      const starts = [0, 30, 60, 120, 180, 250, 320, 400];
      const owned = simulateCrowd({ n: 60, clients: 8, lag: 100, crowd: true, starts, seed });
      const blind = simulateCrowd({ n: 60, clients: 8, lag: 100, crowd: false, starts, seed });
      t.ok(owned.done && blind.done, 'every client finished');
      t.ok(owned.ratio <= 1.15, `seed ${seed}: with crowd ownership, origin blocks / file = ${owned.ratio.toFixed(3)}`);
      t.ok(
        owned.ratio < blind.ratio,
        `seed ${seed}: fewer origin blocks than without it (${blind.ratio.toFixed(3)}); time ${owned.time} vs ${blind.time} ms`,
      );
    }
  },
);

t.test('crowd ownership: members with the same view take disjoint units of 4 blocks, in file order', async (t) => {
  const members = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
  const N = 256;
  const requests: Array<{ a: Assignment; now: number }> = [];
  const firstPicks = members.map((self) => {
    const s = new Scheduler({ blocks: blocks(N), random: rng(1), originConcurrency: 2, self });
    for (const m of members) s.crowdSeen(m, 0);
    const picks: number[] = [];
    // Each member fetches what it owns, in file order, nothing from the others; two requests per
    // 100 ms step from when the crowd settled, so the crowd is a second old before the shares are done.
    for (let now = 0; picks.length < N; now += 100) {
      for (const m of members) s.crowdSeen(m, now);
      const a = originOf(s.next(now));
      if (a.length === 0 && now < SETTLE_MS) continue;
      if (a.length === 0) break;
      for (const x of a) {
        requests.push({ a: x, now });
        picks.push(...originDone(s, x, 10));
      }
    }
    return picks;
  });
  const all = firstPicks.flat().sort((a, b) => a - b);
  t.same(all, [...new Set(all)], 'no block owned twice');
  t.equal(all.length, N, 'every block owned by someone');
  const early = requests.filter((r) => r.now < 1000);
  const late = requests.filter((r) => r.now >= 1000);
  t.ok(
    early.every((r) => r.a.kind === 'origin' && r.a.count === undefined),
    `while the crowd is new (under 1 s): one block per request (${early.length})`,
  );
  const span = (a: Assignment) => (a.kind === 'origin' ? (a.count ?? 1) : 1);
  t.ok(
    late.length > 0 && late.every((r) => (r.a.block % 4) + span(r.a) === 4),
    `then each request runs to the end of its unit of 4 blocks (${late.length})`,
  );
  t.ok(
    late.filter((r) => span(r.a) === 4).length >= late.length / 2,
    `mostly whole units: ${late.map((r) => span(r.a)).join(' ')}`,
  );
  t.ok(
    firstPicks.every((p) => p.length >= 32 && p.length <= 112),
    `shares: ${firstPicks.map((p) => p.length).join(', ')}`,
  );
});

t.test("crowd ownership: a silent member's blocks go to its stand-ins one grace period apart", async (t) => {
  // Three members: we and two others that never deliver. For each of their blocks we are the
  // first or second stand-in: first stand-in blocks come one grace period (3 x the 250 ms origin
  // block time) after we ran out of our own, second stand-in blocks two.
  const self = '10.0.0.1';
  const s = new Scheduler({ blocks: blocks(48), random: rng(1), originConcurrency: 2, self });
  s.crowdSeen('10.0.0.2', 0);
  s.crowdSeen('10.0.0.3', 0);
  const mine: number[] = [];
  let now = 0;
  for (; now < SETTLE_MS + 100; now++) for (const a of originOf(s.next(now))) mine.push(...originDone(s, a, 250));
  t.ok(mine.length > 0 && mine.length < 48, `we own ${mine.length} of 48 blocks`);
  t.same(originOf(s.next(now)), [], 'then nothing: the rest belongs to the others');
  const takenAt = new Map<number, number>();
  for (; now < 3000 && !s.isDone(); now += 10) {
    s.crowdSeen('10.0.0.2', now);
    s.crowdSeen('10.0.0.3', now);
    for (const a of originOf(s.next(now))) for (const g of originDone(s, a, 250)) takenAt.set(g, now);
  }
  t.ok(s.isDone(), 'the download completes without the silent members');
  // Our own blocks were all out by ~15 ms after the crowd settled; the grace is 3 x the 250 ms
  // origin block time (then two blocks per 10 ms step: the origin streams of a crowd).
  const at = [...takenAt.values()].map((x) => x - SETTLE_MS);
  const first = at.filter((x) => x >= 750 && x < 1000).length;
  const second = at.filter((x) => x >= 1500 && x < 1750).length;
  t.equal(first + second, at.length, `every stand-in block one or two grace periods late (${at.join(', ')})`);
  t.ok(first > 0 && second > 0, `${first} blocks as first stand-in, ${second} as second`);
});

t.test(
  'crowd ownership: a hosted cache (relay) is never a member; no ownership while the crowd is not visible',
  async (t) => {
    const self = '10.0.0.1';
    /**
     * Blocks taken at once once the crowd settled (no more time passes, so no grace period ends)
     * with the given setup.
     */
    const firstPicks = (setup: (s: Scheduler) => void, crowdVisible?: () => boolean) => {
      const s = new Scheduler({ blocks: blocks(64, 1), random: rng(3), originConcurrency: 2, self, crowdVisible });
      s.crowdSeen('10.0.0.2', 0);
      setup(s);
      const picks: number[] = [];
      for (const x of originOf(s.next(1))) picks.push(...originDone(s, x, 10));
      for (let k = 0; k < 64; k++) {
        const a = originOf(s.next(1 + SETTLE_MS));
        if (a.length === 0) break;
        for (const x of a) picks.push(...originDone(s, x, 10));
      }
      return picks.sort((a, b) => a - b);
    };
    const twoMembers = firstPicks(() => undefined);
    t.ok(twoMembers.length > 10 && twoMembers.length < 54, `two members: we own ${twoMembers.length} of 64`);
    // A hosted cache whose holdings grow (other clients offered segment 63 to it).
    const grows = (s: Scheduler) => s.peerHasSegment('10.0.0.9:80', 63, 0);
    t.same(
      firstPicks((s) => {
        s.peerIsRelay('10.0.0.9:80');
        grows(s);
      }),
      twoMembers.filter((g) => g !== 63),
      'a relay peer does not change who owns what',
    );
    t.notSame(
      firstPicks(grows),
      twoMembers.filter((g) => g !== 63),
      'the same peer not marked as a relay counts as a third member',
    );
    let visible = false;
    t.equal(
      firstPicks(
        () => undefined,
        () => visible,
      ).length,
      64,
      'crowd not visible: every block at once (no ownership)',
    );
    visible = true;
    t.same(
      firstPicks(
        () => undefined,
        () => visible,
      ),
      twoMembers,
      'visible: ownership as without the option',
    );
  },
);

t.test('whyOrigin: the reason a block goes to the origin (peerdist explain)', async (t) => {
  const s = mk(4);
  t.equal(s.whyOrigin(0, 0), 'no-peer-found', 'discovery found nobody');
  s.peerBlocks('a:1', 0, [1], 0);
  t.equal(s.whyOrigin(0, 0), 'not-held', 'a peer is known but holds other blocks');
  s.peerBlocks('a:1', 0, [0, 1, 2], 0);
  s.peerFailed('a:1', 0, 'timeout', 10);
  t.equal(s.whyOrigin(0, 10), 'peer-timeout', 'its holder timed out');
  s.peerFailed('a:1', 1, 'error', 10);
  t.equal(s.whyOrigin(1, 10), 'peer-failed', 'its holder failed');
  s.peerFailed('a:1', 2, 'bad-block', 10);
  t.equal(s.whyOrigin(2, 10), 'peer-banned', 'its only holder is banned');
  s.peerFailed('a:1', 0, 'not-available', 20);
  t.equal(s.whyOrigin(3, 20), 'not-held');
});

t.test('liveness: with trial peers, tarpits, failures and late claims, every run finishes', async (t) => {
  // A discrete-event loop: a stall (blocks missing, nothing in flight, no wake-up scheduled) is a
  // scheduler bug (one such state, a failed trial block held by an idle new trial peer, once hung
  // a real download).
  let stalls = 0;
  let unfinished = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const r = rng(seed);
    const n = 8 + Math.floor(r() * 56);
    const answered = new Set<string>();
    const s = new Scheduler({
      blocks: blocks(n, 1 + Math.floor(r() * n)),
      random: rng(seed + 1000),
      originConcurrency: 1 + Math.floor(r() * 4),
      peerConcurrency: 1 + Math.floor(r() * 8),
      proven: r() < 0.8 ? (a) => answered.has(a) : undefined,
      // Origin ranges (issue 11): half the runs let one request cover up to 16 adjacent blocks.
      originRunBlocks: r() < 0.5 ? 1 + Math.floor(r() * 16) : 1,
      aloneAfterMs: Math.floor(r() * 300),
    });
    const segs = Math.ceil(n / (s.blocksInSegment(0) || 1));
    const kinds = new Map<string, 'good' | 'tarpit' | 'flaky' | 'liar'>();
    const addPeer = (now: number) => {
      const addr = `p${kinds.size}:1`;
      const k = (['good', 'tarpit', 'flaky', 'liar'] as const)[Math.floor(r() * 4)]!;
      kinds.set(addr, k);
      for (let seg = 0; seg < segs; seg++) if (r() < 0.7) s.peerHasSegment(addr, seg, r() < 0.3 ? now : undefined);
    };
    const flights: Array<{ a: Assignment; end: number }> = [];
    let now = 0;
    let steps = 0;
    for (let i = 0; i < Math.floor(r() * 4); i++) addPeer(0);
    while (!s.isDone() && !s.failed() && steps++ < 20_000) {
      for (const a of s.next(now, now >= 50)) {
        const k = a.kind === 'peer' ? kinds.get(a.peer)! : 'origin';
        flights.push({ a, end: now + (k === 'tarpit' ? 1500 : k === 'origin' ? 20 + r() * 80 : 1 + r() * 10) });
      }
      const wake = s.nextWakeAt();
      if (flights.length === 0 && wake === undefined && now >= 50) {
        stalls++;
        t.fail(`seed ${seed}: stalled at ${now} ms with ${s.total - s.completed} blocks missing`);
        break;
      }
      flights.sort((x, y) => x.end - y.end);
      const f = flights[0];
      const nextAt = Math.min(f?.end ?? Infinity, wake ?? Infinity, now < 50 ? 50 : Infinity);
      now = Math.max(now + 0.001, nextAt);
      if (r() < 0.02) addPeer(now); // discovery keeps finding peers, tarpits among them
      if (!f || f.end > now) continue;
      flights.shift();
      const { a } = f;
      if (a.kind === 'origin') {
        // As fetchFromOrigin reports a range: blocks succeed in order until one fails; the blocks
        // after a failure go back unfetched; then the request's slot is freed.
        const count = a.count ?? 1;
        let failedAt = -1;
        for (let g = a.block; g < a.block + count; g++) {
          if (failedAt >= 0) s.originSkipped(g, false);
          else if (r() < 0.05) {
            failedAt = g;
            s.originFailed(g, r() < 0.2 ? 'mismatch' : 'error', now, false);
          } else s.originSucceeded(g, 50, false);
        }
        s.originRequestEnded();
        continue;
      }
      const k = kinds.get(a.peer)!;
      if (k === 'good') {
        answered.add(a.peer);
        s.peerSucceeded(a.peer, a.block, BS, 5);
      } else if (k === 'tarpit') s.peerFailed(a.peer, a.block, 'unusable', now);
      else if (k === 'liar') {
        answered.add(a.peer);
        s.peerFailed(a.peer, a.block, 'not-available', now);
      } else if (r() < 0.5) {
        answered.add(a.peer);
        s.peerSucceeded(a.peer, a.block, BS, 5);
      } else s.peerFailed(a.peer, a.block, r() < 0.5 ? 'timeout' : 'busy', now);
    }
    if (!s.isDone() && !s.failed()) unfinished++;
  }
  t.equal(stalls, 0, 'no stall in 200 random runs');
  t.equal(unfinished, 0, 'every run finished (done, or failed by the origin retry limit)');
});

t.test(
  'origin ranges: alone, one request covers up to originRunBlocks adjacent blocks; every block assigned once; a failed range releases its blocks',
  async (t) => {
    const n = 100;
    const s = mk(n, { originConcurrency: 3, originRunBlocks: 8, aloneAfterMs: 500 });
    const span = (a: Assignment) => (a.kind === 'origin' ? (a.count ?? 1) : 1);
    const seen = new Uint8Array(n);
    const take = (as: Assignment[]) => {
      for (const a of as) {
        t.equal(a.kind, 'origin');
        t.ok(a.block + span(a) <= n, 'a range never wraps around the end');
        for (let g = a.block; g < a.block + span(a); g++) {
          t.equal(seen[g], 0, `block ${g} assigned once`);
          seen[g] = 1;
        }
      }
    };
    const finish = (as: Assignment[]) => {
      for (const a of as)
        for (let g = a.block; g < a.block + span(a); g++) s.originSucceeded(g, 10, g === a.block + span(a) - 1);
    };
    const first = s.next(0);
    t.equal(first.length, 1, 'blind start: one stream');
    t.equal(span(first[0]!), 1, 'blind start: one block per request');
    take(first);
    finish(first);
    const short = s.next(1);
    t.ok(
      short.length === 3 && short.every((a) => span(a) === 1),
      'full concurrency, one block per request until alone for aloneAfterMs',
    );
    t.equal(s.nextWakeAt(), 500, 'a wake-up when the wait ends');
    take(short);
    finish(short);
    let now = 600;
    const ranges = s.next(now);
    t.equal(ranges.length, 3, 'full concurrency once alone');
    t.ok(
      ranges.every((a) => span(a) === 8),
      'ranges of 8 blocks',
    );
    take(ranges);
    // The first range fails at its second block: that one is retried later, the rest go back unfetched.
    const bad = ranges[0]!;
    s.originSucceeded(bad.block, 10, false);
    s.originFailed(bad.block + 1, 'error', now, false);
    seen[bad.block + 1] = 0;
    for (let g = bad.block + 2; g < bad.block + span(bad); g++) {
      s.originSkipped(g, false);
      seen[g] = 0;
    }
    s.originRequestEnded();
    finish(ranges.slice(1));
    t.equal(s.completed, 1 + 3 + 1 + 16, 'blocks completed so far');
    for (let round = 0; round < 200 && !s.isDone(); round++) {
      now += 1000;
      const as = s.next(now);
      take(as);
      finish(as);
    }
    t.ok(s.isDone(), 'all blocks fetched');
    t.equal(s.failed(), undefined);
  },
);

t.test('origin ranges: with a peer known, one block per origin request', async (t) => {
  const s = mk(64, { originConcurrency: 6, originRunBlocks: 16, aloneAfterMs: 0 });
  const first = s.next(0);
  s.originSucceeded(first[0]!.block, 10);
  t.ok(
    originOf(s.next(1)).some((a) => (a.kind === 'origin' ? (a.count ?? 1) : 1) > 1),
    'alone: ranges',
  );
  const s2 = mk(64, { originConcurrency: 6, originRunBlocks: 16, aloneAfterMs: 0 });
  s2.originSucceeded(s2.next(0)[0]!.block, 10);
  s2.peerBlocks('p:1', 0, [40], 1);
  const as = originOf(s2.next(2));
  t.ok(as.length > 0, 'origin requests go on');
  for (const a of as) t.equal(a.kind === 'origin' ? (a.count ?? 1) : 1, 1, 'one block each');
});

t.test('alone with a reader: origin runs start at the reader, not at a random point', async (t) => {
  const s = mk(200, { originConcurrency: 2, originRunBlocks: 4, aloneAfterMs: 0, random: () => 0.7 });
  s.setReaderAt(0);
  const first = s.next(0);
  t.equal(first[0]!.block, 140, 'blind start: a random rotation (others may be starting too)');
  s.originSucceeded(first[0]!.block, 10);
  const as = originOf(s.next(1));
  t.same(
    as.map((a) => [a.block, a.kind === 'origin' ? a.count : 0]),
    [
      [0, 4],
      [4, 4],
    ],
    'alone: runs from the reader on',
  );
  s.setReaderAt(100);
  for (const a of as) for (let g = a.block; g < a.block + 4; g++) s.originSucceeded(g, 10, g === a.block + 3);
  t.equal(originOf(s.next(2))[0]!.block, 100, 'they follow the reader when it moves');
});
