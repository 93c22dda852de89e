/**
 * Issue 16.4, full disk, against a real `peerdist daemon` whose state lives on a 20 MiB tmpfs this
 * test mounts (and unmounts in teardown; skipped where mounting is not permitted):
 * - one download larger than the cache limit and larger than the whole disk succeeds, byte-exact,
 *   and the filesystem never fills (the cache stays near its limit while it runs and is back under
 *   it as soon as the download is over);
 * - with the disk filled by somebody else (ENOSPC below the cache limit), a download still
 *   succeeds: the cache is an optimisation, the client gets its bytes anyway;
 * - once space is back, the next download works and is cached again (nothing stays broken, no
 *   `cache clear` needed).
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { open, readFile, rm, statfs } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { loopbackDaemonArgs, startDaemonChild, type DaemonChild } from '../daemon/daemon-child.js';
import { mountedTmpfs, publishedOrigin, sha, tmpDir } from './rig.js';

const MiB = 1024 * 1024;

function admin<T>(addr: string, path: string, method = 'GET'): Promise<T> {
  const [host, port] = addr.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path, method }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString()) as T);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

interface CacheStats {
  bytes: number;
  limitBytes: number;
  overLimitBytes: number;
}

async function usedBytes(mnt: string): Promise<number> {
  const s = await statfs(mnt);
  return (s.blocks - s.bfree) * s.bsize;
}

/** Polls the filesystem while `work` runs; resolves with its result and the highest use seen. */
async function watchUse<T>(mnt: string, work: Promise<T>): Promise<{ result: T; maxUsed: number }> {
  let maxUsed = await usedBytes(mnt);
  let done = false;
  const poll = (async () => {
    while (!done) {
      maxUsed = Math.max(maxUsed, await usedBytes(mnt));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return { result: await work, maxUsed };
  } finally {
    done = true;
    await poll;
  }
}

/** Writes a file until the filesystem is full (ENOSPC); returns its size. */
async function fill(path: string): Promise<number> {
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(256 * 1024, 0xaa);
  let n = 0;
  try {
    for (;;) {
      try {
        n += (await fh.write(chunk)).bytesWritten;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw e;
      }
    }
    // The last partial chunk: fill byte by byte-ish until nothing fits.
    for (const size of [65536, 4096, 512, 1]) {
      for (;;) {
        try {
          const w = (await fh.write(Buffer.alloc(size))).bytesWritten;
          n += w;
          if (w === 0) break;
        } catch {
          break;
        }
      }
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  return n;
}

t.test(
  'full disk: a download bigger than the cache and the disk succeeds; ENOSPC never breaks the daemon',
  async (t) => {
    const root = await tmpDir(t, 'diskfull');
    const mnt = await mountedTmpfs(t, '20m');
    if (mnt === null) {
      t.plan(0, 'cannot mount a tmpfs here (needs root): disk-full case not exercised');
      return;
    }
    const limit = 6 * MiB;
    const big = randomBytes(48 * MiB + 12345); // > the 20 MiB disk, and more than one 32 MiB v1 segment
    const small = randomBytes(5 * MiB + 777);
    const other = randomBytes(3 * MiB + 99);
    const { base } = await publishedOrigin(t, root, { 'big.bin': big, 'small.bin': small, 'other.bin': other });
    const children: DaemonChild[] = [];
    t.teardown(() => Promise.all(children.map((c) => c.stop(3000))));
    const d = await startDaemonChild([
      ...(await loopbackDaemonArgs(join(mnt, 'state'))),
      '--max-content-version',
      '1',
      '--cache-limit',
      String(limit),
    ]);
    children.push(d);
    const baseline = await usedBytes(mnt); // the empty index
    const get = (name: string) =>
      runCli(['get', `${base}/${name}`, '-o', join(root, `out-${name}`), '--daemon', d.ready.admin, '--json'], {
        timeoutMs: 120_000,
      });

    // 1. Bigger than the cache limit and than the whole filesystem.
    const { result: r1, maxUsed } = await watchUse(mnt, get('big.bin'));
    t.equal(
      r1.code,
      0,
      `get of a 48 MiB file on a 20 MiB disk with a 6 MiB cache succeeds ${r1.stderr.trim().split('\n')[0] ?? ''}`,
    );
    if (r1.code === 0) t.equal(sha(await readFile(join(root, 'out-big.bin'))), sha(big), 'output exact');
    await rm(join(root, 'out-big.bin'), { force: true });
    // Slack: blocks in flight, segment files' last partial page, the LevelDB log.
    t.ok(
      maxUsed - baseline <= limit + 4 * MiB,
      `filesystem use stayed near the cache limit: peak ${((maxUsed - baseline) / MiB).toFixed(1)} MiB above the empty cache`,
    );
    const s1 = await admin<CacheStats>(d.ready.admin, '/v1/cache/stats');
    t.ok(s1.bytes <= limit, `cache back under its limit once the download is over (${s1.bytes} bytes)`);

    // 2. Somebody else fills the disk: the cache hits ENOSPC below its limit.
    const filler = join(mnt, 'filler');
    const filled = await fill(filler);
    t.ok(filled > 0, `disk filled (${(filled / MiB).toFixed(1)} MiB filler)`);
    const r2 = await get('small.bin');
    t.equal(r2.code, 0, `with the disk full, a download still succeeds ${r2.stderr.trim().split('\n')[0] ?? ''}`);
    if (r2.code === 0) t.equal(sha(await readFile(join(root, 'out-small.bin'))), sha(small), 'output exact');

    // 3. Space back: the next download works and is cached again.
    await rm(filler, { force: true });
    const r3 = await get('other.bin');
    t.equal(r3.code, 0, `after space is freed, downloads work again ${r3.stderr.trim().split('\n')[0] ?? ''}`);
    if (r3.code === 0) t.equal(sha(await readFile(join(root, 'out-other.bin'))), sha(other), 'output exact');
    const s3 = await admin<CacheStats>(d.ready.admin, '/v1/cache/stats');
    t.ok(
      s3.bytes >= other.length && s3.bytes <= limit,
      `and it is cached (${s3.bytes} bytes in the cache, limit ${limit})`,
    );
    const v = await admin<{ bad: unknown[] }>(d.ready.admin, '/v1/cache/verify', 'POST');
    t.same(v.bad, [], 'cache verifies clean');
    const r4 = await get('other.bin');
    t.equal(r4.code, 0, 'a repeat download works');
    const j4 = JSON.parse(r4.stdout || '{}') as { fromCache?: number };
    t.equal(j4.fromCache, other.length, 'and comes from the cache');
  },
);
