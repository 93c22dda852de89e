/**
 * Content information shared by every origin node over one object store: computed once per blob
 * version, kept in the store as a sealed record, read back by every node (protocol/pccrtp.md,
 * "Shared content information").
 *
 * Record name: `.peerdist/ci/<blob name>@<ETag>.v<version>[-<chunking>].<secret fingerprint>`, so a
 * replaced blob (new ETag), another version, chunking or server secret never finds a stale record.
 * Record body: `PDCIREC1` | HMAC-SHA256 | encoded content information. The HMAC key is derived
 * from the server secret and covers the record name, the blob length and the content
 * information, so only a node holding the secret can write a record the others accept; a
 * record that fails the check (or does not decode, or describes another length) is counted,
 * logged and recomputed, never served.
 *
 * One node hashes: the first takes a lock (a blob lease) named after the record, renews it while
 * it hashes and writes the record; the others poll for the record and take over the lock if the
 * hashing node dies (its lease expires) or gives up.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { parseContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import type { Logger } from '../util/log.js';
import type { Chunking } from './hashcache.js';
import type { Producer } from './hashjobs.js';
import { Slots } from './slots.js';
import { RECORD_PREFIX, type ObjectStore, type StoreLock } from './store.js';

const MAGIC = Buffer.from('PDCIREC1', 'latin1');
const MAC_LENGTH = 32;

/** Identifies one record: which blob version, how it was hashed. */
export interface RecordSpec {
  /** Record name in the store (relative to its prefix). */
  name: string;
  /** Blob length the content information must describe. */
  size: number;
  version: ContentVersion;
}

export function secretFingerprint(secret: Buffer): string {
  return createHash('sha256').update(secret).digest().subarray(0, 8).toString('hex');
}

