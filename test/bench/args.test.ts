/**
 * Every bench script answers `--help` with its usage and exit code 0 (loopback.js threw a parse
 * error instead), and a bad option with a one-line error and exit code 2, never a stack trace.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
/** Modules of bench/ that are not scripts (imported by the others, or preloaded). */
const NOT_SCRIPTS = new Set(['args.js', 'contentinfo-data.js', 'cpu-profile-preload.js']);
const scripts = readdirSync(benchDir)
  .filter((f) => f.endsWith('.js') && !NOT_SCRIPTS.has(f))
  .sort();

function run(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A script that ignores --help would start its benchmark: the timeout ends it (and the test fails).
    execFile(
      process.execPath,
      [join(benchDir, script), ...args],
      { timeout: 60_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

t.test('bench/ has the scripts this test knows of', async (t) => {
  t.ok(scripts.includes('loopback.js') && scripts.includes('get-stream.js'), scripts.join(' '));
  t.ok(scripts.length >= 20, `${scripts.length} scripts`);
});

t.test('--help prints the usage and exits 0', async (t) => {
  for (const s of ['loopback.js', 'get-stream.js', 'hash.js']) {
    const r = await run(s, ['--help']);
    t.equal(r.code, 0, `${s} --help exits 0 (${r.stderr.slice(0, 300)})`);
    t.match(r.stdout, new RegExp(`^usage: node ${s.replace('.', '\\.')} \\[options\\]\\n`), `${s}: usage line`);
    t.match(r.stdout, /--help, -h/, `${s}: lists --help`);
    t.equal(r.stderr, '', `${s}: nothing on stderr`);
  }
});

t.test('every bench script reads its command line through bench/args (spawning each costs ~15 CPU s)', async (t) => {
  for (const s of scripts) {
    const src = readFileSync(join(benchDir, s), 'utf8');
    t.ok(/\b(benchArgs|exitOnHelp)\(import\.meta\.url/.test(src), `${s} answers --help`);
    t.notOk(/\bparseArgs\(/.test(src), `${s} does not call parseArgs itself`);
  }
});

t.test('the usage holds the script doc comment and each option with its default', async (t) => {
  const r = await run('loopback.js', ['-h']);
  t.equal(r.code, 0);
  t.match(r.stdout, /Peer-to-peer versus plain HTTP on loopback/);
  t.match(r.stdout, /--size VALUE \(default "256MiB"\)/);
  t.match(r.stdout, /--rounds VALUE \(default "2"\)/);
  t.match(r.stdout, /--warm VALUE\n/);
  t.notMatch(r.stdout, /\/\*\*|\*\//, 'no comment markers');
});

t.test('an unknown or incomplete option: one line on stderr, exit 2', async (t) => {
  for (const args of [['--no-such-option'], ['--size']]) {
    const r = await run('loopback.js', args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stdout, '');
    t.match(r.stderr, /^loopback\.js: .*\(--help for usage\)\n$/, args.join(' '));
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});
