import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/util -> dist/src/util/jit.js, and the repository root
const jitUrl = pathToFileURL(join(here, '..', '..', 'src', 'util', 'jit.js')).href;
const root = join(here, '..', '..', '..');

/**
 * In one child with V8's test intrinsics: `early` (optimized before) and `late` (optimized after
 * settleArrayBufferDetaching()) read a Buffer; then a WebAssembly memory grows, which detaches its
 * old ArrayBuffer as undici's llhttp does. Reports which of them held optimized code when.
 */
function run(): { earlyBefore: boolean; earlyAfterSettle: boolean; lateBefore: boolean; lateAfterGrow: boolean } {
  const src = `
    import { settleArrayBufferDetaching } from ${JSON.stringify(jitUrl)};
    const b = Buffer.alloc(4096, 1);
    const optimize = (f) => { %PrepareFunctionForOptimization(f); f(b); f(b); %OptimizeFunctionOnNextCall(f); f(b); };
    const turbofanned = (f) => (%GetOptimizationStatus(f) & 64) !== 0;
    const early = (x) => { let s = 0; for (let i = 0; i < x.length; i += 64) s += x[i]; return s + x.subarray(1, 9).length; };
    optimize(early);
    const earlyBefore = turbofanned(early);
    settleArrayBufferDetaching();
    const earlyAfterSettle = turbofanned(early);
    const late = (x) => { let s = 0; for (let i = 0; i < x.length; i += 64) s += x[i]; return s + x.subarray(1, 9).length; };
    optimize(late);
    const lateBefore = turbofanned(late);
    new WebAssembly.Memory({ initial: 1 }).grow(1);
    console.log(JSON.stringify({ earlyBefore, earlyAfterSettle, lateBefore, lateAfterGrow: turbofanned(late) }));
  `;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', src], {
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

t.test(
  'code optimized after the start-up settled the first detach survives a WebAssembly memory growing',
  async (t) => {
    const r = run();
    t.ok(r.earlyBefore, 'the reader optimized before settling is optimized');
    t.notOk(r.earlyAfterSettle, 'settling is the first detach: it throws that optimized code away (a no-op would not)');
    t.ok(r.lateBefore, 'the reader optimized after settling is optimized');
    t.ok(
      r.lateAfterGrow,
      "and keeps its optimized code when a WebAssembly memory grows (the daemon's first origin request)",
    );
  },
);

t.test('the daemon command settles it before it loads the daemon', async (t) => {
  const src = await readFile(join(root, 'src', 'cli', 'daemon.ts'), 'utf8');
  const settle = src.indexOf('settleArrayBufferDetaching();');
  const load = src.indexOf("await import('../daemon/daemon.js')");
  t.ok(settle > 0 && load > 0 && settle < load, 'settleArrayBufferDetaching() runs before daemon.js is imported');
});
