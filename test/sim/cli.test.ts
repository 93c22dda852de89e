/** `npm run sim` (testkit/sim/cli.ts) and `npm start` (testkit/demo/demo.ts) run end to end on loopback, small sizes. */
import t from 'tap';
import { join } from 'node:path';
import { buildRoot } from '../helpers/paths.js';
import { runCommand } from '../../testkit/sim/proc.js';

t.test('npm run sim: a loopback sequential run prints a JSON report with correct files', async (t) => {
  const r = await runCommand(
    process.execPath,
    [
      join(buildRoot, 'testkit', 'sim', 'cli.js'),
      '--network',
      'loopback',
      '--clients',
      '2',
      '--size',
      '1MiB',
      '--mode',
      'sequential',
      '--json',
    ],
    { timeoutMs: 120_000 },
  );
  t.equal(r.code, 0, r.stderr.slice(-500));
  const rep = JSON.parse(r.stdout) as {
    clients: number;
    size: number;
    allCorrect: boolean;
    downloads: Array<{ client: number; correct: boolean; fromOrigin: number; fromPeers: number; fromCache: number }>;
    originRatio: number;
    baselineSeconds: number;
    timeRatio: number;
  };
  t.equal(rep.clients, 2);
  t.equal(rep.size, 1024 * 1024);
  t.equal(rep.downloads.length, 2);
  t.ok(rep.allCorrect, 'both files correct');
  for (const d of rep.downloads)
    t.equal(d.fromOrigin + d.fromPeers + d.fromCache, rep.size, `client ${d.client}: sources add up`);
  t.equal(rep.downloads[1]!.fromOrigin, 0, 'the second client took nothing from the origin');
  t.ok(Math.abs(rep.originRatio - 1) < 1e-9, 'the origin sent the file once');
  t.ok(rep.baselineSeconds > 0 && rep.timeRatio > 0, 'baseline measured in the same run');
});

t.test('npm run sim rejects a bad size with exit code 1 and a message', async (t) => {
  const r = await runCommand(
    process.execPath,
    [join(buildRoot, 'testkit', 'sim', 'cli.js'), '--network', 'loopback', '--size', 'huge'],
    { timeoutMs: 30_000 },
  );
  t.equal(r.code, 1);
  t.match(r.stderr, /bad size huge/);
});

t.test('npm start demo: a small run prints where the bytes came from and cleans up', async (t) => {
  const r = await runCommand(process.execPath, [join(buildRoot, 'testkit', 'demo', 'demo.js')], {
    timeoutMs: 120_000,
    env: { ...process.env, PEERDIST_DEMO_CLIENTS: '2', PEERDIST_DEMO_SIZE: String(2 * 1024 * 1024) },
  });
  t.equal(r.code, 0, r.stderr.slice(-500));
  t.match(r.stdout, /Round 1: each client downloads demo-file\.bin \(2\.0 MiB\)/);
  t.match(r.stdout, /client 2 +[\d.]+ +0 B +2\.0 MiB +0 B +ok/, 'client 2 took the whole file from its peer');
  t.match(r.stdout, /every file's SHA-256 matches the original/);
  t.match(r.stdout, /origin sent 2\.0 MiB of file data \(1\.00 x the file\)/);
  t.match(r.stdout, /temp dirs and processes cleaned up/);
  t.notMatch(r.stdout, /WRONG|DOES NOT/);
});
