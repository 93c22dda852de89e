/** Text and SVG output of the scale simulation (issue 24). */
import type { ScaleResult, ScaleRun } from './sim.js';

const s1 = (ms: number) => (ms / 1000).toFixed(1);
const mb = (b: number) => (b / 2 ** 20).toFixed(0);

export function describe(run: ScaleRun): string {
  const r = run.result;
  const c = r.config;
  const per = r.originCopiesPerSubnet;
  const lines = [
    `clients ${c.clients}, subnets ${c.subnets}, hosted caches ${c.hostedCaches}${c.cachesNameCrowd ? ' (naming the crowd)' : ''}, file ${mb(c.fileBytes)} MiB in ${r.tokens} tokens of ${c.unitBytes / 1024} KiB, arrival ${c.arrival.kind === 'flash' ? `flash (${c.arrival.jitterMs} ms)` : c.arrival.kind === 'spread' ? `spread over ${s1(c.arrival.overMs)} s` : 'sequential'}, seed ${c.seed}`,
    `completed ${r.completed}/${c.clients}; plain download alone ${s1(r.plainMs)} s`,
    `completion after arrival: p50 ${s1(r.completionMs.p50)} s (${r.vsPlain.p50}x plain), p95 ${s1(r.completionMs.p95)} s (${r.vsPlain.p95}x), p99 ${s1(r.completionMs.p99)} s (${r.vsPlain.p99}x), max ${s1(r.completionMs.max)} s (${r.vsPlain.max}x)`,
    `origin: ${r.originCopies} copies of the file; per subnet min ${Math.min(...per)} max ${Math.max(...per)}; peak ${(r.peakOriginBps / 1e6).toFixed(1)} Mbit/s`,
    `bytes by source: origin ${mb(r.bytesBySource.origin)} MiB, peers ${mb(r.bytesBySource.peer)} MiB, hosted caches ${mb(r.bytesBySource.hostedCache)} MiB (caches pulled ${mb(r.hostedCachePullBytes)} MiB from clients)`,
    `simulated ${s1(r.simulatedMs)} s in ${s1(run.wallMs)} s wall, ${s1(run.cpuMs)} s CPU: ${r.events} events (${run.eventsPerSec}/s), ${r.schedulerCalls} scheduler next() calls, ${r.originFlows} origin requests, ${r.lanTransfers} LAN transfers, peak RSS ${mb(run.peakRssBytes)} MiB`,
  ];
  if (c.discovery || c.peerTimeouts)
    lines.push(`discovery datagrams ${r.discoveryDatagrams}, peer requests timed out ${r.peerTimeouts}`);
  if (r.limits) lines.push(`real limits: ${JSON.stringify(r.limits)}`);
  return lines.join('\n');
}

/** Summary for --json: the result without the per-client list. */
export function summary(run: ScaleRun): object {
  const { completions: _c, ...rest } = run.result;
  return {
    ...rest,
    wallMs: run.wallMs,
    cpuMs: run.cpuMs,
    eventsPerSec: run.eventsPerSec,
    peakRssBytes: run.peakRssBytes,
  };
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Two panels side by side: the CDF of completion times (seconds after arrival, with the plain
 * download time as a dashed line) and the origin rate over time (Mbit/s). Several runs overlay.
 */
export function svg(results: Array<{ label: string; result: ScaleResult }>): string {
  const W = 460,
    Hh = 300,
    pad = 50;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W + 20}" height="${Hh + 40 + 16 * results.length}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  const panel = (x0: number, title: string, xLabel: string, yLabel: string, xMax: number, yMax: number) => {
    out.push(`<text x="${x0 + W / 2}" y="16" text-anchor="middle" font-size="13">${esc(title)}</text>`);
    out.push(
      `<rect x="${x0 + pad}" y="${24}" width="${W - pad - 10}" height="${Hh - 24 - pad + 20}" fill="none" stroke="#444"/>`,
    );
    for (let k = 0; k <= 4; k++) {
      const xv = (xMax * k) / 4;
      const yv = (yMax * k) / 4;
      const px = x0 + pad + ((W - pad - 10) * k) / 4;
      const py = Hh - pad + 20 - ((Hh - 24 - pad + 20) * k) / 4;
      out.push(`<text x="${px}" y="${Hh - pad + 34}" text-anchor="middle">${+xv.toPrecision(3)}</text>`);
      out.push(`<text x="${x0 + pad - 4}" y="${py + 4}" text-anchor="end">${+yv.toPrecision(3)}</text>`);
    }
    out.push(`<text x="${x0 + W / 2}" y="${Hh - pad + 48}" text-anchor="middle">${esc(xLabel)}</text>`);
    out.push(
      `<text x="${x0 + 12}" y="${Hh / 2}" text-anchor="middle" transform="rotate(-90 ${x0 + 12} ${Hh / 2})">${esc(yLabel)}</text>`,
    );
    return (x: number, y: number) =>
      `${(x0 + pad + ((W - pad - 10) * x) / xMax).toFixed(1)},${(Hh - pad + 20 - ((Hh - 24 - pad + 20) * y) / yMax).toFixed(1)}`;
  };
  const tMax = Math.max(...results.map((r) => Math.max(r.result.completionMs.max, r.result.plainMs))) / 1000;
  const cdf = panel(0, 'completion time CDF', 'seconds after arrival', 'fraction of clients', tMax * 1.05, 1);
  results.forEach(({ result }, i) => {
    const xs = result.completions.filter(Number.isFinite).sort((a, b) => a - b);
    const step = Math.max(1, Math.floor(xs.length / 400));
    const pts: string[] = [];
    for (let k = 0; k < xs.length; k += step) pts.push(cdf(xs[k]! / 1000, (k + 1) / xs.length));
    if (xs.length > 0) pts.push(cdf(xs[xs.length - 1]! / 1000, 1));
    out.push(
      `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${pts.join(' ')}"/>`,
    );
    out.push(
      `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-dasharray="4 3" points="${cdf(result.plainMs / 1000, 0)} ${cdf(result.plainMs / 1000, 1)}"/>`,
    );
  });
  const rates = results.map(({ result }) =>
    result.originSeries.bytes.map((b) => (b * 8) / (result.originSeries.bucketMs / 1000) / 1e6),
  );
  const rMax = Math.max(1, ...rates.flat());
  const sMax = Math.max(...results.map((r) => r.result.simulatedMs)) / 1000;
  const rate = panel(W + 20, 'origin rate', 'simulated seconds', 'Mbit/s', sMax * 1.05, rMax * 1.05);
  results.forEach(({ result }, i) => {
    const sec = result.originSeries.bucketMs / 1000;
    const pts = rates[i]!.map((v, k) => rate((k + 0.5) * sec, v));
    out.push(
      `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.2" points="${pts.join(' ')}"/>`,
    );
  });
  results.forEach(({ label }, i) => {
    out.push(
      `<text x="${pad}" y="${Hh + 40 + 16 * i}" fill="${COLORS[i % COLORS.length]}">${esc(label)} (dashed: plain download alone)</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
