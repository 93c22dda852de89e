// Runs every compiled test file under tap, streams tap's TAP output, and ends with the plain
// line `N passed, N failed` (then `, N skipped` and `, N todo` when there are any).
// The TAP is read with tap's own parser (tap-parser): it counts leaf assertions, and a subtest
// that failed without a failing assertion inside it (a crash, a timeout, a plan mismatch) counts
// as one failure, as does a bail-out or a tap run that exits non-zero with no failure seen.
// Usage: node scripts/run-tests.mjs [test-file-or-dir-filter ...]
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser } from 'tap-parser';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const testRoot = join(root, 'dist', 'test');

function collect(dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) collect(p, out);
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
let files = collect(testRoot).sort();
if (filters.length) files = files.filter((f) => filters.some((x) => relative(root, f).includes(x)));
if (files.length === 0) {
  console.log('no test files found');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const tapBin = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
const child = spawn(
  process.execPath,
  [tapBin, '--reporter=tap', '--disable-coverage', '--timeout=600', '--jobs=2', ...files.map((f) => relative(root, f))],
  {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, PEERDIST_TEST: '1' },
  },
);

const counts = { passed: 0, failed: 0, skipped: 0, todo: 0 };
const parser = new Parser();
// The root parser surfaces every leaf result, plus a subtest's own result when its children do
// not explain it (a failed subtest whose assertions all passed: it crashed or timed out).
parser.on('pass', () => {
  counts.passed++;
});
parser.on('fail', () => {
  counts.failed++;
});
parser.on('skip', () => {
  counts.skipped++;
});
parser.on('todo', () => {
  counts.todo++;
});
parser.on('bailout', () => {
  counts.failed++;
});

child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  parser.write(chunk);
});

const parsed = new Promise((resolveP) => parser.on('complete', resolveP));
const exited = new Promise((resolveP) => child.on('close', (code, signal) => resolveP({ code, signal })));
const { code, signal } = await exited;
parser.end();
await parsed;
if ((code !== 0 || signal) && counts.failed === 0) counts.failed = 1; // tap failed for a reason no result showed
const extra = `${counts.skipped ? `, ${counts.skipped} skipped` : ''}${counts.todo ? `, ${counts.todo} todo` : ''}`;
console.log(`${counts.passed} passed, ${counts.failed} failed${extra}`);
process.exit(counts.failed ? 1 : 0);
