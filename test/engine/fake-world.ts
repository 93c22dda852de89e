/**
 * A download engine in a world of fakes: an in-memory block store, an origin (OriginClient),
 * discovery and peers (RetrievalLike), all in process and driven by one FakeClock. Nothing here
 * waits on the wall clock: tests advance fake time and let the event loop run pending callbacks
 * (setImmediate turns), so timer behaviour (origin gate, retry backoff, re-probes, block-list
 * refreshes) is checked exactly and fast.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../discovery/fakes.js';
import type { SegmentMeta } from '../../src/cache/store.js';
import {
  DownloadEngine,
  DownloadError,
  type DiscoveryLike,
  type RetrievalLike,
  type SightingLike,
  type WatchLike,
} from '../../src/engine/engine.js';
import type { OriginClient, OriginResponse } from '../../src/engine/origin-client.js';
import { encodeContentInfo } from '../../src/protocol/pccrc/codec.js';
import { hashStream } from '../../src/protocol/pccrc/hash.js';
import { blockCount, blockRange, type ContentInfo } from '../../src/protocol/pccrc/types.js';
import { PeerError, type PeerErrorCode } from '../../src/protocol/pccrr/errors.js';
import { peerDistResponseHeaders } from '../../src/protocol/pccrtp/headers.js';

export { FakeClock };

/** Lets the event loop run everything already due (promise callbacks, I/O-free continuations). */
export async function settle(turns = 30): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Advances fake time in `step` ms steps, letting callbacks run after each step. */
export async function advance(clock: FakeClock, ms: number, step = 10): Promise<void> {
  for (let left = ms; left > 0; left -= step) {
    clock.advance(Math.min(step, left));
    await settle();
  }
}

/** Advances fake time until `p` settles (at most `maxMs` of fake time); returns the fake ms it took. */
export async function runUntil(clock: FakeClock, p: Promise<unknown>, maxMs = 120_000, step = 10): Promise<number> {
  let settled = false;
  p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  const t0 = clock.t;
  await settle();
  while (!settled) {
    if (clock.t - t0 > maxMs) throw new Error(`not settled within ${maxMs} ms of fake time`);
    await advance(clock, step, step);
  }
  return clock.t - t0;
}

/** Test content and its content information. */
export interface Content {
  data: Buffer;
  ci: ContentInfo;
  ciBytes: Buffer;
}

export async function makeContent(size: number, version: 1 | 2): Promise<Content> {
  const data = randomBytes(size);
  const ci = await hashStream(
    (async function* () {
      yield data;
    })(),
    { secret: Buffer.from('fake-world secret'), version, chunking: 'fixed' },
  );
  return { data, ci, ciBytes: encodeContentInfo(ci) };
}

/** Every block of `c`: segment ID (hex), index and bytes. */
export function blocksOf(c: Content): Array<{ idHex: string; index: number; data: Buffer }> {
  const out: Array<{ idHex: string; index: number; data: Buffer }> = [];
  for (const seg of c.ci.segments) {
    for (let i = 0; i < blockCount(c.ci.version, seg); i++) {
      const [s, e] = blockRange(c.ci.version, seg, i);
      out.push({
        idHex: seg.segmentId.toString('hex'),
        index: i,
        data: c.data.subarray(seg.offset + s, seg.offset + e),
      });
    }
  }
  return out;
}

