/**
 * Peer-to-peer versus plain HTTP on loopback, side by side in one run: the origin and two daemons
 * on 127.0.0.x; client 1 fills its cache from the origin, then client 2 downloads the file from
 * client 1 (MS-PCCRR, encrypted blocks, verified) and a plain HTTP GET fetches it straight from the
 * origin. Both write the file to disk. `curl` (when installed) fetches the same file from the same
 * origin beside them, as the reference for what the machine does with one HTTP stream. CPU =
 * user + system seconds of each daemon over the peer download, also per GiB moved, and of
 * `peerdist get` (its own `cpuSeconds` report).
 * Beside them each round runs the yardstick (`../shared/bench/ref-pipeline.mjs` from the project
 * root, or --yardstick PATH; skipped when absent): the same block work reduced to its bones in one
 * process (one POST per 128 KiB block, AES, SHA-512, positioned write). Its MB/s and CPU s per GiB
 * (both ends together) are printed beside ours, with the ratios (issue 25).
 * --profile DIR: every daemon of the run writes a CPU profile (the `--cpu-prof` format) into DIR
 * when it stops, as daemon-<pid>.cpuprofile; their pids are printed to tell them apart.
 * --warm SIZE: before its measured download, each receiving daemon downloads another file of SIZE
 * from client 1 (not measured): the measured download then runs on a daemon whose code V8 has
 * already compiled, as in a long-running daemon; without it every round measures a fresh process.
 * --warm-files N: N such files (default 1), downloaded one after the other.
 * --perf DIR: `perf record -F 499 -g` (Linux perf, all threads, kernel included) of every `get`
 * (DIR/get-N.perf) and, over each measured download, of the receiving daemon and of each serving
 * daemon (DIR/round-K-receiving-PID.perf, DIR/round-K-serving-PID.perf); with the main thread's and
 * the other threads' CPU printed per round, read them with scripts/perf-stages.mjs.
 * Targets: peer throughput >= 0.8 x the yardstick and >= 0.4 x plain HTTP; CPU s per GiB: receiving
 * daemon <= 10, serving daemon <= 5, get <= 1.
 *   npm run build && node dist/bench/loopback.js [--size 256MiB] [--rounds 2] [--json] [--profile DIR]
 */
import { benchArgs } from './args.js';
import { dirname, join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { agentEntry } from '../testkit/sim/entrypoints.js';
import { processCpuSeconds, runCommand } from '../testkit/sim/proc.js';
import { lastJsonLine } from '../testkit/sim/harness.js';
import { parseSize } from '../testkit/sim/files.js';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';

/** Seconds curl takes to fetch `url` into `out` (undefined when curl is not installed). */
function curlSeconds(url: string, out: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile('curl', ['-sS', '--fail', '-o', out, url], (err) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(undefined);
      if (err) return reject(err);
      resolve((performance.now() - t0) / 1000);
    });
  });
}

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Yardstick {
  /** MB/s of the block pipeline and of the plain GET beside it (the better of its two rounds). */
  blocksMBs: number;
  plainMBs: number;
  /** CPU s per GiB, server and client together (one process). */
  blocksCpuPerGiB: number;
}

/** Runs the yardstick on `file` (from the project root, where it resolves undici). */
function yardstick(script: string, file: string): Promise<Yardstick | undefined> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, file], { cwd: projectRoot, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return reject(err);
      let best: Yardstick | undefined;
      for (const line of stdout.split('\n')) {
        const m = /plain GET (\d+) MB\/s .*blocks \S+ x\d+ in flight (\d+) MB\/s \(([\d.]+) CPU s\/GiB/.exec(line);
        if (!m) continue;
        const y = { plainMBs: Number(m[1]), blocksMBs: Number(m[2]), blocksCpuPerGiB: Number(m[3]) };
        if (!best || y.blocksMBs > best.blocksMBs) best = y;
      }
      resolve(best);
    });
  });
}

