/**
 * MS-PCCRR block client: one undici Pool per peer (keep-alive, capped connections), bounded
 * timers, bounded response buffering, full validation of every response field, decryption with
 * the algorithm the response names, then the caller's hash check. See protocol/pccrr.md.
 */
import { randomBytes } from 'node:crypto';
import { Pool, type Dispatcher } from 'undici';
import { createLogger, type Logger } from '../util/log.js';
import {
  decodeBlockResponse,
  encodeGetBlock,
  encodeRequest,
  protVerString,
  PCCRR_PATH,
  MAX_RESPONSE_SIZE,
  TRANSPORT_HEADER_SIZE,
  MAX_GETBLKLIST_RANGES,
  SUPPORTED_MAX,
  SUPPORTED_MIN,
  type CryptoAlgo,
  type Decoded,
  type ProtVer,
  type Range,
  type ResponseMessage,
} from '../protocol/pccrr/codec.js';
import { decryptBlock, decryptWholeSecret } from '../protocol/pccrr/crypto.js';
import { normalizeRanges } from '../protocol/pccrr/ranges.js';
import { PeerError, RetrievalParseError } from '../protocol/pccrr/errors.js';
import { CROWD_HEADER, CROWD_REQUEST_VALUE, parseCrowd } from '../protocol/pchc/crowd.js';
import { PeerWire, type WireHandler } from './peer-wire.js';

export { PeerError } from '../protocol/pccrr/errors.js';
export type { PeerErrorCode } from '../protocol/pccrr/errors.js';

/**
 * Given on a request to a hosted cache: the request carries the `PeerDist-Crowd` mark and the
 * callback gets the answer's crowd (the other clients that asked for the same segments), or
 * undefined when the answer has no valid crowd header (not a peerdist hosted cache). See
 * protocol/pchc.md, "Crowds across subnets".
 */
export type CrowdCallback = (members: string[] | undefined) => void;

export interface RetrievalClientOptions {
  /** Bound on one whole exchange (request sent to body fully read), default 5000 ms. */
  requestTimeoutMs?: number;
  /** Bound on the wait for response headers and between body chunks, default 2000 ms. */
  firstByteTimeoutMs?: number;
  /** Connections per peer, default 4. */
  connections?: number;
  logger?: Logger;
  /** CryptoAlgoId we ask for (the server decides), default 1 = AES-128 (spec SHOULD). */
  cryptoAlgo?: CryptoAlgo;
  /**
   * Probation of peers that have not yet given a valid MS-PCCRR answer (a ProbeMatch can name any
   * host:port: tarpits that accept and never answer, an origin, another service): one request at
   * a time, short connect and first-byte timers, and after a failure the address is quarantined
   * (requests fail at once with PEER_QUARANTINED, nothing is sent) for `quarantineMs`, doubling per
   * repeat up to `maxQuarantineMs`. `false` turns it off. Issue 16.5.
   *
   * Slow is not hostile: the caller gets PEER_TIMEOUT after `firstByteTimeoutMs`, but the request
   * goes on in the background for `answerWithinMs` (default 15 s, PROBATION_SILENCE_MS); a valid
   * answer by then proves the address, and only silence (or a wrong answer) quarantines it. Until then
   * further requests to it fail at once with PEER_TIMEOUT. (Quarantining at the short timer put
   * honest peers of a CPU-starved 32-client flash crowd out of use for 30 s: 586 quarantines, 7.7x
   * the file from the origin; BENCHMARKS.md "Scale curve".)
   */
  probation?:
    | false
    | { firstByteTimeoutMs?: number; answerWithinMs?: number; quarantineMs?: number; maxQuarantineMs?: number };
  now?: () => number;
  /**
   * How requests reach peers: 'net' (default), the client's own HTTP/1.1 transport (peer-wire.ts:
   * keep-alive connections, the body read straight into one buffer), or 'undici' (a Pool per peer,
   * as before issue 25's redesign; kept to compare the two).
   */
  transport?: 'net' | 'undici';
}

/** What the client remembers about a peer address (bounded: oldest entries are forgotten). */
interface PeerHealth {
  /** Gave a valid MS-PCCRR answer once: no probation any more. */
  proven: boolean;
  /** The one request in flight while on probation; others wait for its outcome (or its short timer). */
  probing?: Promise<void>;
  /** The probe's short timer fired and its answer is still awaited in the background. */
  overdue?: boolean;
  quarantinedUntil: number;
  strikes: number;
}

const MAX_HEALTH_ENTRIES = 4096;

export interface GetBlockRequest {
  /** host:port ([v6]:port for IPv6). */
  peer: string;
  segmentId: Buffer;
  index: number;
  /** Segment secret Kp: the decryption key material. */
  kp: Buffer;
  /** Plaintext length of the block. */
  expectedLength: number;
  /** Hash check of the decrypted block; false → PeerError 'BAD_BLOCK'. */
  verify: (plain: Buffer) => boolean;
  signal?: AbortSignal;
}

export interface GetBlockResult {
  data: Buffer;
  nextBlockIndex: number;
  /** Request body + response body bytes (HTTP headers not counted). */
  bytesOnWire: number;
}

