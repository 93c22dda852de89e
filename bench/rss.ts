/**
 * Daemon memory while moving a large file: the origin and two daemons on loopback; client 1 takes
 * the file from the origin, client 2 from client 1. Reports each daemon's peak RSS (VmHWM from
 * /proc/<pid>/status). Target (issue 11): < 120 MB with default settings.
 *   npm run build && node dist/bench/rss.js [--size 1GiB] [--json]
 */
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { parseSize } from '../testkit/sim/files.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '1GiB' }, json: { type: 'boolean' } } });
const size = parseSize(values.size!);
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function vm(pid: number): Promise<{ hwmKiB: number; rssKiB: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { hwmKiB: kib('VmHWM'), rssKiB: kib('VmRSS') };
}

log(`writing and publishing a ${size}-byte file`);
const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 140 }),
  clients: 2,
  files: [{ name: 'big.bin', size }],
});
try {
  const ds = await c.startDaemons();
  const idle = await Promise.all(ds.map((d) => vm(d.pid)));
  // RSS samples every 500 ms, to tell a plateau (buffers in flight) from growth with bytes moved.
  const samples: Array<{ t: number; rssMB: number[] }> = [];
  const t0 = performance.now();
  const sampler = setInterval(() => {
    void Promise.all(ds.map((d) => vm(d.pid).catch(() => ({ hwmKiB: NaN, rssKiB: NaN })))).then((v) =>
      samples.push({ t: (performance.now() - t0) / 1000, rssMB: v.map((x) => (x.rssKiB * 1024) / 1e6) }),
    );
  }, 500);
  log('client 1 <- origin');
  const a = await c.download(1, 'big.bin', 1_800_000);
  const split = (performance.now() - t0) / 1000;
  log(`client 1: ${a.seconds.toFixed(1)} s, correct=${a.correct}`);
  log('client 2 <- client 1');
  const b = await c.download(2, 'big.bin', 1_800_000);
  log(`client 2: ${b.seconds.toFixed(1)} s, from peers ${b.fromPeers}, correct=${b.correct}`);
  clearInterval(sampler);
  const after = await Promise.all(ds.map((d) => vm(d.pid)));
  // RSS of the busy daemon at each quarter of its phase: client 1 while fetching, client 2 while fetching.
  const quarters = (k: number, from: number, to: number) =>
    [0.25, 0.5, 0.75, 1]
      .map((q) => {
        const at = from + q * (to - from);
        const sm = samples.filter((x) => x.t <= at).pop();
        return sm ? sm.rssMB[k]!.toFixed(0) : '-';
      })
      .join(' / ');
  const end = (performance.now() - t0) / 1000;
  const MB = (kib: number) => (kib * 1024) / 1e6;
  const rows = ds.map((d, k) => ({
    daemon: d.index,
    role: k === 0 ? 'downloaded from origin, then served the file' : 'downloaded from a peer',
    idleMB: MB(idle[k]!.rssKiB),
    peakMB: MB(after[k]!.hwmKiB),
  }));
  const peak = Math.max(...rows.map((r) => r.peakMB));
  if (values.json)
    process.stdout.write(JSON.stringify({ size, rows, peakMB: peak, downloads: [a, b] }, null, 2) + '\n');
  else {
    process.stdout.write(
      `file ${size} bytes; client 1 from origin ${a.seconds.toFixed(1)} s, client 2 from peers ${b.seconds.toFixed(1)} s (${b.fromPeers} bytes from peers); both correct: ${a.correct && b.correct}\n`,
    );
    process.stdout.write('| daemon | role | RSS idle MB | peak RSS (VmHWM) MB |\n|---|---|---:|---:|\n');
    for (const r of rows)
      process.stdout.write(`| ${r.daemon} | ${r.role} | ${r.idleMB.toFixed(0)} | ${r.peakMB.toFixed(0)} |\n`);
    process.stdout.write(
      `RSS (MB) at 25/50/75/100% of its download: daemon 1 ${quarters(0, 0, split)}; daemon 2 ${quarters(1, split, end)}\n`,
    );
    process.stdout.write(
      `peak daemon RSS ${peak.toFixed(0)} MB (target < 120 MB: ${peak < 120 ? 'met' : 'NOT met'})\n`,
    );
  }
  if (!a.correct || !b.correct) process.exitCode = 1;
} finally {
  await c.close();
}