const cpuSeconds = processCpuSeconds;

/**
 * CPU seconds (user and system apart) of the main thread of `pid` and of its other threads together
 * (V8's compiler and GC helpers, libuv's pool for fs jobs, LevelDB's compaction) so far.
 */
async function threadCpu(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const tid of tids) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (!stat) continue;
    // Node 20 names every thread "node": the main thread is the one whose id is the pid.
    const name = tid === String(pid) ? 'main' : 'other threads';
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(`${name} user`, (out.get(`${name} user`) ?? 0) + Number(f[11]) / 100);
    out.set(`${name} system`, (out.get(`${name} system`) ?? 0) + Number(f[12]) / 100);
  }
  return out;
}

/** "name a.bc s, ..." of what each kind of thread spent between two threadCpu snapshots. */
function threadDelta(a: Map<string, number>, b: Map<string, number>): string {
  return [...b]
    .map(([k, v]) => [k, v - (a.get(k) ?? 0)] as const)
    .filter(([, v]) => v > 0)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');
}

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '256MiB' },
    rounds: { type: 'string', default: '2' },
    json: { type: 'boolean' },
    yardstick: { type: 'string', default: join(projectRoot, '..', 'shared', 'bench', 'ref-pipeline.mjs') },
    profile: { type: 'string' },
    warm: { type: 'string' },
    'warm-files': { type: 'string', default: '1' },
    perf: { type: 'string' },
  },
});
const yardstickScript = existsSync(values.yardstick!) ? values.yardstick! : undefined;
const size = parseSize(values.size!);
const rounds = Math.max(1, Number(values.rounds));
const warmSize = values.warm ? parseSize(values.warm) : 0;
const warmNames =
  warmSize > 0 ? Array.from({ length: Math.max(1, Number(values['warm-files'])) }, (_, i) => `w${i}.bin`) : [];
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const perfDir = values.perf ? resolve(values.perf) : undefined;
if (perfDir) await mkdir(perfDir, { recursive: true });
let getRuns = 0;
const perfArgs = (out: string) => ['record', '-F', '499', '-g', '-o', out];

/** `perf record` attached to `pid` until the returned function is awaited. */
async function perfAttach(pid: number, out: string): Promise<() => Promise<void>> {
  const child = spawn('perf', [...perfArgs(out), '-p', String(pid)], { stdio: 'ignore' });
  await once(child, 'spawn');
  await new Promise((r) => setTimeout(r, 300)); // let it attach before the download starts
  return async () => {
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    await exited;
  };
}

