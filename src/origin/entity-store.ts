/**
 * Upstream mode's on-disk entity store: whole upstream entities (one version per URL), fetched
 * once and served from disk for plain, ranged and missing-data requests, so an upstream that
 * ignores `Range` (or sends no validator) still gets PeerDist clients their blocks. Bounded by a
 * byte limit with least-recently-used eviction; survives restarts. See protocol/pccrtp.md,
 * "Upstream entity store".
 *
 * Layout under `<stateDir>/origin/entities/`: `<id>.data` (the bytes, never modified once in
 * place) and `<id>.json` (metadata, written after the data file is complete), where `<id>` is
 * derived from the URL and the SHA-256 of the bytes. `*.part` files are fills in progress. On open,
 * anything inconsistent (metadata without data or with another size, stray data, parts) is removed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { makeDirs } from '../util/mkdirs.js';

export interface StoredEntity {
  url: string;
  length: number;
  /** SHA-256 of the stored bytes, lower-case hex: the identity content information is keyed by. */
  sha256: string;
  /** Data file name inside the store directory. */
  file: string;
  /** The upstream's strong ETag, if it sent one. */
  etag?: string;
  /** The upstream's Last-Modified, if it sent one. */
  lastModified?: string;
  contentType?: string;
  /** When the bytes were stored, ms since the epoch. */
  storedAt: number;
  /** When the upstream last confirmed this version (ms, in memory only: 0 after a restart). */
  validatedAt: number;
  /** Last use, ms (LRU order; persisted as the metadata file's mtime). */
  lastUsed: number;
}

/** The ETag we serve for a stored entity: the upstream's strong ETag, or one derived from the bytes. */
export function servedEtag(e: StoredEntity): string {
  return e.etag ?? `"pd-sha256-${e.sha256.slice(0, 32)}"`;
}

interface Meta {
  url: string;
  length: number;
  sha256: string;
  etag?: string;
  lastModified?: string;
  contentType?: string;
  storedAt: number;
}

/** A fill in progress: bytes go to a `.part` file while their SHA-256 is computed. */
export class EntityWriter {
  private readonly hash = createHash('sha256');
  bytes = 0;
  private done = false;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly limit: number,
  ) {}

  /** Appends a chunk; false (and nothing written) once the entity would exceed the store limit. */
  async write(chunk: Buffer): Promise<boolean> {
    if (this.bytes + chunk.length > this.limit) return false;
    this.hash.update(chunk);
    this.bytes += chunk.length;
    let off = 0;
    while (off < chunk.length) off += (await this.fh.write(chunk, off, chunk.length - off)).bytesWritten;
    return true;
  }

  /** Closes the file and returns the SHA-256 of what was written. */
  async finish(): Promise<string> {
    this.done = true;
    await this.fh.close();
    return this.hash.digest('hex');
  }

  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => undefined);
    }
    await rm(this.path, { force: true });
  }
}

const TOUCH_EVERY_MS = 60_000;

export class EntityStore {
  private readonly entries = new Map<string, StoredEntity>();
  private used = 0;
  /** Entities evicted since start. */
  evictions = 0;

  private constructor(
    readonly dir: string,
    readonly limit: number,
    private readonly log: Logger,
  ) {}

  static async open(dir: string, limit: number, log: Logger): Promise<EntityStore> {
    await makeDirs(dir, 0o700);
    const s = new EntityStore(dir, limit, log);
    await s.load();
    await s.evict(0);
    return s;
  }

