// Runs every compiled test file under tap, streams tap's TAP output, and ends with the plain
// line `N passed, N failed` (counting leaf assertions; a subtest that failed without a failing
// assertion inside it, e.g. a crash or timeout, counts as one failure).
// Usage: node scripts/run-tests.mjs [test-file-or-dir-filter ...]
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

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
if (files.length === 0) { console.log('no test files found'); console.log('0 passed, 1 failed'); process.exit(1); }

const tapBin = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
const child = spawn(process.execPath, [tapBin, '--reporter=tap', '--disable-coverage', '--timeout=600', '--jobs=2', ...files.map((f) => relative(root, f))], {
  cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PEERDIST_TEST: '1' },
});

let passed = 0, failed = 0, skipped = 0;
// Stack of open subtests: each entry is { indent, failures } ; the result line of a subtest is the
// first ok/not ok line at the subtest's own indent after its "# Subtest" line.
const stack = [];
const rl = createInterface({ input: child.stdout });
rl.on('line', (line) => {
  process.stdout.write(line + '\n');
  const indent = line.length - line.trimStart().length;
  const t = line.trimStart();
  if (t.startsWith('# Subtest')) { stack.push({ indent, failures: 0 }); return; }
  const m = /^(not ok|ok)\b(.*)$/.exec(t);
  if (!m) return;
  const ok = m[1] === 'ok';
  const directive = m[2];
  const top = stack[stack.length - 1];
  if (top && top.indent === indent) {
    stack.pop();
    if (!ok && top.failures === 0 && !/#\s*(TODO|SKIP)/i.test(directive)) {
      failed++;
      if (stack.length) stack[stack.length - 1].failures++;
    } else if (!ok && stack.length) {
      stack[stack.length - 1].failures += top.failures;
    }
    return;
  }
  if (/#\s*(SKIP|TODO)/i.test(directive)) { skipped++; return; }
  if (ok) passed++;
  else { failed++; if (top) top.failures++; }
});

child.on('close', (code) => {
  if (code !== 0 && failed === 0) failed = 1; // tap failed for a reason no assertion showed
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed ? 1 : 0);
});
