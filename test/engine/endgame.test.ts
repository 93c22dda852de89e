/**
 * The end of a flash crowd (issue 26): a download never waits for a peer while a free source
 * could serve its missing blocks. Discrete-event models of 16 real Schedulers with an injected
 * clock: peers that are starved of CPU (their answers time out), quarantined or gone, and crowd
 * members whose blocks stay unfetched. No wall-clock time is involved; every figure is simulated.
 */
import t from 'tap';
import { type Assignment, type BlockDesc, type PeerFailure, Scheduler } from '../../src/engine/scheduler.js';
import { rng } from '../helpers/rng.js';

const BS = 65536;
function blocks(n: number): BlockDesc[] {
  return Array.from({ length: n }, (_, g) => ({ seg: g, index: 0, length: BS }));
}
const host = (c: number) => `10.0.0.${c + 1}`;
const addr = (c: number) => `${host(c)}:80`;

interface CrowdModel {
  n: number;
  clients: number;
  /** Origin time per block and stream (ms), and origin streams per client. */
  tOrigin: number;
  /** A peer block (ms). */
  tPeer: number;
  /** How stale a client's view of the others' blocks is (follow-up ProbeMatches). */
  lag: number;
  /** Clients whose daemons are starved: every request to them times out after `timeoutMs`. */
  starved?: Set<number>;
  /** How often a starved client's own scheduler runs (its CPU share), ms. */
  starvedTickMs?: number;
  /** Clients that die (stop everything, answer nothing) at the given time. */
  diesAt?: Map<number, number>;
  timeoutMs?: number;
  seed?: number;
  /**
   * Share of requests to a healthy holder that time out all the same (every daemon starved of CPU
   * in turn: its answers come late, its own origin fetches go on at the crowd's pace).
   */
  flaky?: number;
  /**
   * Share of the others' new blocks a client never hears of (each client, holder and block drawn
   * on its own): a holder's follow-up ProbeMatch reaches only the members that probed that segment
   * lately (protocol/pccrd.md), so in a real crowd many holdings are learnt late or not at all.
   */
  lost?: number;
  /**
   * Before each origin fetch, the pre-origin re-check (src/engine/fetch-origin.ts): the peers
   * Scheduler.recheckPeers names (at most this many) are asked whether they hold the block; a
   * healthy holder says yes at once and the fetch is dropped (Scheduler.originSkipped).
   */
  recheck?: number;
  /**
   * How often each client probes (ms; default 1000, all at once), each client at its own phase, and
   * the share of probes a client does not hear (each client and probe drawn on its own). In a
   * 32-client crowd a member probes every 3-4.5 s (src/discovery/prober.ts, crowd factor) and a
   * member starved of CPU hears it late or not within the 5 s member window: members rank over
   * differing views. (The first probe, at the start, reaches everybody: the daemon retransmits it
   * and replays the probes of the last 3 s to a download that starts.)
   */
  probeEveryMs?: number;
  probeLost?: number;
  /** Scheduler's crowdShadow (default true): false runs the rule of "Flash crowds" 15 off. */
  shadow?: boolean;
}

interface CrowdResult {
  finished: number[];
  origin: number;
  /** Blocks fetched from the origin by two clients that each ranked itself the block's owner. */
  twoOwners: number;
  /** Origin fetches the re-check dropped (a peer held the block). */
  skipped: number;
}

/**
 * Runs the crowd in 5 ms steps. A peer request goes to the named client: it answers in tPeer if
 * it holds the block and is healthy, "not available" if it lacks it, and times out after
 * timeoutMs if it is starved or dead. A running client probes every 1000 ms (crowdSeen at the
 * others). A starved client's own scheduler runs only every starvedTickMs and its origin blocks
 * take 4 x tOrigin. Returns when each client finished and the origin blocks fetched / file.
 */
