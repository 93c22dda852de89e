/**
 * BlockStore: the local verified block cache.
 *
 * - Metadata lives in `level` under `<dir>/index` (keys below); block data of v1 segments in one
 *   sparse file per segment under `<dir>/blocks/` (segfiles.ts explains the choice), v2 blocks in
 *   append-only pack files under `<dir>/packs/` with group commit (packs.ts; issue 25). The index wins: on open, segment
 *   files without an index entry are removed, and present marks whose bytes are not on disk are dropped.
 * - The present bitmap of every segment is in memory, so hasBlock/presentBlocks/isComplete are sync.
 * - putBlock verifies, writes the block in place and fdatasyncs it, THEN marks it present in the index
 *   and in memory. A block checked with checkBlock() (the download engine checks every block as it
 *   arrives, to tell a bad peer from a good one) is not hashed a second time by putBlock: the store
 *   remembers which buffer it verified for which block. Present marks of concurrent writes go to the
 *   index as one batch.
 * - readBlock re-verifies every block it returns (SHA-256 costs ~40 µs per 64 KiB block on an idle
 *   core); a bad or short block is dropped (marked absent) and reported with 'corrupt'.
 * - Size limit: LRU eviction of whole unpinned segments. Segment metadata counts against the limit
 *   (metaCost: index record and memory), so segments without blocks are evicted least recently used
 *   too, and the number of segments is capped (maxSegments; issue 27.5). Downloads pin their segments while they run
 *   and, after, while a reader has yet to read them (issue 27.1). A write that would still take the
 *   cache over its limit (everything else is pinned) is refused with CACHE_FULL: the
 *   cache is an optimisation, and the engine then delivers the block to its readers without caching
 *   it (issue 16.4: pinned downloads used to grow the cache until the disk was full). When pins are
 *   released and the cache is over its limit (a smaller limit, a restart), it shrinks at once.
 * - Full filesystem: a write or index update failing with ENOSPC evicts unpinned segments (files
 *   first, which frees the space the index update needs) and is retried; with nothing left to
 *   evict it fails with NO_SPACE. Nothing stays broken: the next write after space is back works.
 * - Last use and hit counters are kept in memory and flushed to the index in batches.
 *
 * Index keys: `m!<id>` segment metadata (MetaRecord), `p!<id>!<index>` block present (1: in the
 * segment file; {k: pack, o: offset}: a v2 block in a pack),
 * `u!<id>` usage {lastUse, hitsLocal, hitsPeer}, `c!limit` configured limit, `c!stats` counters.
 */
import { EventEmitter } from 'node:events';
import { chmod, statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Level } from 'level';
import { blockRange, packedHashes, verifyBlock } from '../protocol/pccrc/types.js';
import { PackedSegment } from '../protocol/pccrc/packed.js';
import { type Logger, nullLogger } from '../util/log.js';
import { Bitmap } from './bitmap.js';
import { BadBlockError, CacheError, CacheLockedError } from './errors.js';
import { DIR_MODE, SegmentFiles } from './segfiles.js';
import { Mutex } from './lock.js';
import { isPackedMark, PACK_BYTES, type PackLoc, Packs } from './packs.js';
import {
  type MetaRecord,
  type SegmentMeta,
  asSegmentInfo,
  digestLength,
  fromRecord,
  metaBlockCount,
  metaCost,
  sameMeta,
  toRecord,
  validateMeta,
} from './meta.js';
import { exportPackage, type ImportReport, importPackage } from './package.js';
import { makeDirs } from '../util/mkdirs.js';

export { type SegmentMeta, segmentMetaFrom } from './meta.js';
export { BadBlockError, CacheLockedError, CacheError } from './errors.js';

export interface BlockStoreOptions {
  dir: string;
  /** Size limit in bytes; overrides (and replaces) the stored limit. Default: the stored limit, else 5% of the filesystem. */
  limitBytes?: number;
  logger?: Logger;
  /** fsync block data before it becomes visible (default true). */
  fsync?: boolean;
  /** Clock (ms since epoch) for last-use times. */
  now?: () => number;
  /** How often buffered last-use/hit updates are written to the index (default 5000 ms). */
  flushIntervalMs?: number;
  /** Segments with no blocks, unpinned and unused for this long are forgotten at the next flush (default 1 h). */
  emptySegmentTtlMs?: number;
  /**
   * Most segments held; beyond it the least recently used unpinned ones go (issue 27.5). Default:
   * one per 32 KiB of the limit (v2 segments are up to 128 KiB), at least 4,096, at most 4,194,304.
   */
  maxSegments?: number;
  /** Bytes appended to one v2 pack file before the next starts (default PACK_BYTES, 16 MiB; packs.ts). */
  packBytes?: number;
}

export interface CacheStats {
  segments: number;
  completeSegments: number;
  blocks: number;
  /** Block bytes. */
  bytes: number;
  /** What the segments' metadata counts against the limit (metaCost). */
  metaBytes: number;
  limitBytes: number;
  /** bytes + metaBytes beyond the limit. */
  overLimitBytes: number;
  maxSegments: number;
  pinnedSegments: number;
  hitsLocal: number;
  hitsPeer: number;
  misses: number;
  evictions: number;
  corruptBlocks: number;
}

export interface SegmentSummary {
  /** replay: a hosted cache's v2 segment stored as received (protocol/pchc.md). */
  segmentId: string;
  version: 1 | 2;
  replay?: boolean;
  blocksPresent: number;
  blocksTotal: number;
  bytes: number;
  length: number;
  lastUse: number;
  hitsLocal: number;
  hitsPeer: number;
  pinned: boolean;
}