/** In-memory StoreLike (what the engine uses of BlockStore). */
export class MemStore extends EventEmitter {
  readonly segments = new Map<string, SegmentMeta>();
  readonly blocks = new Map<string, Buffer>();
  readonly pins = new Map<string, number>();
  async addSegment(meta: SegmentMeta): Promise<void> {
    this.segments.set(meta.segmentId.toString('hex'), meta);
  }
  getSegment(id: Buffer): SegmentMeta | undefined {
    return this.segments.get(id.toString('hex'));
  }
  hasBlock(id: Buffer, index: number): boolean {
    return this.blocks.has(`${id.toString('hex')}/${index}`);
  }
  async putBlock(id: Buffer, index: number, data: Buffer): Promise<void> {
    const key = `${id.toString('hex')}/${index}`;
    if (this.blocks.has(key)) return;
    this.blocks.set(key, Buffer.from(data));
    this.emit('block', id.toString('hex'), index);
  }
  async readBlock(id: Buffer, index: number): Promise<Buffer | undefined> {
    return this.blocks.get(`${id.toString('hex')}/${index}`);
  }
  pin(id: Buffer): () => void {
    const k = id.toString('hex');
    this.pins.set(k, (this.pins.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (!done) {
        done = true;
        this.pins.set(k, this.pins.get(k)! - 1);
      }
    };
  }
  /** Pins still held (0 once every job released its segments). */
  get pinned(): number {
    let n = 0;
    for (const v of this.pins.values()) n += v;
    return n;
  }
}

const one = (b: Buffer): AsyncIterable<Buffer> =>
  (async function* () {
    yield b;
  })();

/** An origin serving one URL: content information on the first request, ranges after. */
export class FakeOrigin implements OriginClient {
  down = false;
  /** Fake time a range request takes. */
  rangeDelayMs = 0;
  /** Requests: fake time and Range header (undefined for the content-information request). */
  readonly requests: Array<{ t: number; range?: string }> = [];
  constructor(
    private readonly c: Content,
    private readonly clock: FakeClock,
  ) {}
  async get(_url: string, headers: Record<string, string>): Promise<OriginResponse> {
    this.requests.push({ t: this.clock.t, ...(headers['Range'] ? { range: headers['Range'] } : {}) });
    if (this.down) throw new DownloadError('ORIGIN_UNREACHABLE', 'connection refused (fake origin down)');
    const m = /^bytes=(\d+)-(\d+)$/.exec(headers['Range'] ?? '');
    if (!m) {
      const h = Object.fromEntries(
        Object.entries(peerDistResponseHeaders('1.1', this.c.data.length)).map(([k, v]) => [k.toLowerCase(), v]),
      );
      return { status: 200, headers: h, body: one(this.c.ciBytes), discard: () => undefined };
    }
    const s = Number(m[1]),
      e = Number(m[2]);
    if (this.rangeDelayMs > 0)
      await new Promise<void>((r) => {
        this.clock.set(r, this.rangeDelayMs);
      });
    return {
      status: 206,
      headers: { 'content-range': `bytes ${s}-${e}/${this.c.data.length}` },
      body: one(this.c.data.subarray(s, e + 1)),
      discard: () => undefined,
    };
  }
  get ranged(): Array<{ t: number; range?: string }> {
    return this.requests.filter((r) => r.range);
  }
  async close(): Promise<void> {
    /* nothing */
  }
}

/** A peer: the blocks it holds, and optionally a failure it answers every request with. */
export interface FakePeer {
  blocks: Map<string, Buffer>;
  fail?: PeerErrorCode;
}

/** Peers by address, reached through RetrievalLike; every request is logged with its fake time. */
export class FakePeers implements RetrievalLike {
  readonly peers = new Map<string, FakePeer>();
  readonly log: Array<{ t: number; peer: string; kind: 'block' | 'list' }> = [];
  constructor(protected readonly clock: FakeClock) {}
  add(address: string, blocks: Array<{ idHex: string; index: number; data: Buffer }>, fail?: PeerErrorCode): FakePeer {
    const p: FakePeer = {
      blocks: new Map(blocks.map((b) => [`${b.idHex}/${b.index}`, b.data])),
      ...(fail ? { fail } : {}),
    };
    this.peers.set(address, p);
    return p;
  }
  private get(peer: string, kind: 'block' | 'list'): FakePeer {
    this.log.push({ t: this.clock.t, peer, kind });
    const p = this.peers.get(peer);
    if (!p) throw new PeerError('PEER_UNREACHABLE', peer, 'no such peer');
    if (p.fail) throw new PeerError(p.fail, peer, `fake ${p.fail}`);
    return p;
  }
  async getBlock(
    req: Parameters<RetrievalLike['getBlock']>[0],
  ): Promise<{ data: Buffer; nextBlockIndex: number; bytesOnWire: number }> {
    const p = this.get(req.peer, 'block');
    const data = p.blocks.get(`${req.segmentId.toString('hex')}/${req.index}`);
    if (!data) throw new PeerError('PEER_NOT_AVAILABLE', req.peer, `block ${req.index} not available`);
    if (!req.verify(data)) throw new PeerError('BAD_BLOCK', req.peer, `block ${req.index} failed the hash check`);
    return { data, nextBlockIndex: 0, bytesOnWire: data.length };
  }
  async getBlockList(
    req: Parameters<RetrievalLike['getBlockList']>[0],
  ): Promise<{ ranges: Array<[number, number]>; nextBlockIndex: number }> {
    const p = this.get(req.peer, 'list');
    const id = req.segmentId.toString('hex');
    const ranges: Array<[number, number]> = [];
    for (const [first, count] of req.ranges)
      for (let i = first; i < first + count; i++) if (p.blocks.has(`${id}/${i}`)) ranges.push([i, 1]);
    return { ranges, nextBlockIndex: 0 };
  }
}

/**
 * FakePeers whose `proven` is the retrieval client's: an address is proven once it has given a
 * valid block answer. Subclasses add delays or silence before calling super.getBlock.
 */
export class ProvingPeers extends FakePeers {
  readonly answered = new Set<string>();
  proven(peer: string): boolean {
    return this.answered.has(peer);
  }
  override async getBlock(req: Parameters<FakePeers['getBlock']>[0]): ReturnType<FakePeers['getBlock']> {
    const r = await super.getBlock(req);
    this.answered.add(req.peer);
    return r;
  }
}

class FakeWatch extends EventEmitter implements WatchLike {
  closed = false;
  readonly failures: string[] = [];
  constructor(
    readonly ids: Set<string>,
    private readonly d: FakeDiscovery,
  ) {
    super();
  }
  peers(segmentId: Buffer): SightingLike[] {
    return this.d.sightings.filter((s) => s.segmentId === segmentId.toString('hex').toUpperCase());
  }
  reportFailure(address: string): void {
    this.failures.push(address);
  }
  waitForPeers(timeoutMs: number): Promise<void> {
    if (this.d.sightings.some((s) => this.ids.has(s.segmentId))) return Promise.resolve();
    return new Promise((resolve) => {
      const h = this.d.clock.set(() => {
        this.off('peer', wake);
        resolve();
      }, timeoutMs);
      const wake = () => {
        this.d.clock.clear(h);
        resolve();
      };
      this.once('peer', wake);
    });
  }
  close(): void {
    this.closed = true;
  }
}

/** Discovery: peers become known when a test sights them; watches are logged with their fake time. */
export class FakeDiscovery implements DiscoveryLike {
  readonly sightings: SightingLike[] = [];
  /** Segment IDs (upper-case hex) the engine announced (origin blocks, for follow-up ProbeMatches). */
  readonly announced: string[] = [];
  /** Hosted caches take part (DiscoveryLike.bridged). */
  bridged = false;
  private readonly probeListeners = new Set<(ids: Buffer[], from: string) => void>();
  readonly watches: Array<{ t: number; watch: FakeWatch }> = [];
  constructor(
    readonly clock: FakeClock,
    readonly initialWaitMs = 1000,
  ) {}
  watch(segmentIds: Buffer[]): WatchLike {
    const w = new FakeWatch(new Set(segmentIds.map((b) => b.toString('hex').toUpperCase())), this);
    this.watches.push({ t: this.clock.t, watch: w });
    return w;
  }
  /** `address` holds `blockCount` blocks of each given segment (complete: all of them). */
  sight(address: string, segmentIds: Buffer[], complete = true, blockCount = 1): void {
    for (const id of segmentIds) {
      const s: SightingLike = { segmentId: id.toString('hex').toUpperCase(), address, blockCount, complete };
      this.sightings.push(s);
      for (const { watch } of this.watches) if (!watch.closed && watch.ids.has(s.segmentId)) watch.emit('peer', s);
    }
  }
  get open(): number {
    return this.watches.filter((w) => !w.watch.closed).length;
  }
  announce(segmentIdHex: string): void {
    this.announced.push(segmentIdHex.toUpperCase());
  }
  onForeignProbe(fn: (ids: Buffer[], from: string) => void): () => void {
    this.probeListeners.add(fn);
    return () => this.probeListeners.delete(fn);
  }
  /** Another host (`from`, an IP address) probes for these segments. */
  foreignProbe(from: string, segmentIds: Buffer[]): void {
    for (const fn of this.probeListeners) fn(segmentIds, from);
  }
}

export interface World {
  clock: FakeClock;
  store: MemStore;
  origin: FakeOrigin;
  peers: FakePeers;
  discovery: FakeDiscovery;
  engine: DownloadEngine;
  url: string;
}

export function world(
  c: Content,
  opts: {
    initialWaitMs?: number;
    maxContentVersion?: 1 | 2;
    blockListRefreshMs?: number;
    /** This daemon's retrieval addresses (its identity in a flash crowd). */
    selfAddresses?: string[];
    /** Peers by address (default: a FakePeers on the world's clock). */
    peers?: (clock: FakeClock) => FakePeers;
    /** Origin range policy (EngineDeps): blocks per range once alone, and after how long alone. */
    originAloneAfterMs?: number;
    originRangeBlocks?: number;
    /** What the engine sees of discovery (e.g. HostedCacheSource.wrap around the fake). */
    wrapDiscovery?: (d: FakeDiscovery) => DiscoveryLike;
    /** The world's clock (default a FakeClock; e.g. one whose timers fire late, a starved machine). */
    clock?: FakeClock;
  } = {},
): World {
  const clock = opts.clock ?? new FakeClock();
  const store = new MemStore();
  const origin = new FakeOrigin(c, clock);
  const peers = opts.peers?.(clock) ?? new FakePeers(clock);
  const discovery = new FakeDiscovery(clock, opts.initialWaitMs ?? 1000);
  const engine = new DownloadEngine({
    store,
    discovery: opts.wrapDiscovery?.(discovery) ?? discovery,
    retrieval: peers,
    http: origin,
    now: clock.now,
    timers: clock,
    random: () => 0.5,
    maxContentVersion: opts.maxContentVersion ?? c.ci.version,
    blockListRefreshMs: opts.blockListRefreshMs ?? 300,
    selfAddresses: opts.selfAddresses ? () => opts.selfAddresses! : undefined,
    ...(opts.originAloneAfterMs !== undefined ? { originAloneAfterMs: opts.originAloneAfterMs } : {}),
    ...(opts.originRangeBlocks !== undefined ? { originRangeBlocks: opts.originRangeBlocks } : {}),
  });
  return { clock, store, origin, peers, discovery, engine, url: 'http://origin.test/f.bin' };
}
