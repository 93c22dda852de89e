/**
 * The per-segment state a daemon holds for a v2 download it has in hand, built from the real
 * modules without a network: the parsed content information, the cache's index entries
 * (BlockStore.addSegments), the job's segment pins, the Transfer (block layout, segment lookup,
 * Scheduler) and discovery's watches with one peer sighted for every segment (the Prober's
 * per-segment peer table, and the Scheduler's record of what the peer holds). Used by
 * bench/segment-heap.ts and test/engine/budget.test.ts to check the engine's state budget
 * (src/engine/budget.ts) against what the heap really holds (issue 25 target 6).
 */
import { createHash } from 'node:crypto';
import { encodeContentInfo, parseContentInfo } from '../src/protocol/pccrc/codec.js';
import { segmentIdOf } from '../src/protocol/pccrc/keys.js';
import type { ContentInfo, SegmentInfo } from '../src/protocol/pccrc/types.js';
import { segmentIdHex } from '../src/protocol/pccrd/values.js';
import type { BlockStore } from '../src/cache/store.js';
import { segmentMetaFrom } from '../src/cache/meta.js';
import { Prober, type SegmentWatch } from '../src/discovery/prober.js';
import type { Watch } from '../src/discovery/watch.js';
import { DampingTable } from '../src/discovery/damping.js';
import { newStats } from '../src/discovery/runtime.js';
import { Transfer, type TransferHost } from '../src/engine/transfer.js';
import type { JobContext } from '../src/engine/session.js';
import type { EngineDeps } from '../src/engine/types.js';
import { nullLogger } from '../src/util/log.js';

/** Average v2 segment of the chunker on real data (1 GiB = 14,436 segments, bench/rss.ts). */
export const V2_SEGMENT_BYTES = 74 * 1024;

/**
 * Wire content information of `n` v2 segments of `segLen` bytes (hashes made up from `seed`: the
 * parser derives the segment IDs from them as for a real one, it cannot check them against data).
 */
export function syntheticV2ContentInfo(n: number, segLen = V2_SEGMENT_BYTES, seed = 'seg'): Buffer {
  const segs: SegmentInfo[] = [];
  for (let k = 0; k < n; k++) {
    const hod = createHash('sha512').update(`${seed} hod ${k}`).digest().subarray(0, 32);
    const kp = createHash('sha512').update(`${seed} kp ${k}`).digest().subarray(0, 32);
    segs.push({
      index: k,
      offset: k * segLen,
      length: segLen,
      blockSize: segLen,
      hod,
      kp,
      segmentId: segmentIdOf(2, kp, hod),
      blockHashes: [],
    });
  }
  return encodeContentInfo({
    version: 2,
    hashAlgorithm: 'SHA-512/256t',
    rangeStart: 0,
    rangeEnd: n * segLen,
    contentLength: n * segLen,
    segments: segs,
  } as ContentInfo);
}

const noTimers = { set: () => 0, clear: () => undefined };

/** What each stage added, measured by `measure()` after it (the caller's heap probe). */
export interface SegmentStateStages<M> {
  parsed: M;
  index: M;
  pins: M;
  transfer: M;
  discovery: M;
}

/**
 * Builds the state of one v2 download of the content information `wire` in `store`, calling
 * `measure()` before and after each stage. Everything stays referenced until `keep` returns
 * (so the caller measures while the download is "in hand"); the store's entries remain after.
 */
export async function buildSegmentState<M>(
  wire: Buffer,
  store: BlockStore,
  measure: () => M,
): Promise<{ start: M } & SegmentStateStages<M> & { segments: number }> {
  const start = measure();
  const ci = parseContentInfo(wire);
  const parsed = measure();
  await store.addSegments(ci.segments.map((s) => segmentMetaFrom(ci.version, ci.hashAlgorithm, s)));
  const index = measure();
  // EngineJob.runPeerDist: one pin per segment, kept by segment number.
  const segPins = new Map<number, () => void>();
  for (const [k, seg] of ci.segments.entries()) segPins.set(k, store.pin(seg.segmentId));
  const pins = measure();
  const rt = {
    now: () => 1,
    random: Math.random,
    timers: noTimers,
    newMessageId: (() => {
      let m = 0;
      return () => `urn:uuid:00000000-0000-4000-8000-${String(++m).padStart(12, '0')}`;
    })(),
    logger: nullLogger,
    stats: newStats(),
  };
  const prober = new Prober(
    { send: () => undefined, isLocal: () => true, ownEndpoint: 'urn:uuid:self', damping: new DampingTable() },
    rt,
  );
  const deps = {
    store,
    discovery: { watch: (ids: Buffer[], v: 1 | 2) => prober.watch(ids, v), initialWaitMs: 0, bridged: false },
    retrieval: {},
  } as unknown as EngineDeps;
  const ctx = {
    deps,
    log: nullLogger,
    now: () => 1,
    timers: noTimers,
    random: Math.random,
    count: () => undefined,
    isSelf: () => false,
    selfAddresses: () => [],
  } as unknown as JobContext;
  const host = {
    ctx,
    url: 'http://127.0.0.1:1/file',
    headers: {},
    log: nullLogger,
    signal: new AbortController().signal,
    ended: new Promise(() => undefined),
    stopped: () => false,
    readerLow: () => 0,
    landed: () => undefined,
    fail: () => undefined,
    finish: () => undefined,
    trace: () => undefined,
  } as unknown as TransferHost;
  const transfer = new Transfer(ci, host);
  const transferM = measure();
  // Discovery: the watches the feed opens (255 IDs each), then one peer answering for every
  // segment as the Prober records it (Watch.upsert) and as the feed passes it to the Scheduler.
  const watches: SegmentWatch[] = [];
  const peer = '127.0.0.2:5000';
  for (let i = 0; i < ci.segments.length; i += 255) {
    const ids = ci.segments.slice(i, i + 255).map((s) => s.segmentId);
    const w = prober.watch(ids, 2) as Watch;
    watches.push(w);
    for (const id of ids) w.upsert(segmentIdHex(id), peer, 1, true, 1);
  }
  for (let k = 0; k < ci.segments.length; k++) transfer.sched.peerHasSegment(peer, k, 1);
  const discovery = measure();
  // Referenced until here.
  if (segPins.size !== ci.segments.length || watches.length === 0 || transfer.layout.blocks.length === 0)
    throw new Error('state not built');
  for (const w of watches) w.close();
  for (const unpin of segPins.values()) unpin();
  return { start, parsed, index, pins, transfer: transferM, discovery, segments: ci.segments.length };
}
