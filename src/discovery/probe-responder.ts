/**
 * ProbeMatch responder state machine (no sockets). Order of checks for each datagram: local-subnet
 * source, per-source rate limit, global rate limit, parse, probe only, not our own probe,
 * MessageID de-duplication, held segments (lookup), damping; then a reply after a random
 * 1..65 ms delay, unicast to the probe's source. See protocol/pccrd.md.
 */
import {
  encodeProbeMatches,
  encodeProbeMatchesV2,
  parseDiscoveryMessage,
  parseXAddr,
  MAX_XADDRS,
  type DiscoveryVersion,
  type Probe,
} from '../protocol/pccrd/codec.js';
import { DiscoveryParseError } from '../protocol/pccrd/errors.js';
import type { DampingTable } from './damping.js';
import { ExpiringSet, KeyedRateLimiter, TokenBucket } from './limits.js';
import { countDrop, type Peer, type Runtime } from './runtime.js';
import { msToAge } from '../protocol/pccrd/segment-ages.js';
import { DEFAULT_FOLLOW_UP_LIMITS, FollowUps, type FollowUpLimits, type Waiting } from './follow-ups.js';
import { SegmentKeys } from './keys.js';

/**
 * What we hold of each ID. `keys` (when given) has each ID's hex, made once for the datagram
 * (keys.lower(i) is `segmentIds[i].toString('hex')`): a lookup by hex need not convert again.
 */
export type SegmentLookup = (
  segmentIds: Buffer[],
  version: DiscoveryVersion,
  keys?: SegmentKeys,
) => Array<
  | { blockCount: number; complete: boolean; ageMs?: number /** segmentIdHex(id), when known */; idHex?: string }
  | undefined
>;

/** APP_MAX_DELAY for PeerDist (MS-PCCRD; protocol/pccrd.md, "Responder behaviour"). */
export const APP_MAX_DELAY_MS = 65;
export const MAX_REPLY_BYTES = 8 * 1024;
export const DEDUP_TTL_MS = 10_000;
export const DEDUP_MAX = 2048;

export interface ResponderConfig {
  lookup: SegmentLookup;
  xaddrs: () => string[];
  /** Our wsa:EndpointReference address (urn:uuid:..., fixed for the service run). */
  endpoint: string;
  /** AppSequence InstanceId: fixed per run, grows across restarts (seconds since 1970 at start). */
  instanceId: number;
  /** Shared AppSequence MessageNumber counter. */
  nextMessageNumber: () => number;
  isLocal: (address: string) => boolean;
  /** True for MessageIDs of probes we sent ourselves (looped back by multicast). */
  isOwnProbe: (messageId: string) => boolean;
  damping: DampingTable;
  send: (datagram: Buffer, to: Peer) => void;
  perSourceRate?: { rate: number; burst: number };
  globalRate?: { rate: number; burst: number };
  maxReplyBytes?: number;
  /**
   * Follow-up ProbeMatches (protocol/pccrd.md): probes for segments we lack are remembered and
   * answered when announce() says one arrived. `false` turns them off.
   */
  followUps?: Partial<FollowUpLimits> | false;
  /** Follow-up datagrams per second and burst, over all probers (default 100/s, burst 200). */
  followUpRate?: { rate: number; burst: number };
  /**
   * Every new probe from another host (after the rate limits, parsing and de-duplication), whether
   * we answer it or not: another client on the subnet wants these segments now.
   */
  onProbe?: (segmentIds: Buffer[], from: Peer) => void;
  /** How long to remember a probe for follow-ups now (default: the follow-up limits' ttlMs). */
  followUpTtlMs?: () => number;
}

export class Responder {
  private readonly seen = new ExpiringSet(DEDUP_TTL_MS, DEDUP_MAX);
  private readonly perSource: KeyedRateLimiter;
  private readonly global: TokenBucket;
  private readonly pending = new Set<unknown>();
  private readonly followUps: FollowUps | undefined;
  private readonly followUpBucket: TokenBucket;
  private closed = false;

