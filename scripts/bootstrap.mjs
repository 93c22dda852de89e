// Installs dependencies when node_modules is missing or older than package-lock.json,
// and compiles TypeScript when any source is newer than the last build. Cheap when nothing changed.
import { existsSync, statSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.env.PEERDIST_BOOTSTRAP_QUIET === '1';
const say = (m) => {
  if (!quiet) process.stderr.write(`[bootstrap] ${m}\n`);
};
const mtime = (p) => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
};

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) {
    process.stderr.write(`[bootstrap] ${cmd} ${args.join(' ')} failed (exit ${r.status})\n`);
    process.exit(r.status ?? 1);
  }
}

// 1. dependencies: npm writes node_modules/.package-lock.json on every install.
const lock = join(root, 'package-lock.json');
const installed = join(root, 'node_modules', '.package-lock.json');
if (!existsSync(installed) || mtime(lock) > mtime(installed) || mtime(join(root, 'package.json')) > mtime(installed)) {
  say('installing dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

// 2. build: newest source mtime vs the build stamp.
function newest(dir) {
  let m = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newest(p) : mtime(p));
  }
  return m;
}
const stamp = join(root, 'dist', '.build-stamp');
const src = Math.max(
  ...['src', 'testkit', 'test', 'bench'].map((d) => newest(join(root, d))),
  mtime(join(root, 'tsconfig.json')),
);
if (src > mtime(stamp)) {
  say('compiling TypeScript (tsc)');
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(stamp, new Date().toISOString() + '\n');
}
