/**
 * Issue 25 target 3: a peer download against a plain GET over the same link, two hosts in network
 * namespaces joined by a shaped LAN (tbf on each host's egress, default 1 Gbit/s; root + iproute2).
 * Client 1 fills its cache from the origin. Then, every round: a plain HTTP file server on client
 * 1's host serves the same file and client 2's host fetches it with a plain GET (the bytes cross
 * client 1's shaped egress, as the peer's blocks do), then client 2's daemon, started on an empty
 * cache, downloads the file from client 1 (MS-PCCRR, every block verified) with `peerdist get`.
 * Both write the file to disk. Prints each round's times, the ratio plain seconds / peer seconds
 * (target >= 0.8) and CPU seconds per GiB of the receiving daemon, the serving daemon and `get`.
 *   npm run build && node dist/bench/sim-pair.js [--size 256MiB] [--rounds 3] [--lan-rate 1gbit] [--json]
 */
import { benchArgs } from './args.js';
import { dirname, join, basename } from 'node:path';
import { rm } from 'node:fs/promises';
import { Cluster, lastJsonLine } from '../testkit/sim/harness.js';
import { NetnsNetwork } from '../testkit/sim/network.js';
import { netnsSupport } from '../testkit/sim/netns.js';
import { agentEntry } from '../testkit/sim/entrypoints.js';
import { processCpuSeconds } from '../testkit/sim/proc.js';
import { parseRate, parseSize } from '../testkit/sim/files.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '256MiB' },
    rounds: { type: 'string', default: '3' },
    'lan-rate': { type: 'string', default: '1gbit' },
    json: { type: 'boolean' },
  },
});
const support = await netnsSupport();
if (!support.ok) {
  process.stderr.write(`bench/sim-pair: ${support.reason}; this benchmark needs the namespace network\n`);
  process.exit(2);
}
const size = parseSize(values.size!);
const rounds = Math.max(1, Number(values.rounds));
const rate = parseRate(values['lan-rate']!);
const gib = size / 2 ** 30;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

interface Row {
  round: number;
  plainSeconds: number;
  peerSeconds: number;
  fromPeers: number;
  ratio: number;
  receivingCpu: number;
  servingCpu: number;
  getCpu?: number;
}

log(`two hosts on a ${values['lan-rate']} LAN; writing and publishing a ${size}-byte file`);
const c = await Cluster.create({
  network: await NetnsNetwork.create(),
  clients: 2,
  wan: { rateBps: rate, delayMs: 0 },
  lanRateBps: rate,
  files: [{ name: 'f.bin', size, seed: 'sim-pair' }],
});
const rows: Row[] = [];
try {
  await c.startDaemons();
  log('client 1 fills its cache from the origin');
  const first = await c.download(1, 'f.bin', 900_000);
  if (!first.correct) throw new Error('client 1 download wrong');
  const file = c.files.get('f.bin')!;
  const h1 = c.hosts[0]!,
    h2 = c.hosts[1]!;
  // The plain server on client 1's host: the same egress (and tbf) the peer's blocks leave by.
  const server = c.network.spawn(h1, process.execPath, [
    agentEntry,
    'serve-file',
    '--listen',
    `${h1.address}:0`,
    '--dir',
    dirname(file.path),
  ]);
  try {
    const ready = await server.firstJsonLine<{ address: string }>((v) => v.event === 'ready', 60_000);
    const plainUrl = `http://${ready.address}/${basename(file.path)}`;
    for (let k = 1; k <= rounds; k++) {
      const out = join(c.root, `plain-${k}.bin`);
      const p = await c.network.run(h2, process.execPath, [agentEntry, 'fetch', plainUrl, '-o', out], {
        timeoutMs: 900_000,
      });
      await rm(out, { force: true });
      const pj = lastJsonLine(p.stdout);
      if (!pj || pj.bytes !== size || pj.sha256 !== file.sha256) throw new Error(`plain GET failed: ${p.stderr}`);
      // Client 2 starts every round on an empty cache.
      await c.stopDaemon(2);
      await rm(join(c.root, 'c2-state'), { recursive: true, force: true });
      const d2 = await c.startDaemon(2);
      const d1 = c.daemons[0]!;
      const s0 = await processCpuSeconds(d1.pid),
        r0 = await processCpuSeconds(d2.pid);
      const d = await c.download(2, 'f.bin', 900_000);
      const servingCpu = (await processCpuSeconds(d1.pid)) - s0,
        receivingCpu = (await processCpuSeconds(d2.pid)) - r0;
      if (!d.correct) throw new Error(`round ${k}: peer download wrong`);
      const plainSeconds = pj.seconds as number;
      const row: Row = {
        round: k,
        plainSeconds,
        peerSeconds: d.seconds,
        fromPeers: d.fromPeers,
        ratio: plainSeconds / d.seconds,
        receivingCpu,
        servingCpu,
        ...(d.cpuSeconds !== undefined ? { getCpu: d.cpuSeconds } : {}),
      };
      rows.push(row);
      log(
        `round ${k}: plain ${plainSeconds.toFixed(2)} s, peer ${d.seconds.toFixed(2)} s (${d.fromPeers} bytes from peers), ratio ${row.ratio.toFixed(2)}`,
      );
    }
  } finally {
    await server.stop('SIGTERM', 5000);
  }
} finally {
  await c.close();
}
const mbs = (s: number) => (size / s / 1e6).toFixed(0);
const sorted = rows.map((r) => r.ratio).sort((a, b) => a - b);
const m = sorted.length >> 1;
const median = sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
if (values.json) process.stdout.write(`${JSON.stringify({ size, lanRateBps: rate, rows, medianRatio: median })}\n`);
else {
  process.stdout.write(
    `file ${size} bytes, two hosts, LAN ${values['lan-rate']} (tbf on each host's egress)\n` +
      '| round | plain GET s | MB/s | peer download s | MB/s | plain / peer | CPU s/GiB receiving | serving | get |\n' +
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n',
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.round} | ${r.plainSeconds.toFixed(2)} | ${mbs(r.plainSeconds)} | ${r.peerSeconds.toFixed(2)} | ${mbs(r.peerSeconds)} | ${r.ratio.toFixed(2)} | ${(r.receivingCpu / gib).toFixed(1)} | ${(r.servingCpu / gib).toFixed(1)} | ${r.getCpu === undefined ? 'n/a' : (r.getCpu / gib).toFixed(2)} |\n`,
    );
  process.stdout.write(
    `median plain / peer ${median.toFixed(2)} (target >= 0.8: ${median >= 0.8 ? 'met' : 'NOT met'})\n`,
  );
}
