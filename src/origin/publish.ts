/**
 * `peerdist publish DIR`: precomputes content information for every file under DIR into the hash
 * cache the server reads (same keys), so the server answers PeerDist on the first request.
 * Walks regular files only (symlinks are skipped: anything they can legitimately reach inside the
 * root is walked directly), skips empty files (never served as PeerDist) and the reserved
 * `.peerdist` directory.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hashFile } from './hash-file.js';
import { encodeContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { identityOf } from './files.js';
import { HashCache, fileCacheKey, type Chunking, type FileIdentity } from './hashcache.js';

export interface PublishProgress {
  /** Bytes hashed or skipped so far, over all versions. */
  done: number;
  total: number;
  file: string;
}

export interface PublishOptions {
  root: string;
  stateDir: string;
  secret: Buffer;
  versions: ContentVersion[];
  chunking?: Chunking;
  onProgress?: (p: PublishProgress) => void;
  signal?: AbortSignal;
}

export interface PublishSummary {
  files: number;
  bytes: number;
  /** (file, version) pairs hashed now. */
  hashed: number;
  /** (file, version) pairs already in the cache. */
  cached: number;
  /** Files that could not be hashed (changed or vanished while publishing, unreadable). */
  failed: Array<{ path: string; error: string }>;
  versions: ContentVersion[];
}

/** Regular, non-empty files under `rootReal` with their identities, in a stable order. */
async function listFiles(rootReal: string): Promise<FileIdentity[]> {
  const out: FileIdentity[] = [];
  const walk = async (dir: string, top: boolean): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!(top && e.name === '.peerdist')) await walk(p, false);
      } else if (e.isFile()) {
        const st = await stat(p, { bigint: true });
        if (st.size > 0n) out.push(identityOf(p, st));
      }
    }
  };
  await walk(rootReal, true);
  return out;
}

export async function publishDirectory(opts: PublishOptions): Promise<PublishSummary> {
  const rootReal = await realpath(opts.root);
  const chunking = opts.chunking ?? 'cdc';
  const files = await listFiles(rootReal);
  const total = files.reduce((n, f) => n + f.size, 0) * opts.versions.length;
  const summary: PublishSummary = {
    files: files.length,
    bytes: total / Math.max(1, opts.versions.length),
    hashed: 0,
    cached: 0,
    failed: [],
    versions: opts.versions,
  };
  const cache = await HashCache.open(opts.stateDir);
  let done = 0;
  try {
    for (const id of files) {
      for (const version of opts.versions) {
        opts.signal?.throwIfAborted();
        const key = fileCacheKey(id, { version, chunking, secret: opts.secret });
        if (await cache.get(key)) {
          summary.cached++;
        } else {
          const base = done;
          try {
            const ci = await hashFile(id.path, {
              secret: opts.secret,
              version,
              chunking,
              signal: opts.signal,
              onProgress: (n) => opts.onProgress?.({ done: base + n, total, file: id.path }),
            });
            const after = await stat(id.path, { bigint: true });
            if (
              ci.contentLength !== id.size ||
              after.mtimeNs !== id.mtimeNs ||
              after.ino !== id.ino ||
              Number(after.size) !== id.size
            ) {
              throw new Error('changed while being hashed');
            }
            await cache.put(key, encodeContentInfo(ci));
            summary.hashed++;
          } catch (err) {
            if (opts.signal?.aborted) throw err;
            if (!summary.failed.some((f) => f.path === id.path))
              summary.failed.push({ path: id.path, error: (err as Error).message });
          }
        }
        done += id.size;
        opts.onProgress?.({ done, total, file: id.path });
      }
    }
  } finally {
    await cache.close();
  }
  return summary;
}
