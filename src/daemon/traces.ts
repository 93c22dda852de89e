/**
 * Traces of recent downloads for `peerdist explain`, built from the engine's trace events
 * (src/engine/trace.ts). Memory is bounded: per download, counts are aggregated per peer and per
 * origin reason; discovery rounds, peers and individually listed origin requests are capped
 * (what is left out is counted); the book keeps the last 32 downloads.
 */
import type { OriginReason, TraceEvent } from '../engine/trace.js';
import type { ByteCounts } from '../engine/types.js';

const MAX_TRACES = 32;
const MAX_ROUNDS = 40;
const MAX_PEERS = 64;
const MAX_ANSWERERS_PER_ROUND = 16;
const MAX_ORIGIN_REQUESTS = 40;
const MAX_ORIGIN_PICKS = 512;
const MAX_MEMBERS = 128;

/**
 * One origin block for the crowd's duplicate analysis (testkit/sim/diagnose.ts):
 * [block, picked (ms after start), stored (ms after start), our rank (-1: not picked by
 * ownership), its owner ('' none), other members ranked over, why from the origin, and when the
 * pre-origin re-check asked peers their answers (TraceEvent `asked`; '' none), and the members left
 * out of the ranking that outscored us (TraceEvent `shadow`)].
 */
export type OriginPick = [number, number, number, number, string, number, OriginReason, string?, string?];

export interface RoundTrace {
  round: number;
  kind: 'initial' | 'reprobe';
  /** Segment IDs probed for. */
  segments: number;
  /** ms after the download started. */
  startMs: number;
  answers: Array<{ peer: string; segments: number; firstMs: number }>;
}

export interface PeerTrace {
  address: string;
  blocks: number;
  bytes: number;
  /** From the start of its first delivered block request to the end of its last (ms): bytes over it is its rate. */
  ms: number;
  /** Sum of its block request times (ms; requests run in parallel). */
  requestMs: number;
  failures: Record<string, number>;
}

export interface OriginRequestTrace {
  block: number;
  seg: number;
  index: number;
  offset: number;
  bytes: number;
  reason: OriginReason;
  ms?: number;
  error?: string;
}

export interface DownloadTrace {
  id: string;
  url: string;
  startedAt: string;
  state: string;
  durationMs?: number;
  error?: string;
  content?: {
    version: 1 | 2;
    contentLength: number;
    segments: number;
    blocks: number;
    hashAlgorithm: string;
    contentInfoBytes: number;
  };
  plain?: { contentLength: number };
  cachedAtStart?: { blocks: number; bytes: number };
  /** When the origin was first allowed (ms after start) and how many peers were known then. */
  gate?: { ms: number; peers: number; graceMs?: number };
  rounds: RoundTrace[];
  roundsOmitted: number;
  peers: PeerTrace[];
  peersOmitted: number;
  origin: {
    blocks: number;
    bytes: number;
    /** As PeerTrace.ms, for the origin's blocks. */
    ms: number;
    byReason: Partial<Record<OriginReason, { blocks: number; bytes: number }>>;
    failures: number;
    skipped: number;
    requests: OriginRequestTrace[];
    requestsOmitted: number;
    /** Every origin block (up to MAX_ORIGIN_PICKS; picksOmitted counts the rest). */
    picks?: OriginPick[];
    picksOmitted?: number;
  };
  /**
   * The crowd as this download saw it: our identity, and per other host when we first saw it
   * probing for our segments and first saw it as a holder (ms after start).
   */
  crowd?: {
    self?: string;
    /** cappedMs: first sighting as a holder that the cap on unproven peer addresses refused. */
    members: Record<string, { probeMs?: number; peerMs?: number; cappedMs?: number }>;
    omitted: number;
  };
  retries: { origin: number; peer: number };
  totals?: ByteCounts & { bytes: number };
}

/** What a trace needs from the job: layout of blocks, and the final counters. */
export interface TracedJob {
  readonly id: string;
  readonly url: string;
  readonly done: Promise<unknown>;
  on(event: 'trace', fn: (ev: TraceEvent) => void): unknown;
  progress(): ByteCounts & { state: string; error?: string; bytesDone: number };
  readonly info: Promise<{
    contentInfo?: { version: 1 | 2; segments: Array<{ offset: number; length: number; blockSize: number }> };
  }>;
}

export class TraceBook {
  private readonly traces: DownloadTrace[] = [];
  constructor(private readonly now: () => number = Date.now) {}

