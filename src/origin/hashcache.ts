/**
 * Persistent cache of encoded content information, in `level` at `<stateDir>/origin/hashes`.
 * Keys name the exact entity identity, the content-information version, the v2 chunking and a
 * fingerprint of the server secret, so a changed file, another version or a new secret never hits
 * a stale entry. Values are the encoded content information (a few KB).
 *
 * level holds an exclusive lock: one process (server or `peerdist publish`) at a time per state dir.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Level } from 'level';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { PeerdistError } from '../util/errors.js';
import { ensureOriginDir, originDir } from './secret.js';

export type Chunking = 'cdc' | 'fixed';

/** A file as the server saw it: any change of size, mtime or inode is a new identity. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeNs: bigint;
  ino: bigint;
}

/** An upstream entity (reverse-proxy mode). */
export interface UrlIdentity {
  url: string;
  /** Strong ETag if the upstream sent one, else Last-Modified. */
  validator: string;
  length: number;
}

export interface CacheKeyParams {
  version: ContentVersion;
  chunking: Chunking;
  secret: Buffer;
}

function suffix(p: CacheKeyParams): string {
  const fp = createHash('sha256').update(p.secret).digest().subarray(0, 8).toString('hex');
  return `v${p.version}\0${p.version === 2 ? p.chunking : '-'}\0${fp}`;
}

export function fileCacheKey(id: FileIdentity, p: CacheKeyParams): string {
  return `file\0${id.path}\0${id.size}\0${id.mtimeNs}\0${id.ino}\0${suffix(p)}`;
}

export function urlCacheKey(id: UrlIdentity, p: CacheKeyParams): string {
  return `url\0${id.url}\0${id.validator}\0${id.length}\0${suffix(p)}`;
}

export function hashCacheDir(stateDir: string): string {
  return join(originDir(stateDir), 'hashes');
}

export class HashCache {
  private constructor(private readonly db: Level<string, Buffer>) {}

  static async open(stateDir: string): Promise<HashCache> {
    await ensureOriginDir(stateDir);
    const db = new Level<string, Buffer>(hashCacheDir(stateDir), { valueEncoding: 'buffer' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new PeerdistError(
          'HASH_CACHE_LOCKED',
          `hash cache ${hashCacheDir(stateDir)} is in use by another process (a running peerdist serve or publish with the same --state-dir)`,
        );
      }
      throw err;
    }
    return new HashCache(db);
  }

  async get(key: string): Promise<Buffer | undefined> {
    const v = await this.db.get(key);
    return v === undefined || v === null ? undefined : Buffer.from(v);
  }

  async put(key: string, value: Buffer): Promise<void> {
    await this.db.put(key, value);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
