/** Human-readable text for the CLI client (progress bar, final line, status). Pure. */
import { formatBytes as humanBytes } from '../util/size.js';
import type { GetResult } from './get.js';

export { humanBytes };
import type { JobView } from '../daemon/jobs.js';


function pct(part: number, whole: number): string {
  return whole > 0 ? `${Math.round((100 * part) / whole)}%` : '-';
}

/** One progress line (no newline): bytes, percent, bar, rate, share from peers. */
export function progressLine(p: { received: number; total?: number; seconds: number; job?: JobView }, width = 24): string {
  const rate = p.seconds > 0 ? p.received / p.seconds : 0;
  const parts: string[] = [];
  if (p.total !== undefined && p.total > 0) {
    const filled = Math.min(width, Math.floor((width * p.received) / p.total));
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`, `${humanBytes(p.received)} / ${humanBytes(p.total)}`, pct(p.received, p.total).padStart(4));
  } else parts.push(humanBytes(p.received));
  parts.push(`${humanBytes(Math.round(rate))}/s`);
  if (p.job) {
    const fetched = p.job.fromOrigin + p.job.fromPeers + p.job.fromCache;
    parts.push(`from peers ${pct(p.job.fromPeers, fetched)} (${p.job.peers} peer${p.job.peers === 1 ? '' : 's'})`);
  }
  return parts.join('  ');
}

export function finalLine(r: GetResult): string {
  const rate = r.seconds > 0 ? r.bytes / r.seconds : 0;
  return `${r.output}: ${humanBytes(r.bytes)} in ${r.seconds.toFixed(2)} s (${humanBytes(Math.round(rate))}/s); ` +
    `origin ${humanBytes(r.fromOrigin)}, peers ${humanBytes(r.fromPeers)} (${pct(r.fromPeers, r.bytes)}), cache ${humanBytes(r.fromCache)}; ` +
    `${r.peers} peer${r.peers === 1 ? '' : 's'}${r.peerdist ? '' : '; origin did not offer PeerDist'}`;
}

export interface StatusDoc {
  downloads: JobView[];
  totals: { fromOrigin: number; fromPeers: number; fromCache: number; servedToPeers: number };
  cache?: { bytes?: number; limitBytes?: number; segments?: number };
  peersKnown?: number;
  /** Present when the server is a hosted cache (src/hostedcache). */
  hostedCache?: { offersReceived: number; segmentsPulled: number; bytesPulled: number; bytesServed: number; pullsInProgress?: number; dropped?: number };
}

export function statusText(s: StatusDoc): string {
  const lines: string[] = [];
  const t = s.totals;
  const hc = s.hostedCache;
  if (hc) {
    lines.push(`hosted cache: offers received ${hc.offersReceived}${hc.dropped ? ` (${hc.dropped} dropped)` : ''}, segments pulled ${hc.segmentsPulled} (${humanBytes(hc.bytesPulled)}), bytes served ${humanBytes(hc.bytesServed)}${hc.pullsInProgress ? `, ${hc.pullsInProgress} pulls running` : ''}`);
    if (s.cache) lines.push(`cache: ${humanBytes(s.cache.bytes ?? 0)} of ${humanBytes(s.cache.limitBytes ?? 0)} in ${s.cache.segments ?? 0} segments`);
    return lines.join('\n');
  }
  lines.push(`totals: origin ${humanBytes(t.fromOrigin)}, peers ${humanBytes(t.fromPeers)}, cache ${humanBytes(t.fromCache)}, served to peers ${humanBytes(t.servedToPeers)}`);
  if (s.cache) lines.push(`cache: ${humanBytes(s.cache.bytes ?? 0)} of ${humanBytes(s.cache.limitBytes ?? 0)} in ${s.cache.segments ?? 0} segments`);
  if (s.peersKnown !== undefined) lines.push(`peers known: ${s.peersKnown}`);
  if (s.downloads.length === 0) lines.push('no downloads in progress');
  for (const d of s.downloads) {
    const total = d.contentLength;
    lines.push(`  ${d.id} ${d.state} ${humanBytes(d.bytesDone)}${total !== undefined ? ` / ${humanBytes(total)}` : ''} ${d.url}`);
  }
  return lines.join('\n');
}