function runCrowd(m: CrowdModel): CrowdResult {
  const C = m.clients;
  const N = m.n;
  const timeoutMs = m.timeoutMs ?? 2000;
  const starvedTick = m.starvedTickMs ?? 5;
  const scheds = Array.from(
    { length: C },
    (_, c) =>
      new Scheduler({
        blocks: blocks(N),
        random: rng((m.seed ?? 1) * 100 + c),
        originConcurrency: 2,
        visibilityLagMs: m.lag,
        originBlockMsPrior: m.tOrigin,
        self: host(c),
        ...(m.shadow === false ? { crowdShadow: false } : {}),
      }),
  );
  const haveAt = Array.from({ length: C }, () => new Float64Array(N).fill(Infinity));
  const finished = new Array<number>(C).fill(Infinity);
  type Flight = { c: number; a: Assignment; end: number; last: boolean; fail?: PeerFailure };
  let flights: Flight[] = [];
  const originOut = new Array<number>(C).fill(0);
  const peerOut = Array.from({ length: C }, () => new Set<number>());
  const originInflightBlocks = Array.from({ length: C }, () => new Set<number>());
  let origin = 0;
  const flakyRandom = rng((m.seed ?? 1) * 7919 + 13);
  const ownerPicks = new Uint8Array(N);
  const dead = (c: number, now: number) => (m.diesAt?.get(c) ?? Infinity) <= now;
  /** Blocks each client gained, in order, and how far each client has seen them. */
  const gained = Array.from({ length: C }, () => [] as Array<{ g: number; at: number }>);
  const seen = Array.from({ length: C }, () => new Uint32Array(C));
  const lostRandom = rng((m.seed ?? 1) * 4241 + 29);
  let skipped = 0;
  const gain = (c: number, g: number, at: number) => {
    if (haveAt[c]![g]! !== Infinity) return;
    haveAt[c]![g] = at;
    gained[c]!.push({ g, at });
  };
  const probeEvery = m.probeEveryMs ?? 1000;
  const probeRandom = rng((m.seed ?? 1) * 6151 + 3);
  // (Every client probes at its start, then every probeEvery from its own phase.)
  const phase = Array.from({ length: C }, () =>
    m.probeEveryMs ? 5 + Math.floor((probeRandom() * (probeEvery - 5)) / 5) * 5 : probeEvery,
  );
  let now = 0;
  for (; now < 300_000; now += 5) {
    const alive = [...Array(C).keys()].filter((c) => !dead(c, now));
    if (alive.every((c) => scheds[c]!.isDone())) break;
    const still: Flight[] = [];
    for (const f of flights) {
      if (f.end > now) {
        still.push(f);
        continue;
      }
      if (dead(f.c, now)) continue;
      const s = scheds[f.c]!;
      if (f.a.kind === 'origin') {
        s.originSucceeded(f.a.block, m.tOrigin, f.last);
        if (f.last) originOut[f.c]!--;
        originInflightBlocks[f.c]!.delete(f.a.block);
        gain(f.c, f.a.block, now);
      } else {
        peerOut[f.c]!.delete(f.a.block);
        if (f.fail) s.peerFailed(f.a.peer, f.a.block, f.fail, now);
        else {
          s.peerSucceeded(f.a.peer, f.a.block, BS, m.tPeer);
          gain(f.c, f.a.block, now);
        }
      }
      if (s.isDone() && finished[f.c] === Infinity) finished[f.c] = now;
    }
    flights = still;
    // The others' blocks, seen `lag` late (follow-up ProbeMatches name each new block).
    if (now % m.lag === 0)
      for (const c of alive)
        for (let x = 0; x < C; x++) {
          if (x === c) continue;
          const ev = gained[x]!;
          let k = seen[c]![x]!;
          for (; k < ev.length && ev[k]!.at <= now - m.lag; k++)
            if (m.lost === undefined || lostRandom() >= m.lost) scheds[c]!.peerHasSegment(addr(x), ev[k]!.g, now);
          seen[c]![x] = k;
        }
    for (const x of alive)
      if ((now === 0 || (now >= phase[x]! && (now - phase[x]!) % probeEvery === 0)) && !scheds[x]!.isDone())
        for (const c of alive)
          if (c !== x && (now === 0 || m.probeLost === undefined || probeRandom() >= m.probeLost))
            scheds[c]!.crowdSeen(host(x), now);
    for (const c of alive) {
      const s = scheds[c]!;
      if (s.isDone()) continue;
      if (m.starved?.has(c) && now % starvedTick !== 0) continue;
      const as = s.next(now);
      for (const a of as) {
        if (a.kind === 'origin') {
          const count = a.count ?? 1;
          // The pre-origin re-check, for the run's first block (fetch-origin.ts asks per segment; a
          // yes for the first block drops the whole run here, a simplification).
          const asked = m.recheck ? s.recheckPeers(a.block, now, m.recheck, a.block) : [];
          const holder = asked.find((p) => {
            const x = Number(p.split('.')[3]!.split(':')[0]) - 1;
            return !dead(x, now) && !m.starved?.has(x) && haveAt[x]![a.block]! <= now;
          });
          if (holder !== undefined) {
            s.peerHasSegment(holder, a.block, now);
            for (let k = 0; k < count; k++) s.originSkipped(a.block + k, false);
            s.originRequestEnded();
            skipped++;
            continue;
          }
          origin += count;
          for (let k = 0; k < count; k++) if (s.crowdRank(a.block + k) === 0) ownerPicks[a.block + k]!++;
          originOut[c]!++;
          const slow = m.starved?.has(c) ? 4 : 1;
          for (let k = 0; k < count; k++) {
            originInflightBlocks[c]!.add(a.block + k);
            flights.push({
              c,
              a: { kind: 'origin', block: a.block + k },
              end: now + m.tOrigin * slow * (k + 1),
              last: k === count - 1,
            });
          }
          continue;
        }
        const x = Number(a.peer.split('.')[3]!.split(':')[0]) - 1;
        peerOut[c]!.add(a.block);
        if (dead(x, now) || m.starved?.has(x) || (m.flaky !== undefined && flakyRandom() < m.flaky))
          flights.push({ c, a, end: now + timeoutMs, last: true, fail: 'timeout' });
        else if (haveAt[x]![a.block]! > now) flights.push({ c, a, end: now + 1, last: true, fail: 'not-available' });
        else flights.push({ c, a, end: now + m.tPeer, last: true });
      }
    }
  }
  return { finished, origin: origin / N, twoOwners: ownerPicks.filter((k) => k > 1).length, skipped };
}

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  return a[Math.floor(a.length / 2)]!;
}

