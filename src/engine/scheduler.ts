/**
 * Block scheduler of one download: decides, for every missing block, which source fetches it
 * (a peer or the origin) and when. Pure: no I/O, no timers; the clock and randomness are passed in.
 * The design and its reasoning (peer scoring, origin runs with gap splitting, bounded waiting for
 * peers that are fetching the same content) are in protocol/engine.md.
 */
import type { OriginReason } from './trace.js';

export interface BlockDesc {
  /** Segment number within the content (0-based). */
  seg: number;
  /** Block index within the segment (v2: always 0). */
  index: number;
  /** Block length in bytes. */
  length: number;
}

/**
 * Block descriptors of a whole content in three typed arrays: a 5 GiB v1 file has 81,921 blocks,
 * which as objects took ~7 MiB of the 64 MiB heap the systemd unit allows (issue 16.7).
 */
export class BlockTable {
  readonly seg: Uint32Array;
  readonly index: Uint32Array;
  readonly size: Uint32Array;
  constructor(readonly length: number) {
    this.seg = new Uint32Array(length);
    this.index = new Uint32Array(length);
    this.size = new Uint32Array(length);
  }

  static of(blocks: readonly BlockDesc[] | BlockTable): BlockTable {
    if (blocks instanceof BlockTable) return blocks;
    const t = new BlockTable(blocks.length);
    blocks.forEach((b, g) => {
      t.set(g, b.seg, b.index, b.length);
    });
    return t;
  }

  set(g: number, seg: number, index: number, length: number): void {
    this.seg[g] = seg;
    this.index[g] = index;
    this.size[g] = length;
  }

  /** Block g as an object (made on each call). */
  at(g: number): BlockDesc | undefined {
    return g >= 0 && g < this.length ? { seg: this.seg[g]!, index: this.index[g]!, length: this.size[g]! } : undefined;
  }
}

/**
 * An origin assignment covers `count` (default 1) adjacent blocks starting at `block`: one range
 * request. Each block is reported on its own (originSucceeded/originFailed/originSkipped); either
 * the last report passes `endsRequest` true or, after reports with `endsRequest` false,
 * originRequestEnded() frees the request's slot.
 */
export type Assignment =
  | { kind: 'peer'; block: number; peer: string }
  | { kind: 'origin'; block: number; count?: number };

/**
 * not-available: the peer lacks the block; bad-block: wrong data (ban); unusable: the address
 * never gave a valid answer and is quarantined (dropped for the job); the rest: transient.
 */
export type PeerFailure = 'not-available' | 'bad-block' | 'unusable' | 'timeout' | 'busy' | 'error';
/** error: transport/status failure; mismatch: the origin's bytes failed verification. */
export type OriginFailure = 'error' | 'mismatch';

export interface SchedulerOptions {
  blocks: readonly BlockDesc[] | BlockTable;
  /** Blocks already held locally (cache) at start. */
  present?: (block: number) => boolean;
  random?: () => number;
  originConcurrency?: number;
  /**
   * Adjacent missing blocks one origin request may cover once we have fetched from the origin
   * alone (no peer known) for `aloneAfterMs` (default 1: one block per request).
   */
  originRunBlocks?: number;
  /**
   * Long origin ranges only after this long fetching from the origin with no peer known at all
   * (default 3000 ms): clients of a flash crowd cannot see each other at first, and a long range
   * claims blocks the others cannot know are taken.
   */
  aloneAfterMs?: number;
  /** Concurrent requests per peer. */
  peerConcurrency?: number;
  /**
   * Whether an address has given a valid MS-PCCRR answer before (the retrieval client knows it
   * across downloads). A peer that has not, and has not answered in this job either, is on trial:
   * one request at a time, so a LAN host naming many addresses that never answer (issue 16.5)
   * costs one first-byte timeout for all of them side by side, not one after another while each
   * holds a full share of the request slots. Absent: every peer is trusted as before.
   */
  proven?: (address: string) => boolean;
  /** Concurrent peer requests in total. */
  totalPeerConcurrency?: number;
  /** Origin attempts per block before the job fails (when no peer can supply it either). */
  maxOriginAttempts?: number;
  /** Origin verification failures per block before the job fails. */
  maxOriginMismatches?: number;
  /** Peer attempts per block after which peers are no longer preferred for it. */
  maxPeerAttempts?: number;
  /** How stale our view of other peers' blocks may be (block-list refresh period + discovery lag). */
  visibilityLagMs?: number;
  /** A partial holder whose block count grew within this window counts as actively downloading. */
  activeWindowMs?: number;
  /** Upper bound of the wait for an active peer to fetch a block before we take it from the origin. */
  maxDeferMs?: number;
  /** Prior for the origin block time until measured. */
  originBlockMsPrior?: number;
  /** Prior for peer throughput until measured (bytes/s). */
  peerBpsPrior?: number;
  /**
   * This daemon's identity in a flash crowd (its IP address as the other clients see it). With it,
   * the origin blocks of a crowd are shared out by rendezvous hashing (see crowdSeen); without it,
   * the crowd only spreads over the file.
   */
  self?: string;
  /**
   * Asked at every origin pick: false while clients we cannot see may download the same content
   * (hosted caches that do not name the crowd), and ownership is then not used.
   */
  crowdVisible?: () => boolean;
  /**
   * A member left out of our crowd but seen within SHADOW_MS raises our rank by one on the units it
   * outscores us for (default true; protocol/engine.md "Flash crowds" 15). False: the engine before
   * that rule (for side-by-side models); the left-out members are still named in traces.
   */
  crowdShadow?: boolean;
}

export interface PeerStat {
  address: string;
  ewmaBps: number;
  outstanding: number;
  blocks: number;
  bytes: number;
  failures: number;
  notAvailable: number;
  badBlocks: number;
  banned: boolean;
  backoffUntil: number;
}

export interface SchedulerFailure {
  block: number;
  reason: 'origin' | 'mismatch';
  attempts: number;
}

interface PeerState {
  address: string;
  /** hostOf(address): its identity as a crowd member. */
  host: string;
  ewmaBps: number;
  outstanding: number;
  consecutiveFailures: number;
  backoffUntil: number;
  banned: boolean;
  /** Segments the peer holds completely. */
  full: SegmentSet;
  /** Blocks the peer is known to hold in segments it holds partially (made at the first: v2 never needs it). */
  partial: Map<number, Set<number>> | undefined;
  /** Last time the known block set of a partial segment grew. */
  lastGrowth: number;
  /**
   * Where its bitmap of the blocks it is known to hold (full and partial together, one bit per
   * block) starts in the Scheduler's `heldPool`, and how many: `holds` is one bit test instead of
   * two Set lookups (kept in step by setHeld).
   */
  off: number;
  heldCount: number;
  /** A hosted cache (peerIsRelay): grows with other clients' offers; never a crowd member. */
  relay: boolean;
  /** crowdMembers' answer (its `gen`) that last counted its host as a member. */
  memberOf: number;
  /** Gave a valid answer in this job (a block, or "not available"). */
  answered: boolean;
  /** When its (first) trial request was sent, while on trial. */
  trialSince: number;
  /**
   * Failed its trial (timeout, connection or HTTP error, quarantine) without ever answering: not
   * used again in this job unless the retrieval client comes to know it as proven (its answer
   * arrived late), and never a crowd member or an active peer (issue 27.9).
   */
  silent: boolean;
  stat: { blocks: number; bytes: number; failures: number; notAvailable: number; badBlocks: number };
}

const MISSING = 0,
  INFLIGHT = 1,
  DONE = 2;
const EWMA_ALPHA = 0.3;
const PEER_BACKOFF_BASE_MS = 250;
const PEER_BACKOFF_MAX_MS = 10_000;
/**
 * How long the download's first trial request keeps the blocks unproven peers claim from the
 * origin (on a machine whose timers run on time; longer on a starved one, TRIAL_LAG_FACTOR), as
 * long as the origin has not delivered a block yet; the origin gate waits no longer
 * for trial answers either (src/engine/transfer.ts). A genuine LAN peer answers well within it
 * and then takes them all; after it, the origin may (a host naming addresses that never answer
 * stalls nothing beyond this, issue 16.5; not again for each later batch of addresses, and
 * nothing at all once the origin runs, issue 27.9).
 */
export const TRIAL_GRACE_MS = 300;
/**
 * What a failed trial costs: the retrieval client's first-byte timer for an address on probation.
 * Once the origin could fetch everything left sooner than that, no new trial starts (a block
 * given to an address that turns out silent would hold up the end of the download, issue 27.9).
 * Also the cap of the trial grace on a starved machine (TRIAL_LAG_FACTOR): a trial has failed by
 * then anyway.
 */
export const TRIAL_COST_MS = 1500;
/**
 * The trial grace grows by this many times the latest our own timers have fired in this download
 * (timerLate), up to TRIAL_COST_MS: on a CPU-starved machine a genuine peer's first answer takes
 * several of the wake-ups a late timer measures (its process and ours, each side's socket and
 * worker turns), and the fixed 300 ms lost its blocks to the origin (RELIABILITY.md, "Found
 * 2026-12-07 (h-serve)" item 2). Our own lateness, not the peer's pace: nothing a remote host
 * says or delays can lengthen it (protocol/engine.md, "Peers that are not peers").
 */
export const TRIAL_LAG_FACTOR = 8;
/** Backoff of an address the retrieval client quarantined (never gave a valid answer). */
const UNUSABLE_BACKOFF_MS = 30_000;
const ORIGIN_RETRY_BASE_MS = 200;
/** Origin requests per download while other peers are downloading the same content. */
const CROWD_ORIGIN_STREAMS = 2;
/**
 * Crowd ownership goes by units of this many consecutive blocks, and an owner fetches the rest of
 * its unit with its block in one range request (256 KiB of 64 KiB blocks). One 64 KiB range per
 * request left each origin connection idle for a round trip per block and never out of TCP slow
 * start: 8 clients x 2 streams moved 25 of 50 Mbit/s (protocol/engine.md, "Flash crowds" 8).
 */
const CROWD_UNIT_BLOCKS = 4;
/**
 * Whole units go in one request only once the crowd has been the same for this long: while members
 * keep arriving (the first moments of a flash crowd) ownership keeps moving, and every block in
 * flight that just changed hands is fetched twice, so requests stay one block long.
 */
const CROWD_STABLE_MS = 1000;
/** A crowd member counts for this long after it was last seen probing or growing. */
const MEMBER_WINDOW_MS = 5000;
/**
 * A member left out of our crowd (not seen within MEMBER_WINDOW_MS, or failing us) but seen within
 * this long still shadows the units it outscores us for: our rank there is one more (see
 * crowdMembers, scanOwned; protocol/engine.md "Flash crowds" 15). At most SHADOW_MAX such hosts
 * count (the probers are kept this long instead of MEMBER_WINDOW_MS).
 */
const SHADOW_MS = 20_000;
const SHADOW_MAX = 256;
/**
 * The member window follows how seldom members are heard (issue 24 item 5; protocol/engine.md
 * "Flash crowds" 16): a responder takes at most 200 probes a second (probe-responder.ts), so in a
 * subnet of 1,000 downloading daemons, each sending 15 a second, a daemon hears a given member
 * about every 5 s, at random, and a fixed MEMBER_WINDOW_MS left a third of the crowd out at any
 * moment, another third at every member: the members ranked over different crowds and fetched the
 * same units. The window is the GAP_QUANTILE of the gaps between two sightings of a member (those
 * up to SHADOW_MS, once GAP_SAMPLES_MIN were seen), whole seconds, at least MEMBER_WINDOW_MS and
 * at most MEMBER_WINDOW_MAX_MS. Members heard at their probe period (every probe gets through)
 * keep the 5 s window. A LAN host probing seldom can lengthen it only up to the cap: members then
 * count a little longer (their units wait a grace longer), never more requests.
 */