  constructor(
    private readonly cfg: ResponderConfig,
    private readonly rt: Runtime,
  ) {
    const ps = cfg.perSourceRate ?? { rate: 20, burst: 40 };
    const g = cfg.globalRate ?? { rate: 200, burst: 400 };
    this.perSource = new KeyedRateLimiter(ps.rate, ps.burst);
    this.global = new TokenBucket(g.rate, g.burst, rt.now());
    if (cfg.followUps !== false) this.followUps = new FollowUps({ ...DEFAULT_FOLLOW_UP_LIMITS, ...cfg.followUps });
    const f = cfg.followUpRate ?? { rate: 100, burst: 200 };
    this.followUpBucket = new TokenBucket(f.rate, f.burst, rt.now());
  }

  /** Handles one datagram received on the discovery port. */
  handle(datagram: Buffer, from: Peer): void {
    if (this.closed) return;
    const { stats, logger } = this.rt;
    const now = this.rt.now();
    if (!this.cfg.isLocal(from.address)) return countDrop(stats, 'notLocal', logger, { from: from.address });
    // Per source first: a source over its own limit must not use up the global budget (one local
    // host flooding at 1,000/s would otherwise starve every other prober).
    if (!this.perSource.take(from.address, now)) return countDrop(stats, 'rateSource', logger, { from: from.address });
    if (!this.global.take(now)) return countDrop(stats, 'rateGlobal');
    let probe: Probe;
    try {
      const msg = parseDiscoveryMessage(datagram);
      if (msg.kind !== 'Probe') return countDrop(stats, 'unexpected', logger, { kind: msg.kind });
      probe = msg;
    } catch (err) {
      if (!(err instanceof DiscoveryParseError)) throw err;
      return countDrop(stats, 'malformed', logger, { from: from.address, err });
    }
    if (this.cfg.isOwnProbe(probe.messageId)) return countDrop(stats, 'own');
    stats.probesReceived++;
    if (this.seen.checkAndAdd(probe.messageId, now)) return countDrop(stats, 'duplicate');
    this.cfg.onProbe?.(probe.segmentIds, from);
    // Each ID's hex once for this datagram, for the lookup, damping and follow-ups alike.
    const keys = new SegmentKeys(probe.segmentIds);
    const found = this.cfg.lookup(probe.segmentIds, probe.version, keys);
    const reply = this.buildReply(probe, found, keys);
    if (this.followUps) {
      const missing: number[] = [];
      for (let index = 0; index < found.length; index++) {
        const r = found[index];
        if (!r || !(r.blockCount > 0 || r.complete)) missing.push(index);
      }
      this.followUps.remember(probe, from, missing, keys, now, this.cfg.followUpTtlMs?.());
    }
    if (!reply) return;
    const delay = 1 + Math.floor(this.rt.random() * APP_MAX_DELAY_MS);
    const h = this.rt.timers.set(
      () => {
        this.pending.delete(h);
        if (this.closed) return;
        this.cfg.send(reply, from);
        stats.matchesSent++;
      },
      Math.min(APP_MAX_DELAY_MS, delay),
    );
    this.pending.add(h);
  }

  /**
   * A segment (ID as hex, any case) entered our cache: probes that asked for it in the last
   * moments get a follow-up ProbeMatch for it (with whatever else of theirs arrived meanwhile)
   * after the usual random delay.
   */
  announce(idHex: string): void {
    if (this.closed || !this.followUps) return;
    for (const w of this.followUps.arrived(idHex.toUpperCase(), this.rt.now())) {
      if (w.timer !== undefined) continue;
      const delay = 1 + Math.floor(this.rt.random() * APP_MAX_DELAY_MS);
      w.timer = this.rt.timers.set(() => {
        this.pending.delete(w.timer);
        this.sendFollowUp(w);
      }, delay);
      this.pending.add(w.timer);
    }
  }

