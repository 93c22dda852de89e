/**
 * The hosted cache's view of crowds across subnets (protocol/pchc.md, "Crowds across subnets"):
 * which clients asked for which segments in the last moments, from MS-PCCRR requests that carry
 * the `PeerDist-Crowd` mark. Pure: the clock is passed in.
 *
 * Bounded, and fair (issue 27.6): the first IDS_PER_REQUEST segment IDs of a request are recorded
 * (clients downloading the same content ask for the same missing segments in the same order, so an
 * overlap shows in the first ones). A client is an IPv4 address or an IPv6 /64 (client-key.ts): it
 * has one asker entry per segment (its latest address) and may add at most NEW_PER_WINDOW new
 * entries per window (refreshing its own is free). Segments the hosted cache holds or is pulling
 * ("known") are tracked apart from the others (MAX_KNOWN_SEGMENTS, least recently named
 * forgotten), so IDs nobody offered cannot push them out; the others (a flash crowd's first
 * segments, before anyone has offered them) get MAX_SEGMENTS. At most MAX_ASKERS entries per
 * segment: the oldest asker that only listed the segment goes first, one that fetched blocks of
 * it (GETBLKS of a held segment) last; answers name fetchers first, then the most recent.
 */
import type { RetrievalRequestView } from '../retrieval/server.js';
import { decodeRequest } from '../protocol/pccrr/codec.js';
import { CROWD_HEADER, CROWD_REQUEST_VALUE, crowdAddress, formatCrowd } from '../protocol/pchc/crowd.js';
import { clientKey } from './client-key.js';

export const CROWD_WINDOW_MS = 5_000;
const IDS_PER_REQUEST = 64;
const MAX_SEGMENTS = 4096;
const MAX_KNOWN_SEGMENTS = 16_384;
const MAX_ASKERS = 32;
/** New (segment, client) entries one client may add per CROWD_WINDOW_MS. */
export const NEW_PER_WINDOW = 256;

interface Asker {
  addr: string;
  at: number;
  fetched: boolean;
}

export interface CrowdTrackerOptions {
  /** True for a segment the hosted cache holds or is pulling (default: none). */
  known?: (segmentId: Buffer) => boolean;
}

export class CrowdTracker {
  /** Segment ID (hex) -> client key -> its latest asking; in order of last use (oldest first). */
  private readonly knownSegs = new Map<string, Map<string, Asker>>();
  private readonly otherSegs = new Map<string, Map<string, Asker>>();
  /** Per client key: the window it is adding entries in, and how many it added. */
  private readonly budgets = new Map<string, { start: number; used: number }>();
  private readonly known: (segmentId: Buffer) => boolean;

  constructor(opts: CrowdTrackerOptions = {}) {
    this.known = opts.known ?? (() => false);
  }

  /** Number of segment IDs tracked (for tests and status). */
  get size(): number {
    return this.knownSegs.size + this.otherSegs.size;
  }

  /**
   * `from` asked for `segmentIds` at `now` (`fetched`: it asked for blocks, GETBLKS): records it
   * and returns the other addresses that asked for any of the same segments within
   * CROWD_WINDOW_MS, those that fetched blocks of a held segment first, then the most recent.
   */
  asked(from: string, segmentIds: readonly Buffer[], now: number, opts: { fetched?: boolean } = {}): string[] {
    const me = clientKey(from);
    const others = new Map<string, Asker>();
    const n = Math.min(segmentIds.length, IDS_PER_REQUEST);
    for (let i = 0; i < n; i++) {
      const id = segmentIds[i]!;
      const key = id.toString('hex');
      const isKnown = this.known(id);
      const table = isKnown ? this.knownSegs : this.otherSegs;
      // A segment moves between the tables when it becomes held (or is evicted): its askers go with it.
      let askers = this.knownSegs.get(key) ?? this.otherSegs.get(key);
      this.knownSegs.delete(key); // re-inserted below: most recently used last
      this.otherSegs.delete(key);
      askers ??= new Map();
      for (const [k, a] of askers) {
        if (now - a.at > CROWD_WINDOW_MS) askers.delete(k);
        else if (k !== me) {
          const o = others.get(a.addr);
          if (!o || better(a, o)) others.set(a.addr, a);
        }
      }
      const mine = askers.get(me);
      if (mine || this.spend(me, now)) {
        askers.delete(me);
        askers.set(me, { addr: from, at: now, fetched: (isKnown && !!opts.fetched) || !!mine?.fetched });
        if (askers.size > MAX_ASKERS) askers.delete(this.victim(askers));
      }
      if (askers.size === 0) continue;
      table.set(key, askers);
      if (table.size > (isKnown ? MAX_KNOWN_SEGMENTS : MAX_SEGMENTS)) table.delete(table.keys().next().value!);
    }
    return [...others.values()].sort((a, b) => (better(a, b) ? -1 : 1)).map((a) => a.addr);
  }

  /** The entry to forget in a full segment: the oldest list-only asker, else the oldest. */
  private victim(askers: Map<string, Asker>): string {
    for (const [k, a] of askers) if (!a.fetched) return k;
    return askers.keys().next().value!;
  }

  /** Takes one new entry from the client's budget for this window; false when it is spent. */
  private spend(client: string, now: number): boolean {
    let b = this.budgets.get(client);
    if (!b || now - b.start >= CROWD_WINDOW_MS) {
      if (this.budgets.size >= MAX_SEGMENTS)
        for (const [k, v] of this.budgets) if (now - v.start >= CROWD_WINDOW_MS) this.budgets.delete(k);
      b = { start: now, used: 0 };
      this.budgets.set(client, b);
    }
    if (b.used >= NEW_PER_WINDOW) return false;
    b.used++;
    return true;
  }
}

/** Fetchers before list-only askers, then the most recent. */
function better(a: Asker, b: Asker): boolean {
  return a.fetched !== b.fetched ? a.fetched : a.at > b.at;
}

/**
 * The retrieval server's responseHeaders hook of a hosted cache: a marked MS-PCCRR request that
 * names segments (GETSEGLIST, GETBLKLIST, GETBLKS) is recorded and answered with the other
 * askers; an unmarked one (Windows) gets no extra header. `answered` counts the answers.
 */
export function crowdHeaders(
  tracker: CrowdTracker,
  now: () => number = Date.now,
): { hook: (req: RetrievalRequestView, body: Buffer) => Record<string, string> | undefined; answered: () => number } {
  let answered = 0;
  const hook = (req: RetrievalRequestView, body: Buffer): Record<string, string> | undefined => {
    if (req.headers[CROWD_HEADER] !== CROWD_REQUEST_VALUE) return undefined;
    const from = crowdAddress(req.socket.remoteAddress ?? '');
    if (from === undefined) return undefined;
    let ids: Buffer[];
    let fetched = false;
    try {
      const m = decodeRequest(body);
      if (m.type === 'GETSEGLIST') ids = m.segmentIds;
      else if (m.type === 'GETBLKLIST' || m.type === 'GETBLKS') ids = [m.segmentId];
      else return undefined;
      fetched = m.type === 'GETBLKS';
    } catch {
      return undefined; // the retrieval server answers the malformed request itself
    }
    answered++;
    return { [CROWD_HEADER]: formatCrowd(tracker.asked(from, ids, now(), { fetched })) };
  };
  return { hook, answered: () => answered };
}
