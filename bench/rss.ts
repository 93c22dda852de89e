/**
 * Daemon memory while moving a large file: the origin and two daemons on loopback; client 1 takes
 * the file from the origin, client 2 from client 1. Reports each daemon's peak RSS (VmHWM from
 * /proc/<pid>/status). Target (issue 11): < 120 MB with default settings.
 *   npm run build && node dist/bench/rss.js [--size 1GiB] [--json]
 */
import { benchArgs } from './args.js';
import { readFile } from 'node:fs/promises';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { parseSize } from '../testkit/sim/files.js';

const { values } = benchArgs(import.meta.url, {
  options: { size: { type: 'string', default: '1GiB' }, json: { type: 'boolean' } },
});
const size = parseSize(values.size!);
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function vm(pid: number): Promise<{ hwmKiB: number; rssKiB: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { hwmKiB: kib('VmHWM'), rssKiB: kib('VmRSS') };
}

/** CPU seconds (user + system) of a process so far, from /proc/<pid>/stat (clock ticks of 1/100 s). */
async function cpuSeconds(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * One sample of where a daemon's memory is: the kernel's view (/proc/<pid>/smaps_rollup: resident
 * anonymous and file-backed pages) and V8's (the daemon's /v1/status memory: heap reserved and in
 * use, external memory and ArrayBuffers). MB = 1e6 bytes.
 */
interface MemSample {
  rss: number;
  anon: number;
  file: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}
const FIELDS: Array<keyof MemSample> = ['rss', 'anon', 'file', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'];

async function memSample(pid: number, admin: string): Promise<MemSample> {
  const [smaps, st] = await Promise.all([
    readFile(`/proc/${pid}/smaps_rollup`, 'utf8'),
    fetch(`http://${admin}/v1/status`).then((r) => r.json() as Promise<{ memory?: Record<string, number> }>),
  ]);
  const kib = (k: string) => (Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(smaps)?.[1] ?? NaN) * 1024) / 1e6;
  const m = st.memory ?? {};
  const mb = (k: string) => (m[k] ?? NaN) / 1e6;
  const rss = kib('Rss');
  const anon = kib('Anonymous');
  return {
    rss,
    anon,
    file: rss - anon,
    heapTotal: mb('heapTotalBytes'),
    heapUsed: mb('heapUsedBytes'),
    external: mb('externalBytes'),
    arrayBuffers: mb('arrayBuffersBytes'),
  };
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
  const idleMem = await Promise.all(ds.map((d) => memSample(d.pid, d.admin)));
  // Samples every 500 ms, to tell a plateau (buffers in flight) from growth with bytes moved, and
  // to say what the resident memory is made of at its highest.
  const samples: Array<{ t: number; mem: Array<MemSample | undefined> }> = [];
  const t0 = performance.now();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const mem = await Promise.all(ds.map((d) => memSample(d.pid, d.admin).catch(() => undefined)));
      samples.push({ t: (performance.now() - t0) / 1000, mem });
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const cpu0 = await Promise.all(ds.map((d) => cpuSeconds(d.pid)));
  log('client 1 <- origin');
  const a = await c.download(1, 'big.bin', 1_800_000);
  const split = (performance.now() - t0) / 1000;
  const cpu1 = await Promise.all(ds.map((d) => cpuSeconds(d.pid)));
  log(`client 1: ${a.seconds.toFixed(1)} s, correct=${a.correct}`);
  log('client 2 <- client 1');
  const b = await c.download(2, 'big.bin', 1_800_000);
  log(`client 2: ${b.seconds.toFixed(1)} s, from peers ${b.fromPeers}, correct=${b.correct}`);
  const cpu2 = await Promise.all(ds.map((d) => cpuSeconds(d.pid)));
  sampling = false;
  await sampler;
  const after = await Promise.all(ds.map((d) => vm(d.pid)));
  const GiB = size / 2 ** 30;
  const cpuPerGiB = {
    d1FromOrigin: (cpu1[0]! - cpu0[0]!) / GiB,
    d1Serving: (cpu2[0]! - cpu1[0]!) / GiB,
    d2FromPeer: (cpu2[1]! - cpu1[1]!) / GiB,
  };
  // RSS of the busy daemon at each quarter of its phase: client 1 while fetching, client 2 while fetching.
  const quarters = (k: number, from: number, to: number) =>
    [0.25, 0.5, 0.75, 1]
      .map((q) => {
        const at = from + q * (to - from);
        const sm = samples.filter((x) => x.t <= at).pop();
        return sm?.mem[k] ? sm.mem[k].rss.toFixed(0) : '-';
      })
      .join(' / ');
  const end = (performance.now() - t0) / 1000;
  const MB = (kib: number) => (kib * 1024) / 1e6;
  const rows = ds.map((d, k) => {
    const mine = samples.map((x) => x.mem[k]).filter((m): m is MemSample => m !== undefined);
    const atPeak = mine.reduce<MemSample | undefined>((p, m) => (!p || m.rss > p.rss ? m : p), undefined);
    const max = Object.fromEntries(FIELDS.map((f) => [f, Math.max(...mine.map((m) => m[f]))])) as unknown as MemSample;
    return {
      daemon: d.index,
      role: k === 0 ? 'downloaded from origin, then served the file' : 'downloaded from a peer',
      idleMB: MB(idle[k]!.rssKiB),
      peakMB: MB(after[k]!.hwmKiB),
      idle: idleMem[k]!,
      atPeak,
      max,
    };
  });
  const peak = Math.max(...rows.map((r) => r.peakMB));
  if (values.json)
    process.stdout.write(
      JSON.stringify(
        { size, rows, peakMB: peak, cpuPerGiB, downloads: [a, b], execArgv: process.env.NODE_OPTIONS ?? '' },
        null,
        2,
      ) + '\n',
    );
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
    // Where the memory is (MB): idle, in the sample with the highest RSS, and each part's highest.
    process.stdout.write(
      `| daemon | when | RSS | anonymous | file-backed | V8 heap reserved | heap used | external | of which ArrayBuffers | rest of anonymous (anon - heap - ArrayBuffers) |\n|---|---|${'---:|'.repeat(8)}\n`,
    );
    const line = (d: number, when: string, m: MemSample | undefined) =>
      m &&
      process.stdout.write(
        `| ${d} | ${when} | ${FIELDS.map((f) => m[f].toFixed(0)).join(' | ')} | ${(m.anon - m.heapTotal - m.arrayBuffers).toFixed(0)} |\n`,
      );
    for (const r of rows) {
      line(r.daemon, 'idle', r.idle);
      line(r.daemon, 'at peak RSS sample', r.atPeak);
      line(r.daemon, 'highest of each', r.max);
    }
    process.stdout.write(
      `CPU s per GiB: daemon 1 from origin ${cpuPerGiB.d1FromOrigin.toFixed(1)}, daemon 1 serving ${cpuPerGiB.d1Serving.toFixed(1)}, daemon 2 from peer ${cpuPerGiB.d2FromPeer.toFixed(1)}\n`,
    );
    process.stdout.write(
      `peak daemon RSS ${peak.toFixed(0)} MB (target < 120 MB: ${peak < 120 ? 'met' : 'NOT met'})\n`,
    );
  }
  if (!a.correct || !b.correct) process.exitCode = 1;
} finally {
  await c.close();
}