const MEMBER_WINDOW_MAX_MS = 15_000;
const GAP_BUCKET_MS = 250;
const GAP_QUANTILE = 0.95;
const GAP_SAMPLES_MIN = 64;
/** Gap counts are halved once they reach this many (recent gaps weigh more). */
const GAP_SAMPLES_HALVE = 1024;
/**
 * Least wait for a block another crowd member owns (else 3 origin block times: as long as our own
 * requests take, which in a big crowd on one WAN is tens of seconds; a cap of 3 s here made
 * stand-ins fetch blocks their owners were still fetching, issue 24).
 */
const OWNER_GRACE_MIN_MS = 750;
/**
 * Before our first origin request, a crowd still growing (its member set changed within the
 * visibility lag) is waited for, at most this many visibility lags from our first pick: members
 * that rank over different views each take themselves for the owner of the same unit (issue 25
 * target 4; protocol/engine.md "Flash crowds" 11).
 */
const SETTLE_MAX_LAGS = 3;
/**
 * Until some owner has been seen gaining one of its own blocks, a stand-in does not step in before
 * one grace per crowd member, and at most this long, after our first pick in the crowd: in a big
 * crowd on one WAN the first origin blocks take tens of seconds, and nothing measured them yet
 * (protocol/engine.md "Flash crowds" 11).
 */
const NO_GAIN_WAIT_MS = 60_000;
/**
 * Owner index meaning "us" (crowds larger than this share the last index: only a heuristic; it was
 * 255 in one byte, and a subnet of 500 clients in the scale simulation put half of them there).
 */
const OWN = 65535;

/**
 * A set of segment numbers as a bitmap over the content's segments (a Set of numbers per peer
 * took ~20 bytes a segment: 0.7 MiB per client of a 1,024-segment crowd with 32 peers in the
 * scale simulation); a number outside the content (a sighting of a segment it lacks) goes to a
 * Set on the side, so `size` counts what a Set would.
 */
class SegmentSet {
  private other: Set<number> | undefined;
  size = 0;
  /** Its bits: (segments + 31) >>> 5 words of `buf` from `off` (a chunk of a Slab, shared). */
  constructor(
    private readonly segments: number,
    private readonly buf: Uint32Array,
    private readonly off: number,
  ) {}
  private inside(seg: number): boolean {
    return Number.isInteger(seg) && seg >= 0 && seg < this.segments;
  }
  has(seg: number): boolean {
    if (!this.inside(seg)) return this.other?.has(seg) ?? false;
    return (this.buf[this.off + (seg >>> 5)]! & (1 << (seg & 31))) !== 0;
  }
  add(seg: number): void {
    if (!this.inside(seg)) {
      this.other ??= new Set();
      if (!this.other.has(seg)) this.size++;
      this.other.add(seg);
    } else if (!this.has(seg)) {
      this.buf[this.off + (seg >>> 5)]! |= 1 << (seg & 31);
      this.size++;
    }
  }
  delete(seg: number): boolean {
    if (!this.inside(seg)) {
      if (!this.other?.delete(seg)) return false;
    } else if (this.has(seg)) this.buf[this.off + (seg >>> 5)]! &= ~(1 << (seg & 31));
    else return false;
    this.size--;
    return true;
  }
}

/**
 * Hands out zeroed runs of `words` words, many to one buffer: a typed array of its own per peer
 * (an ArrayBuffer and an allocation outside the heap each) cost about as much again as its bits
 * (issue 24: 10,000 clients with 200 peers each).
 */
class Slab {
  /** The chunk the last take() came from. */
  buf = new Uint32Array(0);
  private used = 0;
  private next = 8;
  constructor(private readonly words: number) {}
  /** `words` zeroed words of `buf` (read it after the call) from the offset returned. */
  take(): number {
    if (this.used + this.words > this.buf.length) {
      // Chunks double from 8 bitmaps up to about 64 KiB.
      this.buf = new Uint32Array(Math.max(1, this.words * this.next));
      this.used = 0;
      this.next = Math.min(this.next * 2, Math.max(8, Math.floor(16384 / Math.max(1, this.words))));
    }
    const off = this.used;
    this.used += this.words;
    return off;
  }
}

