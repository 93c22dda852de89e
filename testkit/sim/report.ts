/** Plain-text tables for simulation results. */
import type { SimDownload } from './harness.js';
import type { ScenarioReport } from './scenarios.js';
import { formatBytes } from './files.js';
import { formatDiagnosis } from './diagnose.js';

export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function downloadRows(
  ds: SimDownload[],
  label: (d: SimDownload) => string = (d) => `client ${d.client}`,
): string[][] {
  return ds.map((d) => [
    label(d),
    d.seconds.toFixed(2),
    formatBytes(d.fromOrigin),
    formatBytes(d.fromPeers),
    formatBytes(d.fromCache),
    d.correct ? 'ok' : 'WRONG',
  ]);
}

export const DOWNLOAD_HEAD = ['', 'seconds', 'from origin', 'from peers', 'from cache', 'sha256'];

export function formatScenario(r: ScenarioReport): string {
  const rate = r.wanRateBps ? `${(r.wanRateBps / 1e6).toFixed(1)} Mbit/s` : 'unshaped';
  const out = [
    `${r.mode} run: ${r.clients} clients, ${formatBytes(r.size)} file, ${r.network} network, WAN ${rate}${r.wanDelayMs ? ` + ${r.wanDelayMs} ms one-way` : ''}${r.lanRateBps ? `, LAN ${(r.lanRateBps / 1e6).toFixed(0)} Mbit/s` : ''}`,
    '',
    table(DOWNLOAD_HEAD, downloadRows(r.downloads)),
    '',
    `origin sent: ${formatBytes(r.originBlockBytes)} of file data (${r.origin.bytesFull} full-body + ${r.origin.bytesMissingData} missing-data bytes), ${formatBytes(r.origin.bytesContentInfo)} of content information`,
    `origin bytes / file size: ${r.originRatio.toFixed(3)}`,
    `time for all clients: ${r.totalSeconds.toFixed(2)} s` +
      (r.baselineSeconds
        ? `; one plain download from the origin: ${r.baselineSeconds.toFixed(2)} s; ratio ${r.timeRatio!.toFixed(2)}`
        : ''),
    `median client: ${r.medianSeconds.toFixed(2)} s; slowest (client ${r.slowestClient}): ${r.slowestSeconds.toFixed(2)} s, ${(r.slowestSeconds - r.medianSeconds).toFixed(2)} s after the median`,
    `all files correct: ${r.allCorrect ? 'yes' : 'NO'}`,
    ...(r.diagnosis ? ['', formatDiagnosis(r.diagnosis)] : []),
    ...(r.slowestExplain ? ['', `peerdist explain on client ${r.slowestClient}:`, r.slowestExplain.trimEnd()] : []),
  ];
  return out.join('\n');
}
