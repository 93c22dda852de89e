/**
 * Trace events of one download, for `peerdist explain` (the daemon aggregates them, bounded, in
 * src/daemon/traces.ts). A job emits them as 'trace' events; nothing in the engine depends on
 * anybody listening. `block` is the block's number in content order.
 */

/** Why a block was fetched from the origin (Scheduler.whyOrigin). */
export type OriginReason =
  /** Discovery has not found any peer for this download. */
  | 'no-peer-found'
  /** Peers are known, but none is known to hold this block. */
  | 'not-held'
  /** The peers holding it are banned in this download (they sent a block that failed its hash). */
  | 'peer-banned'
  /** Requests for it to the peers holding it timed out. */
  | 'peer-timeout'
  /** Requests for it to the peers holding it failed (errors, busy answers) or were tried too often. */
  | 'peer-failed'
  /** Only peers that have never answered hold it, and each is busy with its one trial request. */
  | 'peer-unproven';

export type TraceEvent =
  | {
      type: 'content';
      version: 1 | 2;
      contentLength: number;
      segments: number;
      blocks: number;
      hashAlgorithm: string;
      contentInfoBytes: number;
    }
  | { type: 'plain'; contentLength: number }
  | { type: 'cached'; blocks: number; bytes: number }
  /** A discovery round started: a watch for `segments` segment IDs (initial batch or re-probe). */
  | { type: 'round'; round: number; kind: 'initial' | 'reprobe'; segments: number; at: number }
  /** A peer answered round `round` for segment number `seg` (`at` is the clock when the answer was seen). */
  | { type: 'answer'; round: number; peer: string; seg: number; blockCount: number; at: number }
  /** The origin gate opened: discovery had its chance. */
  /** `graceMs`: the trial grace then (Scheduler.trialGraceMs), when a trial request had gone out. */
  | { type: 'gate'; at: number; peers: number; graceMs?: number }
  | { type: 'peer-block'; peer: string; block: number; bytes: number; ms: number }
  | { type: 'peer-fail'; peer: string; block: number; why: string }
  | {
      type: 'origin-block';
      block: number;
      bytes: number;
      ms: number;
      reason: OriginReason;
      /** When the request for it was picked (the clock of `at`), for the crowd's duplicate analysis. */
      picked?: number;
      /** Crowd ownership at the pick (testkit/sim/diagnose.ts): our rank, 0 = we own it (absent: not picked by ownership). */
      rank?: number;
      /** The block's owner in that ranking (our own identity when ours) and the other members ranked over. */
      owner?: string;
      members?: number;
      /**
       * The pre-origin re-check (fetch-origin.ts): each host asked, `host=` and its answer: y / n
       * (holds it or not, within the wait), Y / N (the same, after the wait), x (failed).
       */
      asked?: string;
      /**
       * Members left out of the ranking that outscore us for the block (Scheduler.crowdShadow):
       * `host:e` not seen within the member window, `host:f` failing us.
       */
      shadow?: string;
    }
  | { type: 'origin-fail'; block: number; reason: OriginReason; error: string }
  /** An origin fetch was dropped because a peer turned out to hold the block. */
  | { type: 'origin-skipped'; block: number }
  /**
   * First sign of another client of the crowd (once per host and way): its probe for our segments
   * ('probe'), a sighting of it as a holder ('peer'), a sighting of it as a holder that the
   * download's cap on unproven peer addresses refused ('capped', discovery-feed.ts); 'self' names
   * our own identity.
   */
  | { type: 'member'; host: string; via: 'probe' | 'peer' | 'capped' | 'self'; at: number };

export type TraceSink = (ev: TraceEvent) => void;