import { LATE_WINDOW_MS, RecentLateness, stretchedIdleMs } from './lateness.js';

const MAX_BODY = MAX_RESPONSE_SIZE + TRANSPORT_HEADER_SIZE;
/**
 * How often the one timer of a client looks for exchanges past requestTimeoutMs (issue 25: a timer,
 * a combined AbortSignal and their closures per block cost more than the rest of the exchange's
 * own bookkeeping). An exchange is cut off at most this much after its deadline; undici's own
 * headers and body timers (firstByteTimeoutMs) still act at once.
 */
const SWEEP_MS = 250;
/** How long an address on probation may stay silent before it is quarantined (answerWithinMs). */
export const PROBATION_SILENCE_MS = 15_000;

export interface RetrievalClientStats {
  /**
   * AES_128/AES_192 blocks that failed the hash check and were decrypted again with AES over the
   * whole segment secret (issue 27.11): recovered (the second reading verified) or rejected.
   */
  aesWholeSecret: { recovered: number; rejected: number };
  /**
   * Probation outcomes (issue 25, the 32-client crowd): first requests whose short timer fired
   * (`overdue`), of those the ones answered validly later (`provenLate`: slow, not hostile), and
   * quarantines by the error that caused them.
   */
  probation: { overdue: number; provenLate: number; quarantined: number; byCode: Record<string, number> };
  /**
   * A proven peer's first-byte or between-reads limit stretched by our own timer lateness (issue 25
   * target 4, lateness.ts): exchanges that ran past the unstretched limit (`stretched`), and of
   * those the ones that made progress before the stretched limit (`answered`: not a timeout any
   * more).
   */
  lateness: { stretched: number; answered: number };
}

export class RetrievalClient {
  private readonly pools = new Map<string, Pool>();
  private readonly wire: PeerWire | undefined;
  private readonly addresses = new Map<string, { hostname: string; port: number }>();
  /** Response bodies of a finished exchange, by length, for the next exchange (bounded bytes). */
  private readonly bodies = new Map<number, Buffer[]>();
  private bodyBytes = 0;
  private sweepMs = SWEEP_MS;
  private readonly requestTimeoutMs: number;
  private readonly firstByteTimeoutMs: number;
  private readonly connections: number;
  private readonly cryptoAlgo: CryptoAlgo;
  private readonly log: Logger;
  private closed = false;
  private readonly probation:
    | { firstByteTimeoutMs: number; answerWithinMs: number; quarantineMs: number; maxQuarantineMs: number }
    | undefined;
  private readonly health = new Map<string, PeerHealth>();
  private readonly now: () => number;
  private readonly st: RetrievalClientStats = {
    aesWholeSecret: { recovered: 0, rejected: 0 },
    probation: { overdue: 0, provenLate: 0, quarantined: 0, byCode: {} },
    lateness: { stretched: 0, answered: 0 },
  };

  private readonly inFlight = new Set<Exchange>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Exchanges by the caller's signal: one 'abort' listener per signal, not one per exchange. */
  private readonly bySignal = new WeakMap<AbortSignal, Set<Exchange>>();

