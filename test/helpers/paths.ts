/** Paths for tests. tap runs test files with the repository root as the working directory. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (fixtures/, protocol/ live here). */
export const repoRoot = process.cwd();
/** Root of the build these tests were compiled into (dist/ normally; a private outDir during development). */
export const buildRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Spawnable CLI entry of this build: `node ${cliEntry} hash ...`. */
export const cliEntry = join(buildRoot, 'src', 'cli', 'run.js');
export const fixture = (...p: string[]) => join(repoRoot, 'fixtures', ...p);
