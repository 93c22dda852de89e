/** Human-readable form of a download trace (`peerdist explain`). Pure. */
import type { DownloadTrace } from '../daemon/traces.js';
import { formatBytes as humanBytes } from '../util/size.js';
import { forTerminal, textForTerminal } from '../util/terminal.js';

export const REASON_TEXT: Record<string, string> = {
  'no-peer-found': 'discovery found nobody',
  'not-held': 'no peer held it',
  'peer-banned': 'the peer holding it was banned',
  'peer-timeout': 'the peer holding it timed out',
  'peer-failed': 'the peer holding it failed',
  'peer-unproven': 'only peers that never answered yet held it',
};

const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');
const rate = (bytes: number, ms: number) => (ms > 0 ? `${humanBytes(Math.round((bytes * 1000) / ms))}/s` : '-');
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export function explainText(t: DownloadTrace): string {
  const L: string[] = [];
  L.push(`download ${t.id}`);
  L.push(`  ${forTerminal(t.url)}`);
  L.push(
    `  started ${t.startedAt}; ${t.state}${t.durationMs !== undefined ? ` after ${secs(t.durationMs)}` : ''}${t.error ? `: ${forTerminal(t.error)}` : ''}`,
  );
  if (t.plain) {
    L.push(
      `content: the origin did not offer PeerDist content information; ${t.plain.contentLength >= 0 ? humanBytes(t.plain.contentLength) : 'unknown length'} fetched from it in one plain request`,
    );
  }
  const c = t.content;
  if (c) {
    L.push(
      `content: PeerDist v${c.version} content information (${humanBytes(c.contentInfoBytes)}, ${c.hashAlgorithm}): ${humanBytes(c.contentLength)} in ${c.segments} segment${c.segments === 1 ? '' : 's'}, ${c.blocks} block${c.blocks === 1 ? '' : 's'}`,
    );
    if (t.cachedAtStart)
      L.push(
        `local cache at start: ${t.cachedAtStart.blocks} block${t.cachedAtStart.blocks === 1 ? '' : 's'} (${humanBytes(t.cachedAtStart.bytes)})`,
      );
    const answered = t.rounds.filter((r) => r.answers.length > 0).length;
    L.push(
      `discovery: ${t.rounds.length + t.roundsOmitted} round${t.rounds.length + t.roundsOmitted === 1 ? '' : 's'}, ${answered} answered`,
    );
    for (const r of t.rounds) {
      const head = `  round ${r.round} (${r.kind === 'initial' ? 'probe' : 're-probe'} for ${r.segments} segment${r.segments === 1 ? '' : 's'}, at ${secs(r.startMs)})`;
      if (r.answers.length === 0) L.push(`${head}: no answer`);
      else
        L.push(
          `${head}: ${r.answers.map((a) => `${a.peer} for ${a.segments} segment${a.segments === 1 ? '' : 's'} in ${a.firstMs} ms`).join('; ')}`,
        );
    }
    if (t.roundsOmitted) L.push(`  (${t.roundsOmitted} more rounds not kept)`);
    if (t.rounds.length > 0 && answered === 0 && t.cachedAtStart?.blocks !== c.blocks)
      L.push('  => no peer answered discovery');
    if (t.gate)
      L.push(
        `origin allowed after ${secs(t.gate.ms)} with ${t.gate.peers} peer${t.gate.peers === 1 ? '' : 's'} known${t.gate.graceMs !== undefined ? ` (trial grace ${Math.round(t.gate.graceMs)} ms)` : ''}`,
      );
    const blocks = c.blocks;
    if (t.peers.length === 0) L.push('peers: none served a block');
    else {
      L.push('peers:');
      for (const p of [...t.peers].sort((a, b) => b.blocks - a.blocks)) {
        const fails = Object.entries(p.failures)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        L.push(
          `  ${p.address}: ${p.blocks} block${p.blocks === 1 ? '' : 's'} (${pct(p.blocks, blocks)} of the blocks), ${humanBytes(p.bytes)} at ${rate(p.bytes, p.ms)}${fails ? `; failed: ${fails}` : ''}`,
        );
      }
      if (t.peersOmitted) L.push(`  (${t.peersOmitted} more peers not kept)`);
    }
    const o = t.origin;
    L.push(
      `origin: ${o.blocks} block${o.blocks === 1 ? '' : 's'} (${pct(o.blocks, blocks)} of the blocks), ${humanBytes(o.bytes)} at ${rate(o.bytes, o.ms)}${o.failures ? `; ${o.failures} failed request${o.failures === 1 ? '' : 's'}` : ''}${o.skipped ? `; ${o.skipped} skipped (a peer had the block after all)` : ''}`,
    );
    for (const [reason, v] of Object.entries(o.byReason))
      L.push(
        `  ${v!.blocks} block${v!.blocks === 1 ? '' : 's'} (${humanBytes(v!.bytes)}) because ${REASON_TEXT[reason] ?? reason}`,
      );
    if (o.requests.length > 0) {
      L.push(
        `  origin requests${o.requestsOmitted ? ` (first ${o.requests.length} of ${o.requests.length + o.requestsOmitted})` : ''}:`,
      );
      for (const r of o.requests) {
        const where =
          r.seg >= 0
            ? `segment ${r.seg} block ${r.index} (bytes ${r.offset}-${r.offset + Math.max(r.bytes, 1) - 1})`
            : `block ${r.block}`;
        L.push(
          `    ${where}: ${REASON_TEXT[r.reason] ?? r.reason}; ${r.error ? `FAILED: ${r.error}` : `${humanBytes(r.bytes)} in ${r.ms} ms`}`,
        );
      }
    }
    L.push(`retries: origin ${t.retries.origin}, peers ${t.retries.peer}`);
  }
  if (t.totals) {
    const x = t.totals;
    L.push(
      `totals: ${humanBytes(x.bytes)}: peers ${humanBytes(x.fromPeers)} (${pct(x.fromPeers, x.bytes)}), origin ${humanBytes(x.fromOrigin)} (${pct(x.fromOrigin, x.bytes)}), local cache ${humanBytes(x.fromCache)} (${pct(x.fromCache, x.bytes)}); content information ${humanBytes(x.contentInfoBytes)}`,
    );
  }
  // URLs, peer addresses and error texts in a trace come from the network (issue 27.8).
  return textForTerminal(L.join('\n'));
}
