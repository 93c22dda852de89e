/** Human-readable text for the CLI client (progress bar, final line, status). Pure. */
import { formatBytes as humanBytes } from '../util/size.js';
import { forTerminal, textForTerminal } from '../util/terminal.js';
import type { GetResult } from './get.js';

export { humanBytes };
import type { JobView } from '../daemon/jobs.js';
import type { ByteSource } from '../engine/types.js';

function pct(part: number, whole: number): string {
  return whole > 0 ? `${Math.round((100 * part) / whole)}%` : '-';
}

/** One progress line (no newline): bytes, percent, bar, rate, share from peers. */
export function progressLine(
  p: { received: number; total?: number; seconds: number; job?: JobView },
  width = 24,
): string {
  const rate = p.seconds > 0 ? p.received / p.seconds : 0;
  const parts: string[] = [];
  if (p.total !== undefined && p.total > 0) {
    const filled = Math.min(width, Math.floor((width * p.received) / p.total));
    parts.push(
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`,
      `${humanBytes(p.received)} / ${humanBytes(p.total)}`,
      pct(p.received, p.total).padStart(4),
    );
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
  return (
    `${forTerminal(r.output)}: ${humanBytes(r.bytes)} in ${r.seconds.toFixed(2)} s (${humanBytes(Math.round(rate))}/s); ` +
    `origin ${humanBytes(r.fromOrigin)}, peers ${humanBytes(r.fromPeers)} (${pct(r.fromPeers, r.bytes)}), cache ${humanBytes(r.fromCache)}; ` +
    `${r.peers} peer${r.peers === 1 ? '' : 's'}${r.peerdist ? '' : '; origin did not offer PeerDist'}`
  );
}

interface Share extends Record<ByteSource, number> {
  bytes: number;
  seconds: number;
  peerShare: number | null;
}

export interface StatusDoc {
  downloads: JobView[];
  totals: Record<ByteSource, number> & { servedToPeers: number };
  cache?: { bytes?: number; limitBytes?: number; segments?: number };
  peersKnown?: number;
  /** Present when the server is a hosted cache (src/hostedcache). */
  hostedCache?: {
    offersReceived: number;
    segmentsPulled: number;
    bytesPulled: number;
    bytesServed: number;
    pullsInProgress?: number;
    dropped?: number;
  };
  shares?: { lastHour: Share; lastDay: Share };
  troublePeers?: Array<{
    address: string;
    bans: number;
    failures: number;
    notAvailable: number;
    badBlocks: number;
    blocks: number;
    lastFailure: number;
  }>;
  retrievalServer?: { notServing?: number; throttled?: number; busyRateLimited?: number; connectionsDropped?: number };
}

function shareLine(label: string, w: Share): string {
  if (w.bytes === 0) return `${label}: nothing downloaded`;
  return (
    `${label}: ${humanBytes(w.bytes)} downloaded, ${pct(w.fromPeers, w.bytes)} from peers ` +
    `(origin ${pct(w.fromOrigin, w.bytes)}, local cache ${pct(w.fromCache, w.bytes)})`
  );
}

export function statusText(s: StatusDoc): string {
  const lines: string[] = [];
  const t = s.totals;
  const hc = s.hostedCache;
  if (hc) {
    lines.push(
      `hosted cache: offers received ${hc.offersReceived}${hc.dropped ? ` (${hc.dropped} dropped)` : ''}, segments pulled ${hc.segmentsPulled} (${humanBytes(hc.bytesPulled)}), bytes served ${humanBytes(hc.bytesServed)}${hc.pullsInProgress ? `, ${hc.pullsInProgress} pulls running` : ''}`,
    );
    if (s.cache)
      lines.push(
        `cache: ${humanBytes(s.cache.bytes ?? 0)} of ${humanBytes(s.cache.limitBytes ?? 0)} in ${s.cache.segments ?? 0} segments`,
      );
    return textForTerminal(lines.join('\n'));
  }
  lines.push(
    `totals: origin ${humanBytes(t.fromOrigin)}, peers ${humanBytes(t.fromPeers)}, cache ${humanBytes(t.fromCache)}, served to peers ${humanBytes(t.servedToPeers)}`,
  );
  if (s.cache)
    lines.push(
      `cache: ${humanBytes(s.cache.bytes ?? 0)} of ${humanBytes(s.cache.limitBytes ?? 0)} in ${s.cache.segments ?? 0} segments`,
    );
  if (s.shares) {
    // A window the daemon has not been up for yet says how long it covers.
    const since = (w: Share, full: number) => (w.seconds + 60 < full ? ` (up ${Math.round(w.seconds / 60)} min)` : '');
    lines.push(shareLine(`last hour${since(s.shares.lastHour, 3600)}`, s.shares.lastHour));
    lines.push(shareLine(`last day${since(s.shares.lastDay, 86400)}`, s.shares.lastDay));
  }
  if (s.peersKnown !== undefined) lines.push(`peers known: ${s.peersKnown}`);
  if (s.troublePeers && s.troublePeers.length > 0) {
    lines.push('peers that failed or were banned:');
    for (const p of s.troublePeers) {
      const what = [
        p.bans > 0
          ? `BANNED in ${p.bans} download${p.bans === 1 ? '' : 's'} (${p.badBlocks} bad block${p.badBlocks === 1 ? '' : 's'})`
          : '',
        p.failures > 0 ? `${p.failures} failed request${p.failures === 1 ? '' : 's'}` : '',
        `${p.blocks} blocks delivered`,
      ]
        .filter(Boolean)
        .join(', ');
      lines.push(`  ${forTerminal(p.address)}: ${what}; last ${new Date(p.lastFailure).toISOString()}`);
    }
  } else if (s.troublePeers) lines.push('no peer failed or was banned');
  if (s.downloads.length === 0) lines.push('no downloads in progress');
  for (const d of s.downloads) {
    const total = d.contentLength;
    lines.push(
      `  ${d.id} ${d.state} ${humanBytes(d.bytesDone)}${total !== undefined ? ` / ${humanBytes(total)}` : ''} ${forTerminal(d.url)}`,
    );
  }
  // The document comes from the daemon, whose strings come from the network (issue 27.8).
  return textForTerminal(lines.join('\n'));
}