export interface VerifyReport {
  segments: number;
  blocks: number;
  bytes: number;
  bad: { segmentId: string; index: number }[];
}

interface Entry {
  idHex: string;
  meta: SegmentMeta;
  present: Bitmap;
  bytes: number;
  lastUse: number;
  hitsLocal: number;
  hitsPeer: number;
  /** When the segment entered the cache (ms since epoch). */
  added: number;
  /** metaCost(meta). */
  metaBytes: number;
  /** Where a present v2 block is when it is in a pack (packs.ts); undefined: in the segment file. */
  loc?: PackLoc;
}
interface Usage {
  lastUse: number;
  hitsLocal: number;
  hitsPeer: number;
}
interface Counters {
  hitsLocal: number;
  hitsPeer: number;
  misses: number;
  evictions: number;
  corruptBlocks: number;
}

const pKey = (idHex: string, i: number) => `p!${idHex}!${i}`;
/** Segments registered per index write (addSegments). */
const ADD_BATCH = 1024;

export class BlockStore extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly pins = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private readonly mutex = new Mutex();
  private counters: Counters = { hitsLocal: 0, hitsPeer: 0, misses: 0, evictions: 0, corruptBlocks: 0 };
  private countersDirty = false;
  private total = 0;
  /** Sum of the entries' metaBytes. */
  private metaTotal = 0;
  private maxSegments = 0;
  /** Bytes of block writes in flight (counted against the limit before they land). */
  private reserved = 0;
  private limit = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Block reads/writes in flight (close() waits for them). */
  private active = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private overWarned = false;
  /** Buffers checkBlock() verified, with the block they were verified for (`<idHex>!<index>`). */
  private readonly verified = new WeakMap<Buffer, string>();
  /** Present marks waiting for the next index batch. */
  private marks: { keys: string[]; written: Promise<void> } | undefined;
  /** v2 blocks: append-only pack files with group commit (packs.ts). */
  private readonly packs: Packs;
  /** v2 block writes in flight by pKey: a second put of the same block waits for the first. */
  private readonly packing = new Map<string, Promise<void>>();

  private constructor(
    readonly dir: string,
    private readonly db: Level<string, unknown>,
    private readonly files: SegmentFiles,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly emptyTtl: number,
    private readonly segmentCap: number | undefined,
    packBytes: number,
  ) {
    super();
    this.packs = new Packs(
      files,
      (ops) => db.batch(ops),
      (err, seq) => log.warn('cache: removing an unused pack file failed', { pack: seq, err }),
      packBytes,
    );
  }

  static async open(opts: BlockStoreOptions): Promise<BlockStore> {
    const dir = resolve(opts.dir);
    if (opts.limitBytes !== undefined && (!Number.isSafeInteger(opts.limitBytes) || opts.limitBytes < 0)) {
      throw new CacheError('BAD_LIMIT', `invalid size limit ${opts.limitBytes}`);
    }
    if (opts.maxSegments !== undefined && (!Number.isSafeInteger(opts.maxSegments) || opts.maxSegments < 1))
      throw new CacheError('BAD_LIMIT', `invalid segment cap ${opts.maxSegments}`);
    if (opts.packBytes !== undefined && (!Number.isSafeInteger(opts.packBytes) || opts.packBytes < 1))
      throw new CacheError('BAD_LIMIT', `invalid pack size ${opts.packBytes}`);
    const log = opts.logger ?? nullLogger;
    await makeDirs(dir, DIR_MODE);
    await chmod(dir, DIR_MODE);
    const indexDir = join(dir, 'index');
    const db = new Level<string, unknown>(indexDir, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string } };
      if (e.code === 'LEVEL_LOCKED' || e.cause?.code === 'LEVEL_LOCKED')
        throw new CacheLockedError(dir, { cause: err });
      throw err;
    }
    const files = new SegmentFiles(dir, opts.fsync ?? true);
    const store = new BlockStore(
      dir,
      db,
      files,
      log,
      opts.now ?? Date.now,
      opts.emptySegmentTtlMs ?? 3_600_000,
      opts.maxSegments,
      opts.packBytes ?? PACK_BYTES,
    );
    try {
      await chmod(indexDir, DIR_MODE);
      await files.init();
      await store.load(opts.limitBytes);
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
    const every = opts.flushIntervalMs ?? 5000;
    store.timer = setInterval(() => {
      store.flush().catch((err) => log.warn('cache index flush failed', { err }));
    }, every);
    store.timer.unref();
    return store;
  }

  /** Loads the index into memory and reconciles it with the block files. */
  private async load(limitBytes: number | undefined): Promise<void> {
    const usage = new Map<string, Usage>();
    const present: [string, number, unknown][] = [];
    let storedLimit: number | undefined;
    const badMeta: string[] = [];
    for await (const [k, v] of this.db.iterator()) {
      if (k.startsWith('m!')) {
        const idHex = k.slice(2);
        let meta: SegmentMeta;
        try {
          meta = fromRecord(idHex, v as MetaRecord);
          validateMeta(meta);
        } catch (err) {
          this.log.warn('cache index: dropping an unreadable segment record', { segmentId: idHex, err });
          badMeta.push(k);
          continue;
        }
        this.entries.set(idHex, {
          idHex,
          meta,
          present: new Bitmap(metaBlockCount(meta)),
          bytes: 0,
          lastUse: (v as MetaRecord).added,
          hitsLocal: 0,
          hitsPeer: 0,
          added: (v as MetaRecord).added,
          metaBytes: metaCost(meta),
        });
      } else if (k.startsWith('p!')) {
        const [, idHex, idx] = k.split('!');
        present.push([idHex!, Number(idx), v]);
      } else if (k.startsWith('u!')) usage.set(k.slice(2), v as Usage);
      else if (k === 'c!limit') storedLimit = v as number;
      else if (k === 'c!stats') this.counters = { ...this.counters, ...(v as Counters) };
    }
    for (const [idHex, u] of usage) {
      const e = this.entries.get(idHex);
      if (e) Object.assign(e, { lastUse: u.lastUse, hitsLocal: u.hitsLocal, hitsPeer: u.hitsPeer });
    }
    const dels: string[] = [...badMeta];
    for (const idHex of usage.keys()) if (!this.entries.has(idHex)) dels.push(`u!${idHex}`);
    // Index entries first: a block is present only if its segment file exists and reaches the block's
    // end. (Contents are not checked here: every read verifies the block anyway.)
    // A packed mark ({k, o}: v2 only) needs its pack to reach the block's end.
    const { segments: onDisk, strays } = await this.files.scan();
    const { packs: packsOnDisk, strays: packStrays } = await this.files.scanPacks();
    for (const [seq, size] of packsOnDisk) this.packs.adopt(seq, size);
    for (const [idHex, i, v] of present) {
      const e = this.entries.get(idHex);
      const packed = isPackedMark(v) ? v : undefined;
      const size = packed ? packsOnDisk.get(packed.k) : onDisk.get(idHex);
      if (!e || size === undefined || !Number.isInteger(i) || i < 0 || i >= e.present.size) {
        dels.push(pKey(idHex, i));
        continue;
      }
      const [s, end] = blockRange(e.meta.version, e.meta, i);
      if ((packed && (e.meta.version !== 2 || size < packed.o + end)) || (!packed && size < end) || !e.present.set(i)) {
        dels.push(pKey(idHex, i));
        continue;
      }
      e.bytes += end - s;
      if (packed) {
        e.loc = { pack: packed.k, off: packed.o };
        this.packs.claim(e.loc, end - s);
      }
    }
    // Then files: a segment file the index does not know, or anything else in blocks/, is removed.
    // (Bytes of blocks the index does not mark present stay in their file unserved until rewritten.)
    for (const p of [...strays, ...packStrays]) await this.files.removePath(p);
    for (const idHex of onDisk.keys()) if (!this.entries.has(idHex)) await this.files.removeSegment(idHex);
    if (dels.length) {
      this.log.warn('cache reconcile removed stale index entries', { count: dels.length });
      await this.db.batch(dels.map((key) => ({ type: 'del' as const, key })));
    }
    // Packs no present block is in (a crash after the bytes, before their marks) go; writing starts
    // in a new pack, so nothing already in one is ever written again.
    for (const seq of this.packs.unused()) {
      this.packs.forget(seq);
      await this.files.removePack(seq);
    }
    for (const e of this.entries.values()) {
      this.total += e.bytes;
      this.metaTotal += e.metaBytes;
    }
    this.setLimit(limitBytes ?? storedLimit ?? (await defaultLimit(this.dir)));
    // An explicit limit (the daemon's configuration) is remembered, so later openers (the CLI) honour it.
    if (limitBytes !== undefined && limitBytes !== storedLimit) await this.db.put('c!limit', limitBytes);
    if (this.over()) await this.mutex.run(() => this.shrinkLocked(0, undefined));
  }

  private setLimit(limit: number): void {
    this.limit = limit;
    this.maxSegments = this.segmentCap ?? Math.min(4_194_304, Math.max(4096, Math.floor(limit / 32_768)));
  }

  /** Bytes counted against the limit: blocks and metadata. */
  private used(): number {
    return this.total + this.metaTotal;
  }

  /** Over the size limit (with `incoming` more bytes) or the segment cap. */
  private over(incoming = 0): boolean {
    return this.used() + incoming > this.limit || this.entries.size > this.maxSegments;
  }

  // ---- segments ----

  async addSegment(meta: SegmentMeta): Promise<void> {
    await this.addSegments([meta]);
  }

  /**
   * Registers segments (their metadata, no blocks yet): one index write per ADD_BATCH new segments,
   * not one per segment (a download's 16,384 v2 segments took 0.9 s one by one). A segment already
   * known with the same metadata is left as it is; with different metadata it is a SEGMENT_CONFLICT.
   * A batch that fails (conflict, or no space after evicting what can be evicted) registers none of
   * its segments; earlier batches stay registered.
   */
  async addSegments(metas: readonly SegmentMeta[]): Promise<void> {
    for (const m of metas) validateMeta(m);
    for (let i = 0; i < metas.length; i += ADD_BATCH) {
      const chunk = metas.slice(i, i + ADD_BATCH);
      await this.mutex.run(async () => {
        const fresh = new Map<string, SegmentMeta>();
        for (const meta of chunk) {
          const idHex = meta.segmentId.toString('hex');
          const old = this.entries.get(idHex)?.meta ?? fresh.get(idHex);
          if (old) {
            if (!sameMeta(old, meta))
              throw new CacheError('SEGMENT_CONFLICT', `segment ${idHex} is already cached with different metadata`);
            continue;
          }
          // One packed buffer per segment, not a Buffer per block (issue 16.7); a packed v2 segment
          // of parsed content information is kept as it is (pccrc/packed.ts).
          let copy: SegmentMeta;
          if (meta instanceof PackedSegment) copy = meta;
          else {
            copy = {
              ...meta,
              blockHashes: packedHashes(Buffer.concat(meta.blockHashes), digestLength(meta.hashAlgorithm)),
            };
            if (!copy.replay) delete copy.replay;
          }
          fresh.set(idHex, copy);
        }
        if (fresh.size === 0) return;
        const t = this.now();
        const ops: Array<{ type: 'put'; key: string; value: object }> = [];
        for (const [idHex, copy] of fresh)
          ops.push(
            { type: 'put', key: `m!${idHex}`, value: toRecord(copy, t) },
            { type: 'put', key: `u!${idHex}`, value: { lastUse: t, hitsLocal: 0, hitsPeer: 0 } },
          );
        await this.withSpace('', () => this.db.batch(ops), true);
        for (const [idHex, copy] of fresh) {
          const metaBytes = metaCost(copy);
          this.metaTotal += metaBytes;
          this.entries.set(idHex, {
            idHex,
            meta: copy,
            present: new Bitmap(metaBlockCount(copy)),
            bytes: 0,
            lastUse: t,
            hitsLocal: 0,
            hitsPeer: 0,
            added: t,
            metaBytes,
          });
        }
        // Room for their metadata (and within the segment cap): older unpinned segments go, never
        // these (their caller pins them next). Pinned ones may overshoot: a download's are bounded
        // by the engine's state budget, a hosted cache's by its pull queue.
        if (this.over()) await this.shrinkLocked(0, new Set(fresh.keys()));
      });
    }
  }

  getSegment(segmentId: Buffer): SegmentMeta | undefined {
    return this.entries.get(segmentId.toString('hex'))?.meta;
  }
  hasBlock(segmentId: Buffer, index: number): boolean {
    return this.entries.get(segmentId.toString('hex'))?.present.has(index) ?? false;
  }
  presentBlocks(segmentId: Buffer): number[] {
    return this.entries.get(segmentId.toString('hex'))?.present.list() ?? [];
  }
  isComplete(segmentId: Buffer): boolean {
    const e = this.entries.get(segmentId.toString('hex'));
    return !!e && e.present.count === e.present.size;
  }

  /**
   * A segment's holdings as discovery answers from them (one map lookup by hex ID, no arrays: a
   * 255-ID probe from each of 31 peers is the hot path of a flash crowd); undefined when unknown.
   */
  probeState(idHex: string): { present: number; total: number; added: number } | undefined {
    const e = this.entries.get(idHex);
    return e && { present: e.present.count, total: e.present.size, added: e.added };
  }

  /** When the segment entered the cache (ms since epoch), or undefined when it is not held. */
  addedAt(segmentId: Buffer): number | undefined {
    return this.entries.get(segmentId.toString('hex'))?.added;
  }

  /**
   * Evicts every unpinned segment that entered the cache more than `maxAgeMs` ago (the maximum
   * cache entry age, like BranchCache's Set-BCDataCacheEntryMaxAge). Returns how many went.
   */
  async evictOlderThan(maxAgeMs: number): Promise<number> {
    const cutoff = this.now() - maxAgeMs;
    let n = 0;
    await this.mutex.run(async () => {
      for (const e of [...this.entries.values()]) {
        if (e.added < cutoff && !this.pins.has(e.idHex) && this.entries.get(e.idHex) === e) {
          await this.evictLocked(e);
          n++;
        }
      }
    });
    return n;
  }

  /**
   * Evicts one segment (blocks and metadata) unless it is pinned; with `ifEmpty`, only when it
   * holds no block. For a caller with its own policy: the hosted cache drops what a failed pull
   * registered and makes room by its per-client shares (protocol/pchc.md). True when it went.
   */
  async evictSegment(segmentId: Buffer, opts: { ifEmpty?: boolean } = {}): Promise<boolean> {
    const idHex = segmentId.toString('hex');
    return this.mutex.run(async () => {
      const e = this.entries.get(idHex);
      if (!e || this.pins.has(idHex) || (opts.ifEmpty && e.present.count > 0)) return false;
      await this.evictLocked(e);
      return true;
    });
  }

  /**
   * Where a present block's bytes are on disk: the file (a pack for v2 blocks, else the segment's
   * file) and the block's offset in it; undefined when the block is not held. For diagnostics and
   * tests (a test that damages a cached block on disk finds it here).
   */
  blockFile(segmentId: Buffer, index: number): { path: string; offset: number } | undefined {
    const idHex = segmentId.toString('hex');
    const e = this.entries.get(idHex);
    if (!e?.present.has(index)) return undefined;
    if (e.loc) return { path: this.files.packPath(e.loc.pack), offset: e.loc.off };
    return { path: this.files.segmentPath(idHex), offset: blockRange(e.meta.version, e.meta, index)[0] };
  }

  /** Bytes held (and being written) against the limit, without walking the segments as stats() does. */
  usage(): { bytes: number; limitBytes: number } {
    return { bytes: this.total + this.reserved, limitBytes: this.limit };
  }

  // ---- blocks ----

  /**
   * Checks `data` against the hash of block `index` of a cached segment. A good buffer is
   * remembered for that block, so a following putBlock of the same (unmodified) buffer does not
   * hash it again. False when the segment is unknown or the data does not match.
   */
  checkBlock(segmentId: Buffer, index: number, data: Buffer): boolean {
    const idHex = segmentId.toString('hex');
    const e = this.entries.get(idHex);
    if (!e || !Number.isInteger(index) || index < 0 || index >= e.present.size) return false;
    if (!verifyBlock(e.meta.version, asSegmentInfo(e.meta), index, data)) return false;
    this.verified.set(data, pKey(idHex, index));
    return true;
  }

  async putBlock(segmentId: Buffer, index: number, data: Buffer): Promise<void> {
    if (this.closed) throw new CacheError('CACHE_CLOSED', 'the block store is closed');
    this.active++;
    try {
      await this.put(segmentId, index, data);
    } finally {
      this.settle();
    }
  }

  private async put(segmentId: Buffer, index: number, data: Buffer): Promise<void> {
    const idHex = segmentId.toString('hex');
    const e = this.entries.get(idHex);
    if (!e) throw new CacheError('UNKNOWN_SEGMENT', `segment ${idHex} is not in the cache (addSegment first)`);
    if (!Number.isInteger(index) || index < 0 || index >= e.present.size)
      throw new BadBlockError(`block ${index} out of range for segment ${idHex}`);
    const checked = this.verified.get(data) === pKey(idHex, index);
    if (checked) this.verified.delete(data);
    if (!checked && !verifyBlock(e.meta.version, asSegmentInfo(e.meta), index, data))
      throw new BadBlockError(`block ${index} of segment ${idHex} does not match its hash`);
    if (e.present.has(index)) {
      this.touch(e);
      return;
    }
    // The pin keeps eviction and clear() away from this segment until the block is committed, so
    // only the size check needs the mutex; data writes and index puts run concurrently.
    const release = this.pin(segmentId);
    let added = false;
    this.reserved += data.length;
    try {
      if (this.used() + this.reserved > this.limit) {
        await this.mutex.run(() => this.shrinkLocked(0, idHex));
        // Refused only when the committed bytes leave no room for this block: writes in flight
        // (bounded by the engines' concurrency) may overlap the limit for a moment.
        if (this.used() + data.length > this.limit) {
          throw new CacheError(
            'CACHE_FULL',
            `cache full: ${this.total} bytes of blocks and ${this.metaTotal} of metadata held, ${this.reserved} being written, limit ${this.limit}; the rest is pinned by downloads in progress`,
          );
        }
      }
      if (e.meta.version === 2) added = await this.putPacked(e, index, data);
      else {
        const [s] = blockRange(e.meta.version, e.meta, index);
        // durable (fdatasync) before the index says present
        await this.withSpace(idHex, () => this.files.write(idHex, s, data), false);
        await this.withSpace(idHex, () => this.mark(pKey(idHex, index)), false);
        if (this.entries.get(idHex) === e && e.present.set(index)) {
          e.bytes += data.length;
          this.total += data.length;
          added = true;
        }
      }
    } finally {
      this.reserved -= data.length;
      release();
    }
    this.touch(e);
    if (added) this.emit('block', idHex, index);
  }

  /**
   * A v2 block into the current pack: appended, made durable and marked present with the blocks
   * written meanwhile (one fdatasync and one index batch for the group, packs.ts). True when it
   * became present. The caller holds a pin on the segment.
   */
  private async putPacked(e: Entry, index: number, data: Buffer): Promise<boolean> {
    const key = pKey(e.idHex, index);
    const other = this.packing.get(key);
    if (other) {
      await other; // the same block is being written: its outcome is this one's
      return false;
    }
    let added = false;
    const run = this.withSpace(
      e.idHex,
      async () => {
        const { loc, done } = this.packs.append(key, data);
        try {
          await done;
          if (this.entries.get(e.idHex) === e && e.present.set(index)) {
            e.loc = loc;
            this.packs.claim(loc, data.length);
            e.bytes += data.length;
            this.total += data.length;
            added = true;
          }
        } finally {
          this.packs.settle(loc);
        }
      },
      false,
    );
    this.packing.set(key, run);
    try {
      await run;
    } finally {
      this.packing.delete(key);
    }
    return added;
  }

  /** Writes a present mark with the others of this turn of the event loop (one index batch). */
  private mark(key: string): Promise<void> {
    let m = this.marks;
    if (!m) {
      const batch: { keys: string[]; written: Promise<void> } = { keys: [], written: Promise.resolve() };
      batch.written = new Promise<void>((r) => setImmediate(r)).then(() => {
        if (this.marks === batch) this.marks = undefined;
        return this.db.batch(batch.keys.map((k) => ({ type: 'put' as const, key: k, value: 1 })));
      });
      this.marks = m = batch;
    }
    m.keys.push(key);
    return m.written;
  }

  async readBlock(segmentId: Buffer, index: number, purpose: 'local' | 'peer' = 'local'): Promise<Buffer | undefined> {
    return this.readCounted(segmentId, index, purpose, undefined);
  }

  /**
   * readBlock into `dest` (from its start; it must hold the block): the block's length once it is
   * read and verified, undefined when it is not held (or was bad, and is dropped). For a server that
   * reads into buffers of its own instead of a fresh buffer per block.
   */
  async readBlockInto(
    segmentId: Buffer,
    index: number,
    dest: Buffer,
    purpose: 'local' | 'peer' = 'local',
  ): Promise<number | undefined> {
    return (await this.readCounted(segmentId, index, purpose, dest))?.length;
  }

  private async readCounted(
    segmentId: Buffer,
    index: number,
    purpose: 'local' | 'peer',
    dest: Buffer | undefined,
  ): Promise<Buffer | undefined> {
    const idHex = segmentId.toString('hex');
    const e = this.closed ? undefined : this.entries.get(idHex);
    if (!e?.present.has(index)) {
      this.counters.misses++;
      this.countersDirty = true;
      return undefined;
    }
    this.active++;
    let data: Buffer | undefined;
    try {
      data = await this.readVerified(e, index, dest);
    } finally {
      this.settle();
    }
    if (!data) {
      this.counters.misses++;
      this.countersDirty = true;
      return undefined;
    }
    if (purpose === 'peer') {
      e.hitsPeer++;
      this.counters.hitsPeer++;
    } else {
      e.hitsLocal++;
      this.counters.hitsLocal++;
    }
    this.countersDirty = true;
    this.touch(e);
    return data;
  }

  /**
   * Reads and verifies a present block (into `dest` when given: the result is then a view of it);
   * drops it (and emits 'corrupt') when missing or bad.
   */
  private async readVerified(e: Entry, index: number, dest?: Buffer): Promise<Buffer | undefined> {
    if (this.entries.get(e.idHex) !== e || !e.present.has(index)) return undefined;
    const [s, end] = blockRange(e.meta.version, e.meta, index);
    const loc = e.loc;
    let data: Buffer;
    if (loc) {
      const buf = dest ?? Buffer.allocUnsafe(end - s);
      try {
        data = buf.subarray(0, await this.files.readPackInto(loc.pack, loc.off, end - s, buf));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // Moved (compaction) or evicted while this read waited, and its pack removed: read it again.
        if (e.loc !== loc) return this.readVerified(e, index, dest);
        data = buf.subarray(0, 0); // the pack is gone from under the index: dropped below as too short
      }
    } else
      data = dest
        ? dest.subarray(0, await this.files.readInto(e.idHex, s, end - s, dest))
        : await this.files.read(e.idHex, s, end - s);
    if (this.entries.get(e.idHex) !== e || !e.present.has(index)) return undefined; // evicted/dropped meanwhile
    if (e.loc !== loc) return this.readVerified(e, index, dest); // moved meanwhile: read the new place
    if (verifyBlock(e.meta.version, asSegmentInfo(e.meta), index, data)) return data;
    await this.drop(e, index, data.length < end - s ? 'file too short' : 'hash mismatch');
    return undefined;
  }

  private async drop(e: Entry, index: number, reason: string): Promise<void> {
    const dropped = await this.mutex.run(async () => {
      if (this.entries.get(e.idHex) !== e || !e.present.has(index)) return false;
      await this.db.del(pKey(e.idHex, index));
      e.present.clear(index);
      const [s, end] = blockRange(e.meta.version, e.meta, index);
      e.bytes -= end - s;
      this.total -= end - s;
      if (e.loc) {
        this.packs.release(e.loc, end - s);
        e.loc = undefined;
      }
      return true;
    });
    if (!dropped) return;
    this.counters.corruptBlocks++;
    this.countersDirty = true;
    this.log.warn('cache dropped a bad block', { segmentId: e.idHex, index, reason });
    this.emit('corrupt', e.idHex, index);
  }

  // ---- pins, eviction, limits ----

  pin(segmentId: Buffer): () => void {
    // Keyed by the index entry's own string when there is one (not a second 64-character copy).
    const hex = segmentId.toString('hex');
    const idHex = this.entries.get(hex)?.idHex ?? hex;
    this.pins.set(idHex, (this.pins.get(idHex) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(idHex) ?? 1) - 1;
      if (n <= 0) this.pins.delete(idHex);
      else this.pins.set(idHex, n);
      if (n <= 0 && this.over()) this.shrinkSoon();
    };
  }

  private shrinking = false;
  /** A pin was released while a shrink was under way: shrink once more when it is over. */
  private shrinkAgain = false;

  /** Back under the limit as soon as pins allow (pins are released synchronously, eviction is async). */
  private shrinkSoon(): void {
    if (this.closed) return;
    if (this.shrinking) {
      this.shrinkAgain = true;
      return;
    }
    this.shrinking = true;
    this.active++;
    this.mutex
      .run(async () => {
        try {
          do {
            this.shrinkAgain = false;
            await this.shrinkLocked(0, undefined);
          } while (this.shrinkAgain && this.over());
        } finally {
          // Still inside the section: a release from now on queues a shrink of its own.
          this.shrinking = false;
        }
      })
      .catch((err) => this.log.warn('cache shrink failed', { err }))
      .finally(() => this.settle());
  }

  /**
   * Runs an index or data write; on a full filesystem evicts unpinned segments (least recently used
   * first, never `keep`) one at a time and retries. `locked`: the caller holds the mutex.
   */
  private async withSpace<T>(keep: string, fn: () => Promise<T>, locked: boolean): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isNoSpace(err)) throw err;
        const freed =
          attempt < 64 &&
          (locked ? await this.evictForSpaceLocked(keep) : await this.mutex.run(() => this.evictForSpaceLocked(keep)));
        if (!freed)
          throw new CacheError(
            'NO_SPACE',
            `no space left on the cache's filesystem (${this.dir}) and nothing left to evict: ${(err as Error).message}`,
            { cause: err },
          );
        this.log.warn('cache filesystem full: evicted a segment to make room', { attempt: attempt + 1 });
      }
    }
  }

  /** Evicts the least recently used unpinned segment holding data, file first (frees space for the index update). */
  private async evictForSpaceLocked(keep: string): Promise<boolean> {
    let victim: Entry | undefined;
    for (const v of this.entries.values()) {
      if (v.idHex === keep || v.bytes === 0 || this.pins.has(v.idHex)) continue;
      if (!victim || v.lastUse < victim.lastUse) victim = v;
    }
    if (!victim) return false;
    await this.evictLocked(victim);
    return true;
  }

  private touch(e: Entry): void {
    e.lastUse = Math.max(e.lastUse, this.now());
    this.dirty.add(e.idHex);
  }

  /**
   * Evicts LRU unpinned segments (never `keep`), with or without blocks, until `incoming` more bytes
   * fit and the segment cap holds. Caller holds the mutex.
   */
  private async shrinkLocked(incoming: number, keep: string | ReadonlySet<string> | undefined): Promise<void> {
    incoming += this.reserved;
    if (!this.over(incoming)) {
      this.overWarned = false;
      return;
    }
    const kept = (id: string) => (typeof keep === 'string' ? id === keep : (keep?.has(id) ?? false));
    // Pins released while evicting (a reader finished meanwhile) make more segments evictable:
    // look again until nothing more can go (issue 27.1: a cache stayed over its limit for good).
    for (let evicted = true; evicted && this.over(incoming); ) {
      evicted = false;
      const victims = [...this.entries.values()]
        .filter((v) => !kept(v.idHex) && !this.pins.has(v.idHex))
        .sort((a, b) => a.lastUse - b.lastUse);
      for (const v of victims) {
        if (!this.over(incoming)) break;
        if (this.pins.has(v.idHex) || this.entries.get(v.idHex) !== v) continue; // pinned meanwhile
        await this.evictLocked(v);
        evicted = true;
      }
    }
    await this.compactLocked();
    const over = this.over(incoming);
    if (over && !this.overWarned)
      this.log.warn('cache over its size limit or segment cap: remaining segments are pinned or in use', {
        over: Math.max(0, this.used() + incoming - this.limit),
        segments: this.entries.size,
        maxSegments: this.maxSegments,
      });
    this.overWarned = over;
  }

  /**
   * Keeps the dead bytes of pack files (blocks evicted from packs that still hold others) under
   * max(4 packs, limit / 8): the live blocks of the most dead sealed pack are read, verified and
   * appended to the current pack (one group commit, as any write), their marks moved, and the old
   * pack goes with its last block. A crash in between leaves the mark at the old place or the new
   * one, both durable. Caller holds the mutex.
   */
  private async compactLocked(): Promise<void> {
    const bound = Math.max(4 * this.packs.packBytes, this.limit / 8);
    const tried = new Set<number>();
    for (;;) {
      const seq = this.packs.mostlyDead();
      if (seq === undefined || tried.has(seq) || this.packs.deadBytes() <= bound) return;
      tried.add(seq);
      for (const e of [...this.entries.values()]) {
        const loc = e.loc;
        if (!loc || loc.pack !== seq || this.closed) continue;
        const [, len] = blockRange(2, e.meta, 0);
        const data = Buffer.allocUnsafe(len);
        const got = await this.files.readPackInto(loc.pack, loc.off, len, data).catch(() => 0);
        // A bad block stays where it is: the next read of it drops it (drop() needs the mutex).
        if (got !== len || !verifyBlock(2, asSegmentInfo(e.meta), 0, data) || e.loc !== loc) continue;
        const { loc: to, done } = this.packs.append(pKey(e.idHex, 0), data);
        try {
          await done;
          if (this.entries.get(e.idHex) === e && e.loc === loc) {
            e.loc = to;
            this.packs.claim(to, len);
            this.packs.release(loc, len);
          }
        } finally {
          this.packs.settle(to);
        }
      }
    }
  }

  /**
   * Drops a segment: its data file first, then its index entries. The file goes first because on a
   * full filesystem the index cannot even log a delete until space is freed (LevelDB appends every
   * write to its log); if the index update fails anyway, the next open reconciles (present marks
   * without their file are dropped), and nothing is served meanwhile (the entry is gone from memory).
   */
  private async evictLocked(e: Entry): Promise<void> {
    this.entries.delete(e.idHex);
    this.dirty.delete(e.idHex);
    this.total -= e.bytes;
    this.metaTotal -= e.metaBytes;
    if (e.loc) {
      this.packs.release(e.loc, e.bytes);
      e.loc = undefined;
    } else await this.files.removeSegment(e.idHex);
    const ops: { type: 'del'; key: string }[] = [
      { type: 'del', key: `m!${e.idHex}` },
      { type: 'del', key: `u!${e.idHex}` },
    ];
    for (const i of e.present.list()) ops.push({ type: 'del', key: pKey(e.idHex, i) });
    await this.db.batch(ops).catch((err) => this.log.warn('cache index update after eviction failed', { err }));
    this.counters.evictions++;
    this.countersDirty = true;
    this.emit('evict', e.idHex);
  }

  async resize(limitBytes: number): Promise<void> {
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 0)
      throw new CacheError('BAD_LIMIT', `invalid size limit ${limitBytes}`);
    await this.mutex.run(async () => {
      this.setLimit(limitBytes);
      await this.db.put('c!limit', limitBytes);
      await this.shrinkLocked(0, undefined);
    });
  }

  /** Removes every segment that is not pinned. */
  async clear(): Promise<void> {
    await this.mutex.run(async () => {
      for (const e of [...this.entries.values()])
        if (!this.pins.has(e.idHex) && this.entries.get(e.idHex) === e) await this.evictLocked(e);
    });
  }

  // ---- reporting ----

  stats(): CacheStats {
    let blocks = 0,
      complete = 0;
    for (const e of this.entries.values()) {
      blocks += e.present.count;
      if (e.present.count === e.present.size) complete++;
    }
    return {
      segments: this.entries.size,
      completeSegments: complete,
      blocks,
      bytes: this.total,
      metaBytes: this.metaTotal,
      limitBytes: this.limit,
      overLimitBytes: Math.max(0, this.used() - this.limit),
      maxSegments: this.maxSegments,
      pinnedSegments: [...this.pins.keys()].filter((k) => this.entries.has(k)).length,
      ...this.counters,
    };
  }

  list(): SegmentSummary[] {
    return [...this.entries.values()]
      .sort((a, b) => b.lastUse - a.lastUse)
      .map((e) => ({
        segmentId: e.idHex,
        version: e.meta.version,
        ...(e.meta.replay ? { replay: true } : {}),
        blocksPresent: e.present.count,
        blocksTotal: e.present.size,
        bytes: e.bytes,
        length: e.meta.length,
        lastUse: e.lastUse,
        hitsLocal: e.hitsLocal,
        hitsPeer: e.hitsPeer,
        pinned: this.pins.has(e.idHex),
      }));
  }

  /** Re-hashes every present block; bad or missing ones are dropped (and emit 'corrupt'). */
  async verifyAll(): Promise<VerifyReport> {
    const report: VerifyReport = { segments: 0, blocks: 0, bytes: 0, bad: [] };
    for (const e of [...this.entries.values()]) {
      report.segments++;
      for (const i of e.present.list()) {
        const data = await this.readVerified(e, i);
        if (data) {
          report.blocks++;
          report.bytes += data.length;
        } else if (this.entries.get(e.idHex) === e) report.bad.push({ segmentId: e.idHex, index: i });
      }
    }
    return report;
  }

  // ---- packages ----

  async exportPackage(
    outPath: string,
    segmentIds?: Buffer[],
  ): Promise<{ segments: number; blocks: number; bytes: number }> {
    // Replay segments (a hosted cache's undecryptable v2 records) have no place in a package.
    const ids = segmentIds
      ? segmentIds.map((s) => s.toString('hex'))
      : [...this.entries.keys()].filter((id) => !this.entries.get(id)!.meta.replay);
    for (const id of ids)
      if (!this.entries.has(id)) throw new CacheError('UNKNOWN_SEGMENT', `segment ${id} is not in the cache`);
    for (const id of ids)
      if (this.entries.get(id)!.meta.replay)
        throw new CacheError('REPLAY_SEGMENT', `segment ${id} is a replay record and cannot be exported`);
    return exportPackage(outPath, ids, {
      meta: (id) => this.entries.get(id)?.meta,
      present: (id) => this.entries.get(id)?.present.list() ?? [],
      pin: (id) => this.pin(Buffer.from(id, 'hex')),
      read: async (id, i) => {
        const e = this.entries.get(id);
        return e ? this.readVerified(e, i) : undefined;
      },
    });
  }

  async importPackage(path: string): Promise<ImportReport> {
    return importPackage(path, this);
  }

  // ---- lifecycle ----

  /** Writes buffered last-use times and counters to the index; forgets stale empty segments. */
  async flush(): Promise<void> {
    await this.mutex.run(async () => {
      // Segments added but never filled (an aborted download) would otherwise stay in the index forever.
      const cutoff = this.now() - this.emptyTtl;
      for (const e of [...this.entries.values()]) {
        if (e.present.count === 0 && e.lastUse < cutoff && !this.pins.has(e.idHex) && this.entries.get(e.idHex) === e)
          await this.evictLocked(e);
      }
      await this.compactLocked();
      const ops: { type: 'put'; key: string; value: unknown }[] = [];
      for (const idHex of this.dirty) {
        const e = this.entries.get(idHex);
        if (e)
          ops.push({
            type: 'put',
            key: `u!${idHex}`,
            value: { lastUse: e.lastUse, hitsLocal: e.hitsLocal, hitsPeer: e.hitsPeer },
          });
      }
      this.dirty.clear();
      if (this.countersDirty) {
        ops.push({ type: 'put', key: 'c!stats', value: { ...this.counters } });
        this.countersDirty = false;
      }
      if (ops.length) await this.db.batch(ops);
    });
  }

  /** One block read or write finished; wakes close() when none are left. */
  private settle(): void {
    this.active--;
    if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Stops accepting block writes (reads become misses), waits for those in flight, flushes, closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.active > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    await this.mutex.idle();
    await this.flush();
    this.packs.close();
    await this.db.close();
    await this.files.close();
  }
}

/** ENOSPC from the filesystem, or LevelDB's I/O error for it. */
function isNoSpace(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: { code?: string } } | undefined;
  if (!e) return false;
  if (e.code === 'ENOSPC' || e.cause?.code === 'ENOSPC') return true;
  return e.code === 'LEVEL_IO_ERROR' && /no space left/i.test(e.message ?? '');
}

async function defaultLimit(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Math.floor(s.bsize * s.blocks * 0.05);
}