  private async load(): Promise<void> {
    const names = await readdir(this.dir);
    const kept = new Set<string>();
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -5);
      try {
        const meta = JSON.parse(await readFile(join(this.dir, name), 'utf8')) as Meta;
        const st = await stat(join(this.dir, `${id}.data`));
        const mst = await stat(join(this.dir, name));
        if (
          typeof meta.url !== 'string' ||
          !Number.isSafeInteger(meta.length) ||
          st.size !== meta.length ||
          !/^[0-9a-f]{64}$/.test(meta.sha256)
        )
          throw new Error('inconsistent');
        if (entityId(meta.url, meta.sha256) !== id) throw new Error('misnamed');
        const prev = this.entries.get(meta.url);
        const e: StoredEntity = { ...meta, file: `${id}.data`, validatedAt: 0, lastUsed: mst.mtimeMs };
        if (prev && prev.storedAt >= e.storedAt) throw new Error('superseded');
        if (prev) {
          kept.delete(prev.file.slice(0, -5));
          this.used -= prev.length;
          await this.removeFiles(prev);
        }
        this.entries.set(meta.url, e);
        this.used += e.length;
        kept.add(id);
      } catch {
        await rm(join(this.dir, name), { force: true });
        await rm(join(this.dir, `${id}.data`), { force: true });
      }
    }
    for (const name of names) {
      if (name.endsWith('.json')) continue;
      if (name.endsWith('.data') && kept.has(name.slice(0, -5))) continue;
      await rm(join(this.dir, name), { force: true, recursive: true }); // parts of interrupted fills, strays
    }
  }

  /** The stored version of `url` (marks it used), if any. */
  get(url: string): StoredEntity | undefined {
    const e = this.entries.get(url);
    if (!e) return undefined;
    const now = Date.now();
    if (now - e.lastUsed > TOUCH_EVERY_MS) {
      const t = new Date(now);
      utimes(join(this.dir, e.file.replace(/\.data$/, '.json')), t, t).catch(() => undefined);
    }
    e.lastUsed = now;
    return e;
  }

  path(e: StoredEntity): string {
    return join(this.dir, e.file);
  }

  /** Starts a fill. */
  async begin(): Promise<EntityWriter> {
    const path = join(this.dir, `${randomBytes(8).toString('hex')}.part`);
    const fh = await open(path, 'wx', 0o600);
    return new EntityWriter(path, fh, this.limit);
  }

  /**
   * Puts a finished fill in place as the version of `url` (replacing the previous one, evicting
   * least-recently-used entities to stay within the limit). Readers of a replaced or evicted
   * version keep reading it through their open file descriptors.
   */
  async install(w: EntityWriter, m: Omit<Meta, 'sha256' | 'length' | 'storedAt'>): Promise<StoredEntity> {
    const sha256 = await w.finish();
    const id = entityId(m.url, sha256);
    const meta: Meta = { ...m, length: w.bytes, sha256, storedAt: Date.now() };
    const old = this.entries.get(m.url);
    if (old) {
      this.entries.delete(m.url);
      this.used -= old.length;
      if (old.file !== `${id}.data`) await this.removeFiles(old);
    }
    await this.evict(w.bytes);
    await rename(w.path, join(this.dir, `${id}.data`));
    const tmp = join(this.dir, `${id}.json.${randomBytes(4).toString('hex')}.part`);
    await writeFile(tmp, JSON.stringify(meta), { mode: 0o600 });
    await rename(tmp, join(this.dir, `${id}.json`));
    const now = Date.now();
    const e: StoredEntity = { ...meta, file: `${id}.data`, validatedAt: now, lastUsed: now };
    this.entries.set(m.url, e);
    this.used += e.length;
    return e;
  }

  /** Forgets the stored version of `url` (the upstream no longer has it). */
  async remove(url: string): Promise<void> {
    const e = this.entries.get(url);
    if (!e) return;
    this.entries.delete(url);
    this.used -= e.length;
    await this.removeFiles(e);
  }

  private async evict(incoming: number): Promise<void> {
    if (this.used + incoming <= this.limit) return;
    const order = [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of order) {
      if (this.used + incoming <= this.limit) break;
      this.entries.delete(e.url);
      this.used -= e.length;
      this.evictions++;
      this.log.debug('entity evicted', { url: e.url, length: e.length });
      await this.removeFiles(e);
    }
  }

  private async removeFiles(e: StoredEntity): Promise<void> {
    await rm(join(this.dir, e.file.replace(/\.data$/, '.json')), { force: true });
    await rm(join(this.dir, e.file), { force: true });
  }

  stats(): { entities: number; bytes: number; limit: number; evictions: number } {
    return { entities: this.entries.size, bytes: this.used, limit: this.limit, evictions: this.evictions };
  }
}

function entityId(url: string, sha256: string): string {
  return `${createHash('sha256').update(url).digest('hex').slice(0, 24)}-${sha256.slice(0, 16)}`;
}
