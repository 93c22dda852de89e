/**
 * Per-client shares of the hosted cache (protocol/pchc.md, "Fair shares"; issue 27.3). What a
 * client offers is stored before anyone has asked for it, and a v2 replay record cannot be checked
 * at all, so a client answering pulls with random bytes could otherwise fill the cache and push
 * out what other clients use. This ledger tracks the segments pulled on a client's offer that no
 * other client has asked for yet ("unasked"), and admits a new pull only within:
 *
 * - the client's share: its unasked segments take at most `clientShare` of the cache limit (1/8);
 *   beyond it, its own oldest unasked segments go first (one segment larger than the share is
 *   admitted alone: a 32 MiB v1 segment into a small cache);
 * - the unasked part: all unasked segments take at most `unaskedShare` of the limit (1/2); beyond
 *   it, the oldest unasked segment of the client holding the most goes;
 * - the limit: while the cache would go over it, unasked segments go (largest holder first).
 *
 * Segments another client has asked for (an MS-PCCRR GETBLKS from another client key) leave the
 * ledger: from then on only the block store's LRU evicts them. An unasked pull never evicts them
 * while they fit in the part of the cache unasked segments cannot take (1 - unaskedShare); only
 * the least recently used of any beyond that can give way to new offers, so new content still gets
 * in when used segments fill the cache.
 */
import { Mutex } from '../cache/lock.js';

/** What the ledger needs from the block store (BlockStore satisfies it). */
export interface ShareStore {
  usage(): { bytes: number; limitBytes: number };
  evictSegment(segmentId: Buffer, opts?: { ifEmpty?: boolean }): Promise<boolean>;
}

export interface SharesOptions {
  /** Fraction of the cache limit one client's unasked segments may take (default 1/8). */
  clientShare?: number;
  /** Fraction of the cache limit all unasked segments may take (default 1/2). */
  unaskedShare?: number;
}

interface Unasked {
  client: string;
  bytes: number;
  /** Its pull is still running (admitted, not settled): not evictable. */
  pulling: boolean;
}

export interface ShareStats {
  /** Segments and bytes pulled on an offer that no other client has asked for yet. */
  unaskedSegments: number;
  unaskedBytes: number;
  /** Clients holding unasked segments. */
  clients: number;
  /** Unasked segments evicted to keep a client within its share or make room. */
  evicted: number;
  /** Pulls refused because no room could be made without evicting segments in use. */
  refused: number;
  /** Unasked segments another client asked for (now counted as in use). */
  asked: number;
}

export class Shares {
  /** Unasked segments (hex ID), oldest first. */
  private readonly records = new Map<string, Unasked>();
  /** Per client: its unasked bytes and segment IDs, oldest first. */
  private readonly byClient = new Map<string, { bytes: number; ids: Set<string> }>();
  private total = 0;
  /** Bytes admitted whose pulls have not settled (not yet in the store's usage). */
  private inflight = 0;
  private readonly mutex = new Mutex();
  private readonly clientShare: number;
  private readonly unaskedShare: number;
  private readonly counters = { evicted: 0, refused: 0, asked: 0 };

  constructor(
    private readonly store: ShareStore,
    opts: SharesOptions = {},
  ) {
    this.clientShare = opts.clientShare ?? 1 / 8;
    this.unaskedShare = opts.unaskedShare ?? 1 / 2;
    for (const [k, v] of Object.entries({ clientShare: this.clientShare, unaskedShare: this.unaskedShare }))
      if (!(v > 0 && v <= 1)) throw new RangeError(`${k} must be in (0, 1], got ${v}`);
  }

  stats(): ShareStats {
    return {
      unaskedSegments: this.records.size,
      unaskedBytes: this.total,
      clients: this.byClient.size,
      ...this.counters,
    };
  }

  /** Unasked bytes held for `client` (a client key). */
  heldBy(client: string): number {
    return this.byClient.get(client)?.bytes ?? 0;
  }

  /** True while `idHex` is an unasked segment. */
  isUnasked(idHex: string): boolean {
    return this.records.has(idHex);
  }

