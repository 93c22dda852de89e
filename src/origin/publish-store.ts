/**
 * `peerdist publish --store URL`: hashes every blob of an object store ahead of the first client
 * (like Publish-BCWebContent -StageData), writing the same shared records the serving nodes read
 * (shared-hash.ts). Blobs already hashed (a valid record for their current ETag) are skipped; the
 * hash locks are the nodes' locks, so publishing while nodes serve still hashes each blob once.
 * Empty blobs (never served as PeerDist) and names with a segment starting with '.' (never
 * served, `.peerdist/` included) are left out.
 */
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { nullLogger, type Logger } from '../util/log.js';
import { blobProducer } from './blobs.js';
import type { Chunking } from './hashcache.js';
import type { PublishProgress, PublishSummary } from './publish.js';
import { recordSpec, SharedHashJobs } from './shared-hash.js';
import type { ObjectInfo, ObjectStore } from './store.js';

export interface PublishStoreOptions {
  store: ObjectStore;
  secret: Buffer;
  versions: ContentVersion[];
  chunking?: Chunking;
  /** Blobs hashed at the same time (default 2). */
  concurrency?: number;
  onProgress?: (p: PublishProgress) => void;
  log?: Logger;
}

export async function publishStore(opts: PublishStoreOptions): Promise<PublishSummary> {
  const chunking = opts.chunking ?? 'cdc';
  const blobs: ObjectInfo[] = [];
  for await (const b of opts.store.list()) {
    if (b.size > 0 && !b.name.split('/').some((s) => s.startsWith('.'))) blobs.push(b);
  }
  const perVersion = blobs.reduce((n, b) => n + b.size, 0);
  const total = perVersion * opts.versions.length;
  const summary: PublishSummary = {
    files: blobs.length,
    bytes: perVersion,
    hashed: 0,
    cached: 0,
    failed: [],
    versions: opts.versions,
  };
  const errors = new Map<string, string>();
  const shared = new SharedHashJobs({
    store: opts.store,
    secret: opts.secret,
    log: opts.log ?? nullLogger,
    concurrency: opts.concurrency ?? 2,
    onFailure: (spec, err) => errors.set(spec.name, err.message),
  });
  const work = blobs.flatMap((b) => opts.versions.map((v) => ({ b, v })));
  const inProgress = new Map<object, number>();
  let finished = 0;
  const report = (name: string) => {
    let done = finished;
    for (const n of inProgress.values()) done += n;
    opts.onProgress?.({ done, total, file: name });
  };
  let next = 0;
  const worker = async () => {
    while (next < work.length) {
      const item = work[next++]!;
      const spec = recordSpec({ ...item.b, name: opts.store.fullName(item.b.name) }, item.v, chunking, opts.secret);
      const token = {};
      inProgress.set(token, 0);
      let hashedHere = false;
      const inner = blobProducer({ store: opts.store, secret: opts.secret, chunking }, item.b, item.v, (n) => {
        inProgress.set(token, n);
        report(item.b.name);
      });
      const ci = await shared.run(spec, (signal) => {
        hashedHere = true;
        return inner(signal);
      });
      inProgress.delete(token);
      finished += item.b.size;
      if (ci === undefined) {
        if (!summary.failed.some((f) => f.path === item.b.name))
          summary.failed.push({ path: item.b.name, error: errors.get(spec.name) ?? 'failed' });
      } else if (hashedHere) summary.hashed++;
      else summary.cached++;
      report(item.b.name);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 2) }, worker));
  } finally {
    await shared.close();
  }
  return summary;
}