t.test('16-client crowd with starved and dying members: no stragglers, about one copy from the origin', async (t) => {
  for (const seed of [1, 2, 3, 4]) {
    const r0 = rng(seed);
    const pick = () => Math.floor(r0() * 16);
    const starved = new Set([pick(), pick(), pick()]);
    const dies = pick();
    starved.delete(dies);
    const r = runCrowd({
      n: 256,
      clients: 16,
      tOrigin: 400,
      tPeer: 5,
      lag: 100,
      starved,
      starvedTickMs: 200,
      diesAt: new Map([[dies, 2000 + Math.floor(r0() * 3000)]]),
      seed,
    });
    const done = r.finished.filter((_, c) => c !== dies);
    const med = median(done);
    const last = Math.max(...done);
    t.comment(
      `seed ${seed}: starved ${[...starved].join(',')}, dies ${dies}: median ${med} ms, last ${last} ms, origin ${r.origin.toFixed(2)} copies`,
    );
    t.ok(done.every(Number.isFinite), `seed ${seed}: every live client finished`);
    // Before the fix (issue 26) the last client came 2.3-4.7 s after the median in these runs: the
    // blocks owned by starved or dead members waited a grace period per rank for them.
    t.ok(last - med <= 1500, `seed ${seed}: the last client within 1.5 s of the median: ${last - med} ms`);
    t.ok(r.origin <= 1.35, `seed ${seed}: origin blocks / file ${r.origin.toFixed(2)}`);
  }
});

