#!/usr/bin/env node
/**
 * `npm start`: a local demonstration that needs no root. Starts an origin (`peerdist serve`) and
 * four peer daemons on 127.0.0.x, generates a file larger than one segment, downloads it on each
 * client one after another and then a second file on all clients at once, and prints where the
 * bytes came from. Everything runs in temp dirs that are removed at the end.
 */
import { Cluster, originBlockBytes, type SimDownload } from '../sim/harness.js';
import { LoopbackNetwork } from '../sim/loopback.js';
import { runDownloads } from '../sim/scenarios.js';
import { DOWNLOAD_HEAD, downloadRows, table } from '../sim/report.js';
import { formatBytes } from '../sim/files.js';

const CLIENTS = Number(process.env.PEERDIST_DEMO_CLIENTS ?? 4);
const SIZE = Number(process.env.PEERDIST_DEMO_SIZE ?? 48 * 1024 * 1024);
const FLASH_SIZE = Math.max(1, Math.floor(SIZE / 3));
const out = (s = '') => process.stdout.write(s + '\n');

function roundSummary(ds: SimDownload[], blocks: number, size: number, seconds: number): string {
  const peers = ds.reduce((a, d) => a + d.fromPeers, 0);
  const total = ds.reduce((a, d) => a + d.bytes, 0);
  return [
    `  ${ds.length} downloads, ${formatBytes(total)} delivered in ${seconds.toFixed(1)} s; every file's SHA-256 ${ds.every((d) => d.correct) ? 'matches' : 'DOES NOT match'} the original`,
    `  origin sent ${formatBytes(blocks)} of file data (${(blocks / size).toFixed(2)} x the file); peers supplied ${formatBytes(peers)} (${total ? ((100 * peers) / total).toFixed(0) : 0}%)`,
  ].join('\n');
}

async function main(): Promise<void> {
  const started = performance.now();
  out(`peerdist demo: one origin and ${CLIENTS} peer daemons on 127.0.0.x (no root needed)`);
  const c = await Cluster.create({
    network: new LoopbackNetwork(),
    clients: CLIENTS,
    env: { PEERDIST_LOG: process.env.PEERDIST_LOG ?? 'error' },
    files: [
      { name: 'demo-file.bin', size: SIZE, seed: 'demo-1' },
      { name: 'demo-flash.bin', size: FLASH_SIZE, seed: 'demo-2' },
    ],
  });
  let ok = false;
  try {
    const big = c.files.get('demo-file.bin')!;
    const flash = c.files.get('demo-flash.bin')!;
    const ds = await c.startDaemons();
    out(`origin   http://${c.originAddress}/  (peerdist serve)`);
    for (const d of ds)
      out(`client ${d.index} daemon pid ${d.pid}: peers reach it at ${d.retrieval}, admin ${d.admin}`);
    out();

    out(`Round 1: each client downloads ${big.path.split('/').pop()} (${formatBytes(big.size)}) one after another`);
    const r1 = await runDownloads(c, 'demo-file.bin', { mode: 'sequential', clients: ds.map((d) => d.index) });
    out(table(DOWNLOAD_HEAD, downloadRows(r1.downloads)));
    out(roundSummary(r1.downloads, originBlockBytes(r1.origin), big.size, r1.totalSeconds));
    out();

    out(
      `Round 2: flash crowd, all ${CLIENTS} clients download ${flash.path.split('/').pop()} (${formatBytes(flash.size)}) at the same time`,
    );
    const r2 = await runDownloads(c, 'demo-flash.bin', { mode: 'flash', clients: ds.map((d) => d.index) });
    out(table(DOWNLOAD_HEAD, downloadRows(r2.downloads)));
    out(roundSummary(r2.downloads, originBlockBytes(r2.origin), flash.size, r2.totalSeconds));
    out();

    const s = await c.originStats();
    out(
      `origin totals: ${formatBytes(originBlockBytes(s))} of file data, ${formatBytes(s.bytesContentInfo)} of content information, ${s.requests} requests`,
    );
    ok = r1.downloads.every((d) => d.correct) && r2.downloads.every((d) => d.correct);
  } finally {
    await c.close();
  }
  out(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; temp dirs and processes cleaned up`);
  if (!ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
