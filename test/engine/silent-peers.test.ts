/**
 * Issue 27.9: tarpit peers (addresses a LAN host names in ProbeMatches for every segment, which
 * accept connections and never answer) tripled a v2 download: each silent address cost four
 * timeouts before it was dropped, and a v2 holder that keeps being sighted counted as an active
 * crowd member the whole time (fewer origin streams, blocks left to it). The design: an address
 * that never answered gets one trial request; when that fails it is dropped for the job at once,
 * its block goes elsewhere at once, and it is neither an active peer nor a crowd member unless the
 * retrieval client comes to know it as proven. Whole downloads run here on the scheduler with an
 * injected clock (origin block 50 ms, a tarpit request fails after the 1.5 s trial timer, the
 * tarpit re-sighted every second), so every count and time below is exact, not measured.
 */
import t from 'tap';
import { type Assignment, Scheduler, TRIAL_GRACE_MS } from '../../src/engine/scheduler.js';

const BS = 65536;
const N = 200; // v2: one block per segment
const ORIGIN_MS = 50;
const TRIAL_TIMEOUT_MS = 1500;

interface Run {
  ms: number;
  requestsTo: Map<string, number>;
  /** Per tarpit failure: when it failed, and when its block was next assigned (and to whom). */
  handoffs: Array<{ failedAt: number; block: number; nextAt: number; to: string }>;
  /** Origin requests in flight at each decision point once the origin delivered, while blocks wait. */
  originInFlightLate: number[];
}

function simulate(tarpits: number, opts: { proven?: Set<string> } = {}): Run {
  const proven = opts.proven ?? new Set<string>();
  const s = new Scheduler({
    blocks: Array.from({ length: N }, (_, g) => ({ seg: g, index: 0, length: BS })),
    random: () => 0.5,
    originConcurrency: 6,
    proven: (a) => proven.has(a),
    self: '10.0.0.9',
    crowdVisible: () => true,
  });
  const addrs = Array.from({ length: tarpits }, (_, i) => `10.0.0.66:${8000 + i}`);
  const events: Array<{ at: number; run: () => void }> = [];
  const at = (time: number, run: () => void) => events.push({ at: time, run });
  const requestsTo = new Map<string, number>();
  const handoffs: Run['handoffs'] = [];
  const pendingHandoff = new Map<number, number>();
  const originInFlightLate: number[] = [];
  let inflightOrigin = 0;
  let inflightPeer = 0;
  let originDelivered = false;
  let now = 0;
  const sight = (addr: string) => {
    for (let seg = 0; seg < N; seg++) s.peerHasSegment(addr, seg, now);
  };
  // The tarpit answers every probe: four addresses per ProbeMatch, a new batch every second.
  for (let k = 0; k < addrs.length; k += 4)
    at((k / 4) * 1000, () => {
      for (const a of addrs.slice(k, k + 4)) sight(a);
    });
  // Re-sightings of every address named so far, every second, for as long as the download runs.
  for (let sec = 1; sec < 60; sec++)
    at(sec * 1000 + 1, () => {
      for (const a of addrs.slice(0, Math.min(addrs.length, (sec + 1) * 4))) sight(a);
    });
  const launch = (a: Assignment) => {
    const h = pendingHandoff.get(a.block);
    if (h !== undefined) {
      handoffs.push({ failedAt: h, block: a.block, nextAt: now, to: a.kind === 'peer' ? a.peer : 'origin' });
      pendingHandoff.delete(a.block);
    }
    if (a.kind === 'origin') {
      inflightOrigin++;
      const n = a.count ?? 1;
      at(now + ORIGIN_MS * n, () => {
        inflightOrigin--;
        originDelivered = true;
        for (let g = a.block; g < a.block + n; g++) s.originSucceeded(g, ORIGIN_MS, g === a.block + n - 1);
      });
    } else {
      requestsTo.set(a.peer, (requestsTo.get(a.peer) ?? 0) + 1);
      inflightPeer++;
      at(now + TRIAL_TIMEOUT_MS, () => {
        inflightPeer--;
        s.peerFailed(a.peer, a.block, 'timeout', now);
        pendingHandoff.set(a.block, now);
      });
    }
  };
  // The transfer's origin gate: discovery found peers, so the origin opens only once the trial
  // requests settled or the trial grace from the first trial request (at 0) is over, whichever is
  // first (src/engine/transfer.ts; until issue 27.9's second round it waited the 1.5 s trial timer).
  let originOpen = tarpits === 0;
  if (!originOpen) at(TRIAL_GRACE_MS, () => (originOpen = true));
  for (let guard = 0; !s.isDone() && guard < 1_000_000; guard++) {
    for (const a of s.next(now, originOpen)) launch(a);
    // Blocks nobody is fetching while the origin has delivered before: it should be at its limit.
    if (originDelivered && s.total - s.completed - inflightOrigin - inflightPeer > 0)
      originInFlightLate.push(inflightOrigin);
    if (s.isDone() || s.failed()) break;
    const wake = s.nextWakeAt();
    events.sort((x, y) => x.at - y.at);
    const nextEvent = events[0]?.at ?? Infinity;
    const t2 = Math.min(nextEvent, wake ?? Infinity);
    if (!Number.isFinite(t2)) throw new Error(`stuck at ${now}`);
    now = Math.max(now, t2);
    while (events.length > 0 && events[0]!.at <= now) events.shift()!.run();
  }
  if (!s.isDone()) throw new Error('download did not finish');
  return { ms: now, requestsTo, handoffs, originInFlightLate };
}

