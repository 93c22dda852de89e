/**
 * Peer-to-peer versus plain HTTP on loopback, side by side in one run: the origin and two daemons
 * on 127.0.0.x; client 1 fills its cache from the origin, then client 2 downloads the file from
 * client 1 (MS-PCCRR, encrypted blocks, verified) and a plain HTTP GET fetches it straight from the
 * origin. Both write the file to disk. `curl` (when installed) fetches the same file from the same
 * origin beside them, as the reference for what the machine does with one HTTP stream. CPU =
 * user + system seconds of each daemon over the peer download, also per GiB moved.
 * Target: peer throughput >= 0.8 x plain HTTP.
 *   npm run build && node dist/bench/loopback.js [--size 256MiB] [--rounds 2] [--json]
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { agentEntry } from '../testkit/sim/entrypoints.js';
import { runCommand } from '../testkit/sim/proc.js';
import { lastJsonLine } from '../testkit/sim/harness.js';
import { parseSize } from '../testkit/sim/files.js';
import { readFile, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';

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

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256MiB' },
    rounds: { type: 'string', default: '2' },
    json: { type: 'boolean' },
  },
});
const size = parseSize(values.size!);
const rounds = Math.max(1, Number(values.rounds));
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

log(`writing and publishing a ${size}-byte file`);
const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 120 }),
  clients: 1 + rounds,
  files: [{ name: 'f.bin', size }],
});
try {
  await c.startDaemons();
  log('client 1 fills its cache from the origin');
  const first = await c.download(1, 'f.bin', 900_000);
  if (!first.correct) throw new Error('client 1 download wrong');
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
  }> = [];
  for (let k = 0; k < rounds; k++) {
    const out = join(c.root, `plain-${k}.bin`);
    const h = await runCommand(process.execPath, [agentEntry, 'fetch', `http://${c.originDirect}/f.bin`, '-o', out], {
      timeoutMs: 900_000,
    });
    await rm(out, { force: true });
    const cs = await curlSeconds(`http://${c.originDirect}/f.bin`, out);
    await rm(out, { force: true });
    const hj = lastJsonLine(h.stdout);
    if (!hj || hj.bytes !== size) throw new Error(`plain fetch failed: ${h.stderr}`);
    const server = c.daemons[0]!.pid;
    const client = c.daemons[1 + k]!.pid;
    const cpu0 = [await cpuSeconds(server), await cpuSeconds(client)];
    const p = await c.download(2 + k, 'f.bin', 900_000);
    const serverCpu = (await cpuSeconds(server)) - cpu0[0]!;
    const clientCpu = (await cpuSeconds(client)) - cpu0[1]!;
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
    });
    log(
      `round ${k + 1}: peer ${p.seconds.toFixed(2)} s (${p.fromPeers} bytes from peers; CPU: serving daemon ${serverCpu.toFixed(1)} s, receiving daemon ${clientCpu.toFixed(1)} s), plain HTTP ${httpSeconds.toFixed(2)} s, curl ${cs?.toFixed(2) ?? 'n/a'} s`,
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
    process.stdout.write(
      '| round | peer-to-peer s | MB/s | CPU s serving / receiving daemon | CPU s per GiB serving / receiving | plain HTTP s | MB/s | curl s | MB/s | p2p / http | p2p / curl |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n',
    );
    for (const r of rows) {
      const curl = r.curlSeconds === undefined ? 'n/a | n/a' : `${r.curlSeconds.toFixed(2)} | ${mbs(r.curlSeconds)}`;
      process.stdout.write(
        `| ${r.round} | ${r.p2pSeconds.toFixed(2)} | ${mbs(r.p2pSeconds)} | ${r.serverCpu.toFixed(1)} / ${r.clientCpu.toFixed(1)} | ${(r.serverCpu / gib).toFixed(1)} / ${(r.clientCpu / gib).toFixed(1)} | ${r.httpSeconds.toFixed(2)} | ${mbs(r.httpSeconds)} | ${curl} | ${r.ratio.toFixed(2)} | ${r.curlRatio?.toFixed(2) ?? 'n/a'} |\n`,
      );
    }
    process.stdout.write(
      `best p2p / http ratio ${best.ratio.toFixed(2)} (target >= 0.8: ${best.ratio >= 0.8 ? 'met' : 'NOT met'})\n`,
    );
  }
} finally {
  await c.close();
}
