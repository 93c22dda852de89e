/**
 * MS-PCHC offer handling, independent of HTTP: one request body and the offering client's TCP
 * address in, the response (or a "drop" verdict) out; pulls are handed to the Puller. The rules
 * (what is answered OK / INTERESTED, what is dropped, what is fetched) are in protocol/pchc.md.
 */
import type { SegmentMeta } from '../cache/meta.js';
import {
  BATCHED_HASH_ALGO_SHA256,
  BATCHED_HASH_ALGO_V2,
  decodeRequest,
  encodeResponse,
  parseSegmentInformation,
  HostedCacheParseError,
  type Decoded,
  type ResponseCode,
} from '../protocol/pchc/codec.js';
import { V2_MAX_SEGMENT_SIZE } from '../protocol/pccrc/types.js';
import { formatHostPort } from '../util/address.js';
import { type Logger, nullLogger } from '../util/log.js';
import type { PullOutcome, PullTask } from './puller.js';

/**
 * What a client is told to wait before offering again when its offer could not be queued (HTTP 503
 * Retry-After: MS-PCHC has no response code for "not taken", protocol/pchc.md).
 */
export const OFFER_RETRY_AFTER_SECONDS = 5;

export interface OfferStore {
  getSegment(segmentId: Buffer): SegmentMeta | undefined;
  isComplete(segmentId: Buffer): boolean;
}

export interface OfferDeps {
  store: OfferStore;
  /** Queues a pull (Puller.offer). */
  pull(task: PullTask): PullOutcome;
  logger?: Logger;
}

export interface OfferStats {
  /** Requests that decoded as a PCHC message. */
  offersReceived: number;
  initialOffers: number;
  segmentInfos: number;
  batchedOffers: number;
  /** Segments named by BATCHED_OFFER descriptors. */
  descriptors: number;
  answeredOk: number;
  answeredInterested: number;
  /** Offers answered HTTP 503 because a pull they asked for could not be queued (the client's share was full). */
  answeredBusy: number;
  /** Requests dropped (undecodable: HTTP 400). */
  dropped: number;
  /** SEGMENT_INFO whose content information failed validation (answered OK, nothing fetched). */
  badSegmentInfo: number;
  /** Descriptors skipped (unknown HashAlgorithm, sizes outside v2 limits). */
  skippedDescriptors: number;
  /** Segments handed to the puller. */
  pullsRequested: number;
}

/**
 * The verdict on one request: a PCHC response; `busy` (HTTP 503 with Retry-After, no PCHC
 * response) when a pull the offer asked for could not be queued, so that it is not answered OK;
 * or a drop (HTTP 400).
 */
export type OfferResult =
  | { ok: true; body: Buffer; code: ResponseCode; busy?: undefined }
  | { ok: true; busy: true; retryAfterSeconds: number; body?: undefined; code?: undefined }
  | { ok: false; error: HostedCacheParseError };

/** Normalises the socket's address (IPv4-mapped IPv6 → IPv4). */
export function peerHost(remoteAddress: string): string {
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.') ? remoteAddress.slice(7) : remoteAddress;
}

export class OfferHandler {
  readonly stats: OfferStats = {
    offersReceived: 0,
    initialOffers: 0,
    segmentInfos: 0,
    batchedOffers: 0,
    descriptors: 0,
    answeredOk: 0,
    answeredInterested: 0,
    answeredBusy: 0,
    dropped: 0,
    badSegmentInfo: 0,
    skippedDescriptors: 0,
    pullsRequested: 0,
  };
  private readonly log: Logger;

  constructor(private readonly deps: OfferDeps) {
    this.log = deps.logger ?? nullLogger;
  }

  /**
   * Handles one request. `remoteAddress` is the TCP peer of the request: the only address pulls
   * ever go to (with the port the message names).
   */
  handle(body: Buffer, remoteAddress: string): OfferResult {
    let m: Decoded;
    try {
      m = decodeRequest(body);
    } catch (e) {
      if (!(e instanceof HostedCacheParseError)) throw e;
      this.stats.dropped++;
      return { ok: false, error: e };
    }
    this.stats.offersReceived++;
    const peer = m.port > 0 ? formatHostPort({ host: peerHost(remoteAddress), port: m.port }) : undefined;
    switch (m.type) {
      case 'INITIAL_OFFER': {
        this.stats.initialOffers++;
        const meta = this.deps.store.getSegment(m.hash);
        // OK only when we already hold HoD, block hashes and Kp (a v1 segment we know); then fetch what is missing.
        if (meta && meta.version === 1 && !meta.replay) {
          if (!this.deps.store.isComplete(m.hash) && peer && !this.request({ kind: 'v1', peer, meta }))
            return this.busy();
          return this.answer(0);
        }
        return this.answer(1);
      }
      case 'SEGMENT_INFO': {
        this.stats.segmentInfos++;
        let seg: ReturnType<typeof parseSegmentInformation>;
        try {
          seg = parseSegmentInformation(m.segmentInformation);
        } catch (e) {
          if (!(e instanceof HostedCacheParseError)) throw e;
          this.stats.badSegmentInfo++;
          this.log.info('hosted cache: SEGMENT_INFO with bad content information (answered OK, not fetched)', {
            remote: remoteAddress,
            field: e.field,
            err: e.message,
          });
          return this.answer(0);
        }
        const meta: SegmentMeta = {
          segmentId: seg.segmentId,
          version: 1,
          hashAlgorithm: seg.hashAlgorithm,
          hod: seg.hod,
          kp: seg.kp,
          length: seg.length,
          blockSize: seg.blockSize,
          blockHashes: seg.blockHashes,
        };
        if (peer && !this.deps.store.isComplete(seg.segmentId) && !this.request({ kind: 'v1', peer, meta }))
          return this.busy();
        return this.answer(0);
      }
      case 'BATCHED_OFFER': {
        this.stats.batchedOffers++;
        let refused = false;
        for (const d of m.descriptors) {
          this.stats.descriptors++;
          const algoOk = d.hashAlgorithm === BATCHED_HASH_ALGO_V2 || d.hashAlgorithm === BATCHED_HASH_ALGO_SHA256;
          if (!algoOk || d.segmentSize < 1 || d.segmentSize > V2_MAX_SEGMENT_SIZE || d.blockSize !== d.segmentSize) {
            this.stats.skippedDescriptors++;
            continue;
          }
          if (!peer || this.deps.store.getSegment(d.segmentId)) continue;
          if (!this.request({ kind: 'v2', peer, segmentId: d.segmentId, segmentSize: d.segmentSize })) refused = true;
        }
        // Those that were queued are pulled; the client offers the batch again later (held or pending ones are skipped then).
        return refused ? this.busy() : this.answer(0);
      }
    }
  }

  /** False when the pull could not be queued. */
  private request(task: PullTask): boolean {
    const r = this.deps.pull(task);
    if (r === 'queued') this.stats.pullsRequested++;
    return r !== 'refused';
  }

  private busy(): OfferResult {
    this.stats.answeredBusy++;
    return { ok: true, busy: true, retryAfterSeconds: OFFER_RETRY_AFTER_SECONDS };
  }

  private answer(code: ResponseCode): OfferResult {
    if (code === 0) this.stats.answeredOk++;
    else this.stats.answeredInterested++;
    return { ok: true, body: encodeResponse(code), code };
  }
}
