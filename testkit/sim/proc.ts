/**
 * Child processes of a simulation run: spawning with a hard timeout, reading one JSON line,
 * and a process-wide registry so every child is killed when the run ends, throws or is interrupted.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { PeerdistError } from '../../src/util/errors.js';

export class SimError extends PeerdistError {}

/** CPU seconds (user + system) process `pid` has used so far, from /proc/<pid>/stat. */
export async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const live = new Set<ChildProcess>();
const exitHooks = new Set<() => void>();
let hooked = false;

/** Registers a synchronous cleanup to run on process exit, SIGINT and SIGTERM. Returns an unregister function. */
export function onProcessExit(fn: () => void): () => void {
  installHooks();
  exitHooks.add(fn);
  return () => {
    exitHooks.delete(fn);
  };
}

function installHooks(): void {
  if (hooked) return;
  hooked = true;
  const runAll = () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    live.clear();
    for (const fn of [...exitHooks]) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
    exitHooks.clear();
  };
  process.on('exit', runAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runAll();
      process.exit(130);
    });
  }
}

/**
 * The environment for simulated hosts' programs: the test runner's instrumentation preloads
 * (tap puts `--import .../@tapjs/...` into NODE_OPTIONS) are dropped, other NODE_OPTIONS kept.
 */
export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  if (out.NODE_OPTIONS) {
    const toks = out.NODE_OPTIONS.split(/\s+/).filter(Boolean);
    const kept: string[] = [];
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i]!;
      if (/@tapjs|[\\/]tap[\\/]/.test(t)) continue;
      if (
        /^--(import|loader|experimental-loader|require|r)$/.test(t) &&
        /@tapjs|[\\/]tap[\\/]/.test(toks[i + 1] ?? '')
      ) {
        i++;
        continue;
      }
      kept.push(t);
    }
    if (kept.length) out.NODE_OPTIONS = kept.join(' ');
    else delete out.NODE_OPTIONS;
  }
  return out;
}

/** Spawns a tracked child: killed on process exit; stderr kept (last 64 KiB) for error messages. */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): TrackedChild {
  installHooks();
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...opts,
    env: childEnv(opts.env ?? process.env),
  });
  live.add(child);
  const tc = new TrackedChild(child, `${cmd} ${args.join(' ')}`);
  child.once('exit', () => {
    live.delete(child);
  });
  child.once('error', () => {
    live.delete(child);
  });
  return tc;
}

export class TrackedChild {
  stderrTail = '';
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-65536);
      if (process.env.PEERDIST_SIM_VERBOSE === '1') process.stderr.write(`[${this.label.slice(0, 40)}] ${d}`);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(this.exitCode);
      });
      child.once('error', (err) => {
        this.stderrTail += `\nspawn error: ${err.message}`;
        this.exitCode = -1;
        resolve(-1);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Resolves with the first stdout line that parses as JSON and satisfies `accept`. */
  firstJsonLine<T = Record<string, unknown>>(
    accept: (v: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<T> {
    return this.firstLine((line) => {
      const s = line.trim();
      if (!s.startsWith('{')) return undefined;
      try {
        const v = JSON.parse(s) as Record<string, unknown>;
        return accept(v) ? (v as T) : undefined;
      } catch {
        return undefined;
      }
    }, timeoutMs);
  }

  /** Resolves with the first value `match` returns for a stdout line; rejects on exit or timeout. */
  firstLine<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      if (!this.child.stdout) {
        reject(new SimError('SIM_PROCESS', `${this.label}: no stdout`));
        return;
      }
      const rl = createInterface({ input: this.child.stdout });
      const done = (err: Error | null, v?: T) => {
        clearTimeout(timer);
        rl.removeAllListeners('line');
        rl.close();
        this.child.removeListener('exit', onExit);
        // Keep draining stdout so the child never blocks on a full pipe.
        this.child.stdout?.on('data', () => {});
        this.child.stdout?.resume();
        if (err) reject(err);
        else resolve(v as T);
      };
      const timer = setTimeout(
        () =>
          done(
            new SimError(
              'SIM_TIMEOUT',
              `${this.label}: no ready line within ${timeoutMs} ms; stderr: ${this.stderrTail.slice(-2000)}`,
            ),
          ),
        timeoutMs,
      );
      const onExit = (code: number | null) =>
        done(
          new SimError(
            'SIM_PROCESS',
            `${this.label}: exited (${code}) before ready; stderr: ${this.stderrTail.slice(-2000)}`,
          ),
        );
      this.child.once('exit', onExit);
      rl.on('line', (line) => {
        const v = match(line);
        if (v !== undefined) done(null, v);
      });
    });
  }

  /** Sends `signal`, then SIGKILL after `graceMs` if still running; resolves when it has exited. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
    if (!this.running) return;
    try {
      this.child.kill(signal);
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }, graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to completion (killed after timeoutMs), capturing output. Never throws on non-zero exit. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const tc = spawnTracked(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd });
    let stdout = '';
    tc.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    const timer = setTimeout(() => {
      tc.stderrTail += `\n(killed after ${opts.timeoutMs ?? 60000} ms)`;
      tc.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    // 'exit' can come before the last stdout data is read (a loaded machine once lost a `get
    // --json` result line so): the result waits for stdout to end as well (bounded: a grandchild
    // may hold the pipe open).
    const out = tc.child.stdout;
    const stdoutDone = out
      ? new Promise<void>((r) => {
          if (out.readableEnded || out.destroyed) r();
          else out.once('end', r).once('close', r);
        })
      : Promise.resolve();
    void tc.exited.then(async (code) => {
      clearTimeout(timer);
      await Promise.race([stdoutDone, new Promise((r) => setTimeout(r, 5000))]);
      resolve({ code, stdout, stderr: tc.stderrTail, ms: performance.now() - started });
    });
  });
}

/** Like runCommand, but throws SimError (with stderr) unless the exit code is 0. */
export async function mustRun(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0)
    throw new SimError('SIM_PROCESS', `${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim().slice(-1000)}`);
  return r.stdout;
}
