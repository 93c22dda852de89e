import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdir, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publishDirectory, type PublishProgress } from '../../src/origin/publish.js';
import { HashCache, fileCacheKey } from '../../src/origin/hashcache.js';
import { identityOf } from '../../src/origin/files.js';
import { tempDir } from './tmp.js';

t.test(
  'publishDirectory walks regular files, skips empty files, symlinks and .peerdist, reports progress',
  async (t) => {
    const top = await tempDir(t);
    const root = join(top, 'root');
    await mkdir(join(root, 'd', 'e'), { recursive: true });
    await mkdir(join(root, '.peerdist'));
    await writeFile(join(root, 'a'), randomBytes(100_000));
    await writeFile(join(root, 'd', 'e', 'b'), randomBytes(5_000));
    await writeFile(join(root, 'empty'), '');
    await writeFile(join(root, '.peerdist', 'hidden'), 'reserved');
    await writeFile(join(top, 'outside'), 'outside the root');
    await symlink(join(top, 'outside'), join(root, 'link-out'));
    await symlink(join(root, 'a'), join(root, 'link-in'));
    const state = join(top, 'state');
    const secret = randomBytes(32);
    const progress: PublishProgress[] = [];
    const s = await publishDirectory({
      root,
      stateDir: state,
      secret,
      versions: [2],
      onProgress: (p) => progress.push(p),
    });
    t.match(s, { files: 2, bytes: 105_000, hashed: 2, cached: 0, failed: [] });
    t.ok(progress.length >= 2);
    t.ok(
      progress.every((p, i) => p.total === 105_000 && (i === 0 || p.done >= progress[i - 1]!.done)),
      'monotonic, fixed total',
    );
    t.equal(progress.at(-1)!.done, 105_000);

    const cache = await HashCache.open(state);
    t.teardown(() => cache.close());
    const real = await realpath(join(root, 'a'));
    const key = fileCacheKey(identityOf(real, await stat(real, { bigint: true })), {
      version: 2,
      chunking: 'cdc',
      secret,
    });
    t.ok(await cache.get(key), 'stored under the key the server uses');
    t.notOk(
      await cache.get(
        fileCacheKey(identityOf(real, await stat(real, { bigint: true })), { version: 1, chunking: 'cdc', secret }),
      ),
      'only the requested version',
    );
  },
);