t.test('16-client crowd: a block whose every holder is failing goes to the origin at once', async (t) => {
  // Every member but us finished long ago (they hold everything) and now times out on us; they
  // probed within the member window, so they still count as the crowd.
  const N = 64;
  const s = new Scheduler({
    blocks: blocks(N),
    random: rng(7),
    originConcurrency: 2,
    originBlockMsPrior: 400,
    self: host(0),
  });
  for (let x = 1; x < 16; x++) s.crowdSeen(host(x), 0);
  for (let x = 1; x < 16; x++) for (let g = 0; g < N; g++) s.peerHasSegment(addr(x), g);
  // Each holder fails one request with a timeout: every one is backing off now.
  let now = 10;
  const peerReqs = s.next(now).filter((a) => a.kind === 'peer');
  t.ok(peerReqs.length > 0, 'the holders are asked first');
  for (const a of peerReqs) if (a.kind === 'peer') s.peerFailed(a.peer, a.block, 'timeout', now);
  for (let x = 1; x < 16; x++) {
    // Make sure every holder is backing off (those that were not asked fail a request too).
    if (!peerReqs.some((a) => a.kind === 'peer' && a.peer === addr(x))) s.peerFailed(addr(x), 0, 'timeout', now);
  }
  // From here on nothing can come from a peer: two origin streams must stay busy until done
  // (before the fix, blocks waited a grace period per rank for owners that already held them).
  let inflight: Array<{ a: Assignment; end: number }> = [];
  const out = new Set<number>();
  let idle = 0;
  for (; now < 60_000 && !s.isDone(); now += 10) {
    for (const f of inflight.filter((f) => f.end <= now)) {
      const a = f.a;
      const count = a.kind === 'origin' ? (a.count ?? 1) : 1;
      for (let k = 0; k < count; k++) {
        s.originSucceeded(a.block + k, 400, k === count - 1);
        out.delete(a.block + k);
      }
    }
    inflight = inflight.filter((f) => f.end > now);
    // Peer requests fail at once (as a quarantined address does), so ask again in the same step.
    for (let more = true; more; ) {
      more = false;
      for (const a of s.next(now)) {
        if (a.kind === 'peer') {
          s.peerFailed(a.peer, a.block, 'timeout', now);
          more = true;
          continue;
        }
        for (let k = 0; k < (a.count ?? 1); k++) out.add(a.block + k);
        inflight.push({ a, end: now + 400 * (a.count ?? 1) });
      }
    }
    let missingIdle = false;
    for (let g = 0; g < N; g++) if (!s.hasBlock(g) && !out.has(g)) missingIdle = true;
    // (Until the first origin block has arrived a download uses one stream: a blind start.)
    if (s.completed > 0 && inflight.length < 2 && missingIdle) idle++;
  }
  t.ok(s.isDone(), `done at ${now} ms`);
  t.equal(idle, 0, 'no 10 ms step with an origin stream idle while blocks were missing');
});

t.test('16-client crowd whose members all answer late at times: one crowd, one owner per block', async (t) => {
  // Every daemon starved of CPU in turn (issue 25 target 4): a third of the requests to a holder
  // time out, and the asker backs off from it, but every member's own origin fetches go on at the
  // crowd's pace and everybody sees each member's blocks arrive. Leaving a member out of the crowd
  // because our requests to it failed gave each member its own crowd (a real 16-client crowd's
  // members ranked over 1-15 of 15 others), and the owners of a unit in each view all fetched it.
  for (const seed of [1, 2]) {
    const r = runCrowd({ n: 192, clients: 16, tOrigin: 400, tPeer: 20, lag: 300, flaky: 0.33, seed });
    const done = r.finished;
    const med = median(done),
      last = Math.max(...done);
    // (Not asserted: the last client, 2.7-6.3 s after the median here, 5.6-5.7 s before the fix,
    // waits for peer requests that time out; that is the block path's starvation, not ownership.)
    t.comment(`seed ${seed}: median ${med} ms, last ${last} ms, origin ${r.origin.toFixed(2)} copies`);
    t.ok(done.every(Number.isFinite), `seed ${seed}: every client finished`);
    t.equal(
      r.twoOwners,
      0,
      `seed ${seed}: blocks fetched by two members that each ranked itself owner: ${r.twoOwners}`,
    );
    t.ok(r.origin <= 1.1, `seed ${seed}: origin blocks / file ${r.origin.toFixed(2)}`);
  }
});