  /** Registers a segment held before this run (a restart) that nobody has asked for, under `client`. */
  adopt(client: string, idHex: string, bytes: number): void {
    if (!this.records.has(idHex)) this.add(client, idHex, { client, bytes, pulling: false });
  }

  /**
   * Makes room for a pull of `bytes` on `client`'s offer and registers it (unasked, pulling); false
   * when that is not possible within the rules above (the pull is then not made).
   */
  admit(client: string, idHex: string, bytes: number): Promise<boolean> {
    return this.mutex.run(async () => {
      if (this.records.has(idHex)) return true; // another attempt at the same segment
      const { limitBytes } = this.store.usage();
      const share = Math.floor(limitBytes * this.clientShare);
      const cap = Math.floor(limitBytes * this.unaskedShare);
      // A segment larger than the share is admitted only as the client's one unasked segment.
      const ok =
        bytes <= cap &&
        (await this.evictWhile(
          () => this.heldBy(client) > 0 && this.heldBy(client) + bytes > share,
          () => client,
        )) &&
        (await this.evictWhile(
          () => this.total + bytes > cap,
          () => this.largestHolder(),
        ));
      if (!ok) {
        this.counters.refused++;
        return false;
      }
      // Room under the limit: unasked segments first. Whatever is still over after that is the least
      // recently used in-use segments beyond the part unasked ones cannot take (the store's LRU).
      await this.evictWhile(
        () => this.store.usage().bytes + this.inflight + bytes > this.store.usage().limitBytes,
        () => this.largestHolder(),
      );
      this.add(client, idHex, { client, bytes, pulling: true });
      this.inflight += bytes;
      return true;
    });
  }

  /** The pull admitted for `idHex` ended: `held` when the segment is in the store now. */
  settle(idHex: string, held: boolean): void {
    const r = this.records.get(idHex);
    if (!r?.pulling) return;
    r.pulling = false;
    this.inflight -= r.bytes;
    if (!held) this.forget(idHex);
  }

  /** `asker` (a client key) asked for the segment: if another client offered it, it is in use now. */
  asked(idHex: string, asker: string): void {
    const r = this.records.get(idHex);
    if (!r || r.pulling || r.client === asker) return;
    this.forget(idHex);
    this.counters.asked++;
  }

  /** The segment left the store (evicted by it, or by us): drop it from the ledger. */
  forget(idHex: string): void {
    const r = this.records.get(idHex);
    if (!r) return;
    if (r.pulling) this.inflight -= r.bytes;
    this.records.delete(idHex);
    this.total -= r.bytes;
    const c = this.byClient.get(r.client)!;
    c.bytes -= r.bytes;
    c.ids.delete(idHex);
    if (c.ids.size === 0) this.byClient.delete(r.client);
  }

  private add(client: string, idHex: string, r: Unasked): void {
    this.records.set(idHex, r);
    this.total += r.bytes;
    let c = this.byClient.get(client);
    if (!c) {
      c = { bytes: 0, ids: new Set() };
      this.byClient.set(client, c);
    }
    c.bytes += r.bytes;
    c.ids.add(idHex);
  }

  private largestHolder(): string | undefined {
    let best: string | undefined;
    let most = -1;
    for (const [c, v] of this.byClient) {
      // Only a holder with something evictable counts.
      if (v.bytes > most && [...v.ids].some((id) => !this.records.get(id)!.pulling)) {
        best = c;
        most = v.bytes;
      }
    }
    return best;
  }

  /**
   * Evicts the oldest settled unasked segment of `whose()` while `over()`; false when something is
   * still over and nothing of that client can go.
   */
  private async evictWhile(over: () => boolean, whose: () => string | undefined): Promise<boolean> {
    while (over()) {
      const c = whose();
      const ids = c === undefined ? undefined : this.byClient.get(c)?.ids;
      let victim: string | undefined;
      for (const id of ids ?? []) {
        if (!this.records.get(id)!.pulling) {
          victim = id;
          break;
        }
      }
      if (victim === undefined) return false;
      this.forget(victim);
      this.counters.evicted++;
      // Pinned (being read this instant): it stays in the store but no longer counts as unasked.
      await this.store.evictSegment(Buffer.from(victim, 'hex'));
    }
    return true;
  }
}