  constructor(opts: RetrievalClientOptions = {}) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    this.firstByteTimeoutMs = Math.min(opts.firstByteTimeoutMs ?? 2000, this.requestTimeoutMs);
    this.connections = opts.connections ?? 4;
    this.cryptoAlgo = opts.cryptoAlgo ?? 1;
    this.log = opts.logger ?? createLogger({ component: 'pccrr-client' });
    this.now = opts.now ?? Date.now;
    if (opts.probation !== false) {
      const p = opts.probation ?? {};
      // A LAN peer answers in milliseconds; a loaded one may take a while, a tarpit never does.
      const firstByteTimeoutMs = Math.min(p.firstByteTimeoutMs ?? 1500, this.firstByteTimeoutMs);
      this.probation = {
        firstByteTimeoutMs,
        // Ends by the headers timer well before the request timer (with undici: an aborted request
        // makes the pool open a new connection to the address, a headers timeout does not), and
        // never before the short timer it follows (a short requestTimeoutMs made it 1 ms).
        // Silence, not slowness, quarantines (issue 25): a daemon starved of CPU in a 32-client
        // crowd answered its first request after 3-10 s and was quarantined at 3 s (495 times in
        // one run), its blocks fetched from the origin. The probe exchange runs past the request
        // timer for this window (track), one request per address, so a tarpit costs one socket.
        answerWithinMs: Math.max(firstByteTimeoutMs, p.answerWithinMs ?? PROBATION_SILENCE_MS),
        quarantineMs: p.quarantineMs ?? 30_000,
        maxQuarantineMs: p.maxQuarantineMs ?? 15 * 60_000,
      };
    }
    const connectTimeoutMs = this.connectTimeoutMs();
    if ((opts.transport ?? 'net') === 'net') {
      this.wire = new PeerWire({
        connections: this.connections,
        connectTimeoutMs,
        firstByteMs: (h) => (h as Exchange).firstByteMs,
      });
      // The sweeper also runs the first-byte, between-reads and connect timers: a quarter of the
      // shortest of them is how late one may act.
      const shortest = Math.min(
        this.firstByteTimeoutMs,
        this.probation?.firstByteTimeoutMs ?? Infinity,
        connectTimeoutMs,
      );
      this.sweepMs = Math.max(20, Math.min(SWEEP_MS, Math.floor(shortest / 4)));
    }
  }

  /** A LAN peer accepts a connection in milliseconds. */
  private connectTimeoutMs(): number {
    return Math.min(this.firstByteTimeoutMs, this.probation?.firstByteTimeoutMs ?? Infinity, 1000);
  }

  stats(): RetrievalClientStats {
    const p = this.st.probation;
    return {
      aesWholeSecret: { ...this.st.aesWholeSecret },
      probation: { ...p, byCode: { ...p.byCode } },
      lateness: { ...this.st.lateness },
    };
  }

  /** False while `peer` is quarantined (it failed while on probation): callers should not use it. */
  usable(peer: string): boolean {
    const h = this.health.get(peer);
    return !h || h.quarantinedUntil <= this.now();
  }

  /** Whether `peer` has given a valid MS-PCCRR answer. */
  proven(peer: string): boolean {
    return this.health.get(peer)?.proven ?? false;
  }

  private healthOf(peer: string): PeerHealth {
    let h = this.health.get(peer);
    if (!h) {
      if (this.health.size >= MAX_HEALTH_ENTRIES) {
        for (const [k, v] of this.health) {
          if (!v.probing) {
            this.health.delete(k);
            break;
          }
        }
      }
      h = { proven: false, quarantinedUntil: 0, strikes: 0 };
      this.health.set(peer, h);
    }
    return h;
  }

  /** Fetch, decrypt and verify one block from one peer. */
  async getBlock(req: GetBlockRequest): Promise<GetBlockResult> {
    const { peer, segmentId, index } = req;
    const body = encodeGetBlock(segmentId, index, this.cryptoAlgo);
    const { msg, bytes, body: answer } = await this.exchange(peer, body, req.signal);
    if (msg.type !== 'BLK') throw new PeerError('PEER_PROTOCOL', peer, `expected MSG_BLK, got MSG_${msg.type}`);
    if (!msg.segmentId.equals(segmentId))
      throw new PeerError('PEER_PROTOCOL', peer, 'MSG_BLK SegmentID differs from the request');
    if (msg.blockIndex !== index)
      throw new PeerError('PEER_PROTOCOL', peer, `MSG_BLK BlockIndex ${msg.blockIndex}, asked for ${index}`);
    if (msg.block.length === 0) throw new PeerError('PEER_NOT_AVAILABLE', peer, `block ${index} not available`);
    if (msg.block.length < req.expectedLength) {
      throw new PeerError(
        'PEER_PROTOCOL',
        peer,
        `SizeOfBlock ${msg.block.length} shorter than the ${req.expectedLength}-byte block`,
      );
    }
    let data: Buffer;
    try {
      data = decryptBlock(msg.cryptoAlgo, req.kp, msg.block, msg.iv, req.expectedLength);
    } catch (e) {
      throw new PeerError('PEER_PROTOCOL', peer, `cannot decrypt: ${(e as Error).message}`, { cause: e });
    }
    if (!req.verify(data)) {
      const again = msg.cryptoAlgo === 1 || msg.cryptoAlgo === 2 ? this.wholeSecret(req, msg) : undefined;
      if (!again) throw new PeerError('BAD_BLOCK', peer, `block ${index} failed the hash check`);
      data = again;
    }
    // The answer's buffer serves the next exchange, unless the block is a view into it (algorithm 0).
    if (data.buffer !== answer.buffer) this.recycle(answer);
    return { data, nextBlockIndex: msg.nextBlockIndex, bytesOnWire: bytes + body.length };
  }

  /**
   * The second reading of an AES_128/AES_192 block that failed the hash check: AES keyed with the
   * whole segment secret, as Microsoft's protocol test suite encrypts (protocol/pccrr.md, "Crypto").
   * Returns the verified plaintext, or undefined (counted either way).
   */
  private wholeSecret(req: GetBlockRequest, msg: { block: Buffer; iv: Buffer; cryptoAlgo: CryptoAlgo }) {
    let plain: Buffer | undefined;
    try {
      plain = decryptWholeSecret(req.kp, msg.block, msg.iv, req.expectedLength);
    } catch {
      plain = undefined;
    }
    if (plain && req.verify(plain)) {
      this.st.aesWholeSecret.recovered++;
      this.log.debug('AES block verified with the whole segment secret as key', {
        peer: req.peer,
        cryptoAlgo: msg.cryptoAlgo,
      });
      return plain;
    }
    this.st.aesWholeSecret.rejected++;
    return undefined;
  }

  /**
   * Fetch one block as the peer sends it, without decrypting or verifying it (a hosted cache that
   * was offered a v2 segment without its key; protocol/pchc.md). Checks only that the reply is the
   * MSG_BLK asked for; an empty block is PEER_NOT_AVAILABLE.
   */
  async getRawBlock(req: {
    peer: string;
    segmentId: Buffer;
    index: number;
    signal?: AbortSignal;
  }): Promise<{ cryptoAlgo: CryptoAlgo; block: Buffer; iv: Buffer; bytesOnWire: number }> {
    const { peer, segmentId, index } = req;
    const body = encodeRequest({ type: 'GETBLKS', cryptoAlgo: this.cryptoAlgo, segmentId, ranges: [[index, 1]] });
    const { msg, bytes } = await this.exchange(peer, body, req.signal);
    if (msg.type !== 'BLK') throw new PeerError('PEER_PROTOCOL', peer, `expected MSG_BLK, got MSG_${msg.type}`);
    if (!msg.segmentId.equals(segmentId))
      throw new PeerError('PEER_PROTOCOL', peer, 'MSG_BLK SegmentID differs from the request');
    if (msg.blockIndex !== index)
      throw new PeerError('PEER_PROTOCOL', peer, `MSG_BLK BlockIndex ${msg.blockIndex}, asked for ${index}`);
    if (msg.block.length === 0) throw new PeerError('PEER_NOT_AVAILABLE', peer, `block ${index} not available`);
    return { cryptoAlgo: msg.cryptoAlgo, block: msg.block, iv: msg.iv, bytesOnWire: bytes + body.length };
  }

  /**
   * MSG_GETSEGLIST (ProtVer 2.0): which of `segmentIds` the peer holds (fully or partly), as
   * indexes into the list. Hosted caches answer it; Windows peers in distributed mode need not.
   */
  async getSegmentList(req: {
    peer: string;
    segmentIds: Buffer[];
    signal?: AbortSignal;
    /** Mark the request for a hosted cache's crowd answer and receive it (see CrowdCallback). */
    crowd?: CrowdCallback;
  }): Promise<number[]> {
    const { peer } = req;
    const requestId = randomBytes(16);
    const body = encodeRequest({
      type: 'GETSEGLIST',
      cryptoAlgo: this.cryptoAlgo,
      requestId,
      segmentIds: req.segmentIds,
    });
    const { msg } = await this.exchange(peer, body, req.signal, false, req.crowd);
    if (msg.type !== 'SEGLIST') throw new PeerError('PEER_PROTOCOL', peer, `expected MSG_SEGLIST, got MSG_${msg.type}`);
    if (!msg.requestId.equals(requestId))
      throw new PeerError('PEER_PROTOCOL', peer, 'MSG_SEGLIST RequestID differs from the request');
    const out: number[] = [];
    for (const [i, c] of msg.ranges) for (let k = i; k < i + c && k < req.segmentIds.length; k++) out.push(k);
    return [...new Set(out)].sort((a, b) => a - b);
  }

  /** Ask which of the given block ranges a peer holds. */
  async getBlockList(req: {
    peer: string;
    segmentId: Buffer;
    ranges: Range[];
    signal?: AbortSignal;
    crowd?: CrowdCallback;
  }): Promise<{ ranges: Range[]; nextBlockIndex: number }> {
    const { peer, segmentId } = req;
    const ranges = normalizeRanges(req.ranges);
    if (ranges.length === 0) return { ranges: [], nextBlockIndex: 0 };
    if (ranges.length > MAX_GETBLKLIST_RANGES)
      throw new RangeError(`at most ${MAX_GETBLKLIST_RANGES} ranges per MSG_GETBLKLIST`);
    const body = encodeRequest({ type: 'GETBLKLIST', cryptoAlgo: this.cryptoAlgo, segmentId, ranges });
    const { msg } = await this.exchange(peer, body, req.signal, false, req.crowd);
    if (msg.type !== 'BLKLIST') throw new PeerError('PEER_PROTOCOL', peer, `expected MSG_BLKLIST, got MSG_${msg.type}`);
    if (!msg.segmentId.equals(segmentId))
      throw new PeerError('PEER_PROTOCOL', peer, 'MSG_BLKLIST SegmentID differs from the request');
    return { ranges: normalizeRanges(msg.ranges), nextBlockIndex: msg.nextBlockIndex };
  }

  /** MSG_NEGO_REQ: the peer's supported version range. */
  async negotiate(peer: string, signal?: AbortSignal): Promise<{ min: ProtVer; max: ProtVer }> {
    const body = encodeRequest({ type: 'NEGO_REQ', min: SUPPORTED_MIN, max: SUPPORTED_MAX });
    const { msg } = await this.exchange(peer, body, signal, true);
    if (msg.type !== 'NEGO_RESP')
      throw new PeerError('PEER_PROTOCOL', peer, `expected MSG_NEGO_RESP, got MSG_${msg.type}`);
    return { min: msg.min, max: msg.max };
  }

  /**
   * @internal A buffer for a response body of `n` bytes: a view into a recycled buffer of the
   * next power of two (v2 blocks differ in length), or a new one.
   */
  bodyBuffer(n: number): Buffer {
    if (n < MIN_RECYCLED) return Buffer.allocUnsafe(n);
    const cap = 2 ** Math.ceil(Math.log2(n));
    const b = this.bodies.get(cap)?.pop();
    if (b) {
      this.bodyBytes -= cap;
      return b.subarray(0, n);
    }
    return Buffer.allocUnsafeSlow(cap).subarray(0, n);
  }

  /** Keeps a body buffer nobody refers to any more for the next exchange (bounded bytes). */
  private recycle(view: Buffer): void {
    const cap = view.buffer.byteLength;
    if (view.length < MIN_RECYCLED || view.byteOffset !== 0 || cap !== 2 ** Math.ceil(Math.log2(view.length))) return;
    if (this.bodyBytes + cap > MAX_RECYCLED_BYTES) return;
    let list = this.bodies.get(cap);
    if (!list) {
      list = [];
      this.bodies.set(cap, list);
    }
    list.push(Buffer.from(view.buffer, 0, cap));
    this.bodyBytes += cap;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.wire?.close();
    this.bodies.clear();
    this.bodyBytes = 0;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }

  /** host:port or [v6]:port as a URL origin, its host name (no brackets) and port. */
  private static parse(peer: string): { origin: string; hostname: string; port: number } {
    try {
      const u = new URL(`http://${peer}`);
      // The URL parser elides the scheme's default port: 'host:80' has u.port ''.
      const port = u.port || (/:80$/.test(peer) ? '80' : '');
      if (!port || u.pathname !== '/' || u.username || u.search) throw new Error('not host:port');
      const h = u.hostname;
      return { origin: u.origin, hostname: h.startsWith('[') ? h.slice(1, -1) : h, port: Number(port) };
    } catch {
      throw new PeerError('PEER_UNREACHABLE', peer, 'peer address must be host:port');
    }
  }

  private address(peer: string): { hostname: string; port: number } {
    let a = this.addresses.get(peer);
    if (!a) {
      const { hostname, port } = RetrievalClient.parse(peer);
      a = { hostname, port };
      if (this.addresses.size >= MAX_HEALTH_ENTRIES) this.addresses.clear();
      this.addresses.set(peer, a);
    }
    return a;
  }

  private pool(peer: string): Pool {
    let p = this.pools.get(peer);
    if (!p) {
      const { origin } = RetrievalClient.parse(peer);
      p = new Pool(origin, {
        connections: this.connections,
        keepAliveTimeout: 30_000,
        headersTimeout: this.firstByteTimeoutMs,
        bodyTimeout: this.firstByteTimeoutMs,
        connectTimeout: this.connectTimeoutMs(),
      });
      this.pools.set(peer, p);
    }
    return p;
  }

  /**
   * POST one request and return the decoded response. `allowNego`: a MSG_NEGO_RESP is the
   * expected answer; otherwise it means the peer rejected our version → 'PEER_PROTOCOL'.
   */
  private async exchange(
    peer: string,
    body: Buffer,
    signal?: AbortSignal,
    allowNego = false,
    crowd?: CrowdCallback,
  ): Promise<Answer> {
    if (this.closed) throw new PeerError('PEER_UNREACHABLE', peer, 'client closed');
    if (signal?.aborted) throw new PeerError('ABORTED', peer, 'aborted', { cause: signal.reason });
    if (!this.probation) return this.exchangeOnce(peer, body, signal, allowNego, this.firstByteTimeoutMs, crowd, true);
    const h = this.healthOf(peer);
    for (;;) {
      if (h.quarantinedUntil > this.now())
        throw new PeerError(
          'PEER_QUARANTINED',
          peer,
          'not used: it failed without ever giving a valid MS-PCCRR answer',
        );
      if (h.proven) return this.exchangeOnce(peer, body, signal, allowNego, this.firstByteTimeoutMs, crowd, true);
      if (h.overdue)
        throw new PeerError('PEER_TIMEOUT', peer, 'on probation: the answer to its first request is overdue');
      if (!h.probing) break;
      await waitOrAbort(h.probing, signal, peer);
    }
    // On probation: this request is the only one in flight to that address.
    const probation = this.probation;
    let release!: () => void;
    h.probing = new Promise<void>((r) => {
      release = r;
    });
    const attempt = this.exchangeOnce(peer, body, signal, allowNego, probation.answerWithinMs, crowd, false).then(
      (r) => {
        if (h.overdue) this.st.probation.provenLate++;
        h.proven = true;
        h.strikes = 0;
        return r;
      },
      (e: unknown) => {
        const err = e as PeerError;
        // A refused message (HTTP 400: python-peerdist answers MSG_GETBLKLIST so), a busy server or
        // our own abort say nothing against the address.
        const benign =
          err.code === 'ABORTED' || err.code === 'PEER_BUSY' || (err.code === 'PEER_HTTP' && / 400$/.test(err.message));
        if (!benign) {
          h.strikes++;
          const pst = this.st.probation;
          pst.quarantined++;
          pst.byCode[err.code] = (pst.byCode[err.code] ?? 0) + 1;
          h.quarantinedUntil =
            this.now() + Math.min(probation.maxQuarantineMs, probation.quarantineMs * 2 ** (h.strikes - 1));
          this.log.info('peer quarantined: no valid MS-PCCRR answer', {
            peer,
            code: err.code,
            ms: h.quarantinedUntil - this.now(),
          });
        }
        throw err;
      },
    );
    let over = false;
    const settled = attempt.finally(() => {
      over = true;
      h.probing = undefined;
      h.overdue = false;
      release();
    });
    settled.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const shortTimer = new Promise<never>((_, reject) => {
      // The verdict after the poll phase: an answer that arrived while we were not running wins.
      const verdict = () => {
        if (over) return;
        h.overdue = true;
        this.st.probation.overdue++;
        release();
        reject(
          new PeerError(
            'PEER_TIMEOUT',
            peer,
            `no answer within ${probation.firstByteTimeoutMs} ms (on probation: still waiting for it up to ${probation.answerWithinMs} ms)`,
          ),
        );
      };
      timer = setTimeout(() => setImmediate(verdict), probation.firstByteTimeoutMs);
    });
    shortTimer.catch(() => undefined);
    try {
      return await Promise.race([settled, shortTimer]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One POST through undici's dispatcher interface: the response body goes straight into one
   * buffer of its declared length (no body stream, async iterator, chunk list or concatenation),
   * and the exchange object itself is the handler, the sweeper's record and the abort path (no
   * AbortController per exchange). Issue 25: the exchange was the largest stage of the receiving
   * daemon (BENCHMARKS.md).
   */
  private exchangeOnce(
    peer: string,
    body: Buffer,
    signal: AbortSignal | undefined,
    allowNego: boolean,
    firstByteMs: number,
    crowd: CrowdCallback | undefined,
    stretch: boolean,
  ): Promise<Answer> {
    if (this.wire) {
      const { hostname, port } = this.address(peer);
      const wire = this.wire;
      return new Promise((resolve, reject) => {
        const x = new Exchange(this, peer, signal, allowNego, firstByteMs, crowd, resolve, reject);
        x.stretch = stretch;
        this.track(x);
        if (!x.settledYet) wire.dispatch(peer, hostname, port, body, crowd !== undefined, x);
      });
    }
    const pool = this.pool(peer);
    return new Promise((resolve, reject) => {
      const x = new Exchange(this, peer, signal, allowNego, firstByteMs, crowd, resolve, reject);
      this.track(x);
      pool.dispatch(
        {
          path: PCCRR_PATH,
          method: 'POST',
          body,
          headersTimeout: firstByteMs,
          bodyTimeout: firstByteMs,
          headers: crowd ? CROWD_HEADERS : HEADERS,
        },
        x,
      );
    });
  }

  /** @internal An exchange ended (Exchange calls it once). */
  settled(x: Exchange, err: unknown): void {
    this.untrack(x);
    if (x.overSince > 0 && err === undefined) this.st.lateness.answered++;
    if (err !== undefined)
      this.log.debug('PCCRR exchange failed', { peer: x.peer, code: (err as PeerError).code, error: err });
  }

  /** @internal */
  failure(e: unknown, peer: string, signal: AbortSignal | undefined, x: Exchange, firstByteMs: number): PeerError {
    return failure(e, peer, signal, x.timedOut, firstByteMs, this.requestTimeoutMs);
  }

  /** Registers an exchange: the sweeper enforces its deadline, the caller's signal aborts it. */
  private track(x: Exchange): void {
    // A probation exchange (answer window longer than the request timer) may take its window.
    x.deadline = performance.now() + Math.max(this.requestTimeoutMs, x.firstByteMs + 1000);
    this.inFlight.add(x);
    const signal = x.caller;
    if (signal) {
      let set = this.bySignal.get(signal);
      if (!set) {
        const mine = new Set<Exchange>();
        set = mine;
        this.bySignal.set(signal, mine);
        signal.addEventListener(
          'abort',
          () => {
            for (const y of mine) y.cancel();
          },
          { once: true },
        );
      }
      set.add(x);
      if (signal.aborted) x.cancel();
    }
    if (!this.sweeper) {
      this.lastSweep = performance.now();
      this.nextSweepDue = this.lastSweep + this.sweepMs;
      this.sweeper = setInterval(this.sweepSoon, this.sweepMs);
      this.sweeper.unref();
    }
  }

  private untrack(x: Exchange): void {
    this.inFlight.delete(x);
    if (x.caller) this.bySignal.get(x.caller)?.delete(x);
  }

  /**
   * The sweeper's verdicts come after the event loop's poll phase (setImmediate), not in the timers
   * phase that runs first after a stall: an answer that reached our socket while this process was
   * not running (starved of CPU, a long GC) is read before anybody is judged for it.
   */
  private readonly sweepSoon = () => {
    const now = performance.now();
    if (!this.sweepQueued) {
      this.sweepQueued = true;
      this.sweepDue = this.nextSweepDue;
      setImmediate(this.sweep);
    }
    this.nextSweepDue = now + this.sweepMs;
  };
  private sweepQueued = false;
  private lastSweep = 0;
  /** When the interval was due that queued the coming sweep, and when the next one is due. */
  private sweepDue = 0;
  private nextSweepDue = 0;
  /** How late our own sweeps ran lately (due time to verdict, after the poll phase). */
  private readonly lateness = new RecentLateness(LATE_WINDOW_MS);

  /**
   * Cuts off exchanges past their deadline; stops itself when nothing is in flight. Time this
   * process did not run does not count against a peer (issue 25: in a CPU-starved crowd our own
   * stalls made honest peers look silent): a sweep later than its period by more than a period
   * moves every deadline and idle timer on by the excess. And a proven peer's first-byte and
   * between-reads limits stretch with how late these sweeps ran in the last few seconds
   * (stretchedIdleMs, at most doubled): on a starved machine its answer takes several of the
   * wake-ups a late sweep measures, ours and its own.
   */
  private readonly sweep = (): void => {
    this.sweepQueued = false;
    if (this.inFlight.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = performance.now();
    const late = now - this.lastSweep - this.sweepMs;
    this.lastSweep = now;
    this.lateness.record(now, now - this.sweepDue);
    const lateMs = this.lateness.max(now);
    if (late > this.sweepMs)
      for (const x of this.inFlight) {
        x.deadline += late;
        if (x.progressAt > 0) x.progressAt += late;
        if (x.overSince > 0) x.overSince += late;
      }
    for (const x of this.inFlight)
      if (!x.timedOut && now >= x.deadline) {
        x.timedOut = true;
        x.cancel();
      } else if (x.idleMs > 0) {
        const idle = now - x.progressAt;
        if (idle < x.idleMs) {
          if (x.overSince > 0) {
            // Progress after the unstretched limit, before the stretched one: not a timeout.
            x.overSince = 0;
            this.st.lateness.answered++;
          }
          continue;
        }
        if (!x.stretch || x.idleWhat === 'CONNECT_TIMEOUT') {
          x.stalled();
          continue;
        }
        const limit = stretchedIdleMs(x.idleMs, lateMs);
        if (idle >= limit) {
          x.stalled(Math.round(limit));
          continue;
        }
        if (x.overSince !== x.progressAt) {
          if (x.overSince !== 0) this.st.lateness.answered++; // progress, then past the limit again
          this.st.lateness.stretched++;
          x.overSince = x.progressAt;
        }
      }
  };
}

/** Waits for `p`, or fails with 'aborted' when the caller's signal fires first. */
function waitOrAbort(p: Promise<void>, signal: AbortSignal | undefined, peer: string): Promise<void> {
  if (!signal) return p;
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(new PeerError('ABORTED', peer, 'aborted', { cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** Request headers of every exchange (undici adds Content-Length for a Buffer body). */
const HEADERS = ['content-type', 'application/octet-stream'];
const CROWD_HEADERS = [...HEADERS, CROWD_HEADER, CROWD_REQUEST_VALUE];

type Settle<T> = (v: T) => void;

/** A decoded answer, its body length, and the body buffer (the message's fields are views into it). */
interface Answer {
  msg: Decoded<ResponseMessage>;
  bytes: number;
  body: Buffer;
}

/** At most this many bytes of finished response bodies are kept for reuse (per client). */
const MAX_RECYCLED_BYTES = 8 * 1024 * 1024;
/** Smaller bodies come from node's shared pool (not recycled). */
const MIN_RECYCLED = 8192;

/**
 * One MS-PCCRR exchange: undici's (legacy) dispatch handler, the sweeper's record and the abort
 * path in one object. Settles its promise exactly once; whatever undici reports afterwards is
 * ignored.
 */
class Exchange implements Dispatcher.DispatchHandler, WireHandler {
  deadline = 0;
  /** Set when requestTimeoutMs cut it off. */
  timedOut = false;
  /** A proven peer's exchange: its idle limits stretch with our own lateness (lateness.ts). */
  stretch = false;
  /** progressAt when the sweeper found it past its unstretched idle limit (0: not past it). */
  overSince = 0;
  private done = false;
  private failed = false;
  abortFn: ((err: Error) => void) | undefined;
  /** The net transport's idle timer (peer-wire.ts), run by the client's sweeper. */
  progressAt = 0;
  idleMs = 0;
  idleWhat = 'HEADERS_TIMEOUT';
  private status = 0;
  private buf: Buffer | undefined;
  private chunks: Buffer[] | undefined;
  private n = 0;
  private crowdValue: string | string[] | undefined;

  constructor(
    private readonly client: RetrievalClient,
    readonly peer: string,
    readonly caller: AbortSignal | undefined,
    private readonly allowNego: boolean,
    readonly firstByteMs: number,
    private readonly crowd: CrowdCallback | undefined,
    private readonly resolve: Settle<Answer>,
    private readonly reject: Settle<unknown>,
  ) {}

  /** Stops the exchange (caller's abort or the request timer); fails it at once. */
  cancel(): void {
    if (this.done) return;
    const err = this.client.failure(new Error('aborted'), this.peer, this.caller, this, this.firstByteMs);
    this.fail(err);
  }

  get settledYet(): boolean {
    return this.done;
  }

  get failedYet(): boolean {
    return this.failed;
  }

  /** No progress within idleMs (connect, headers or between body reads). */
  stalled(limitMs?: number): void {
    if (this.done) return;
    const what = this.idleWhat;
    const e = Object.assign(new Error(`${what.toLowerCase().replace('_', ' ')}`), { code: what });
    // limitMs: the limit stretched by our own lateness (lateness.ts), when it was.
    const ms = limitMs ?? (what === 'CONNECT_TIMEOUT' ? this.idleMs : this.firstByteMs);
    this.fail(this.client.failure(e, this.peer, this.caller, this, ms));
  }

  /** Where the next body bytes go (the buffer of the declared length, from the current offset). */
  target(): Buffer | undefined {
    return this.buf?.subarray(this.n);
  }

  advance(n: number): void {
    this.n += n;
  }

  private fail(err: PeerError): void {
    if (this.done) return;
    this.done = true;
    this.failed = true;
    this.buf = undefined;
    this.chunks = undefined;
    this.client.settled(this, err);
    this.reject(err);
    // Stop the request (closes its connection once it was sent); a queued one stops in onConnect.
    this.abortFn?.(err);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortFn = abort;
    if (this.done) abort(new Error('aborted'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null, _resume: () => void): boolean {
    if (this.done) return false;
    this.status = statusCode;
    if (statusCode !== 200) {
      this.fail(
        statusCode === 503
          ? new PeerError('PEER_BUSY', this.peer, 'HTTP 503')
          : new PeerError('PEER_HTTP', this.peer, `HTTP ${statusCode}`),
      );
      return false;
    }
    let declared = -1;
    const raw = rawHeaders ?? [];
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = String(raw[i]).toLowerCase();
      if (name === 'content-length') declared = Number(String(raw[i + 1]));
      else if (this.crowd && name === CROWD_HEADER) {
        const v = String(raw[i + 1]);
        this.crowdValue =
          this.crowdValue === undefined
            ? v
            : Array.isArray(this.crowdValue)
              ? [...this.crowdValue, v]
              : [this.crowdValue, v];
      }
    }
    if (declared > MAX_BODY) {
      this.fail(
        new PeerError('PEER_PROTOCOL', this.peer, `response of ${declared} bytes exceeds the ${MAX_BODY}-byte limit`),
      );
      return false;
    }
    // A declared length: one buffer of that size (undici fails a body that does not match it).
    if (Number.isSafeInteger(declared) && declared >= 0) this.buf = this.client.bodyBuffer(declared);
    else this.chunks = [];
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    const end = this.n + chunk.length;
    if (end > MAX_BODY || (this.buf && end > this.buf.length)) {
      this.fail(new PeerError('PEER_PROTOCOL', this.peer, `response exceeds the ${MAX_BODY}-byte limit`));
      return false;
    }
    if (this.buf) chunk.copy(this.buf, this.n);
    else this.chunks!.push(chunk);
    this.n = end;
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    if (this.status !== 200) return; // already failed in onHeaders
    const n = this.n;
    const body = this.buf ? this.buf.subarray(0, n) : Buffer.concat(this.chunks!, n);
    let msg: Decoded<ResponseMessage>;
    try {
      // The body is ours alone: the block is decoded as a view into it, not copied.
      msg = decodeBlockResponse(body);
    } catch (e) {
      this.fail(
        e instanceof RetrievalParseError
          ? new PeerError('PEER_PROTOCOL', this.peer, `bad response: ${e.message}`, { cause: e })
          : this.client.failure(e, this.peer, this.caller, this, this.firstByteMs),
      );
      return;
    }
    if (msg.type === 'NEGO_RESP' && !this.allowNego) {
      this.fail(
        new PeerError(
          'PEER_PROTOCOL',
          this.peer,
          `peer supports versions ${protVerString(msg.min)}..${protVerString(msg.max)} only`,
        ),
      );
      return;
    }
    if (this.crowd) {
      try {
        this.crowd(parseCrowd(this.crowdValue));
      } catch (e) {
        this.fail(this.client.failure(e, this.peer, this.caller, this, this.firstByteMs));
        return;
      }
    }
    this.done = true;
    this.buf = undefined;
    this.chunks = undefined;
    this.client.settled(this, undefined);
    this.resolve({ msg, bytes: n, body });
  }

  onError(err: Error): void {
    if (this.done) return;
    this.fail(this.client.failure(err, this.peer, this.caller, this, this.firstByteMs));
  }
}

function failure(
  e: unknown,
  peer: string,
  signal: AbortSignal | undefined,
  timedOut: boolean,
  firstByteMs: number,
  requestTimeoutMs: number,
): PeerError {
  if (e instanceof PeerError) return e;
  if (signal?.aborted) return new PeerError('ABORTED', peer, 'aborted', { cause: signal.reason });
  if (timedOut)
    return new PeerError('PEER_TIMEOUT', peer, `no complete response within ${requestTimeoutMs} ms`, { cause: e });
  const code = (e as { code?: string }).code ?? '';
  // The net transport's verdict on a malformed HTTP answer (peer-wire.ts).
  if (code === 'BAD_RESPONSE' || code === 'HEAD_TOO_LARGE')
    return new PeerError('PEER_PROTOCOL', peer, `bad HTTP answer: ${(e as Error).message}`, { cause: e });
  if (/TIMEOUT/.test(code))
    return new PeerError('PEER_TIMEOUT', peer, `${code}: no data within ${firstByteMs} ms`, { cause: e });
  return new PeerError('PEER_UNREACHABLE', peer, `${code || 'error'}: ${(e as Error).message}`, { cause: e });
}