  /** Starts tracing a job (call as soon as the engine created it). */
  follow(job: TracedJob): void {
    const t0 = this.now();
    const tr: DownloadTrace = {
      id: job.id,
      url: job.url,
      startedAt: new Date(t0).toISOString(),
      state: 'running',
      rounds: [],
      roundsOmitted: 0,
      peers: [],
      peersOmitted: 0,
      origin: { blocks: 0, bytes: 0, ms: 0, byReason: {}, failures: 0, skipped: 0, requests: [], requestsOmitted: 0 },
      retries: { origin: 0, peer: 0 },
    };
    this.traces.push(tr);
    while (this.traces.length > MAX_TRACES) this.traces.shift();
    const peers = new Map<string, PeerTrace>();
    const rounds = new Map<number, { r: RoundTrace; bySeg: Map<string, { segs: Set<number>; firstMs: number }> }>();
    const originTried = new Set<number>();
    /** Start of the first delivered request per peer ('' = origin), daemon clock. */
    const spans = new Map<string, number>();
    const peerTried = new Set<number>();
    let blockOffsets: ((g: number) => { seg: number; index: number; offset: number }) | undefined;
    job.info.then(
      (info) => {
        const ci = info.contentInfo;
        if (!ci) return;
        const starts: number[] = [];
        let n = 0;
        for (const s of ci.segments) {
          starts.push(n);
          n += ci.version === 2 ? 1 : Math.ceil(s.length / s.blockSize);
        }
        blockOffsets = (g) => {
          let lo = 0,
            hi = starts.length - 1;
          while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (starts[mid]! <= g) lo = mid;
            else hi = mid - 1;
          }
          const seg = ci.segments[lo]!;
          const index = g - starts[lo]!;
          return { seg: lo, index, offset: seg.offset + (ci.version === 2 ? 0 : index * seg.blockSize) };
        };
      },
      () => undefined,
    );
    const peer = (address: string): PeerTrace | undefined => {
      let p = peers.get(address);
      if (!p) {
        if (peers.size >= MAX_PEERS) {
          tr.peersOmitted++;
          return undefined;
        }
        p = { address, blocks: 0, bytes: 0, ms: 0, requestMs: 0, failures: {} };
        peers.set(address, p);
        tr.peers.push(p);
      }
      return p;
    };
    const listRequest = (req: Omit<OriginRequestTrace, 'seg' | 'index' | 'offset'>) => {
      if (tr.origin.requests.length >= MAX_ORIGIN_REQUESTS) {
        tr.origin.requestsOmitted++;
        return;
      }
      const where = blockOffsets?.(req.block) ?? { seg: -1, index: -1, offset: -1 };
      tr.origin.requests.push({ ...req, ...where });
    };
    job.on('trace', (ev: TraceEvent) => {
      const at = (abs: number) => Math.max(0, abs - t0);
      switch (ev.type) {
        case 'content': {
          const { type: _t, ...c } = ev;
          tr.content = c;
          break;
        }
        case 'plain':
          tr.plain = { contentLength: ev.contentLength };
          break;
        case 'cached':
          tr.cachedAtStart = { blocks: ev.blocks, bytes: ev.bytes };
          break;
        case 'round':
          if (tr.rounds.length >= MAX_ROUNDS) {
            tr.roundsOmitted++;
            break;
          }
          {
            const r: RoundTrace = {
              round: ev.round,
              kind: ev.kind,
              segments: ev.segments,
              startMs: at(ev.at),
              answers: [],
            };
            tr.rounds.push(r);
            rounds.set(ev.round, { r, bySeg: new Map() });
          }
          break;
        case 'answer': {
          const rr = rounds.get(ev.round);
          if (!rr) break;
          let a = rr.bySeg.get(ev.peer);
          if (!a) {
            if (rr.bySeg.size >= MAX_ANSWERERS_PER_ROUND) break;
            a = { segs: new Set(), firstMs: Math.max(0, ev.at - t0 - rr.r.startMs) };
            rr.bySeg.set(ev.peer, a);
            rr.r.answers.push({ peer: ev.peer, segments: 0, firstMs: a.firstMs });
          }
          a.segs.add(ev.seg);
          const entry = rr.r.answers.find((x) => x.peer === ev.peer);
          if (entry) entry.segments = a.segs.size;
          break;
        }
        case 'gate':
          tr.gate = { ms: at(ev.at), peers: ev.peers, ...(ev.graceMs !== undefined ? { graceMs: ev.graceMs } : {}) };
          break;
        case 'peer-block': {
          const p = peer(ev.peer);
          if (p) {
            p.blocks++;
            p.bytes += ev.bytes;
            p.requestMs += ev.ms;
            const end = this.now(),
              first = spans.get(ev.peer) ?? end - ev.ms;
            spans.set(ev.peer, Math.min(first, end - ev.ms));
            p.ms = end - spans.get(ev.peer)!;
          }
          if (peerTried.has(ev.block)) tr.retries.peer++;
          break;
        }
        case 'peer-fail': {
          const p = peer(ev.peer);
          if (p) p.failures[ev.why] = (p.failures[ev.why] ?? 0) + 1;
          if (peerTried.has(ev.block)) tr.retries.peer++;
          peerTried.add(ev.block);
          break;
        }
        case 'origin-block': {
          tr.origin.blocks++;
          tr.origin.bytes += ev.bytes;
          {
            const end = this.now(),
              first = Math.min(spans.get('') ?? end - ev.ms, end - ev.ms);
            spans.set('', first);
            tr.origin.ms = end - first;
          }
          const r = tr.origin.byReason[ev.reason] ?? { blocks: 0, bytes: 0 };
          tr.origin.byReason[ev.reason] = r;
          r.blocks++;
          r.bytes += ev.bytes;
          if (originTried.has(ev.block)) tr.retries.origin++;
          listRequest({ block: ev.block, bytes: ev.bytes, reason: ev.reason, ms: ev.ms });
          if (ev.picked !== undefined) {
            tr.origin.picks ??= [];
            const picks = tr.origin.picks;
            if (picks.length >= MAX_ORIGIN_PICKS) tr.origin.picksOmitted = (tr.origin.picksOmitted ?? 0) + 1;
            else {
              const pick: OriginPick = [
                ev.block,
                at(ev.picked),
                at(this.now()),
                ev.rank ?? -1,
                ev.owner ?? '',
                ev.members ?? 0,
                ev.reason,
              ];
              if (ev.asked || ev.shadow) pick.push(ev.asked ?? '');
              if (ev.shadow) pick.push(ev.shadow);
              picks.push(pick);
            }
          }
          break;
        }
        case 'origin-fail':
          tr.origin.failures++;
          if (originTried.has(ev.block)) tr.retries.origin++;
          originTried.add(ev.block);
          listRequest({ block: ev.block, bytes: 0, reason: ev.reason, error: ev.error });
          break;
        case 'origin-skipped':
          tr.origin.skipped++;
          break;
        case 'member': {
          tr.crowd ??= { members: {}, omitted: 0 };
          const c = tr.crowd;
          if (ev.via === 'self') {
            c.self = ev.host;
            break;
          }
          let m = c.members[ev.host];
          if (!m) {
            if (Object.keys(c.members).length >= MAX_MEMBERS) {
              c.omitted++;
              break;
            }
            m = {};
            c.members[ev.host] = m;
          }
          if (ev.via === 'probe') m.probeMs ??= at(ev.at);
          else if (ev.via === 'capped') m.cappedMs ??= at(ev.at);
          else m.peerMs ??= at(ev.at);
          break;
        }
      }
    });
    const settle = () => {
      const p = job.progress();
      tr.state = p.state;
      if (p.error) tr.error = p.error;
      tr.durationMs = this.now() - t0;
      tr.totals = {
        bytes: p.bytesDone,
        fromOrigin: p.fromOrigin,
        fromPeers: p.fromPeers,
        fromCache: p.fromCache,
        contentInfoBytes: p.contentInfoBytes,
      };
    };
    job.done.then(settle, settle);
  }

  /** A job's trace by ID, the latest for a URL, or the latest of all. */
  find(q: { job?: string; url?: string }): DownloadTrace | undefined {
    for (let i = this.traces.length - 1; i >= 0; i--) {
      const t = this.traces[i]!;
      if (q.job !== undefined && t.id !== q.job) continue;
      if (q.url !== undefined && t.url !== q.url && t.url !== normalise(q.url)) continue;
      return t;
    }
    return undefined;
  }

  list(): Array<Pick<DownloadTrace, 'id' | 'url' | 'startedAt' | 'state'>> {
    return this.traces.map(({ id, url, startedAt, state }) => ({ id, url, startedAt, state })).reverse();
  }
}

function normalise(url: string): string {
  try {
    const u = new URL(url);
    u.hash = '';
    return u.href;
  } catch {
    return url;
  }
}
