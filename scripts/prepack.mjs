// `npm pack` / `npm publish` hook (package.json "prepack"): compiles src/ afresh into dist/src with no
// source maps (tsconfig.pack.json), so the tarball ships exactly the compiled code of this tree and
// nothing left in dist/src by an older build. Installs the dev dependencies first on a clean clone.
import { existsSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`[prepack] ${cmd} ${args.join(' ')} failed (exit ${r.status})\n`);
    process.exit(r.status ?? 1);
  }
}

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(tsc)) run('npm', ['ci', '--no-audit', '--no-fund']);
rmSync(join(root, 'dist', 'src'), { recursive: true, force: true });
run(process.execPath, [tsc, '-p', join(root, 'tsconfig.pack.json')]);
