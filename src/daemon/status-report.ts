/**
 * The /v1/status document and the /metrics samples, built from the running parts' stats.
 * Pure over structural inputs, so it is testable with fakes.
 */
import { getHeapStatistics } from 'node:v8';
import type { Metric } from './metrics.js';
import type { ByteCounts } from '../engine/types.js';
import type { EngineLike, JobBook, JobView } from './jobs.js';
import type { ByteHistory, PeerHealth, PeerTrouble, WindowShare } from './history.js';

export interface DaemonParts {
  engine: EngineLike;
  jobs: JobBook;
  store: {
    stats(): {
      bytes: number;
      limitBytes: number;
      segments: number;
      blocks: number;
      completeSegments?: number;
      evictions?: number;
      corruptBlocks?: number;
    };
  };
  /** Byte totals over time (shares over the last hour/day); optional for older callers. */
  history?: ByteHistory;
  /** Peers that failed or were banned in downloads. */
  health?: PeerHealth;
  /** Where this daemon listens and how it is set up (for `peerdist doctor`). */
  endpoints?: () => object;
  server: {
    stats(): { blocksServed: number; bytesServed: number; requests: number; blocksMissing: number; busy: number };
  };
  discovery: { stats(): object };
  /** The MS-PCCRR client downloads use (its AES second-reading counts, issue 27.11). */
  retrievalClient?: { stats(): { aesWholeSecret: { recovered: number; rejected: number } } };
  peers: { known(): string[]; discoveries?: { attempts: number; successes: number } };
  /** Offers to and polls of the configured hosted caches (MS-PCHC); absent without any. */
  hostedCaches?: () => object[];
  started: number;
  version: string;
  now?: () => number;
}

