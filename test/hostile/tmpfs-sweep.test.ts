/**
 * The disk-full tests mount a tmpfs (rig.ts mountedTmpfs). A run killed before its teardown used to
 * leave the mount behind for good; the next run now removes it (sweepStaleTmpfs), and leaves alone
 * the mounts of processes still alive.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sweepStaleTmpfs } from './rig.js';

const mounted = (dir: string) =>
  readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);

t.test('a tmpfs left by a dead run is unmounted and removed; a live run keeps its own', (t) => {
  // A pid that is certainly gone: a child we started and waited for.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  // The sweep looks in one directory; a private one keeps this test off other runs' mounts.
  const dir = mkdtempSync(join(tmpdir(), 'pd-sweep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stale = join(dir, `pd-hostile-tmpfs-${dead}-abc`);
  const live = join(dir, `pd-hostile-tmpfs-${process.ppid}-def`);
  const unrelated = join(dir, 'pd-hostile-full-xyz');
  for (const d of [stale, live, unrelated]) mkdirSync(join(d, 'mnt'), { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(stale, 'mnt')], { stdio: 'ignore' });
  } catch {
    t.plan(0, 'cannot mount a tmpfs here (needs root): sweep not exercised');
    return t.end();
  }
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', join(stale, 'mnt')], { stdio: 'ignore' });
    } catch {
      /* swept */
    }
  });
  writeFileSync(join(stale, 'mnt', 'block'), Buffer.alloc(4096, 1));
  t.ok(mounted(join(stale, 'mnt')), 'the stale tmpfs is mounted before the sweep');

  const removed = sweepStaleTmpfs(dir);
  t.same(removed, [stale], 'only the dead run is swept');
  t.notOk(mounted(join(stale, 'mnt')), 'its tmpfs is unmounted');
  t.notOk(existsSync(stale), 'its dir is removed');
  t.ok(existsSync(join(live, 'mnt')), "a live process's dir is kept");
  t.ok(existsSync(join(unrelated, 'mnt')), 'a dir without the pid prefix is kept');
  t.end();
});
