/**
 * The crowd's duplicate analysis of `bench/sim.js --diagnose` (testkit/sim/diagnose.ts) from the
 * daemons' download traces (src/daemon/traces.ts: `origin.picks`, `crowd`). No network, no daemon:
 * a fake job's trace events with an injected clock.
 */
import { EventEmitter } from 'node:events';
import t from 'tap';
import { TraceBook, type TracedJob } from '../../src/daemon/traces.js';
import type { TraceEvent } from '../../src/engine/trace.js';
import { analyseDuplicates, crowdTrace, recheckOf } from '../../testkit/sim/diagnose.js';

function fakeJob(id: string): TracedJob & { emit(e: 'trace', ev: TraceEvent): boolean } {
  const j = new EventEmitter() as EventEmitter & TracedJob;
  Object.assign(j, {
    id,
    url: `http://o/${id}`,
    done: new Promise(() => undefined),
    info: new Promise(() => undefined),
    progress: () => ({
      state: 'running',
      bytesDone: 0,
      fromOrigin: 0,
      fromPeers: 0,
      fromCache: 0,
      contentInfoBytes: 0,
    }),
  });
  return j as TracedJob & { emit(e: 'trace', ev: TraceEvent): boolean };
}

/** One client's download: starts at `t0`, fetches `picks` [block, picked, stored, rank, owner, members, asked, shadow]. */
function traceOf(
  self: string,
  t0: number,
  picks: Array<[number, number, number, number, string, number, string?, string?]>,
  seen: Array<[string, 'probe' | 'peer' | 'capped', number]>,
): Record<string, unknown> {
  let now = t0;
  const book = new TraceBook(() => now);
  const job = fakeJob(self);
  book.follow(job);
  job.emit('trace', { type: 'member', host: self, via: 'self', at: t0 });
  const events: Array<{ at: number; ev: TraceEvent }> = [];
  for (const [host, via, at] of seen) events.push({ at, ev: { type: 'member', host, via, at } });
  for (const [block, picked, stored, rank, owner, members, asked, shadow] of picks)
    events.push({
      at: stored,
      ev: {
        type: 'origin-block',
        block,
        bytes: 65536,
        ms: stored - picked,
        reason: 'not-held',
        picked,
        ...(rank >= 0 ? { rank, owner, members } : {}),
        ...(asked ? { asked } : {}),
        ...(shadow !== undefined ? { shadow } : {}),
      },
    });
  events.sort((a, b) => a.at - b.at);
  for (const { at, ev } of events) {
    now = at;
    job.emit('trace', ev);
  }
  return JSON.parse(JSON.stringify(book.find({ job: self })));
}

t.test('each later origin copy is classified by when, by whom and with what view it was picked', async (t) => {
  // A and B each own block 4 in their own view (B ranked over a crowd without A); C fetches
  // block 4 as A's stand-in after A stored it, never having seen A as a holder.
  const A = '10.0.0.1',
    B = '10.0.0.2',
    C = '10.0.0.3';
  const ta = traceOf(
    A,
    1000,
    [
      [4, 2000, 3000, 0, A, 2],
      [5, 2000, 3100, 0, A, 2],
    ],
    [
      [B, 'probe', 1100],
      [C, 'probe', 1200],
    ],
  );
  // (B's pick names A among the members left out of its ranking that outscored it: not seen
  // within the member window.)
  const tb = traceOf(B, 1000, [[4, 2500, 3500, 0, B, 1, undefined, `${A}:e`]], [[A, 'peer', 2200]]);
  const tc = traceOf(
    C,
    1000,
    [[4, 5000, 6000, 1, A, 2, `${B}=n`]],
    [
      [A, 'probe', 1100],
      [A, 'capped', 1500],
    ],
  );
  t.same(
    (ta.origin as { picks: unknown[] }).picks[0],
    [4, 1000, 2000, 0, A, 2, 'not-held'],
    'picks are ms after the start',
  );
  t.same((ta.crowd as { self: string }).self, A);
  const traces = [crowdTrace(1, ta)!, crowdTrace(2, tb)!, crowdTrace(3, tc)!];
  const a = analyseDuplicates(traces);
  t.equal(a.originBlocks, 4);
  t.equal(a.distinct, 2);
  t.equal(a.second, 2);
  t.same(a.byClass, {
    'in flight: owner / owner, both owner, knew it as holder; not-held': 1,
    'after stored: rank 1 / owner, same owner, knew it by probe; not-held': 1,
  });
  t.same(a.afterStoredMs, [2000], 'C picked block 4 two seconds after A stored it');
  t.equal(a.holderNeverSeen, 1, 'C never saw A as a holder');
  t.same(
    (tc.origin as { picks: unknown[] }).picks[0],
    [4, 4000, 5000, 1, A, 2, 'not-held', `${B}=n`],
    'the re-check kept',
  );
  t.same(
    a.recheck,
    { 'its sightings refused by the peer cap, not asked (1 others asked)': 1 },
    "C's re-check asked B, not A, whose sightings C's peer cap had refused",
  );
  t.same((tc.crowd as { members: unknown }).members, { [A]: { probeMs: 100, cappedMs: 500 } });
  t.same(a.firstSightingLagMs, [-800], "B saw A as a holder 0.8 s before A's first block was stored");
  t.same(
    (tb.origin as { picks: unknown[] }).picks[0],
    [4, 1500, 2500, 0, B, 1, 'not-held', '', `${A}:e`],
    'the left-out members kept (after an empty re-check)',
  );
  t.same(
    a.viewGaps,
    {
      'later lacked earlier: expired; earlier lacked later: -': 1,
      'later lacked earlier: -; earlier lacked later: -': 1,
    },
    'B had left A out (not seen within the member window); C ranked A as owner',
  );
});

t.test("a pick's re-check answers, as seen for one host", async (t) => {
  t.equal(recheckOf(undefined, '10.0.0.1'), 'no re-check');
  t.equal(recheckOf('10.0.0.2=y 10.0.0.1=N', '10.0.0.1'), 'asked it: N');
  t.equal(recheckOf('10.0.0.2=y 10.0.0.10=x', '10.0.0.1'), 'not asked (2 others asked)', 'a prefix is not the host');
});