t.test("16-client crowd that hears few of the others' blocks: the re-check asks the likely holders", async (t) => {
  // Issue 25 target 4: in the real crowds most second copies were picked seconds after another
  // member had stored the block, by a member that knew that member but not that it held the block.
  // Here each client hears of only 1 in 10 of the others' new blocks. The pre-origin re-check asks
  // 8 of the 15 peers; asking the first 8 in the order we met them found the block's fetcher only
  // when it happened to be among them (1.30-1.32 copies on the engine before). Asking by the
  // block's rendezvous ranking (its owner, then its stand-ins) finds it (1.11-1.13).
  for (const seed of [1, 2]) {
    const r = runCrowd({ n: 192, clients: 16, tOrigin: 400, tPeer: 20, lag: 300, lost: 0.9, recheck: 8, seed });
    const med = median(r.finished),
      last = Math.max(...r.finished);
    t.comment(
      `seed ${seed}: median ${med} ms, last ${last} ms, origin ${r.origin.toFixed(2)} copies, ${r.skipped} origin fetches dropped by the re-check`,
    );
    t.ok(r.finished.every(Number.isFinite), `seed ${seed}: every client finished`);
    t.ok(r.origin <= 1.2, `seed ${seed}: origin blocks / file ${r.origin.toFixed(2)}`);
  }
});

t.test(
  'crowd whose members hear few of the probes: a member left out of the view still shadows its units',
  async (t) => {
    // Issue 25 target 4 / issue 24 item 5: in the real crowds most later copies were fetched by two
    // members that each ranked itself the block's owner (32 clients: members ranked over p10/p50/p90
    // 8/19/25 of 31). Here each client probes every 3 s after its first probe, each repeat reaches
    // each other client with probability 0.5, holdings are heard 1 in 20, and a third of the peer
    // requests time out (the asker backs off): a member drops out of another's view (not seen within
    // the 5 s member window, or failing it) and comes back. The same crowd, the same seeds, with and
    // without the rule. Without it (the engine before), 13-14 blocks were fetched by two self-ranked
    // owners and 1.46-1.54 copies came from the origin; with it, 0 and 1.33-1.47.
    for (const seed of [1, 2]) {
      const model = {
        n: 192,
        clients: 16,
        tOrigin: 400,
        tPeer: 20,
        lag: 300,
        lost: 0.95,
        flaky: 0.3,
        recheck: 8,
        probeEveryMs: 3000,
        probeLost: 0.5,
        seed,
      };
      const before = runCrowd({ ...model, shadow: false });
      const r = runCrowd(model);
      const med = median(r.finished),
        last = Math.max(...r.finished);
      t.comment(
        `seed ${seed}: without the rule ${before.origin.toFixed(3)} copies, ${before.twoOwners} blocks by two self-ranked owners, last client ${Math.max(...before.finished)} ms; with it ${r.origin.toFixed(3)}, ${r.twoOwners}, median ${med} ms, last ${last} ms`,
      );
      t.ok(r.finished.every(Number.isFinite), `seed ${seed}: every client finished`);
      t.equal(r.twoOwners, 0, `seed ${seed}: blocks fetched by two members that each ranked itself owner`);
      t.ok(
        r.origin < before.origin,
        `seed ${seed}: fewer origin copies with the rule: ${r.origin.toFixed(3)} < ${before.origin.toFixed(3)}`,
      );
      t.ok(r.origin <= 1.5, `seed ${seed}: origin blocks / file ${r.origin.toFixed(3)}`);
    }
  },
);
