/**
 * What the parts of a job share: the engine-wide context of every job, and the Session of a
 * running PeerDist transfer that the discovery feed and the block fetchers work on.
 */
import type { ContentInfo, SegmentInfo } from '../protocol/pccrc/types.js';
import type { Logger } from '../util/log.js';
import type { Timers } from '../util/timers.js';
import type { CounterSink } from './counters.js';
import type { OriginClient } from './origin-client.js';
import type { BlockLayout } from './reader.js';
import type { Scheduler } from './scheduler.js';
import type { TraceEvent } from './trace.js';
import type { ByteSource, EngineDeps } from './types.js';
import type { MemoryBudget } from './budget.js';
import type { OriginSet } from './origins.js';
import type { SegmentIndex } from './segment-index.js';

export interface JobContext {
  deps: EngineDeps;
  http: OriginClient;
  log: Logger;
  now: () => number;
  timers: Timers;
  random: () => number;
  count: CounterSink;
  /** Memory for the block state of running downloads (TOO_LARGE when a download does not fit). */
  budget?: MemoryBudget;
  isSelf: (address: string) => boolean;
  /** This daemon's own retrieval addresses (host:port), when known. */
  selfAddresses: () => string[];
}

export interface Session {
  readonly ctx: JobContext;
  readonly url: string;
  /** The caller's request headers (passed on to the origin). */
  readonly headers: Record<string, string>;
  /** The origin nodes (the URL and its mirrors, `get --mirror`); absent: origin ranges go to `url`. */
  readonly origins?: OriginSet;
  readonly log: Logger;
  /** Aborted when the job ends. */
  readonly signal: AbortSignal;
  readonly ci: ContentInfo;
  readonly sched: Scheduler;
  readonly layout: BlockLayout;
  /** Segment number by hex segment ID (get) or by ID (ofId); segment-index.ts. */
  readonly segByHex: Pick<SegmentIndex, 'get' | 'has' | 'ofId'>;
  /** Peers that refused MSG_GETBLKLIST (HTTP 400): asked for blocks directly, never for lists. */
  readonly noBlockLists: Set<string>;
  /** Traces the first sign of a crowd member (once per host and way; protocol/engine.md "Flash crowds"). */
  memberSeen(host: string, via: 'probe' | 'peer' | 'capped'): void;
  /** Message of the last failed origin range request (for the final error). */
  lastOriginError: string | undefined;
  /** The ETag the content information came with (absent: the origin sent none). */
  readonly etag?: string;
  /**
   * Set when an origin range whose bytes failed their hashes came with another ETag than `etag`:
   * the content changed at the origin during the download (the final error says so).
   */
  originEtagNow: string | undefined;
  /** The job ended (done, failed or cancelled): stop quietly. */
  stopped(): boolean;
  /** Starts whatever the scheduler decides now. */
  pump(): void;
  /**
   * pump() once the current turn of the event loop is over: news that comes in bursts (a
   * ProbeMatch naming 60 segments is 60 sightings; the answers one poll of the sockets delivers;
   * the writes one group commit finishes) costs one scheduling pass, not one per item.
   */
  pumpSoon(): void;
  /** Waits for `p` but at most `ms` and not beyond the end of the job. */
  until(p: Promise<unknown>, ms: number): Promise<void>;
  segInfo(block: number): SegmentInfo;
  /**
   * Verifies block `block` (once: a buffer that passed is not hashed again when stored). True when
   * the bytes match the content information.
   */
  check(block: number, data: Buffer): boolean;
  /** Writes a verified block to the cache. */
  store(block: number, data: Buffer): Promise<void>;
  /** Verified blocks whose cache write has not finished yet (held in memory meanwhile). */
  storeBacklog(): number;
  /** After a failed attempt: counts the block as a cache hit if it reached the cache another way. */
  recheckStore(block: number): void;
  /** `n` verified bytes landed from `source`. */
  landed(source: ByteSource, n: number): void;
  /** A peer sent a block that fails its hash: discovery stops offering it. */
  badPeer(peer: string): void;
  /** Reports what happened, for `peerdist explain` (trace.ts). */
  trace(ev: TraceEvent): void;
}
