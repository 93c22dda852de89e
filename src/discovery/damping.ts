/**
 * Responder damping (protocol/pccrd.md, "Responder behaviour"; after Windows 7): for a segment we downloaded ourselves, remember
 * the ProbeMatches we saw for it. When later asked for that segment: fewer than 10 replies seen ->
 * answer; at least 10 full-segment replies seen -> stay silent; otherwise answer with p = 0.33.
 *
 * We count distinct responders (by endpoint), not datagrams, because our prober repeats probes with
 * new MessageIDs and each repeat would otherwise recount the same peers.
 */
export const DAMPING_THRESHOLD = 10;
export const DAMPING_PROBABILITY = 0.33;
const MAX_SEGMENTS = 4096;
const MAX_RESPONDERS = 64;

import { ownKey } from './keys.js';

interface Seen {
  /** The table's key (its own copy: callers may pass substrings of a datagram's hex). */
  key: string;
  /**
   * endpoint -> v1 block count announced (v2: 1), or Infinity when it claimed the whole segment
   * (v2 bit): what shouldAnswer compares, a number instead of an object per observation.
   */
  responders: Map<string, number>;
  /**
   * Full-segment replies counted for a given `ourBlockCount`, until the next observation: a daemon
   * answering 255-ID probes from 31 peers asked this for every held segment of every probe.
   */
  full?: { ours: number; count: number };
  /** Neighbours in the table's order of last observation (least recent first). */
  older?: Seen;
  newer?: Seen;
}

export class DampingTable {
  private readonly segments = new Map<string, Seen>();
  /**
   * The segments in order of last observation, least recent first: the one to forget when the table
   * is full. A list beside the Map, not the Map's own order kept by deleting and re-adding each
   * observed segment (for every segment of every ProbeMatch: a large part of handling one).
   */
  private oldest?: Seen;
  private newest?: Seen;

  /** Prober side: a ProbeMatch from `endpoint` announced this segment. */
  observe(segmentHex: string, endpoint: string, blockCount: number, complete: boolean): void {
    let s = this.segments.get(segmentHex);
    if (s) this.unlink(s);
    else {
      if (this.segments.size >= MAX_SEGMENTS) {
        const gone = this.oldest!;
        this.unlink(gone);
        this.segments.delete(gone.key);
      }
      s = { key: ownKey(segmentHex), responders: new Map() };
      this.segments.set(s.key, s);
    }
    s.older = this.newest;
    if (this.newest) this.newest.newer = s;
    else this.oldest = s;
    this.newest = s;
    if (s.responders.has(endpoint) || s.responders.size < MAX_RESPONDERS) {
      s.responders.set(endpoint, complete ? Number.POSITIVE_INFINITY : blockCount);
      s.full = undefined;
    }
  }

  private unlink(s: Seen): void {
    if (s.older) s.older.newer = s.newer;
    else this.oldest = s.newer;
    if (s.newer) s.newer.older = s.older;
    else this.newest = s.older;
    s.older = undefined;
    s.newer = undefined;
  }

  /**
   * Responder side. `ourBlockCount` is how many blocks we hold when complete: a v1 reply counts as
   * full-segment when it announced at least that many (v1 has no "complete" flag on the wire).
   */
  shouldAnswer(segmentHex: string, ourBlockCount: number, random: () => number): boolean {
    const s = this.segments.get(segmentHex);
    if (!s || s.responders.size < DAMPING_THRESHOLD) return true;
    if (s.full?.ours !== ourBlockCount) {
      let count = 0;
      for (const announced of s.responders.values()) if (announced >= ourBlockCount) count++;
      s.full = { ours: ourBlockCount, count };
    }
    if (s.full.count >= DAMPING_THRESHOLD) return false;
    return random() < DAMPING_PROBABILITY;
  }

  seenCount(segmentHex: string): number {
    return this.segments.get(segmentHex)?.responders.size ?? 0;
  }
}
