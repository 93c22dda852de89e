/**
 * Public types of the download engine and the structural interfaces of its collaborators
 * (BlockStore, Discovery, RetrievalClient satisfy them; tests may pass small fakes).
 */
import type { EventEmitter } from 'node:events';
import type { ContentInfo } from '../protocol/pccrc/types.js';
import type { BlockStore } from '../cache/store.js';
import type { Logger } from '../util/log.js';
import type { Timers } from '../util/timers.js';
import type { OriginClient } from './origin-client.js';
import type { PeerStat } from './scheduler.js';

/** What the engine needs from a discovery sighting (src/discovery PeerSighting). */
export interface SightingLike {
  segmentId: string; // upper-case hex
  address: string; // host:port
  blockCount: number;
  complete: boolean;
  /** A hosted cache: it holds what other clients offered and does not download itself (never a crowd member). */
  relay?: boolean;
}

export interface WatchLike {
  on(event: 'peer', fn: (p: SightingLike) => void): unknown;
  peers(segmentId: Buffer): SightingLike[];
  reportFailure(address: string): void;
  waitForPeers(timeoutMs: number): Promise<void>;
  /**
   * Resolves once every hosted cache that is not known to be failing has answered (or failed)
   * its first request for this watch's segments: its answer names the other clients on every
   * subnet asking for the same segments now (PeerDist-Crowd). Absent: nothing to wait for.
   */
  firstAnswers?(): Promise<void>;
  close(): void;
}

/** Structural subset of Discovery. */
export interface DiscoveryLike {
  watch(segmentIds: Buffer[], version: 1 | 2): WatchLike;
  readonly initialWaitMs: number;
  /**
   * Calls `fn` with the segment IDs and source address of every new probe another host sends
   * (Discovery.onForeignProbe); returns the function that stops it.
   */
  onForeignProbe?(fn: (segmentIds: Buffer[], from: string) => void): () => void;
  /** A segment (ID as hex) entered our cache from the origin: follow-up ProbeMatches (Discovery.announce). */
  announce?(segmentIdHex: string): void;
  /**
   * Peers beyond the subnet take part (hosted caches) and clients on other subnets may download the
   * same content unseen: a flash crowd is then not shared out by ownership (protocol/engine.md,
   * "Flash crowds" 8). Read at every origin pick: it turns false once every hosted cache names the
   * clients that ask it for the same segments (protocol/pchc.md, "Crowds across subnets"); those
   * arrive through onForeignProbe like probes.
   */
  readonly bridged?: boolean;
}

/** Structural subset of RetrievalClient. Ranges are [firstIndex, count]. */
export interface RetrievalLike {
  getBlock(req: {
    peer: string;
    segmentId: Buffer;
    index: number;
    kp: Buffer;
    expectedLength: number;
    verify: (plain: Buffer) => boolean;
    signal?: AbortSignal;
  }): Promise<{ data: Buffer; nextBlockIndex: number; bytesOnWire: number }>;
  getBlockList(req: {
    peer: string;
    segmentId: Buffer;
    ranges: Array<[number, number]>;
    signal?: AbortSignal;
  }): Promise<{ ranges: Array<[number, number]>; nextBlockIndex: number }>;
  /** False while the address is quarantined (it never gave a valid answer): do not use it. */
  usable?(peer: string): boolean;
  /** The address gave a valid MS-PCCRR answer before. */
  proven?(peer: string): boolean;
}

/**
 * The store operations the engine uses (BlockStore). `checkBlock` (optional for fakes) verifies a
 * block so that putBlock does not hash it again.
 */
export type StoreLike = Pick<BlockStore, 'addSegment' | 'hasBlock' | 'putBlock' | 'readBlock' | 'pin' | 'getSegment'> &
  Partial<Pick<BlockStore, 'checkBlock' | 'addSegments'>> &
  Pick<EventEmitter, 'on' | 'off'>;

export interface EngineDeps {
  store: StoreLike;
  discovery: DiscoveryLike;
  retrieval: RetrievalLike;
  /** Origin fetcher (default: an undici Agent with a small pool per origin). */
  http?: OriginClient;
  logger?: Logger;
  now?: () => number;
  /** Timers of the engine's state machines (default: the real ones; tests pass a fake clock). */
  timers?: Timers;
  random?: () => number;
  /** Concurrent origin range requests per download (default 6). */
  originConcurrency?: number;
  /** Adjacent blocks one origin range request may cover when no peer is known (default 16). */
  originRangeBlocks?: number;
  /** Origin ranges longer than one block only after this long alone (default 3000 ms; protocol/engine.md). */
  originAloneAfterMs?: number;
  /** Concurrent block requests per peer (default 16). */
  peerConcurrency?: number;
  /** Concurrent peer block requests per download (default 32). */
  totalPeerConcurrency?: number;
  /** When set, content information must carry a valid origin signature. */
  signaturePublicKeyPem?: string;
  /** Highest content information version requested (default 2). */
  maxContentVersion?: 1 | 2;
  /** Where plain (non-PeerDist) downloads are buffered (default os.tmpdir()). */
  tmpDir?: string;
  /** Period of block-list refreshes of partial holders (default 300 ms). */
  blockListRefreshMs?: number;
  /** Memory for the block state of running downloads (default: half the V8 heap limit). */
  blockStateBudgetBytes?: number;
  /** Finished jobs kept for jobs()/merging of readers (default 32). */
  keepFinishedJobs?: number;
  /**
   * How long a finished plain download's temp body is kept once no reader streams it (default
   * 5 s: covers a front end that obtained the job and is about to open its reader).
   */
  plainLingerMs?: number;
}

/** Where verified content bytes came from: the origin, peers, or the local cache. */
export type ByteSource = 'fromOrigin' | 'fromPeers' | 'fromCache';

/** Bytes of one download (or of all of them) by source, plus the content information bytes. */
export interface ByteCounts extends Record<ByteSource, number> {
  contentInfoBytes: number;
}

/** A download started by DownloadEngine.download(). */
export interface DownloadJob extends EventEmitter {
  readonly id: string;
  readonly url: string;
  /** Resolves once the origin answered. */
  readonly info: Promise<JobInfo>;
  progress(): JobProgress;
  /** Content bytes [start, end] (end inclusive, like fs.createReadStream) in order, as they become available. */
  createReadStream(start?: number, end?: number): NodeJS.ReadableStream;
  /** The same bytes as batches of buffers that were ready together (absent: use createReadStream). */
  readBatches?(start?: number, end?: number): { batches: AsyncGenerator<Buffer[]>; close(): void };
  readonly done: Promise<DownloadResult>;
  cancel(): void;
  /** Settles once no cache write is in flight (after cancel() the counters and cache stop changing). */
  idle(): Promise<void>;
}

export interface JobInfo {
  contentLength: number;
  peerdist: boolean;
  contentInfo?: ContentInfo;
  etag?: string;
  lastModified?: string;
  contentType?: string;
}

export type JobState = 'starting' | 'running' | 'done' | 'failed';

export interface JobProgress extends ByteCounts {
  state: JobState;
  contentLength?: number;
  bytesDone: number;
  peers: number;
  blocksTotal: number;
  blocksDone: number;
  error?: string;
}

export interface DownloadResult extends ByteCounts {
  url: string;
  contentLength: number;
  peerdist: boolean;
  /** Peers that supplied at least one block. */
  peers: number;
  durationMs: number;
  /** Per-peer statistics of the job (PeerDist downloads). */
  peerStats: PeerStat[];
}

export interface EngineTotals extends ByteCounts {
  jobs: number;
  active: number;
  completed: number;
  failed: number;
  bytesDone: number;
}
