/**
 * The hosted cache's view of crowds across subnets (protocol/pchc.md, "Crowds across subnets"):
 * which clients asked for which segments in the last moments, from MS-PCCRR requests that carry
 * the `PeerDist-Crowd` mark. Pure: the clock is passed in.
 *
 * Bounded: the first IDS_PER_REQUEST segment IDs of a request are recorded (clients downloading
 * the same content ask for the same missing segments in the same order, so an overlap shows in
 * the first ones), at most MAX_SEGMENTS segment IDs are tracked (the least recently named is
 * forgotten) and MAX_ASKERS addresses per segment (the oldest is forgotten).
 */
import type { IncomingMessage } from 'node:http';
import { decodeRequest } from '../protocol/pccrr/codec.js';
import { CROWD_HEADER, CROWD_REQUEST_VALUE, crowdAddress, formatCrowd } from '../protocol/pchc/crowd.js';

export const CROWD_WINDOW_MS = 5_000;
const IDS_PER_REQUEST = 64;
const MAX_SEGMENTS = 4096;
const MAX_ASKERS = 32;

export class CrowdTracker {
  /** Segment ID (hex) -> address -> when it last asked; in order of last use (oldest first). */
  private readonly bySegment = new Map<string, Map<string, number>>();

  /** Number of segment IDs tracked (for tests and status). */
  get size(): number {
    return this.bySegment.size;
  }

  /**
   * `from` asked for `segmentIds` at `now`: records it and returns the other addresses that asked
   * for any of the same segments within CROWD_WINDOW_MS, most recent first.
   */
  asked(from: string, segmentIds: readonly Buffer[], now: number): string[] {
    const others = new Map<string, number>();
    const n = Math.min(segmentIds.length, IDS_PER_REQUEST);
    for (let i = 0; i < n; i++) {
      const key = segmentIds[i]!.toString('hex');
      let askers = this.bySegment.get(key);
      if (askers)
        this.bySegment.delete(key); // re-inserted below: most recently used last
      else askers = new Map();
      for (const [a, at] of askers) {
        if (now - at > CROWD_WINDOW_MS) askers.delete(a);
        else if (a !== from && (others.get(a) ?? -Infinity) < at) others.set(a, at);
      }
      askers.delete(from);
      askers.set(from, now);
      if (askers.size > MAX_ASKERS) askers.delete(askers.keys().next().value!);
      this.bySegment.set(key, askers);
      if (this.bySegment.size > MAX_SEGMENTS) this.bySegment.delete(this.bySegment.keys().next().value!);
    }
    return [...others].sort((a, b) => b[1] - a[1]).map(([a]) => a);
  }
}

/**
 * The retrieval server's responseHeaders hook of a hosted cache: a marked MS-PCCRR request that
 * names segments (GETSEGLIST, GETBLKLIST, GETBLKS) is recorded and answered with the other
 * askers; an unmarked one (Windows) gets no extra header. `answered` counts the answers.
 */
export function crowdHeaders(
  tracker: CrowdTracker,
  now: () => number = Date.now,
): { hook: (req: IncomingMessage, body: Buffer) => Record<string, string> | undefined; answered: () => number } {
  let answered = 0;
  const hook = (req: IncomingMessage, body: Buffer): Record<string, string> | undefined => {
    if (req.headers[CROWD_HEADER] !== CROWD_REQUEST_VALUE) return undefined;
    const from = crowdAddress(req.socket.remoteAddress ?? '');
    if (from === undefined) return undefined;
    let ids: Buffer[];
    try {
      const m = decodeRequest(body);
      if (m.type === 'GETSEGLIST') ids = m.segmentIds;
      else if (m.type === 'GETBLKLIST' || m.type === 'GETBLKS') ids = [m.segmentId];
      else return undefined;
    } catch {
      return undefined; // the retrieval server answers the malformed request itself
    }
    answered++;
    return { [CROWD_HEADER]: formatCrowd(tracker.asked(from, ids, now())) };
  };
  return { hook, answered: () => answered };
}