/** A finite non-negative number field of an object whose exact shape belongs to another module. */
function num(obj: unknown, ...keys: string[]): number {
  for (const k of keys) {
    const v = (obj as Record<string, unknown> | null | undefined)?.[k];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return 0;
}

export interface Totals extends ByteCounts {
  servedToPeers: number;
  blocksServedToPeers: number;
  [k: string]: unknown;
}

export function totals(p: DaemonParts): Totals {
  const et = p.engine.totals();
  const ss = p.server.stats();
  return {
    ...et,
    fromOrigin: num(et, 'fromOrigin'),
    fromPeers: num(et, 'fromPeers'),
    fromCache: num(et, 'fromCache'),
    contentInfoBytes: num(et, 'contentInfoBytes'),
    servedToPeers: ss.bytesServed,
    blocksServedToPeers: ss.blocksServed,
  };
}

export interface StatusDocument {
  version: string;
  pid: number;
  uptimeSeconds: number;
  downloads: JobView[];
  totals: Totals;
  cache: ReturnType<DaemonParts['store']['stats']>;
  peersKnown: number;
  peers: string[];
  discovery: object;
  retrievalServer: ReturnType<DaemonParts['server']['stats']>;
  /** The MS-PCCRR client's counters (probation outcomes: the crowd diagnosis of issue 25). */
  retrievalClient?: object;
  /** Bytes by source and the share from peers over the last hour and day. */
  shares: { lastHour: WindowShare; lastDay: WindowShare };
  /** Peers that failed or were banned in downloads (most recent first, up to 20). */
  troublePeers: PeerTrouble[];
  discoveryAttempts: { attempts: number; successes: number };
  endpoints?: object;
  hostedCaches?: object[];
  /**
   * This process: resident set, V8 heap in use, reserved and its limit (--max-old-space-size),
   * memory outside the heap that V8 tracks (external, of which ArrayBuffers and Buffers).
   */
  memory: {
    rssBytes: number;
    heapUsedBytes: number;
    heapTotalBytes: number;
    heapLimitBytes: number;
    externalBytes: number;
    arrayBuffersBytes: number;
  };
}

function memory(): StatusDocument['memory'] {
  const h = getHeapStatistics();
  const m = process.memoryUsage();
  return {
    rssBytes: m.rss,
    heapUsedBytes: h.used_heap_size,
    heapTotalBytes: m.heapTotal,
    heapLimitBytes: h.heap_size_limit,
    externalBytes: m.external,
    arrayBuffersBytes: m.arrayBuffers,
  };
}

const HOUR_MS = 3_600_000;

export function statusDocument(p: DaemonParts): StatusDocument {
  const now = (p.now ?? Date.now)();
  return {
    version: p.version,
    pid: process.pid,
    uptimeSeconds: Math.max(0, (now - p.started) / 1000),
    downloads: p.jobs.active(),
    totals: totals(p),
    cache: p.store.stats(),
    peersKnown: p.peers.known().length,
    peers: p.peers.known(),
    discovery: p.discovery.stats(),
    retrievalServer: p.server.stats(),
    ...(p.retrievalClient ? { retrievalClient: p.retrievalClient.stats() } : {}),
    memory: memory(),
    shares: shares(p, now),
    troublePeers: p.health?.list().slice(0, 20) ?? [],
    discoveryAttempts: { ...(p.peers.discoveries ?? { attempts: 0, successes: 0 }) },
    ...(p.endpoints ? { endpoints: p.endpoints() } : {}),
    ...(p.hostedCaches ? { hostedCaches: p.hostedCaches() } : {}),
  };
}

function shares(p: DaemonParts, now: number): { lastHour: WindowShare; lastDay: WindowShare } {
  const t = totals(p);
  const cur = { fromOrigin: t.fromOrigin, fromPeers: t.fromPeers, fromCache: t.fromCache };
  const w = (ms: number): WindowShare => {
    if (p.history) return p.history.window(now, cur, ms);
    const bytes = cur.fromOrigin + cur.fromPeers + cur.fromCache;
    return {
      ...cur,
      seconds: Math.max(0, (now - p.started) / 1000),
      bytes,
      peerShare: bytes ? cur.fromPeers / bytes : null,
      offloadShare: bytes ? (cur.fromPeers + cur.fromCache) / bytes : null,
    };
  };
  return { lastHour: w(HOUR_MS), lastDay: w(24 * HOUR_MS) };
}

export function collectMetrics(p: DaemonParts): Metric[] {
  const t = totals(p);
  const cache = p.store.stats();
  const ss = p.server.stats();
  const ds = p.discovery.stats();
  return [
    {
      name: 'peerdist_download_bytes_total',
      type: 'counter',
      help: 'Content bytes obtained for downloads, by source.',
      value: [
        { labels: { source: 'origin' }, value: t.fromOrigin },
        { labels: { source: 'peers' }, value: t.fromPeers },
        { labels: { source: 'cache' }, value: t.fromCache },
      ],
    },
    {
      name: 'peerdist_content_info_bytes_total',
      type: 'counter',
      help: 'Bytes of PeerDist content information received from origins.',
      value: t.contentInfoBytes,
    },
    {
      name: 'peerdist_served_bytes_total',
      type: 'counter',
      help: 'Block bytes served to peers (MS-PCCRR).',
      value: ss.bytesServed,
    },
    {
      name: 'peerdist_served_blocks_total',
      type: 'counter',
      help: 'Blocks served to peers (MS-PCCRR).',
      value: ss.blocksServed,
    },
    {
      name: 'peerdist_retrieval_aes_whole_secret_total',
      type: 'counter',
      help: 'AES_128/AES_192 blocks from peers that failed the hash check and were decrypted again with the whole segment secret as the key: recovered or rejected.',
      value: [
        { labels: { outcome: 'recovered' }, value: p.retrievalClient?.stats().aesWholeSecret.recovered ?? 0 },
        { labels: { outcome: 'rejected' }, value: p.retrievalClient?.stats().aesWholeSecret.rejected ?? 0 },
      ],
    },
    {
      name: 'peerdist_retrieval_requests_total',
      type: 'counter',
      help: 'MS-PCCRR requests received.',
      value: ss.requests,
    },
    {
      name: 'peerdist_retrieval_missing_total',
      type: 'counter',
      help: 'Block requests answered "not held".',
      value: ss.blocksMissing,
    },
    {
      name: 'peerdist_probes_sent_total',
      type: 'counter',
      help: 'MS-PCCRD probes sent.',
      value: num(ds, 'probesSent'),
    },
    {
      name: 'peerdist_probes_received_total',
      type: 'counter',
      help: 'MS-PCCRD probes received.',
      value: num(ds, 'probesReceived'),
    },
    {
      name: 'peerdist_probe_matches_sent_total',
      type: 'counter',
      help: 'MS-PCCRD ProbeMatches sent.',
      value: num(ds, 'matchesSent', 'probeMatchesSent'),
    },
    {
      name: 'peerdist_probe_follow_ups_sent_total',
      type: 'counter',
      help: 'Follow-up ProbeMatches sent (a probed segment arrived after the probe; also in probe_matches_sent).',
      value: num(ds, 'followUpsSent'),
    },
    {
      name: 'peerdist_probe_matches_received_total',
      type: 'counter',
      help: 'MS-PCCRD ProbeMatches received.',
      value: num(ds, 'matchesReceived', 'probeMatchesReceived'),
    },
    {
      name: 'peerdist_peers_known',
      type: 'gauge',
      help: 'Peers currently known from discovery.',
      value: p.peers.known().length,
    },
    { name: 'peerdist_cache_bytes', type: 'gauge', help: 'Bytes of blocks held in the cache.', value: cache.bytes },
    { name: 'peerdist_cache_limit_bytes', type: 'gauge', help: 'Cache size limit.', value: cache.limitBytes },
    { name: 'peerdist_cache_segments', type: 'gauge', help: 'Segments in the cache.', value: cache.segments },
    { name: 'peerdist_cache_blocks', type: 'gauge', help: 'Blocks in the cache.', value: cache.blocks },
    {
      name: 'peerdist_cache_evictions_total',
      type: 'counter',
      help: 'Segments evicted from the cache.',
      value: cache.evictions ?? 0,
    },
    { name: 'peerdist_downloads_active', type: 'gauge', help: 'Downloads in progress.', value: p.jobs.active().length },
    // The BranchCache performance counter set (perfmon "BranchCache" object), see protocol/admin-api.md.
    {
      name: 'peerdist_retrieval_bytes_from_cache_total',
      type: 'counter',
      help: 'BranchCache "Retrieval: Bytes from cache": content bytes from peers or the local cache.',
      value: t.fromPeers + t.fromCache,
    },
    {
      name: 'peerdist_retrieval_bytes_from_server_total',
      type: 'counter',
      help: 'BranchCache "Retrieval: Bytes from server": content bytes from the origin.',
      value: t.fromOrigin,
    },
    {
      name: 'peerdist_retrieval_bytes_served_total',
      type: 'counter',
      help: 'BranchCache "Retrieval: Bytes served": block bytes served to peers.',
      value: ss.bytesServed,
    },
    {
      name: 'peerdist_cache_hit_ratio',
      type: 'gauge',
      help: 'Bytes from cache / (bytes from cache + bytes from server) since start (NaN before any download).',
      value: hitRatio(t),
    },
    {
      name: 'peerdist_discovery_attempts_total',
      type: 'counter',
      help: 'BranchCache "Discovery: Attempted discoveries": discovery rounds started (one per set of segments probed for).',
      value: p.peers.discoveries?.attempts ?? 0,
    },
    {
      name: 'peerdist_discovery_successes_total',
      type: 'counter',
      help: 'BranchCache "Discovery: Successful discoveries": discovery rounds that found at least one peer.',
      value: p.peers.discoveries?.successes ?? 0,
    },
    {
      name: 'peerdist_cache_complete_segments',
      type: 'gauge',
      help: 'BranchCache "Local Cache: Cache complete file segments".',
      value: cache.completeSegments ?? 0,
    },
    {
      name: 'peerdist_cache_partial_segments',
      type: 'gauge',
      help: 'BranchCache "Local Cache: Cache partial file segments".',
      value: Math.max(0, cache.segments - (cache.completeSegments ?? 0)),
    },
    {
      name: 'peerdist_peers_failed',
      type: 'gauge',
      help: 'Peers that failed block requests in recent downloads.',
      value: p.health?.failed() ?? 0,
    },
    {
      name: 'peerdist_peers_banned',
      type: 'gauge',
      help: 'Peers banned in recent downloads (sent a block that failed verification).',
      value: p.health?.banned() ?? 0,
    },
    {
      name: 'peerdist_process_heap_used_bytes',
      type: 'gauge',
      help: 'V8 heap in use by the daemon.',
      value: getHeapStatistics().used_heap_size,
    },
    {
      name: 'peerdist_process_resident_bytes',
      type: 'gauge',
      help: 'Resident memory of the daemon.',
      value: process.memoryUsage.rss(),
    },
  ];
}

function hitRatio(t: Totals): number {
  const fromCache = t.fromPeers + t.fromCache;
  const all = fromCache + t.fromOrigin;
  return all > 0 ? fromCache / all : NaN;
}