export function recordSpec(
  blob: { name: string; etag: string; size: number },
  version: ContentVersion,
  chunking: Chunking,
  secret: Buffer,
): RecordSpec {
  const tag = blob.etag.replace(/^W\//, '').replace(/"/g, '');
  const how = version === 2 ? `v2-${chunking}` : 'v1';
  return {
    name: `${RECORD_PREFIX}ci/${blob.name}@${tag}.${how}.${secretFingerprint(secret)}`,
    size: blob.size,
    version,
  };
}

function macKey(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('peerdist shared content-information record v1').digest();
}

function mac(key: Buffer, spec: RecordSpec, ci: Buffer): Buffer {
  return createHmac('sha256', key).update(`${spec.name}\0${spec.size}\0`).update(ci).digest();
}

/** The record body for encoded content information. */
export function sealRecord(secret: Buffer, spec: RecordSpec, ci: Buffer): Buffer {
  return Buffer.concat([MAGIC, mac(macKey(secret), spec, ci), ci]);
}

/** The content information in a record, or a reason it is not acceptable. */
export function openRecord(
  secret: Buffer,
  spec: RecordSpec,
  body: Buffer,
): { ok: true; ci: Buffer } | { ok: false; reason: string } {
  if (body.length <= MAGIC.length + MAC_LENGTH || !body.subarray(0, MAGIC.length).equals(MAGIC))
    return { ok: false, reason: 'not a record' };
  const got = body.subarray(MAGIC.length, MAGIC.length + MAC_LENGTH);
  const ci = body.subarray(MAGIC.length + MAC_LENGTH);
  if (!timingSafeEqual(got, mac(macKey(secret), spec, ci))) return { ok: false, reason: 'MAC mismatch' };
  try {
    const parsed = parseContentInfo(ci);
    if (parsed.version !== spec.version) return { ok: false, reason: 'wrong content-information version' };
    if (parsed.contentLength !== spec.size) return { ok: false, reason: 'describes another length' };
  } catch (err) {
    return { ok: false, reason: `does not decode: ${(err as Error).message}` };
  }
  return { ok: true, ci: Buffer.from(ci) };
}

export interface SharedHashOptions {
  store: ObjectStore;
  secret: Buffer;
  log: Logger;
  /** Concurrent hashes on this node (default 2). */
  concurrency?: number;
  /** How often a node waiting for another node's hash looks for the record (default 250 ms). */
  pollMs?: number;
  /** How long a job waits for another node's hash before giving up (default 120 s). */
  maxWaitMs?: number;
  /** Called when a job fails (besides the log line). */
  onFailure?: (spec: RecordSpec, err: Error) => void;
}

export class SharedHashJobs {
  private readonly inflight = new Map<string, Promise<Buffer | undefined>>();
  private readonly slots: Slots;
  private readonly abort = new AbortController();
  private rate: number | undefined;
  /** Blobs this node hashed (each one blob version, one content-information version). */
  started = 0;
  failed = 0;
  /** Records read from the store and accepted. */
  recordHits = 0;
  /** Records that failed their check (then recomputed); each bad record counted once. */
  recordsRejected = 0;
  /** Records found bad and not rewritten since (so one bad record is counted and logged once). */
  private readonly rejected = new Set<string>();
  /** Jobs that found another node hashing (its lock held) and waited for its record. */
  lockWaits = 0;

  constructor(private readonly o: SharedHashOptions) {
    this.slots = new Slots(o.concurrency ?? 2);
  }

  /** The verified content information in the store, if any (a bad record counts and logs). */
  async load(spec: RecordSpec): Promise<Buffer | undefined> {
    const body = await this.o.store.getRecord(spec.name);
    if (body === undefined) return undefined;
    const r = openRecord(this.o.secret, spec, body);
    if (r.ok) {
      this.recordHits++;
      this.rejected.delete(spec.name);
      return r.ci;
    }
    if (this.rejected.has(spec.name)) return undefined;
    this.rejected.add(spec.name);
    this.recordsRejected++;
    this.o.log.warn('content-information record rejected; recomputing', { record: spec.name, reason: r.reason });
    return undefined;
  }

  expectedMs(length: number): number {
    return this.rate === undefined ? 0 : (length / this.rate) * 1000;
  }

  /** Starts (or joins) the job for a record; resolves to the content information, undefined on failure. */
  run(spec: RecordSpec, produce: Producer): Promise<Buffer | undefined> {
    const existing = this.inflight.get(spec.name);
    if (existing) return existing;
    const job = this.execute(spec, produce).finally(() => this.inflight.delete(spec.name));
    this.inflight.set(spec.name, job);
    return job;
  }

  private async execute(spec: RecordSpec, produce: Producer): Promise<Buffer | undefined> {
    const signal = this.abort.signal;
    const deadline = Date.now() + (this.o.maxWaitMs ?? 120_000);
    let waited = false;
    try {
      for (;;) {
        if (signal.aborted) return undefined;
        const found = await this.load(spec);
        if (found) return found;
        const lock = await this.o.store.tryLock(spec.name);
        if (lock) return await this.hashUnder(lock, spec, produce);
        if (!waited) {
          waited = true;
          this.lockWaits++;
        }
        if (Date.now() >= deadline) throw new Error('gave up waiting for another node to hash');
        await sleep(this.o.pollMs ?? 250, signal);
      }
    } catch (err) {
      if (!signal.aborted) {
        this.failed++;
        this.o.log.warn('shared hash job failed', { record: spec.name, err: err as Error });
        this.o.onFailure?.(spec, err as Error);
      }
      return undefined;
    }
  }

  private async hashUnder(lock: StoreLock, spec: RecordSpec, produce: Producer): Promise<Buffer | undefined> {
    const lost = new AbortController();
    const both = AbortSignal.any([this.abort.signal, lost.signal]);
    const renew = setInterval(
      () => {
        lock.renew().catch((err: unknown) => lost.abort(err));
      },
      Math.max(1_000, lock.ttlMs / 3),
    );
    try {
      // Another node may have written the record between our look and our lock.
      const found = await this.load(spec);
      if (found) return found;
      await this.slots.acquire();
      try {
        both.throwIfAborted();
        this.started++;
        const t0 = performance.now();
        const ci = await produce(both);
        const ms = performance.now() - t0;
        if (spec.size >= 1 << 20 && ms > 0) {
          const r = spec.size / (ms / 1000);
          this.rate = this.rate === undefined ? r : 0.7 * this.rate + 0.3 * r;
        }
        if (lost.signal.aborted) throw new Error('hash lock lost while hashing');
        await this.o.store.putRecord(spec.name, sealRecord(this.o.secret, spec, ci));
        this.rejected.delete(spec.name);
        return ci;
      } finally {
        this.slots.release();
      }
    } finally {
      clearInterval(renew);
      await lock.release();
    }
  }

  async idle(): Promise<void> {
    while (this.inflight.size) await Promise.all([...this.inflight.values()]);
  }

  async close(): Promise<void> {
    this.abort.abort();
    this.slots.drain();
    await Promise.all([...this.inflight.values()]);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
