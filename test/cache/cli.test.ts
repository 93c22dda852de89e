import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { encodeContentInfo } from '../../src/protocol/pccrc/codec.js';
import { hashFile } from '../../src/origin/hash-file.js';
import { BlockStore } from '../../src/cache/store.js';
import { tempDir } from './make.js';

const json = (s: string) => JSON.parse(s) as Record<string, unknown>;

t.test('peerdist cache commands with --json on a temp state dir', async (t) => {
  const root = await tempDir(t);
  const state = join(root, 'state');
  const file = join(root, 'file.bin');
  const data = randomBytes(5 * 65536 + 777);
  await writeFile(file, data);
  const ci = await hashFile(file, { secret: Buffer.from('cli test secret'), version: 1 });
  const ciPath = join(root, 'file.ci');
  await writeFile(ciPath, encodeContentInfo(ci));
  const segId = ci.segments[0]!.segmentId.toString('hex');
  const cli = (...args: string[]) => runCli(['cache', ...args, '--state-dir', state, '--json']);

  let r = await cli('add', file, '--content-info', ciPath);
  t.equal(r.code, 0, r.stderr);
  t.match(json(r.stdout), { segments: 1, blocks: 6, stored: 6, bytes: data.length, mismatches: [] });

  r = await cli('stats');
  t.equal(r.code, 0, r.stderr);
  t.match(json(r.stdout), { segments: 1, blocks: 6, bytes: data.length, hitsLocal: 0, hitsPeer: 0, misses: 0 });
  t.type(json(r.stdout).limitBytes, 'number');

  r = await runCli(['cache', 'stats', '--state-dir', state]);
  t.equal(r.code, 0);
  t.match(r.stdout, /^segments\s+1 \(1 complete/m, 'human-readable stats');
  t.match(r.stdout, new RegExp(`^bytes\\s+${data.length} `, 'm'));

  r = await cli('ls');
  t.equal(r.code, 0);
  t.match(JSON.parse(r.stdout), [
    { segmentId: segId, version: 1, blocksPresent: 6, blocksTotal: 6, bytes: data.length },
  ]);

  r = await cli('show', segId);
  t.equal(r.code, 0);
  t.match(json(r.stdout), { segmentId: segId, present: [0, 1, 2, 3, 4, 5], hod: ci.segments[0]!.hod.toString('hex') });
  t.notOk('kp' in json(r.stdout), 'show does not print the segment secret');
  r = await cli('show', '00'.repeat(32));
  t.equal(r.code, 1);
  t.match(r.stderr, /not in the cache/);

  const pkg = join(root, 'out.pdpkg');
  r = await cli('export', pkg);
  t.equal(r.code, 0, r.stderr);
  t.same(json(r.stdout), { segments: 1, blocks: 6, bytes: data.length });

  r = await cli('export', join(root, 'one.pdpkg'), '--segment', segId);
  t.equal(r.code, 0, r.stderr);
  t.same(json(r.stdout), { segments: 1, blocks: 6, bytes: data.length });
  r = await cli('export', join(root, 'none.pdpkg'), '--segment', 'ff'.repeat(32));
  t.equal(r.code, 1);
  t.match(r.stderr, /UNKNOWN_SEGMENT/);

  // corrupt one block's bytes in the segment file: verify reports it, drops it, exits 1
  const segPath = join(state, 'cache', 'blocks', segId.slice(0, 2), segId);
  const bad = await readFile(segPath);
  bad[3 * 65536 + 10]! ^= 1;
  await writeFile(segPath, bad);
  r = await cli('verify');
  t.equal(r.code, 1, 'verify exits 1 when it found bad blocks');
  t.match(json(r.stdout), { blocks: 5, bad: [{ segmentId: segId, index: 3 }] });
  r = await cli('verify');
  t.equal(r.code, 0, 'clean afterwards');

  r = await cli('clear');
  t.equal(r.code, 0);
  t.same(json(r.stdout), { removedSegments: 1, removedBytes: data.length - 65536 });

  r = await cli('import', pkg);
  t.equal(r.code, 0, r.stderr);
  t.same(json(r.stdout), { segments: 1, blocks: 6, rejected: 0, skipped: 0 });

  r = await cli('resize', '64K');
  t.equal(r.code, 0, r.stderr);
  t.match(json(r.stdout), { limitBytes: 65536, segments: 0, bytes: 0 }, 'LRU eviction to fit');
  r = await cli('resize', '10G');
  t.match(json(r.stdout), { limitBytes: 10 * 2 ** 30 });
  r = await cli('resize', 'lots');
  t.equal(r.code, 2, 'usage error');

  // a file that does not match its content information
  const other = join(root, 'other.bin');
  const changed = Buffer.from(data);
  changed[65536 * 2 + 5]! ^= 1;
  await writeFile(other, changed.subarray(0, data.length - 100));
  r = await cli('add', other, '--content-info', ciPath);
  t.equal(r.code, 1);
  t.match(json(r.stdout), {
    stored: 4,
    mismatches: [
      { block: 2, reason: 'hash' },
      { block: 5, reason: 'short file' },
    ],
  });

  r = await cli('import', ciPath);
  t.equal(r.code, 1);
  t.match(r.stderr, /BAD_PACKAGE/);
});

t.test('cache commands fail clearly while another process holds the cache', async (t) => {
  const state = await tempDir(t);
  const store = await BlockStore.open({ dir: join(state, 'cache'), limitBytes: 1 << 20 });
  t.teardown(() => store.close());
  const r = await runCli(['cache', 'stats', '--state-dir', state]);
  t.equal(r.code, 1);
  t.match(r.stderr, /cache is in use by a running daemon; use its admin API or stop it/);
});