/** 32-bit FNV-1a of a string: a member's seed for rendezvous hashing (the same on every client). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Rendezvous score of block g for the member with seed `seed` (an integer mix, murmur3's finaliser). */
function score(seed: number, g: number): number {
  let h = (seed ^ Math.imul(g + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The host part of `host:port` or `[v6]:port` (a peer's identity as a crowd member). */
export function hostOf(address: string): string {
  if (address.startsWith('[')) return address.slice(1, address.indexOf(']'));
  const i = address.lastIndexOf(':');
  return i > 0 && address.indexOf(':') === i ? address.slice(0, i) : address;
}

export class Scheduler {
  readonly blocks: BlockTable;
  private readonly n: number;
  private readonly state: Uint8Array;
  private readonly originAttempts: Uint16Array;
  private readonly originMismatches: Uint8Array;
  private readonly peerAttempts: Uint16Array;
  /** When a block may go to the origin again after a failure (made at the first failure). */
  private retryAt: Float64Array | undefined;
  /** First time a block was held back for an active peer (0 = not deferred). */
  private readonly deferSince: Float64Array;
  /** When anybody (a peer or we) was first known to hold the block (Infinity = nobody yet). */
  private readonly firstHeld: Float64Array;
  /** Last peer failure per block (0 none, 1 timeout, 2 other transient, 3 bad block), for whyOrigin. */
  private readonly lastPeerFail: Uint8Array;
  /**
   * Per block, how many known peers (banned or not) hold it (setHeld): loops over the peers for a
   * block nobody holds are skipped, which is most of the file in a flash crowd's first half.
   */
  private readonly holderCount: Uint32Array;
  /** One bit per block some known peer holds (holderCount > 0). */
  private readonly heldBits: Uint32Array;
  /** One bit per block in state MISSING (setState), so assignPeers passes over the rest 32 at a time. */
  private readonly missBits: Uint32Array;
  /** Words per block bitmap. */
  private readonly words: number;
  /**
   * Every peer's bitmap of the blocks it holds, `words` words each from its `off`, in one buffer
   * (grown by doubling): the loops over peers read one place, not one typed array per peer.
   */
  private heldPool: Uint32Array;
  /** Where the peers' segment bitmaps (SegmentSet) come from. */
  private segSlab: Slab | undefined;
  /**
   * assignPeers' ready list (peers usable, with a free slot and holding something) as last built;
   * `readyVersion` is bumped by every change of those conditions (see readyCache).
   */
  private readyVersion = 0;
  private readyBuiltAt = -1;
  /** assignPeers' ready peers' bitmap offsets (heldPool). */
  private readyOff = new Int32Array(16);
  /** Peers with `silent` set: isSilent may then clear it, so the skips above are not taken. */
  private silentCount = 0;
  /** Latest time seen by any call (for results reported without a clock). */
  private clock = 0;
  /** First block of each segment (trimmed to its length after the constructor fills it). */
  private segStart: number[] = [];
  private readonly peers = new Map<string, PeerState>();
  /** The same peers in the order they were added (the Map's order; none is ever removed): loops go over this. */
  private readonly peerList: PeerState[] = [];
  private readonly random: () => number;
  private readonly o: Required<
    Omit<SchedulerOptions, 'blocks' | 'present' | 'random' | 'proven' | 'self' | 'crowdVisible'>
  > & {
    self: string | undefined;
    crowdVisible: (() => boolean) | undefined;
  };
  private readonly proven: ((address: string) => boolean) | undefined;
  private doneCount = 0;
  private originInflight = 0;
  private originDone = 0;
  private peerInflight = 0;
  private cursor: number | undefined;
  private originBlockMs: number;
  private failure: SchedulerFailure | undefined;
  private wakeAt = Infinity;
  /** Lowest block that may still be missing (peer assignment scans from here). */
  private low = 0;
  /** Since when we fetch from the origin with no peer known at all (undefined: not now). */
  private aloneSince: number | undefined;
  /** Whether the last next() found us alone (origin runs follow the reader). */
  private alone = false;
  /** The slowest reader's next block (setReaderAt). */
  private readerAt: number | undefined;
  /** Blocks at or beyond this index are not started (a window ahead of the readers, see setLimit). */
  private limit: number;
  /**
   * Other crowd members seen probing for this content: identity -> last seen (crowdSeen); kept for
   * SHADOW_MS (members for MEMBER_WINDOW_MS of it, see crowdMembers).
   */
  private readonly probers = new Map<string, number>();
  /** Gaps between two sightings of a member (crowdSeen), by GAP_BUCKET_MS, and their count. */
  private readonly seenGaps = new Uint32Array(Math.ceil(SHADOW_MS / GAP_BUCKET_MS) + 1);
  private gapCount = 0;
  /** The member window (see MEMBER_WINDOW_MAX_MS); recomputed at most once a second after new gaps. */
  private windowMs = MEMBER_WINDOW_MS;
  private windowDirty = false;
  private windowAt = -Infinity;
  /**
   * Members seen within SHADOW_MS that crowdMembers left out (expired from MEMBER_WINDOW_MS, or
   * failing us), with why ('e' expired, 'f' failing): they shadow the units they outscore us for.
   */
  private absent: Array<[string, 'e' | 'f']> = [];
  /** Per block: 1 when an absent member outscores us for its unit (our rank there is one more). */
  private shadow: Uint8Array | undefined;
  /** Bumped when the hosts in `absent` change; the one `shadow` was computed for. */
  private absentGen = 0;
  private shadowFor = -1;
  /** The crowd the ownership was computed for (identities joined), and the per-block ranks. */
  private ownershipKey = '';
  /** When the crowd (ownershipKey) last changed. */
  private ownershipSince = 0;
  private ranks: { rank: Uint16Array; owner: Uint16Array } | undefined;
  /** The members (without us) the ranks were computed for, sorted: `owner` indexes into it. */
  private rankedMembers: string[] = [];
  /**
   * Per crowd member (hostOf), when it was last seen gaining a block it owns in our ranking (its
   * origin fetches are under way) and the mean time between such gains (EWMA); see pickOwned.
   * (Whether our requests to it fail does not count: a daemon starved of CPU answers late while its
   * origin fetches go on, and only its gains are seen alike by every member; "Flash crowds" 12.)
   */
  private readonly ownerGain = new Map<string, { at: number; gap: number }>();
  /** pickOwned's scratch buffers (allocated at its first call). */
  private ownedBufs: { cand: Int32Array; ahead: Uint8Array; seen: Uint16Array; grew: Float64Array } | undefined;
  /** When we first picked from the origin by ownership (after the settling wait), and when that wait began. */
  private crowdFrom: number | undefined;
  private settleFrom: number | undefined;
  /**
   * How long after crowdFrom some owner was first seen gaining one of its own blocks: the crowd's
   * own measure of an origin block time, for members that fetched none themselves (see pace).
   */
  private crowdFirstGainMs: number | undefined;
  /** The member list of the last ownership() call, in the order given (its key is ownershipKey). */
  private lastMembers: string[] = [];
  /** Run length the last origin pick allows (pickOwned: the rest of our unit), else next()'s own cap. */
  private pickRun: number | undefined;
  /** When an unidentified crowd member was last seen probing (crowdSeen). */
  private anonymousCrowdAt = -Infinity;
  /** Set by next(): the origin would finish the rest before a trial could fail (TRIAL_COST_MS). */
  private tooLateForTrials = false;
  /** When the download's first trial request was sent (Infinity: none yet); see TRIAL_GRACE_MS. */
  private firstTrialAt = Infinity;
  /** The latest a timer of this download fired (ms after it was due; timerLate), see TRIAL_LAG_FACTOR. */
  private lateMax = 0;
  /**
   * Within next(): the blocks some usable peer that is not on trial holds (supplyMap), computed at
   * the first origin check that needs it and dropped at the next call (peers change only between
   * calls). undefined: not computed in this call.
   */
  private supply: Uint32Array | undefined;
  private supplyBuf: Uint32Array | undefined;
  private inNext = false;
  /** Whether the last origin pick went by crowd ownership (pickOwned): see crowdRank. */
  private lastPickOwned = false;
  /**
   * Bumped by every change that can make a block an origin candidate or stop it being one, or
   * move an owner's wait: a block entering or leaving MISSING, a MISSING block's holders, a peer's
   * failure or first answer, an owner's gains, the limit, an origin pick outside pickOwned. While
   * it stands (and the other conditions of `ownedIdle` hold), pickOwned's answer "nothing before
   * time T" stands too, and its two passes over the file are not repeated (issue 24).
   */
  private candVersion = 0;
  /** Bumped by every change that can change crowdMembers' answer other than the passing of time. */
  private memberVersion = 0;
  /**
   * crowdMembers' last answer, valid at `from` <= now while the version stands and no member's
   * window (from its oldest time, `oldest`) or backoff (`backoffEnd`) has passed.
   */
  private membersCache:
    | {
        version: number;
        from: number;
        oldest: number;
        /** The least recent sighting among `absent` (it leaves at SHADOW_MS). */
        absentOldest: number;
        backoffEnd: number;
        list: string[];
        /** Peers whose host is in `list` carry this in `memberOf`. */
        gen: number;
      }
    | undefined;
  /** pickOwned found nothing to take before `until` (its wake-up contribution `wake`): see candVersion. */
  private ownedIdle:
    | {
        version: number;
        from: number;
        until: number;
        key: string;
        absentGen: number;
        originBlockMs: number;
        limit: number;
      }
    | undefined;
  /**
   * Recompute everything at every call, as before the caches above (candVersion, memberVersion,
   * readyVersion): test/scale/scheduler-reuse.test.ts runs a Scheduler with and one without them.
   */
  private noReuse = false;
  /** The member list ownership() was last called with (the same array: the same crowd). */
  private lastMembersRef: string[] | undefined;
  /** Peers that have not answered in this job (`answered` false): see trustSettled. */
  private unansweredPeers = 0;
  /** The latest backoffUntil ever set: at or after it no peer is backing off. */
  private backoffMax = -Infinity;
  /** assignPeers' per-call buffers: the ready peers and their slots. */
  private readyBuf: PeerState[] = [];
  private slotBuf: number[] = [];

  constructor(opts: SchedulerOptions) {
    this.blocks = BlockTable.of(opts.blocks);
    this.n = this.blocks.length;
    this.limit = this.n;
    this.state = new Uint8Array(this.n);
    this.originAttempts = new Uint16Array(this.n);
    this.originMismatches = new Uint8Array(this.n);
    this.peerAttempts = new Uint16Array(this.n);
    this.deferSince = new Float64Array(this.n);
    this.firstHeld = new Float64Array(this.n).fill(Infinity);
    this.lastPeerFail = new Uint8Array(this.n);
    this.holderCount = new Uint32Array(this.n);
    this.heldBits = new Uint32Array((this.n + 31) >>> 5);
    this.missBits = new Uint32Array((this.n + 31) >>> 5);
    this.words = (this.n + 31) >>> 5;
    this.heldPool = new Uint32Array(this.words * 4);
    for (let g = 0; g < this.n; g++) this.missBits[g >>> 5]! |= 1 << (g & 31);
    this.random = opts.random ?? Math.random;
    this.proven = opts.proven;
    this.o = {
      originConcurrency: opts.originConcurrency ?? 6,
      originRunBlocks: Math.max(1, opts.originRunBlocks ?? 1),
      aloneAfterMs: opts.aloneAfterMs ?? 3000,
      peerConcurrency: opts.peerConcurrency ?? 16,
      totalPeerConcurrency: opts.totalPeerConcurrency ?? 32,
      maxOriginAttempts: opts.maxOriginAttempts ?? 4,
      maxOriginMismatches: opts.maxOriginMismatches ?? 2,
      maxPeerAttempts: opts.maxPeerAttempts ?? 8,
      visibilityLagMs: opts.visibilityLagMs ?? 400,
      activeWindowMs: opts.activeWindowMs ?? 2000,
      crowdShadow: opts.crowdShadow ?? true,
      maxDeferMs: opts.maxDeferMs ?? 1000,
      originBlockMsPrior: opts.originBlockMsPrior ?? 250,
      peerBpsPrior: opts.peerBpsPrior ?? 20e6,
      self: opts.self,
      crowdVisible: opts.crowdVisible,
    };
    this.originBlockMs = this.o.originBlockMsPrior;
    for (let g = 0; g < this.n; g++) {
      const seg = this.blocks.seg[g]!;
      if (this.segStart[seg] === undefined) this.segStart[seg] = g;
      if (opts.present?.(g)) {
        this.setState(g, DONE);
        this.doneCount++;
        this.firstHeld[g] = -Infinity;
      }
    }
    // (Grown one segment at a time, the array kept half as much room again: 6 KiB per download of
    // 1,024 segments, times 10,000 clients in the scale simulation.)
    this.segStart = this.segStart.slice();
  }

  // ------------------------------------------------------------------ queries

  get total(): number {
    return this.n;
  }
  get completed(): number {
    return this.doneCount;
  }
  isDone(): boolean {
    return this.doneCount === this.n;
  }
  /** Set once a block cannot be obtained from any source; the job fails with it. */
  failed(): SchedulerFailure | undefined {
    return this.failure;
  }
  hasBlock(g: number): boolean {
    return this.state[g] === DONE;
  }
  /** Time (same clock as `now`) at which next() should be called again even without events. */
  nextWakeAt(): number | undefined {
    return Number.isFinite(this.wakeAt) ? this.wakeAt : undefined;
  }
  estimatedOriginBlockMs(): number {
    return this.originBlockMs;
  }

  /**
   * For traces (the scale simulation's duplicate analysis): when the last origin pick went by
   * crowd ownership, our rank for block `g` in it (0: we own it; k: k members score higher; one
   * more where a member left out of the crowd outscores us, see shadowed); undefined when it did not.
   */
  crowdRank(g: number): number | undefined {
    if (!this.lastPickOwned || !this.ranks) return undefined;
    return this.ranks.rank[g]! + (this.shadow?.[g] ?? 0);
  }

  /**
   * For traces: the identity of block `g`'s owner in the last crowd ranking (our own `self` when
   * it is ours), undefined without one.
   */
  crowdOwner(g: number): string | undefined {
    if (!this.ranks) return undefined;
    const o = this.ranks.owner[g]!;
    return o === OWN ? this.o.self : this.rankedMembers[o];
  }

  /** For traces: the members (without us) of the last crowd ranking. */
  crowdRanked(): readonly string[] {
    return this.rankedMembers;
  }

  /** Segments that still miss blocks. */
  segmentsNeeded(): number[] {
    const out: number[] = [];
    for (let s = 0; s < this.segStart.length; s++) {
      const start = this.segStart[s]!;
      const end = this.segStart[s + 1] ?? this.n;
      for (let g = start; g < end; g++)
        if (this.state[g] !== DONE) {
          out.push(s);
          break;
        }
    }
    return out;
  }

  blockOf(seg: number, index: number): number | undefined {
    const start = this.segStart[seg];
    if (start === undefined) return undefined;
    const g = start + index;
    const end = this.segStart[seg + 1] ?? this.n;
    return g < end ? g : undefined;
  }

  blocksInSegment(seg: number): number {
    const start = this.segStart[seg];
    if (start === undefined) return 0;
    return (this.segStart[seg + 1] ?? this.n) - start;
  }

  /** Peers that hold `seg` only partially (candidates for a block-list refresh). */
  partialHolders(seg: number): string[] {
    const out: string[] = [];
    for (const p of this.peerList) if (!p.banned && !p.full.has(seg) && !this.isSilent(p)) out.push(p.address);
    return out;
  }

  peerStats(): PeerStat[] {
    return [...this.peers.values()].map((p) => ({
      address: p.address,
      ewmaBps: Math.round(p.ewmaBps),
      outstanding: p.outstanding,
      blocks: p.stat.blocks,
      bytes: p.stat.bytes,
      failures: p.stat.failures,
      notAvailable: p.stat.notAvailable,
      badBlocks: p.stat.badBlocks,
      banned: p.banned,
      backoffUntil: p.backoffUntil,
    }));
  }

  peerCount(): number {
    return this.peers.size;
  }

  /**
   * Until when the origin gate may wait for the answers of peers on trial: the trial grace from
   * the download's first trial request (undefined: no trial yet).
   */
  trialGraceEndsAt(): number | undefined {
    return Number.isFinite(this.firstTrialAt) ? this.firstTrialAt + this.trialGraceMs() : undefined;
  }

  /**
   * The trial grace: TRIAL_GRACE_MS, plus TRIAL_LAG_FACTOR times the latest our own timers fired
   * in this download, at most TRIAL_COST_MS.
   */
  trialGraceMs(): number {
    return Math.min(TRIAL_COST_MS, TRIAL_GRACE_MS + TRIAL_LAG_FACTOR * this.lateMax);
  }

  /**
   * A timer of this download fired `ms` after it was due (the caller's event loop was starved of
   * CPU that long): the trial grace may grow (trialGraceMs).
   */
  timerLate(ms: number): void {
    if (!(ms > this.lateMax)) return;
    const before = this.trialGraceMs();
    this.lateMax = ms;
    // A longer grace can stop a block being an origin candidate (see candVersion).
    if (this.trialGraceMs() !== before) this.candVersion++;
  }

  /** Peers on trial with their trial request in flight (the origin gate waits for their answers). */
  trialsPending(): number {
    let n = 0;
    for (const p of this.peerList) if (!p.banned && this.onTrial(p) && p.outstanding > 0) n++;
    return n;
  }

  /**
   * Starts no block at or beyond `limit` until it is raised (the cache cannot take more and the
   * readers have not caught up, issue 16.4). Blocks already in flight complete normally.
   */
  setLimit(limit: number): void {
    const to = Math.max(0, Math.min(this.n, Math.floor(limit)));
    if (to !== this.limit) this.candVersion++;
    this.limit = to;
  }

  /**
   * Where the slowest reader streaming the download is (the next block it needs; undefined: no
   * reader). Once we fetch from the origin alone (no peer known for `aloneAfterMs`), origin runs
   * follow it, so blocks arrive in the order they are read and reach the reader from memory; a
   * flash crowd's spread over the file only matters while other clients may be starting too.
   */
  setReaderAt(block: number | undefined): void {
    this.readerAt = block;
  }

  /**
   * Another client (identity: its IP address) probed for this content just now: it is downloading
   * the same thing, so we are a flash crowd even before any of us holds a block the others could
   * see. While a crowd is known, each member takes from the origin first the blocks it owns by
   * rendezvous hashing over the members it knows (every client computes the same owner from the
   * same view; views that differ move only the blocks of the members one side lacks), and another
   * member's block only after a grace period (protocol/engine.md, "Flash crowds"). `member`
   * undefined: a crowd whose member cannot be told apart (several daemons probing from one
   * loopback address): it only makes us a crowd (fewer origin streams, no long ranges).
   */
  crowdSeen(member: string | undefined, now: number): void {
    this.clock = Math.max(this.clock, now);
    if (member === undefined) this.anonymousCrowdAt = now;
    else if (member !== this.o.self) {
      // A member seen again stays a member (its window only moves later), and so does one seen
      // within its window that was left out (excluded, see crowdMembers).
      const last = this.probers.get(member);
      if (last !== undefined && now > last && now - last <= SHADOW_MS) this.noteGap(now - last);
      if (last === undefined || now < last || !(now - last <= this.memberWindow(now))) this.memberVersion++;
      this.probers.set(member, now);
    }
  }

  private noteGap(ms: number): void {
    this.seenGaps[Math.min(this.seenGaps.length - 1, Math.floor(ms / GAP_BUCKET_MS))]!++;
    this.windowDirty = true;
    if (++this.gapCount < GAP_SAMPLES_HALVE) return;
    this.gapCount = 0;
    for (let b = 0; b < this.seenGaps.length; b++) {
      this.seenGaps[b] = this.seenGaps[b]! >>> 1;
      this.gapCount += this.seenGaps[b]!;
    }
  }

  /** How long a member counts after it was last seen (see MEMBER_WINDOW_MAX_MS). */
  private memberWindow(now: number): number {
    if (!this.windowDirty || now - this.windowAt < 1000) return this.windowMs;
    this.windowDirty = false;
    this.windowAt = now;
    let w = MEMBER_WINDOW_MS;
    if (this.gapCount >= GAP_SAMPLES_MIN) {
      const target = this.gapCount * GAP_QUANTILE;
      let sum = 0;
      let b = 0;
      for (; b < this.seenGaps.length - 1; b++) {
        sum += this.seenGaps[b]!;
        if (sum >= target) break;
      }
      const edge = Math.ceil(((b + 1) * GAP_BUCKET_MS) / 1000) * 1000;
      w = Math.min(MEMBER_WINDOW_MAX_MS, Math.max(MEMBER_WINDOW_MS, edge));
    }
    if (w !== this.windowMs) {
      this.windowMs = w;
      this.memberVersion++;
    }
    return w;
  }

  /** Another client probed for this content within MEMBER_WINDOW_MS. */
  private crowdByProbe(now: number): boolean {
    const w = this.memberWindow(now);
    if (now - this.anonymousCrowdAt <= w) return true;
    for (const at of this.probers.values()) if (now - at <= w) return true;
    return false;
  }

  /**
   * Identities of the other crowd members that can still be expected to fetch blocks from the
   * origin: seen probing, or growing, within MEMBER_WINDOW_MS, less those that cannot (issue 26,
   * protocol/engine.md "Flash crowds" 9): a member we know as a peer that is failing us (banned,
   * quarantined or backing off after a timeout or error: a daemon starved of CPU, or gone) unless
   * it is seen at work on its units ("Flash crowds" 12), and a member that already holds every block (its download is over; it stands in for nobody). Their
   * units go to the next owner by rendezvous score at once, instead of waiting a grace period per
   * rank for somebody who will not fetch them.
   */
  private crowdMembers(now: number): string[] {
    // The same answer as at the last call while nothing it depends on changed (memberVersion) and
    // no time limit in it passed: every member counted is still within its window (the oldest
    // one's time decides) and no peer's backoff left then has ended.
    const window = this.memberWindow(now);
    const c = this.membersCache;
    if (
      !this.noReuse &&
      c &&
      c.version === this.memberVersion &&
      now >= c.from &&
      now - c.oldest <= window &&
      now - c.absentOldest <= SHADOW_MS &&
      now < c.backoffEnd &&
      this.trustSettled()
    )
      return c.list;
    // Member -> the latest time that makes it one (a probe, or a growth of one of its peers).
    const out = new Map<string, number>();
    let backoffEnd = Infinity;
    for (const [m, at] of this.probers) {
      if (now - at <= window) out.set(m, at);
      else if (!(now - at <= SHADOW_MS)) this.probers.delete(m);
    }
    for (const p of this.peerList)
      if (!p.banned && !p.relay && now - p.lastGrowth <= window && !this.unheard(p))
        out.set(p.host, Math.max(out.get(p.host) ?? -Infinity, p.lastGrowth));
    if (this.o.self !== undefined) out.delete(this.o.self);
    let list: string[] = [];
    let oldest = Infinity;
    // Left out below: done or banned (gone), or failing us and not at work (failing).
    const gone = new Set<string>();
    const failing = new Set<string>();
    if (out.size > 0) {
      const segments = this.segStart.length;
      // A member backing off after failing us is left out unless it is at work on its units (seen
      // gaining its own blocks at the crowd's pace, as in scanOwned): our requests to it failing is
      // our own knowledge, its progress every member sees alike. In a crowd starved of CPU every
      // member times out on some others, each on other ones: leaving them all out at once gave
      // every member its own crowd (a 16-client crowd's members ranked over 1-15 of 15 others), and
      // each owner of a unit in its own view fetched it (protocol/engine.md "Flash crowds" 12). A
      // member starved in its own fetches too (slower than that) is left out as before (item 9).
      const pace = this.pace();
      const liveMs = 2 * pace + this.o.visibilityLagMs;
      for (const p of this.peerList) {
        if (p.relay) continue;
        if (p.banned || p.full.size >= segments) {
          out.delete(p.host);
          gone.add(p.host);
          continue;
        }
        if (!(p.backoffUntil > now)) continue;
        backoffEnd = Math.min(backoffEnd, p.backoffUntil);
        const gain = this.ownerGain.get(p.host);
        if (gain && gain.gap <= 2 * pace && now - gain.at <= liveMs)
          backoffEnd = Math.min(backoffEnd, gain.at + liveMs + 1);
        else if (out.delete(p.host)) failing.add(p.host);
      }
      list = [...out.keys()];
      for (const at of out.values()) oldest = Math.min(oldest, at);
    }
    // The members seen within SHADOW_MS that are not in the list (expired from the member window,
    // or failing us): they shadow the units they outscore us for (scanOwned). Those that are done
    // (every block) or banned do not. (No allocation while every one of them is in the list.)
    let absent: Array<[string, 'e' | 'f']> = [];
    let absentOldest = Infinity;
    if (this.o.self !== undefined && list.length > 0) {
      let seen: Map<string, number> | undefined;
      for (const [m, at] of this.probers) {
        if (!(now - at <= SHADOW_MS) || m === this.o.self || out.has(m) || gone.has(m)) continue;
        seen ??= new Map();
        seen.set(m, at);
      }
      for (const p of this.peerList) {
        if (p.relay || p.banned || out.has(p.host) || gone.has(p.host) || p.host === this.o.self) continue;
        if (!(now - p.lastGrowth <= SHADOW_MS) || this.unheard(p)) continue;
        seen ??= new Map();
        seen.set(p.host, Math.max(seen.get(p.host) ?? -Infinity, p.lastGrowth));
      }
      if (seen)
        for (const [m, at] of seen) {
          if (absent.length >= SHADOW_MAX) break;
          absent.push([m, failing.has(m) ? 'f' : 'e']);
          absentOldest = Math.min(absentOldest, at);
        }
    }
    const old = this.absent;
    if (old.length !== absent.length || old.some(([m], k) => m !== absent[k]![0])) this.absentGen++;
    else if (old.every(([, w], k) => w === absent[k]![1])) absent = old;
    this.absent = absent;
    const gen = (this.membersCache?.gen ?? 0) + 1;
    if (out.size > 0) for (const p of this.peerList) if (out.has(p.host)) p.memberOf = gen;
    this.membersCache = { version: this.memberVersion, from: now, oldest, absentOldest, backoffEnd, list, gen };
    return list;
  }

  /**
   * Whether the peers' trial state (unheard, onTrial, isSilent) can change only by calls that bump
   * the versions above: no `proven` callback to consult, or no peer whose answer it could decide.
   */
  private trustSettled(): boolean {
    return this.proven === undefined || (this.unansweredPeers === 0 && this.silentCount === 0);
  }

  /**
   * Per block, for the crowd `members` (+ self): our rank by rendezvous score (0: we own it; k: k
   * members score higher) and the owner (index into the sorted member list, OWN for us).
   * Recomputed only when the crowd changed.
   */
  private ownership(members: string[], now: number): { rank: Uint16Array; owner: Uint16Array } {
    // The same list in the same order as last time (the usual case): the same key, without sorting.
    if (this.ranks && members === this.lastMembersRef && !this.noReuse) return this.ranks;
    this.lastMembersRef = members;
    const last = this.lastMembers;
    if (this.ranks && members.length === last.length && members.every((m, i) => m === last[i])) return this.ranks;
    this.lastMembers = members.slice();
    const sorted = [...members].sort();
    const key = `${this.o.self} ${sorted.join(' ')}`;
    if (this.ranks && key === this.ownershipKey) return this.ranks;
    this.ownershipSince = now;
    const selfSeed = fnv1a(this.o.self!);
    const seeds = sorted.map(fnv1a);
    const rank = this.ranks?.rank ?? new Uint16Array(this.n);
    const owner = this.ranks?.owner ?? new Uint16Array(this.n);
    for (let g = 0; g < this.n; g++) {
      if (g % CROWD_UNIT_BLOCKS !== 0) {
        // The same owner for the whole unit (computed at its first block).
        rank[g] = rank[g - 1]!;
        owner[g] = owner[g - 1]!;
        continue;
      }
      const unit = g / CROWD_UNIT_BLOCKS;
      const own = score(selfSeed, unit);
      let r = 0,
        best = own,
        bestSeed = selfSeed,
        who = OWN;
      for (let i = 0; i < seeds.length; i++) {
        const seed = seeds[i]!;
        const other = score(seed, unit);
        // Ties (practically never) go to the smaller seed: the same answer on every client.
        if (other > own || (other === own && seed < selfSeed)) r++;
        if (other > best || (other === best && seed < bestSeed)) {
          best = other;
          bestSeed = seed;
          who = Math.min(i, OWN - 1);
        }
      }
      rank[g] = Math.min(r, OWN);
      owner[g] = who;
    }
    this.ranks = { rank, owner };
    this.rankedMembers = sorted;
    this.ownershipKey = key;
    return this.ranks;
  }

  /**
   * Per block, 1 when a member left out of the crowd we rank over but seen within SHADOW_MS
   * (`absent`, see crowdMembers) outscores us for its unit: our rank there is one more than in
   * `ownership` (protocol/engine.md "Flash crowds" 15). That member ranks itself over its own view,
   * which may well lack us too, so it may own the unit in its view and be fetching it; we take it
   * only as its first stand-in would, one grace later. All absent members together add one rank at
   * most (a member that left costs one grace on its units, never one per absent member). Recomputed
   * only when the absent members changed.
   */
  private shadowed(): Uint8Array {
    // (It depends on the absent members and our own identity only, not on the crowd we rank over.)
    if (this.shadow && this.shadowFor === this.absentGen && !this.noReuse) return this.shadow;
    this.shadowFor = this.absentGen;
    const shadow = this.shadow ?? new Uint8Array(this.n);
    shadow.fill(0);
    if (this.absent.length > 0 && this.o.crowdShadow) {
      const selfSeed = fnv1a(this.o.self!);
      const seeds = this.absent.map(([m]) => fnv1a(m));
      for (let g = 0; g < this.n; g += CROWD_UNIT_BLOCKS) {
        const unit = g / CROWD_UNIT_BLOCKS;
        const own = score(selfSeed, unit);
        let hit = false;
        for (const seed of seeds) {
          const other = score(seed, unit);
          if (other > own || (other === own && seed < selfSeed)) {
            hit = true;
            break;
          }
        }
        if (hit) shadow.fill(1, g, Math.min(this.n, g + CROWD_UNIT_BLOCKS));
      }
    }
    this.shadow = shadow;
    return shadow;
  }

  /**
   * For traces: the members left out of our crowd that outscore us for block `g`'s unit, each as
   * `host:e` (not seen within the member window) or `host:f` (failing us), space-separated; '' none.
   */
  crowdShadow(g: number): string {
    if (this.absent.length === 0 || this.o.self === undefined) return '';
    const unit = Math.floor(g / CROWD_UNIT_BLOCKS);
    const own = score(fnv1a(this.o.self), unit);
    return this.absent
      .filter(([m]) => score(fnv1a(m), unit) > own)
      .map(([m, why]) => `${m}:${why}`)
      .join(' ');
  }

  // ------------------------------------------------------------------ knowledge about peers

  private peer(address: string): PeerState {
    let p = this.peers.get(address);
    if (!p) {
      p = {
        address,
        host: hostOf(address),
        ewmaBps: this.o.peerBpsPrior,
        outstanding: 0,
        consecutiveFailures: 0,
        backoffUntil: 0,
        banned: false,
        full: this.segmentSet(),
        partial: undefined,
        lastGrowth: -Infinity,
        off: this.peerList.length * this.words,
        heldCount: 0,
        relay: false,
        memberOf: 0,
        answered: false,
        trialSince: Infinity,
        silent: false,
        stat: { blocks: 0, bytes: 0, failures: 0, notAvailable: 0, badBlocks: 0 },
      };
      this.peers.set(address, p);
      this.peerList.push(p);
      if (p.off + this.words > this.heldPool.length) {
        const grown = new Uint32Array(
          Math.max(Math.ceil((this.heldPool.length * 1.5) / this.words) * this.words, p.off + this.words),
        );
        grown.set(this.heldPool);
        this.heldPool = grown;
      }
      this.unansweredPeers++;
    }
    return p;
  }

  private segmentSet(): SegmentSet {
    this.segSlab ??= new Slab((this.segStart.length + 31) >>> 5);
    const off = this.segSlab.take();
    return new SegmentSet(this.segStart.length, this.segSlab.buf, off);
  }

  addPeer(address: string): void {
    this.peer(address);
  }

  /** The peer is a hosted cache: its holdings grow with other clients' offers; never a crowd member. */
  peerIsRelay(address: string): void {
    this.peer(address).relay = true;
    this.memberVersion++;
  }

  /**
   * The peer holds every block of `seg` (a ProbeMatch for a complete segment). `grewAt`: the peer
   * is known to be downloading (v2 content, where a segment is one block and a new sighting is
   * its progress), so it counts as active from that time.
   */
  peerHasSegment(address: string, seg: number, grewAt?: number): void {
    const p = this.peer(address);
    if (grewAt !== undefined) this.clock = Math.max(this.clock, grewAt);
    // Known already: its blocks were noted held when it was added, and `partial` lacks it.
    if (p.full.has(seg)) return;
    if (grewAt !== undefined) this.grew(p, Math.max(p.lastGrowth, grewAt));
    const first = this.segStart[seg];
    if (first !== undefined)
      for (let g = first; g < first + this.blocksInSegment(seg); g++) {
        this.noteHeld(g, this.clock);
        this.setHeld(p, g, true);
        if (grewAt !== undefined) this.ownerGained(p, g, grewAt);
      }
    p.full.add(seg);
    if (p.full.size >= this.segStart.length) this.memberVersion++;
    if (p.full.size === 1) this.readyVersion++;
    p.partial?.delete(seg);
  }

  /**
   * Sets the peer's last growth; a peer of a host that was no member when crowdMembers last
   * answered, outside its window then (or one moving back in time), may change the answer.
   */
  private grew(p: PeerState, at: number): void {
    if (at === p.lastGrowth) return;
    const c = this.membersCache;
    // (A member whose peer grows stays one: its window only moves later.)
    if (!c || at < p.lastGrowth || (p.memberOf !== c.gen && !(c.from - p.lastGrowth <= this.windowMs)))
      this.memberVersion++;
    p.lastGrowth = at;
  }

  /**
   * Replaces what we know about the peer's blocks of `seg` (a block list). A list covering the
   * whole segment marks it full.
   */
  peerBlocks(address: string, seg: number, indices: Iterable<number>, now: number): void {
    const p = this.peer(address);
    this.clock = Math.max(this.clock, now);
    const count = this.blocksInSegment(seg);
    const set = new Set<number>();
    for (const i of indices)
      if (Number.isInteger(i) && i >= 0 && i < count) {
        set.add(i);
        this.noteHeld(this.segStart[seg]! + i, now);
      }
    if (set.size === count && count > 0) {
      this.peerHasSegment(address, seg);
      return;
    }
    if (p.full.delete(seg)) {
      this.memberVersion++;
      this.readyVersion++;
    }
    const old = p.partial?.get(seg);
    if (!old || set.size > old.size) this.grew(p, now);
    p.partial ??= new Map();
    p.partial.set(seg, set);
    for (let i = 0; i < count; i++) {
      const g = this.segStart[seg]! + i;
      const gained = set.has(i) && !this.holds(p, g);
      this.setHeld(p, g, set.has(i));
      if (gained) this.ownerGained(p, g, now);
    }
  }

  /**
   * The peer holds this one block (it served it, or named it as NextBlockIndex). This is new
   * knowledge, not evidence that the peer is downloading, so it does not mark the peer active.
   */
  peerHasBlock(address: string, seg: number, index: number): void {
    const p = this.peer(address);
    if (p.full.has(seg) || index < 0 || index >= this.blocksInSegment(seg)) return;
    this.noteHeld(this.segStart[seg]! + index, this.clock);
    p.partial ??= new Map();
    let set = p.partial.get(seg);
    if (!set) {
      set = new Set();
      p.partial.set(seg, set);
    }
    set.add(index);
    this.setHeld(p, this.segStart[seg]! + index, true);
  }

  /**
   * The peer gained block `g` at `at` (a sighting of its progress): when it is the block's owner
   * in our crowd ranking, it is at work on its units (ownerGain, see pickOwned).
   */
  private ownerGained(p: PeerState, g: number, at: number): void {
    const o = this.ranks?.owner[g];
    if (o === undefined || o >= OWN - 1 || this.rankedMembers[o] !== p.host) return;
    // Only a block nobody (us included) was known to hold before this round of sightings: one it
    // got from a stand-in says nothing about its own origin streams.
    if (this.firstHeld[g]! < this.clock || this.state[g] === DONE) return;
    // Its pace is unknown until a second gain (Infinity: not taken as at work), then the first
    // interval, then an EWMA. Gains seen with the same time count once (a sighting names several
    // blocks at a time).
    const last = this.ownerGain.get(p.host);
    // The first gain of any owner since we began picking by ownership measures the crowd's origin
    // block time (pace).
    if (this.crowdFrom !== undefined && this.crowdFirstGainMs === undefined && at >= this.crowdFrom)
      this.crowdFirstGainMs = Math.max(0, at - this.crowdFrom - this.o.visibilityLagMs);
    if (!last) this.ownerGain.set(p.host, { at, gap: Infinity });
    else if (at > last.at) {
      last.gap = last.gap === Infinity ? at - last.at : EWMA_ALPHA * (at - last.at) + (1 - EWMA_ALPHA) * last.gap;
      last.at = at;
    } else return;
    this.candVersion++;
  }

  private noteHeld(g: number, now: number): void {
    if (this.firstHeld[g] === Infinity) this.firstHeld[g] = now;
  }

  private setState(g: number, to: number, candidateMayChange = true): void {
    if (candidateMayChange && (to === MISSING || this.state[g] === MISSING)) this.candVersion++;
    this.state[g] = to;
    if (to === MISSING) this.missBits[g >>> 5]! |= 1 << (g & 31);
    else this.missBits[g >>> 5]! &= ~(1 << (g & 31));
  }

  /** Whether `p` is known to hold block `g` (its segment in `full`, or the block in `partial`). */
  private holds(p: PeerState, g: number): boolean {
    return (this.heldPool[p.off + (g >>> 5)]! & (1 << (g & 31))) !== 0;
  }

  /** Keeps `bits`, `heldCount` and `holderCount` in step with `full`/`partial` (every change goes through here). */
  private setHeld(p: PeerState, g: number, on: boolean): void {
    const w = g >>> 5,
      bit = 1 << (g & 31);
    const pool = this.heldPool;
    if (((pool[p.off + w]! & bit) !== 0) === on) return;
    if (this.state[g] === MISSING) this.candVersion++;
    pool[p.off + w]! ^= bit;
    p.heldCount += on ? 1 : -1;
    // (Holding something or nothing changes the peer's readiness: assignPeers.)
    if (p.heldCount === (on ? 1 : 0)) this.readyVersion++;
    this.holderCount[g]! += on ? 1 : -1;
    const holders = this.holderCount[g]!;
    if (holders === 0) this.heldBits[w]! &= ~bit;
    else this.heldBits[w]! |= bit;
  }

  /**
   * No known peer holds `g`, and skipping the per-peer loop for it skips no side effect (isSilent
   * clears `silent` when the retrieval client has come to know the address).
   */
  private nobodyHolds(g: number): boolean {
    return this.holderCount[g] === 0 && this.silentCount === 0;
  }

  private usable(p: PeerState, now: number): boolean {
    return !p.banned && p.backoffUntil <= now && !this.isSilent(p);
  }

  /**
   * Has never answered (on trial, or failed its trial): whatever its sightings say, it is not an
   * active peer or a crowd member, so it shapes neither the origin streams nor the block
   * ownership (issue 27.9: a tarpit re-sighted as a v2 holder every second halved the origin
   * streams and left half the blocks to it). A genuine member counts once it answered once, or
   * from the start when it is seen probing (crowdSeen).
   */
  private unheard(p: PeerState): boolean {
    return this.isSilent(p) || this.onTrial(p);
  }

  /** Failed its trial and is still not known to answer (see PeerState.silent). */
  private isSilent(p: PeerState): boolean {
    if (!p.silent) return false;
    if (this.proven?.(p.address)) {
      // Its answer came after all: usable again at once.
      p.silent = false;
      this.silentCount--;
      p.backoffUntil = 0;
      this.candVersion++;
      this.memberVersion++;
      this.readyVersion++;
    }
    return p.silent;
  }

  /** Never gave a valid answer, here or (as the retrieval client knows) before: see SchedulerOptions.proven. */
  private onTrial(p: PeerState): boolean {
    return !p.answered && this.proven !== undefined && !this.proven(p.address);
  }

  /**
   * Whether `p` may be given `g` as far as its trial goes: a peer on trial takes one block at a
   * time, and never a block another peer already failed (the next new address of a host that
   * never answers would otherwise hold the same block hostage again and again).
   */
  private mayTrial(p: PeerState, g: number): boolean {
    return !this.onTrial(p) || (p.outstanding === 0 && this.peerAttempts[g] === 0 && !this.tooLateForTrials);
  }

  private forget(p: PeerState, g: number): void {
    const b = this.blocks.at(g)!;
    if (p.full.delete(b.seg)) {
      this.memberVersion++;
      this.readyVersion++;
      const set = new Set<number>();
      for (let i = 0; i < this.blocksInSegment(b.seg); i++) if (i !== b.index) set.add(i);
      p.partial ??= new Map();
      p.partial.set(b.seg, set);
    } else p.partial?.get(b.seg)?.delete(b.index);
    this.setHeld(p, g, false);
  }

  /**
   * Some usable peer is believed to hold `g` and peers have not failed it too often. `forOrigin`:
   * a peer on trial counts only while it could still take `g` (see mayTrial) or its trial request
   * is younger than the trial grace (trialGraceMs): a host claiming everything under addresses that never answer
   * must not stall a download (issue 16.5), while a genuine peer answers its trial within a round
   * trip and takes the rest from then on.
   */
  private peerCanSupply(g: number, now: number, forOrigin = false): boolean {
    if (this.peerAttempts[g]! >= this.o.maxPeerAttempts || this.nobodyHolds(g)) return false;
    // Inside next(), for an origin pick: one bit test when a usable peer not on trial holds it (the
    // loop below would find that peer, or an earlier one that returns true as well; its only side
    // effects, a silent peer's flag and the trial grace's wake-up, cannot happen when no peer is
    // silent and the origin delivered or no trial started). Origin picks asked this per block and
    // per peer: 24% of a 200-client crowd's CPU (issue 24). Otherwise, the loop.
    if (forOrigin && this.inNext && this.silentCount === 0 && (this.originDone > 0 || this.firstTrialAt === Infinity)) {
      const bits = this.supplyMap(now);
      if ((bits[g >>> 5]! & (1 << (g & 31))) !== 0) return true;
    }
    for (const p of this.peerList) {
      if (!this.usable(p, now) || !this.holds(p, g)) continue;
      if (!forOrigin || this.mayTrial(p, g)) return true;
      // Only before the origin delivered anything, and only within the grace of the download's
      // first trial: once it runs, an unproven address gets its one trial block in parallel with
      // it and pauses nothing, and a later batch of new addresses does not restart the wait
      // (issue 27.9: each new batch of tarpit addresses held every block back for the grace).
      const graceEnd = this.firstTrialAt + this.trialGraceMs();
      if (this.peerAttempts[g] === 0 && this.originDone === 0 && now < graceEnd) {
        this.wakeAt = Math.min(this.wakeAt, graceEnd);
        return true;
      }
    }
    return false;
  }

  /** The blocks some usable peer not on trial holds, as a bitmap (once per next() call, see `supply`). */
  private supplyMap(now: number): Uint32Array {
    if (this.supply) return this.supply;
    this.supplyBuf ??= new Uint32Array((this.n + 31) >>> 5);
    const bits = this.supplyBuf;
    bits.fill(0);
    for (const p of this.peerList) {
      if (p.heldCount === 0 || !this.usable(p, now) || this.onTrial(p)) continue;
      const pool = this.heldPool;
      const off = p.off;
      for (let w = 0; w < bits.length; w++) bits[w]! |= pool[off + w]!;
    }
    this.supply = bits;
    return bits;
  }

  /**
   * Whether some usable peer (not banned, not backing off or quarantined) is believed to hold
   * block `g` and may be asked for it now. A query for tests and traces: no side effects.
   */
  usablePeerHolds(g: number, now: number): boolean {
    if (this.peerAttempts[g]! >= this.o.maxPeerAttempts || this.nobodyHolds(g)) return false;
    for (const p of this.peerList) if (this.usable(p, now) && this.holds(p, g)) return true;
    return false;
  }

  // ------------------------------------------------------------------ decisions

  /**
   * Assignments to start now; each moves its block to in-flight until a result is reported.
   * `allowOrigin` false holds origin fetches back (initial discovery wait).
   */
  next(now: number, allowOrigin = true): Assignment[] {
    this.supply = undefined;
    this.inNext = true;
    try {
      return this.decide(now, allowOrigin);
    } finally {
      this.inNext = false;
      this.supply = undefined;
    }
  }

  private decide(now: number, allowOrigin: boolean): Assignment[] {
    this.clock = Math.max(this.clock, now);
    this.wakeAt = Infinity;
    const out: Assignment[] = [];
    if (this.failure || this.isDone()) return out;
    const left = this.n - this.doneCount - this.peerInflight - this.originInflight;
    this.tooLateForTrials =
      this.originDone > 0 && (left * this.originBlockMs) / Math.max(1, this.originLimit(now)) < TRIAL_COST_MS;
    this.assignPeers(now, out);
    const originCap = this.originLimit(now);
    // Alone: no peer known (a known peer may be fetching the same content unseen so far), apart
    // from addresses that were asked and never answered: a host naming addresses that never
    // answer kept every origin request one block long for the whole download (issue 27.9).
    if (this.anyPeerCounts() || this.crowdByProbe(now)) this.aloneSince = undefined;
    else if (allowOrigin) this.aloneSince ??= now;
    const alone = this.aloneSince !== undefined && now - this.aloneSince >= this.o.aloneAfterMs && this.originDone > 0;
    this.alone = alone;
    const runCap = alone ? this.o.originRunBlocks : 1;
    if (!alone && this.aloneSince !== undefined && this.o.originRunBlocks > 1)
      this.wakeAt = Math.min(this.wakeAt, this.aloneSince + this.o.aloneAfterMs);
    while (allowOrigin && this.originInflight < originCap) {
      this.pickRun = undefined;
      const g = this.pickOrigin(now);
      if (g === undefined) break;
      const cap = this.pickRun ?? runCap;
      // Extend along our run while the next block is still ours to take (contiguous bytes: no wrap).
      let count = 1;
      while (count < cap && g + count < this.n && this.cursor === g + count && this.originCandidate(g + count, now)) {
        count++;
        this.cursor = (g + count) % this.n;
      }
      for (let h = g; h < g + count; h++) {
        this.setState(h, INFLIGHT);
        this.deferSince[h] = 0;
        this.originAttempts[h]!++;
      }
      this.originInflight++;
      out.push(count > 1 ? { kind: 'origin', block: g, count } : { kind: 'origin', block: g });
    }
    // (No peer backs off once `now` is past the latest backoff ever set.)
    if (this.backoffMax > now)
      for (const p of this.peerList)
        if (!p.banned && p.backoffUntil > now) this.wakeAt = Math.min(this.wakeAt, p.backoffUntil);
    return out;
  }

  /**
   * Origin requests allowed now. Blind starts (before our first origin block) and flash crowds
   * (other peers are downloading the same content over the same WAN link) use one stream: the
   * link is shared anyway, and every block in flight is one the others cannot see yet, which is
   * what makes clients fetch the same block twice. Alone, we use the full concurrency.
   */
  private originLimit(now: number): number {
    if (this.originDone === 0) return Math.min(1, this.o.originConcurrency);
    if (this.anyActivePeer(now) || this.crowdByProbe(now))
      return Math.min(CROWD_ORIGIN_STREAMS, this.o.originConcurrency);
    return this.o.originConcurrency;
  }

  private assignPeers(now: number, out: Assignment[]): void {
    if (this.peerInflight >= this.o.totalPeerConcurrency) return;
    // No block from `low` to `limit` both missing and held by any known peer: nothing to assign
    // (the usual call in a crowd: what peers hold is in flight or done). Not while a peer is silent:
    // the readiness check below may clear that flag (isSilent), a side effect the skip would lose.
    if (this.silentCount === 0 && !this.noReuse && !this.anyOpen()) return;
    // (A peer holds something when its full set is not empty, or it holds a block: a partial set
    // only ever names blocks of the content.)
    const ready = this.readyBuf;
    const slots = this.slotBuf;
    const settled = this.silentCount === 0 && this.trustSettled() && this.backoffMax <= now && !this.noReuse;
    if (!settled || this.readyBuiltAt !== this.readyVersion) {
      // (usable, inlined: a peer not silent needs no isSilent call; its slots: one while on trial,
      // and one that answered is not.)
      ready.length = 0;
      slots.length = 0;
      const proven = this.proven;
      const concurrency = this.o.peerConcurrency;
      for (const p of this.peerList) {
        if (p.banned || p.backoffUntil > now || (p.silent && this.isSilent(p))) continue;
        const slot = !p.answered && proven !== undefined && !proven(p.address) ? 1 : concurrency;
        if (p.outstanding < slot && (p.full.size > 0 || p.heldCount > 0)) {
          ready.push(p);
          slots.push(slot);
        }
      }
      if (this.readyOff.length < ready.length) this.readyOff = new Int32Array(ready.length * 2);
      for (let i = 0; i < ready.length; i++) this.readyOff[i] = ready[i]!.off;
      // Kept for the next call while nothing but the versioned changes can alter it: no backoff
      // running out, no silent peer, no trial whose answer `proven` decides (every slot count is
      // then peerConcurrency, and a peer filling or freeing its last slot bumps readyVersion).
      this.readyBuiltAt = settled ? this.readyVersion : -1;
    }
    if (ready.length === 0) return; // (also spares the scan below when known peers hold nothing)
    while (this.low < this.n && this.state[this.low] === DONE) this.low++;
    const pool = this.heldPool;
    const offs = this.readyOff;
    // `held`: the blocks of word `word` (32 blocks) still missing that some ready peer with a free
    // slot holds, taken when the scan enters the word; slots only fill up and blocks only leave
    // MISSING during the scan, so a block outside it has no peer to go to now and is passed over at
    // one bit test, as the checks below would.
    let word = -1,
      held = 0;
    for (let g = this.low; g < this.limit && this.peerInflight < this.o.totalPeerConcurrency; g++) {
      if (g >>> 5 !== word) {
        word = g >>> 5;
        held = 0;
        const open = this.missBits[word]! & this.heldBits[word]!;
        if (open !== 0) {
          for (let i = 0; i < ready.length; i++) {
            const b = pool[offs[i]! + word]! & open;
            if (b !== 0 && ready[i]!.outstanding < slots[i]!) held |= b;
          }
        }
        if (held === 0) {
          g = word * 32 + 31;
          continue;
        }
      }
      if ((held & (1 << (g & 31))) === 0) continue;
      if (this.state[g] !== MISSING || this.peerAttempts[g]! >= this.o.maxPeerAttempts) continue;
      const len = this.blocks.size[g]!;
      const w = g >>> 5,
        bit = 1 << (g & 31);
      let best: PeerState | undefined;
      let bestCost = Infinity;
      for (let i = 0; i < ready.length; i++) {
        if ((pool[offs[i]! + w]! & bit) === 0) continue;
        const p = ready[i]!;
        if (p.outstanding >= slots[i]!) continue;
        if (!this.mayTrial(p, g)) continue;
        // Least expected completion time: queued work on that peer plus this block, at its rate.
        const cost = ((p.outstanding + 1) * len) / Math.max(p.ewmaBps, 1);
        if (cost < bestCost || (cost === bestCost && this.random() < 0.5)) {
          best = p;
          bestCost = cost;
        }
      }
      if (!best) continue;
      // A block a usable peer not on trial holds was no origin candidate (peerCanSupply), and the
      // peer was as usable when pickOwned last looked, or a change since has bumped candVersion:
      // taking it changes no candidate (most assignments in a crowd; see ownedIdle).
      this.setState(g, INFLIGHT, this.onTrial(best));
      if (this.onTrial(best)) {
        best.trialSince = Math.min(best.trialSince, now);
        this.firstTrialAt = Math.min(this.firstTrialAt, now);
      }
      // (A peer that fills its slots stays in the list, passed over by the slot checks above; one
      // that frees its last slot bumps readyVersion, see peerSucceeded.)
      best.outstanding++;
      this.peerInflight++;
      this.peerAttempts[g]!++;
      out.push({ kind: 'peer', block: g, peer: best.address });
      let free = false;
      for (let i = 0; i < ready.length; i++)
        if (ready[i]!.outstanding < slots[i]!) {
          free = true;
          break;
        }
      if (!free) return;
    }
  }

  /** Some word of blocks from `low` to `limit` has a block missing and held by a known peer. */
  private anyOpen(): boolean {
    if (this.low >= this.limit) return false;
    const last = (this.limit - 1) >>> 5;
    for (let w = this.low >>> 5; w <= last; w++) if ((this.missBits[w]! & this.heldBits[w]!) !== 0) return true;
    return false;
  }

  /** A block no usable peer can supply, not in flight, not waiting for an origin retry. */
  private originCandidate(g: number, now: number): boolean {
    if (this.state[g] !== MISSING || g >= this.limit) return false;
    const retryAt = this.retryAt;
    if (retryAt !== undefined && retryAt[g]! > now) {
      this.wakeAt = Math.min(this.wakeAt, retryAt[g]!);
      return false;
    }
    return !this.peerCanSupply(g, now, true);
  }

  /** A peer that is itself downloading (partial holder that gained blocks recently) holds `g`. */
  private activeHolder(g: number, now: number): boolean {
    if (this.nobodyHolds(g)) return false;
    for (const p of this.peerList) {
      if (p.banned || now - p.lastGrowth > this.o.activeWindowMs || this.unheard(p)) continue;
      if (this.holds(p, g)) return true;
    }
    return false;
  }

  /**
   * Some known peer may be another client fetching the same content: any peer but one that was
   * asked for a block and never answered (its trial request pending or failed). A genuine peer
   * answers its trial within a round trip and counts from then on; one that was never asked
   * (it holds nothing we still need) counts as before.
   */
  private anyPeerCounts(): boolean {
    for (const p of this.peerList) if (!(this.unheard(p) && (p.silent || p.trialSince < Infinity))) return true;
    return false;
  }

  private anyActivePeer(now: number): boolean {
    for (const p of this.peerList)
      if (!p.banned && now - p.lastGrowth <= this.o.activeWindowMs && !this.unheard(p)) return true;
    return false;
  }

  /**
   * Origin block choice. We continue our own run (sequential from a start point) while its next
   * block is still unclaimed. Otherwise we look at the gaps (circular runs of blocks nobody is
   * known to hold): a gap whose left neighbour an active peer holds is presumably being consumed
   * by that peer's own run, so we only split it in the middle when it is long enough that the
   * peer cannot reach the midpoint before it sees our blocks; short consumed gaps are left to the
   * consumer for a bounded time. Unconsumed gaps are entered at a random point of their first half.
   */
  private pickOrigin(now: number): number | undefined {
    this.lastPickOwned = false;
    if (this.alone && this.readerAt !== undefined && this.readerAt < this.n) {
      // Alone with a reader: the first missing block from the reader on (then from the start).
      for (let k = 0; k < this.n; k++) {
        const g = (this.readerAt + k) % this.n;
        if (this.originCandidate(g, now)) return this.startRun(g);
      }
      return undefined;
    }
    if (this.o.self !== undefined && this.o.crowdVisible?.() !== false) {
      const members = this.crowdMembers(now);
      if (members.length > 0) {
        this.lastPickOwned = true;
        return this.pickOwned(now, members);
      }
    }
    // (The gap logic below may set blocks' deferSince: pickOwned's last answer no longer stands.)
    this.candVersion++;
    if (this.cursor !== undefined && this.originCandidate(this.cursor, now)) {
      const g = this.cursor;
      this.cursor = (g + 1) % this.n;
      return g;
    }
    const active = this.anyActivePeer(now);
    const cand = new Uint8Array(this.n);
    let any = false;
    for (let g = 0; g < this.n; g++)
      if (this.originCandidate(g, now)) {
        cand[g] = 1;
        any = true;
      }
    if (!any) return undefined;
    if (this.cursor === undefined && !active && this.doneCount + this.originInflight + this.peerInflight === 0) {
      // First pick of a job nobody is known to help with: a random rotation, so clients that start
      // together without seeing each other yet spread over the file.
      return this.startRun(this.firstCandidateFrom(cand, Math.floor(this.random() * this.n)));
    }
    const gaps = this.gaps(cand);
    const c = this.originLimit(now);
    const t = Math.max(this.originBlockMs, 1);
    // Blocks an active consumer fetches from its left end before our first block becomes visible to it.
    const lead = Math.ceil((c * (t + this.o.visibilityLagMs)) / t);
    const minSplit = 2 * (lead + 1);
    const consumeWindow = 2 * (t + this.o.visibilityLagMs);
    // Entry regions: where a new run may start without racing a consumer. Several clients with the
    // same (lagged) view re-plan at about the same time, so the choice is randomised (gap weighted
    // by its region size squared, position uniform in the region) instead of a deterministic
    // midpoint, which would send them all to the same block and make them fetch in lockstep.
    const regions: Array<{ from: number; len: number; w: number }> = [];
    let weight = 0;
    let deferredPick: { g: number; score: number } | undefined;
    for (const gap of gaps) {
      const pred = (gap.start - 1 + this.n) % this.n;
      // Consumed: an active peer holds the block before the gap, and that block appeared only
      // recently (its run is moving). A frontier that stopped moving has no consumer behind it.
      const consumed = gap.len < this.n && now - this.firstHeld[pred]! <= consumeWindow && this.activeHolder(pred, now);
      let from: number, len: number;
      if (!consumed) {
        from = gap.start;
        len = active ? Math.ceil(gap.len / 2) : 1;
      } else if (gap.len >= minSplit) {
        const skip = Math.max(lead, Math.floor(gap.len / 4));
        from = gap.start + skip;
        len = Math.max(1, gap.len - 2 * Math.floor(gap.len / 4) - Math.max(0, lead - Math.floor(gap.len / 4)));
      } else {
        // Leave it to the consumer for a bounded time; blocks farther from it wait longer.
        for (let d = gap.len - 1; d >= 0; d--) {
          const g = (gap.start + d) % this.n;
          if (this.deferSince[g] === 0) this.deferSince[g] = now;
          const wait = Math.min(this.o.maxDeferMs, 2 * ((d / c + 1) * t + this.o.visibilityLagMs));
          const due = this.deferSince[g]! + wait;
          if (due <= now) {
            if (!deferredPick || d > deferredPick.score) deferredPick = { g, score: d };
          } else this.wakeAt = Math.min(this.wakeAt, due);
        }
        continue;
      }
      const w = (consumed ? gap.len / 2 : gap.len) ** 2;
      regions.push({ from, len, w });
      weight += w;
    }
    if (regions.length > 0) {
      let r = this.random() * weight;
      let pick = regions[regions.length - 1]!;
      for (const reg of regions) {
        if (r < reg.w) {
          pick = reg;
          break;
        }
        r -= reg.w;
      }
      return this.startRun((pick.from + Math.floor(this.random() * pick.len)) % this.n);
    }
    if (deferredPick) return this.startRun(deferredPick.g);
    return undefined;
  }

  /**
   * Origin block choice in a known crowd (crowdSeen): the first block we own, in file order (the
   * crowd fills the file from its start, where readers are); when none is left, another member's
   * block once its wait (below) has passed, so a member that left or stalls costs a wait, never
   * the download.
   */
  private pickOwned(now: number, members: string[]): number | undefined {
    this.ownership(members, now);
    this.shadowed();
    if (this.crowdFrom === undefined) {
      // Before our first origin request: while the crowd is still growing, wait for it to settle
      // (bounded), so that we rank over the view the others will have too.
      if (this.originDone === 0 && this.originInflight === 0) {
        this.settleFrom ??= now;
        const lag = this.o.visibilityLagMs;
        const until = Math.min(this.ownershipSince + lag, this.settleFrom + SETTLE_MAX_LAGS * lag);
        if (now < until) {
          this.cursor = undefined;
          this.wakeAt = Math.min(this.wakeAt, until);
          return undefined;
        }
      }
      this.crowdFrom = now;
    }
    // "Nothing before time T": when the last scan found nothing to take, the same scan gives the
    // same answer (and the same wake-up) until T, as long as nothing it reads changed: the blocks'
    // states and holders, the peers' use (no backoff running, no trial whose answer could change),
    // the owners' gains, the crowd, our origin block time and the limit (candVersion and the rest
    // below). Every candidate's deferSince was set by that scan. A crowd member with its origin
    // streams free and every candidate waiting for its owner asked this at every call (issue 24).
    const settled =
      !this.noReuse &&
      this.trustSettled() &&
      this.silentCount === 0 &&
      (this.originDone > 0 || this.firstTrialAt === Infinity) &&
      this.backoffMax <= now;
    const idle = this.ownedIdle;
    if (
      settled &&
      idle &&
      idle.version === this.candVersion &&
      idle.key === this.ownershipKey &&
      idle.absentGen === this.absentGen &&
      idle.originBlockMs === this.originBlockMs &&
      idle.limit === this.limit &&
      now >= idle.from &&
      now < idle.until
    ) {
      this.cursor = undefined;
      this.wakeAt = Math.min(this.wakeAt, idle.until);
      return undefined;
    }
    const saved = this.wakeAt;
    this.wakeAt = Infinity;
    const g = this.scanOwned(now, members);
    const until = this.wakeAt;
    this.wakeAt = Math.min(saved, until);
    this.ownedIdle =
      g === undefined && settled
        ? {
            version: this.candVersion,
            from: now,
            until,
            key: this.ownershipKey,
            absentGen: this.absentGen,
            originBlockMs: this.originBlockMs,
            limit: this.limit,
          }
        : undefined;
    return g;
  }

  /** pickOwned's scan: the first block we own, else another member's once its wait has passed. */
  private scanOwned(now: number, members: string[]): number | undefined {
    const { rank, owner } = this.ownership(members, now);
    const shadow = this.shadowed();
    this.cursor = undefined;
    for (let g = this.low; g < this.limit; g++)
      if (rank[g] === 0 && shadow[g] === 0 && this.originCandidate(g, now)) {
        // Once the crowd is stable, the rest of our unit goes in the same range request (next()
        // extends the run).
        if (now - this.ownershipSince >= CROWD_STABLE_MS) {
          this.cursor = g + 1;
          this.pickRun = CROWD_UNIT_BLOCKS - (g % CROWD_UNIT_BLOCKS);
        }
        return g;
      }
    // Another member's block: we are its k-th stand-in (k = our rank: members scoring higher, the
    // owner first) and take it k grace periods after we first wanted it, so stand-ins do not all
    // jump in at once. An owner works through its units in file order, CROWD_ORIGIN_STREAMS at a
    // time: the blocks of its next ones are probably in flight (invisible to us) and wait one grace
    // more, and the latest blocks go first. The grace is 3 origin block times, with no upper bound:
    // our own origin blocks measure how long the owner's take on the shared WAN.
    const pace = this.pace();
    const grace = Math.max(OWNER_GRACE_MIN_MS, 3 * pace);
    // Before any owner was seen gaining one of its own blocks, nothing measured the crowd's origin
    // block time: stand-ins wait as long as the first blocks of the whole crowd could take on one
    // WAN, one grace per member, at most NO_GAIN_WAIT_MS from our first pick (an owner that left or
    // fails our requests is no member, and its units have owners who do not wait). A fixed 60 s
    // kept a two-client crowd waiting a minute for a block its other member had dropped and would
    // never fetch (test/engine/crowd-agree.test.ts; test/sim/first-contact.test.ts went 14 -> 75 s).
    const noGainUntil =
      this.crowdFirstGainMs === undefined
        ? this.crowdFrom! + Math.min(NO_GAIN_WAIT_MS, (this.rankedMembers.length + 1) * grace)
        : -Infinity;
    // Candidates in file order, and whether each is among its owner's next units ("ahead"), in
    // buffers kept across calls (a pick per block made them most of the garbage of a crowd run).
    // (Per owner: as many as the ranked members, grown when the crowd grows.)
    const owners = Math.min(OWN, this.rankedMembers.length);
    if (!this.ownedBufs || this.ownedBufs.seen.length < owners)
      this.ownedBufs = {
        cand: this.ownedBufs?.cand ?? new Int32Array(this.n),
        ahead: this.ownedBufs?.ahead ?? new Uint8Array(this.n),
        seen: new Uint16Array(Math.max(owners, 32)),
        grew: new Float64Array(Math.max(owners, 32)),
      };
    const { cand, ahead, seen, grew } = this.ownedBufs;
    seen.fill(0, 0, owners);
    // When each owner was last seen gaining one of its own blocks: an owner that did so within two
    // origin block times, and gains them at least every two origin block times on average (ours
    // land one per origin block time and stream), is at work on its units, which we cannot see in flight:
    // in a big crowd on one WAN a unit takes tens of seconds, and stand-ins that stepped in
    // meanwhile fetched the same blocks as their owners (the scale simulation's duplicates, issue
    // 24). Its blocks wait until it has not gained one for that long, then the stand-ins' waits as
    // before. A slower owner (a daemon starved of CPU) is stood in for as before
    // (test/engine/endgame.test.ts).
    // (grew: NaN until looked up in this pick; hosted caches are never members, so never owners.)
    grew.fill(Number.NaN, 0, owners);
    const ranked = this.rankedMembers;
    const liveMs = 2 * pace + this.o.visibilityLagMs;
    let count = 0;
    for (let g = this.low; g < this.limit; g++) {
      if ((rank[g] === 0 && shadow[g] === 0) || !this.originCandidate(g, now)) continue;
      const o = owner[g]!;
      const isAhead = o !== OWN && seen[o]! < CROWD_ORIGIN_STREAMS * CROWD_UNIT_BLOCKS;
      if (isAhead) seen[o]!++;
      cand[count] = g;
      ahead[count++] = isAhead ? 1 : 0;
    }
    for (let k = count - 1; k >= 0; k--) {
      const g = cand[k]!;
      if (this.deferSince[g] === 0) this.deferSince[g] = now;
      const o = owner[g]!;
      // Our rank, one more where a member left out of our crowd outscores us (shadowed). A unit we
      // own in our crowd but not in the shadow's waits one grace from when we first wanted it: not
      // the wait for a crowd whose pace nobody measured yet (noGainUntil), as its owner is no
      // member we could measure, and it may have left.
      const r = rank[g]! + shadow[g]!;
      let at =
        rank[g] === 0
          ? this.deferSince[g]! + grace
          : Math.max(noGainUntil, this.deferSince[g]! + (r + ahead[k]!) * grace);
      if (o < OWN - 1) {
        if (Number.isNaN(grew[o])) {
          const gain = this.ownerGain.get(ranked[o]!);
          grew[o] = gain && gain.gap <= 2 * pace ? gain.at : -Infinity;
        }
        at = Math.max(at, grew[o]! + liveMs + (r - 1) * grace);
      }
      if (at <= now) return g;
      this.wakeAt = Math.min(this.wakeAt, at);
    }
    return undefined;
  }

  /**
   * The origin block time stand-ins judge owners by: ours, or the crowd's first measured one
   * (crowdFirstGainMs) when longer. A member that fetched nothing itself has only the prior, which
   * in a big crowd on one WAN is ten times too short (issue 24/25: stand-ins of a 500-client crowd
   * stepped in 12 s after start while every first block took 30-40 s).
   */
  private pace(): number {
    return Math.max(this.originBlockMs, this.crowdFirstGainMs ?? 0);
  }

  private firstCandidateFrom(cand: Uint8Array, from: number): number {
    for (let k = 0; k < this.n; k++) {
      const g = (from + k) % this.n;
      if (cand[g]) return g;
    }
    return from;
  }

  private startRun(g: number): number {
    this.cursor = (g + 1) % this.n;
    return g;
  }

  /** Maximal circular runs of candidate blocks. */
  private gaps(cand: Uint8Array): Array<{ start: number; len: number }> {
    const out: Array<{ start: number; len: number }> = [];
    let firstNon = -1;
    for (let g = 0; g < this.n; g++)
      if (!cand[g]) {
        firstNon = g;
        break;
      }
    if (firstNon < 0) return [{ start: 0, len: this.n }];
    let g = (firstNon + 1) % this.n;
    for (let k = 0; k < this.n; k++, g = (g + 1) % this.n) {
      if (!cand[g]) continue;
      const start = g;
      let len = 0;
      while (cand[g] && len < this.n) {
        len++;
        g = (g + 1) % this.n;
        k++;
      }
      out.push({ start, len });
    }
    return out;
  }

  // ------------------------------------------------------------------ results

  peerSucceeded(address: string, g: number, bytes: number, ms: number): void {
    const p = this.peer(address);
    if (p.outstanding >= this.o.peerConcurrency) this.readyVersion++;
    p.outstanding = Math.max(0, p.outstanding - 1);
    this.peerInflight = Math.max(0, this.peerInflight - 1);
    const sample = (bytes * 1000) / Math.max(ms, 1);
    p.ewmaBps = p.stat.blocks === 0 ? sample : EWMA_ALPHA * sample + (1 - EWMA_ALPHA) * p.ewmaBps;
    p.consecutiveFailures = 0;
    this.answered(p);
    p.stat.blocks++;
    p.stat.bytes += bytes;
    const b = this.blocks.at(g)!;
    if (!p.full.has(b.seg)) this.peerHasBlock(address, b.seg, b.index);
    this.complete(g);
  }

  peerFailed(address: string, g: number, why: PeerFailure, now: number): void {
    this.clock = Math.max(this.clock, now);
    const p = this.peer(address);
    p.outstanding = Math.max(0, p.outstanding - 1);
    this.peerInflight = Math.max(0, this.peerInflight - 1);
    this.readyVersion++;
    if (this.state[g] === INFLIGHT) this.setState(g, MISSING);
    // Every failure may change the peer's use (backoff, ban, trial) and its owner's wait.
    this.candVersion++;
    this.memberVersion++;
    if (why === 'not-available') {
      this.answered(p);
      p.stat.notAvailable++;
      this.forget(p, g);
      return;
    }
    p.stat.failures++;
    this.lastPeerFail[g] = why === 'timeout' ? 1 : why === 'bad-block' ? 3 : 2;
    if (why !== 'busy' && why !== 'bad-block' && this.onTrial(p)) {
      // Never answered and failed its one trial request: dropped at its first timeout (issue
      // 27.9; a tarpit address used to cost four, one backoff after another, and kept claiming
      // every block meanwhile). The block goes elsewhere at once; peerAttempts keeps it from the
      // next unproven address.
      if (!p.silent) this.silentCount++;
      p.silent = true;
      p.ewmaBps = 0;
      this.backoff(p, now + UNUSABLE_BACKOFF_MS); // what status shows; `silent` keeps it out beyond
      return;
    }
    if (why === 'unusable') {
      // A tarpit, or some other service a ProbeMatch named (quarantined by the client): left alone
      // for a long while; asking again costs nothing until its quarantine ends (no request is sent).
      p.consecutiveFailures++;
      p.ewmaBps = 0;
      this.backoff(p, now + UNUSABLE_BACKOFF_MS);
      return;
    }
    if (why === 'bad-block') {
      // Wrong data is never an accident on a verified protocol: do not use this peer again in this job.
      p.stat.badBlocks++;
      p.banned = true;
      p.ewmaBps = 0;
      return;
    }
    p.consecutiveFailures++;
    p.ewmaBps /= 2;
    this.backoff(p, now + Math.min(PEER_BACKOFF_MAX_MS, PEER_BACKOFF_BASE_MS * 2 ** (p.consecutiveFailures - 1)));
  }

  private backoff(p: PeerState, until: number): void {
    p.backoffUntil = until;
    this.backoffMax = Math.max(this.backoffMax, until);
  }

  /** The peer gave a valid answer in this job. */
  private answered(p: PeerState): void {
    if (p.answered) return;
    p.answered = true;
    this.unansweredPeers--;
    // (Without `proven` nobody is on trial, and an answer changes no decision.)
    if (this.proven === undefined) return;
    this.candVersion++;
    this.memberVersion++;
    this.readyVersion++;
  }

  /** `ms`: time this block took (in a range, since the previous block of it arrived). */
  originSucceeded(g: number, ms: number, endsRequest = true): void {
    if (endsRequest) this.originInflight = Math.max(0, this.originInflight - 1);
    this.originBlockMs = EWMA_ALPHA * Math.max(ms, 1) + (1 - EWMA_ALPHA) * this.originBlockMs;
    this.originDone++;
    // Our own first block in the crowd measures its origin block time as well as an owner's would.
    if (this.crowdFrom !== undefined && this.crowdFirstGainMs === undefined) {
      this.crowdFirstGainMs = Math.max(1, ms);
      this.candVersion++;
    }
    // Somebody else fetched the same block: our runs have met (or run in lockstep). Half the time
    // we leave and start a new run elsewhere, so of two lockstepped clients one soon moves away.
    let collided = false;
    if (this.holderCount[g] !== 0)
      for (const p of this.peerList)
        if (!p.banned && this.holds(p, g)) {
          collided = true;
          break;
        }
    if (collided && this.random() < 0.5) this.cursor = undefined;
    this.complete(g);
  }

  /** The range request of an origin assignment ended (its blocks were reported with `endsRequest` false). */
  originRequestEnded(): void {
    this.originInflight = Math.max(0, this.originInflight - 1);
  }

  /** An origin assignment was not carried out (a peer turned out to hold the block): undo it. */
  originSkipped(g: number, endsRequest = true): void {
    if (endsRequest) this.originInflight = Math.max(0, this.originInflight - 1);
    if (this.state[g] === INFLIGHT) this.setState(g, MISSING);
    if (this.originAttempts[g]! > 0) this.originAttempts[g]!--;
  }

  /**
   * Why block `g` goes to the origin now (for `peerdist explain`): no peer found at all, no peer
   * known to hold it, or the peers that hold it are banned, timed out or failed.
   */
  whyOrigin(g: number, now: number): OriginReason {
    if (this.peers.size === 0) return 'no-peer-found';
    const holders = [...this.peers.values()].filter((p) => this.holds(p, g));
    if (holders.length === 0)
      return this.lastPeerFail[g] === 1 ? 'peer-timeout' : this.lastPeerFail[g] === 3 ? 'peer-banned' : 'not-held';
    if (holders.every((p) => p.banned)) return 'peer-banned';
    if (this.lastPeerFail[g] === 0 && holders.every((p) => p.banned || !this.mayTrial(p, g))) return 'peer-unproven';
    void now;
    return this.lastPeerFail[g] === 1 ? 'peer-timeout' : 'peer-failed';
  }

  /**
   * Usable peers not known to hold all of `seg` (worth asking about one of its blocks), at most
   * `max`. With `g` (the block about to be fetched from the origin), the peers most likely to have
   * fetched it themselves come first: by rendezvous score of its crowd unit, the order in which the
   * crowd's members own and stand in for it (protocol/engine.md "Flash crowds" 13). A member
   * whose holdings did not reach us (its follow-up ProbeMatch went to the members that probed that
   * segment lately, or was lost) is the block's owner in its own view, so it scores high; asking
   * the first `max` peers in the order we met them missed it whenever the crowd had more peers.
   */
  recheckPeers(seg: number, now: number, max: number, g?: number): string[] {
    const out: PeerState[] = [];
    for (const p of this.peerList) {
      if (g === undefined && out.length >= max) break;
      if (this.usable(p, now) && !p.full.has(seg)) out.push(p);
    }
    if (g === undefined || out.length === 0) return out.map((p) => p.address);
    const unit = Math.floor(g / CROWD_UNIT_BLOCKS);
    return out
      .map((p) => ({ p, k: score(fnv1a(p.host), unit) }))
      .sort((a, b) => b.k - a.k)
      .slice(0, max)
      .map((x) => x.p.address);
  }

  originFailed(g: number, why: OriginFailure, now: number, endsRequest = true): void {
    this.clock = Math.max(this.clock, now);
    if (endsRequest) this.originInflight = Math.max(0, this.originInflight - 1);
    if (this.state[g] === INFLIGHT) this.setState(g, MISSING);
    if (why === 'mismatch') {
      this.originMismatches[g]!++;
      if (this.originMismatches[g]! >= this.o.maxOriginMismatches) {
        this.failure = { block: g, reason: 'mismatch', attempts: this.originAttempts[g]! };
        return;
      }
    }
    if (this.originAttempts[g]! >= this.o.maxOriginAttempts && !this.peerCanSupply(g, now)) {
      this.failure = { block: g, reason: 'origin', attempts: this.originAttempts[g]! };
      return;
    }
    this.retryAt ??= new Float64Array(this.n);
    this.retryAt[g] = now + ORIGIN_RETRY_BASE_MS * 2 ** Math.max(0, this.originAttempts[g]! - 1);
  }

  /**
   * A block counted as done is needed again: the cache could not take it, its copy in memory was
   * dropped, and then a reader came that still has to read it (issue 27.1). It is fetched again.
   */
  markMissing(g: number): void {
    if (this.state[g] !== DONE) return;
    this.setState(g, MISSING);
    this.doneCount--;
    if (g < this.low) this.low = g;
  }

  /** The block arrived by other means (another job filled the cache). */
  markDone(g: number): void {
    if (this.state[g] === DONE) return;
    if (this.state[g] === INFLIGHT) return; // the in-flight request reports and completes it
    this.complete(g);
  }

  private complete(g: number): void {
    if (this.state[g] === DONE) return;
    this.setState(g, DONE);
    this.doneCount++;
    this.noteHeld(g, this.clock);
  }
}
