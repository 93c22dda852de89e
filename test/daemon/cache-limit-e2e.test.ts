// Issue 27.1 through a real daemon: files several times larger than its cache limit download
// intact with `peerdist get`, two at once (each one's writes press on the other's blocks), and
// the cache is back within its limit afterwards. The deterministic orders that used to lose a block
// are in test/engine/cache-limit.test.ts; this checks the whole path (admin API, CLI, output file).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { publishedOrigin, sha, tmpDir } from '../hostile/rig.js';
import { loopbackDaemonArgs, startDaemonChild } from './daemon-child.js';

const LIMIT = 256 * 1024;

t.test('peerdist get of files many times larger than the cache limit', async (t) => {
  const root = await tmpDir(t, 'cachelimit');
  const files = { 'a.bin': randomBytes(3 * 1024 * 1024 + 17), 'b.bin': randomBytes(2 * 1024 * 1024 + 3) };
  const { base } = await publishedOrigin(t, root, files);
  const d = await startDaemonChild(
    [...(await loopbackDaemonArgs(join(root, 'd'), '127.0.0.41:0')), '--cache-limit', String(LIMIT)],
    { timeoutMs: 60_000 },
  );
  t.teardown(() => d.stop(2000));

  const get = async (name: keyof typeof files, out: string) => {
    const r = await runCli(['get', `${base}/${name}`, '-o', join(root, out), '--daemon', d.ready.admin], {
      timeoutMs: 120_000,
    });
    t.equal(r.code, 0, `get ${name} -> ${out} exits 0 ${r.stderr}`);
    if (r.code === 0) t.equal(sha(await readFile(join(root, out))), sha(files[name]), `${out} is intact`);
  };
  // Twice each, the second time with part of the file cached; two downloads at once each round.
  for (const round of [1, 2]) await Promise.all([get('a.bin', `a${round}.bin`), get('b.bin', `b${round}.bin`)]);

  // Nothing stays pinned once the readers are done: the cache shrinks back within its limit.
  const stats = async () =>
    (await fetch(`http://${d.ready.admin}/v1/cache/stats`).then((r) => r.json())) as {
      bytes: number;
      metaBytes: number;
      overLimitBytes: number;
      pinnedSegments: number;
    };
  // The last pins go as the daemon's streams close and the shrink they start runs right after:
  // a bounded number of looks, not a time.
  let s = await stats();
  for (let i = 0; i < 200 && (s.pinnedSegments > 0 || s.overLimitBytes > 0); i++) s = await stats();
  t.equal(s.pinnedSegments, 0, 'no segment left pinned');
  t.equal(s.overLimitBytes, 0, `cache within its limit (${s.bytes} + ${s.metaBytes} of ${LIMIT} bytes)`);
});