t.test('a silent address gets one request; its block goes to the origin; one trial timeout in all', async (t) => {
  const base = simulate(0);
  const run = simulate(16);
  t.ok(run.requestsTo.size >= 4, `tarpit addresses were tried (${run.requestsTo.size})`);
  t.ok(
    [...run.requestsTo.values()].every((n) => n === 1),
    `one request each (${[...run.requestsTo.values()].join(',')}); before: up to four`,
  );
  t.equal(run.handoffs.length, run.requestsTo.size, 'every block a tarpit held was assigned again');
  t.ok(
    run.handoffs.every((h) => h.to === 'origin'),
    'to the origin, never to the next unproven address',
  );
  t.ok(
    run.originInFlightLate.length > 0 && run.originInFlightLate.every((n) => n === 6),
    'once the origin runs it is at full concurrency whenever blocks wait (the tarpit is no active peer or crowd member)',
  );
  t.comment(`simulated: ${base.ms} ms without, ${run.ms} ms with 16 tarpit addresses`);
  // The origin gate's wait for the first trials, and nothing more: the design's whole cost.
  t.ok(run.ms <= base.ms + TRIAL_GRACE_MS, `${run.ms} ms <= ${base.ms} ms + the trial grace`);
});

t.test('a silent address whose answer came late (proven) is used again', async (t) => {
  const proven = new Set<string>();
  const s = new Scheduler({
    blocks: Array.from({ length: 8 }, (_, g) => ({ seg: 0, index: g, length: BS })),
    random: () => 0.5,
    originConcurrency: 0,
    proven: (a) => proven.has(a),
  });
  s.peerHasSegment('slow:1', 0);
  const [first] = s.next(0, false);
  t.equal(first?.kind, 'peer', 'a trial request');
  s.peerFailed('slow:1', first!.block, 'timeout', 1500);
  t.same(s.next(2000, false), [], 'silent: no second request');
  t.same(s.next(60_000, false), [], 'not after a backoff either');
  proven.add('slow:1'); // the retrieval client got its answer after all
  t.equal(s.next(60_001, false).length, 8, 'proven: every block, full concurrency');
});

t.test('"busy" from an address on trial does not drop it', async (t) => {
  const s = new Scheduler({
    blocks: Array.from({ length: 4 }, (_, g) => ({ seg: 0, index: g, length: BS })),
    random: () => 0.5,
    originConcurrency: 0,
    proven: () => false,
  });
  s.peerHasSegment('busy:1', 0);
  const [a] = s.next(0, false);
  s.peerFailed('busy:1', a!.block, 'busy', 10);
  t.equal(s.next(10_000, false).length, 1, 'tried again after its backoff');
});

t.test(
  'an address asked and never answering does not keep the download from being alone (long origin ranges)',
  async (t) => {
    const mkAlone = () =>
      new Scheduler({
        blocks: Array.from({ length: 4096 }, (_, g) => ({ seg: g, index: 0, length: BS })),
        random: () => 0.5,
        originConcurrency: 2,
        originRunBlocks: 16,
        aloneAfterMs: 1000,
        proven: () => false,
      });
    // Drives the origin from `from` to `to` (every 100 ms; each request done by the next step) and
    // returns the longest origin request (in blocks) started in that window.
    const drive = (s: Scheduler, from: number, to: number): number => {
      let longest = 0;
      for (let now = from; now <= to; now += 100)
        for (const a of s.next(now, true)) {
          if (a.kind !== 'origin') continue;
          const n = a.count ?? 1;
          longest = Math.max(longest, n);
          for (let g = a.block; g < a.block + n; g++) s.originSucceeded(g, 50, g === a.block + n - 1);
        }
      return longest;
    };
    t.equal(drive(mkAlone(), 0, 1200), 16, 'no peer: 16-block ranges once alone for 1 s');
    const s = mkAlone();
    for (let seg = 0; seg < 4096; seg++) s.peerHasSegment('10.0.0.66:9000', seg, 0);
    const [trial] = s.next(0, false);
    t.equal(trial?.kind, 'peer', 'the address gets its trial request');
    t.equal(drive(s, 0, 1400), 16, 'its trial pending: 16-block ranges all the same (before: 1)');
    s.peerFailed('10.0.0.66:9000', trial!.block, 'timeout', 1500);
    t.equal(drive(s, 1500, 2000), 16, 'its trial failed: still alone (before: 1)');
    // A peer that answered may be another client fetching the same content: one block per request.
    const s2 = mkAlone();
    for (let seg = 0; seg < 4; seg++) s2.peerHasSegment('10.0.0.7:9000', seg, 0);
    const [tr2] = s2.next(0, false);
    s2.peerFailed('10.0.0.7:9000', tr2!.block, 'not-available', 5);
    t.equal(drive(s2, 100, 2000), 1, 'a peer that answered keeps origin requests one block long');
  },
);