  private sendFollowUp(w: Waiting): void {
    const { stats } = this.rt;
    const ready = w.ready;
    this.followUps!.sent(w);
    if (this.closed || ready.length === 0) return;
    if (!this.followUpBucket.take(this.rt.now())) return countDrop(stats, 'rateFollowUp');
    // Only the segments that arrived are looked up (and answered); the rest of the probe's list
    // stays for the encoding, which refers to the probe's IDs by position (v2).
    const subIds = ready.map((i) => w.probe.segmentIds[i]!);
    const sub = this.cfg.lookup(subIds, w.probe.version, new SegmentKeys(subIds));
    const found: ReturnType<SegmentLookup> = new Array(w.probe.segmentIds.length);
    ready.forEach((i, k) => {
      found[i] = sub[k];
    });
    const reply = this.buildReply(w.probe, found);
    if (!reply) return;
    this.cfg.send(reply, w.from);
    stats.matchesSent++;
    stats.followUpsSent++;
  }

  /** The ProbeMatches datagram for a probe (given what lookup found for its IDs), or undefined to stay silent. */
  buildReply(
    probe: Probe,
    found?: ReturnType<SegmentLookup>,
    keys = new SegmentKeys(probe.segmentIds),
  ): Buffer | undefined {
    const { stats } = this.rt;
    found ??= this.cfg.lookup(probe.segmentIds, probe.version, keys);
    const v2 = probe.version === 2;
    /** Indices (into the probe's IDs) we answer for, in probe order. */
    const held: number[] = [];
    let damped = 0;
    for (let index = 0; index < probe.segmentIds.length; index++) {
      const r = found[index];
      if (!r || !(r.blockCount > 0 || (v2 && r.complete))) continue;
      // Damping only concerns segments we hold completely (we downloaded them and saw others' replies).
      if (r.complete && !this.cfg.damping.shouldAnswer(r.idHex ?? keys.upper(index), r.blockCount, this.rt.random)) {
        damped++;
        continue;
      }
      held.push(index);
    }
    if (held.length === 0) {
      countDrop(stats, damped > 0 ? 'damped' : 'notHeld');
      return undefined;
    }
    // Only well-formed host:port entries, at most as many as a receiver keeps.
    const xaddrs = this.cfg
      .xaddrs()
      .filter((x) => parseXAddr(x) !== undefined)
      .slice(0, MAX_XADDRS);
    if (xaddrs.length === 0) {
      countDrop(stats, 'noXAddrs');
      return undefined;
    }
    const base = {
      version: probe.version,
      messageId: this.rt.newMessageId(),
      relatesTo: probe.messageId,
      instanceId: this.cfg.instanceId,
      messageNumber: this.cfg.nextMessageNumber(),
      endpoint: this.cfg.endpoint,
      xaddrs,
    };
    const limit = this.cfg.maxReplyBytes ?? MAX_REPLY_BYTES;
    /** The reply naming the first `n` of `held`. */
    const encode = (n: number): Buffer => {
      if (!v2)
        return Buffer.from(
          encodeProbeMatches({
            ...base,
            matches: held
              .slice(0, n)
              .map((i) => ({ segmentId: probe.segmentIds[i]!, blockCount: found[i]!.blockCount })),
          }),
        );
      // v2 names segments by position: one availability pair per probed ID (protocol/pccrd.md).
      const pairs = new Uint8Array(probe.segmentIds.length);
      const entries: Array<{ index: number; age: number }> = [];
      for (let k = 0; k < n; k++) {
        const i = held[k]!;
        const r = found[i]!;
        pairs[i] = r.complete ? 3 : 2;
        if (r.ageMs !== undefined) entries.push({ index: i, age: msToAge(r.ageMs, 3) });
      }
      return Buffer.from(encodeProbeMatchesV2({ ...base, segmentAges: { units: 3, entries } }, pairs));
    };
    let out = encode(held.length);
    if (out.length > limit && held.length > 1) {
      // Truncate the scope list rather than exceed one datagram: estimate, then trim to fit.
      const perEntry = (out.length - encode(1).length) / (held.length - 1);
      let keep = Math.max(1, Math.min(held.length - 1, Math.floor(held.length - (out.length - limit) / perEntry)));
      out = encode(keep);
      while (out.length > limit && keep > 1) out = encode(--keep);
      countDrop(stats, 'truncated');
    }
    if (out.length > limit) {
      countDrop(stats, 'tooLarge');
      return undefined;
    }
    return out;
  }

  close(): void {
    this.closed = true;
    for (const h of this.pending) this.rt.timers.clear(h);
    this.pending.clear();
    this.followUps?.clear();
  }
}