log(`writing and publishing a ${size}-byte file`);
const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 120 }),
  clients: 1 + rounds,
  files: [{ name: 'f.bin', size }, ...warmNames.map((name) => ({ name, size: warmSize }))],
  ...(perfDir
    ? {
        wrapGet: (cmd: string, args: string[]) => {
          const out = join(perfDir, `get-${++getRuns}.perf`);
          log(`get run ${getRuns} under perf: ${out}`);
          return { cmd: 'perf', args: [...perfArgs(out), '--', cmd, ...args] };
        },
      }
    : {}),
  ...(values.profile
    ? {
        env: {
          NODE_OPTIONS:
            `${process.env.NODE_OPTIONS ?? ''} --import=${new URL('./cpu-profile-preload.js', import.meta.url).href}`.trim(),
          PEERDIST_PROFILE_DIR: resolve(values.profile),
        },
      }
    : {}),
});
try {
  await c.startDaemons();
  log(`daemon pids: ${c.daemons.map((d, i) => `client ${i + 1} ${d?.pid}`).join(', ')}`);
  log('client 1 fills its cache from the origin');
  const first = await c.download(1, 'f.bin', 900_000);
  if (!first.correct) throw new Error('client 1 download wrong');
  for (const w of warmNames) if (!(await c.download(1, w, 900_000)).correct) throw new Error('client 1 warm-up wrong');
  const rows: Array<{
    round: number;
    p2pSeconds: number;
    p2pFromPeers: number;
    httpSeconds: number;
    curlSeconds?: number;
    ratio: number;
    curlRatio?: number;
    serverCpu: number;
    clientCpu: number;
    getCpu?: number;
    yard?: Yardstick;
  }> = [];
  const file = c.files.get('f.bin')!.path;
  for (let k = 0; k < rounds; k++) {
    const out = join(c.root, `plain-${k}.bin`);
    const h = await runCommand(process.execPath, [agentEntry, 'fetch', `http://${c.originDirect}/f.bin`, '-o', out], {
      timeoutMs: 900_000,
    });
    await rm(out, { force: true });
    const cs = await curlSeconds(`http://${c.originDirect}/f.bin`, out);
    await rm(out, { force: true });
    const yard = yardstickScript ? await yardstick(yardstickScript, file) : undefined;
    for (const w of warmNames)
      if (!(await c.download(2 + k, w, 900_000)).correct) throw new Error(`client ${2 + k} warm-up wrong`);
    const hj = lastJsonLine(h.stdout);
    if (!hj || hj.bytes !== size) throw new Error(`plain fetch failed: ${h.stderr}`);
    // Every daemon that already holds the file may serve it (round 2 on: client 1 and client 2):
    // the serving CPU is theirs together.
    const servers = c.daemons.slice(0, 1 + k).map((d) => d!.pid);
    const client = c.daemons[1 + k]!.pid;
    const serving = async () => (await Promise.all(servers.map(cpuSeconds))).reduce((a, b) => a + b, 0);
    const cpu0 = [await serving(), await cpuSeconds(client)];
    const threads0 = await threadCpu(client);
    const serverThreads0 = await Promise.all(servers.map(threadCpu));
    const perfStops = perfDir
      ? await Promise.all([
          perfAttach(client, join(perfDir, `round-${k + 1}-receiving-${client}.perf`)),
          ...servers.map((pid) => perfAttach(pid, join(perfDir, `round-${k + 1}-serving-${pid}.perf`))),
        ])
      : [];
    log(`round ${k + 1}: measuring the download by client ${2 + k} (pid ${client})`);
    const p = await c.download(2 + k, 'f.bin', 900_000);
    const serverCpu = (await serving()) - cpu0[0]!;
    const clientCpu = (await cpuSeconds(client)) - cpu0[1]!;
    for (const stop of perfStops) await stop();
    log(`round ${k + 1}: receiving daemon's threads (CPU s): ${threadDelta(threads0, await threadCpu(client))}`);
    for (const [i, pid] of servers.entries())
      log(
        `round ${k + 1}: serving daemon ${pid}'s threads (CPU s): ${threadDelta(serverThreads0[i]!, await threadCpu(pid))}`,
      );
    if (!p.correct) throw new Error(`client ${2 + k} download wrong`);
    const httpSeconds = hj.seconds as number;
    rows.push({
      round: k + 1,
      p2pSeconds: p.seconds,
      p2pFromPeers: p.fromPeers,
      httpSeconds,
      curlSeconds: cs,
      ratio: httpSeconds / p.seconds,
      curlRatio: cs === undefined ? undefined : cs / p.seconds,
      serverCpu,
      clientCpu,
      getCpu: p.cpuSeconds,
      yard,
    });
    log(
      `round ${k + 1}: peer ${p.seconds.toFixed(2)} s (${p.fromPeers} bytes from peers; CPU: serving daemon(s) ${serverCpu.toFixed(1)} s, receiving daemon ${clientCpu.toFixed(1)} s, get ${p.cpuSeconds?.toFixed(2) ?? 'n/a'} s), plain HTTP ${httpSeconds.toFixed(2)} s, curl ${cs?.toFixed(2) ?? 'n/a'} s${yard ? `, yardstick ${yard.blocksMBs} MB/s at ${yard.blocksCpuPerGiB} CPU s/GiB` : ''}`,
    );
  }
  const best = rows.reduce((a, r) => (r.ratio > a.ratio ? r : a));
  const mbs = (s: number) => (size / s / 1e6).toFixed(0);
  if (values.json) process.stdout.write(JSON.stringify({ size, rows, bestRatio: best.ratio }, null, 2) + '\n');
  else {
    process.stdout.write(
      `file ${size} bytes on loopback; client 1 took it from the origin in ${first.seconds.toFixed(2)} s\n`,
    );
    const gib = size / 2 ** 30;
    const f1 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(1));
    const f2 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));
    process.stdout.write(
      '| round | peer-to-peer s | MB/s | plain HTTP s | MB/s | curl s | MB/s | yardstick MB/s | p2p / http | p2p / yardstick | p2p / curl |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n',
    );
    for (const r of rows) {
      const curl = r.curlSeconds === undefined ? 'n/a | n/a' : `${r.curlSeconds.toFixed(2)} | ${mbs(r.curlSeconds)}`;
      const yr = r.yard ? size / 1e6 / r.p2pSeconds / r.yard.blocksMBs : undefined;
      process.stdout.write(
        `| ${r.round} | ${r.p2pSeconds.toFixed(2)} | ${mbs(r.p2pSeconds)} | ${r.httpSeconds.toFixed(2)} | ${mbs(r.httpSeconds)} | ${curl} | ${r.yard?.blocksMBs ?? 'n/a'} | ${r.ratio.toFixed(2)} | ${f2(yr)} | ${r.curlRatio?.toFixed(2) ?? 'n/a'} |\n`,
      );
    }
    process.stdout.write(
      '\n| round | CPU s per GiB: receiving daemon | serving daemon | get | yardstick (both ends) | receiving / yardstick | serving / yardstick |\n|---|---:|---:|---:|---:|---:|---:|\n',
    );
    for (const r of rows) {
      const rc = r.clientCpu / gib,
        sc = r.serverCpu / gib,
        y = r.yard?.blocksCpuPerGiB;
      process.stdout.write(
        `| ${r.round} | ${rc.toFixed(1)} | ${sc.toFixed(1)} | ${f1(r.getCpu === undefined ? undefined : r.getCpu / gib)} | ${f1(y)} | ${f2(y ? rc / y : undefined)} | ${f2(y ? sc / y : undefined)} |\n`,
      );
    }
    // Verdicts on the median round, never the best one: a round whose plain GET happened to be
    // slow once printed "met" for a target the other rounds missed.
    const medianOf = (f: (r: (typeof rows)[number]) => number | undefined) => {
      const v = rows
        .map(f)
        .filter((x): x is number => x !== undefined)
        .sort((a, b) => a - b);
      if (v.length === 0) return undefined;
      const m = v.length >> 1;
      return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
    };
    const met = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? 'met' : 'NOT met');
    const yr = medianOf((r) => (r.yard ? size / 1e6 / r.p2pSeconds / r.yard.blocksMBs : undefined));
    const rcv = medianOf((r) => r.clientCpu / gib),
      srv = medianOf((r) => r.serverCpu / gib),
      gt = medianOf((r) => (r.getCpu === undefined ? undefined : r.getCpu / gib)),
      hr = medianOf((r) => r.ratio)!;
    process.stdout.write(
      `median of ${rows.length} rounds: p2p / yardstick ${f2(yr)} (target >= 0.8: ${met(yr === undefined ? undefined : yr >= 0.8)}); CPU s per GiB receiving ${f1(rcv)} (<= 10: ${met(rcv! <= 10)}), serving ${f1(srv)} (<= 5: ${met(srv! <= 5)}), get ${f1(gt)} (<= 1: ${met(gt === undefined ? undefined : gt <= 1)})\n`,
    );
    process.stdout.write(`median p2p / http ratio ${hr.toFixed(2)} (target >= 0.4: ${met(hr >= 0.4)})\n`);
  }
} finally {
  await c.close();
}
