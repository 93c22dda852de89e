/**
 * The scale simulation (issue 24) on small crowds: every client completes, every byte is accounted
 * for, the origin sends at least one copy per group of subnets that cannot reach each other, and
 * the same seed gives the same run (a different seed another).
 */
import t, { type Test } from 'tap';
import { svg } from '../../testkit/scale/report.js';
import { type ScaleConfig, type ScaleResult, runScale } from '../../testkit/scale/sim.js';

const MiB = 2 ** 20;
const base: ScaleConfig = {
  clients: 24,
  subnets: 3,
  hostedCaches: 0,
  fileBytes: 4 * MiB,
  wanBps: 50e6,
  lanBps: 1e9,
  arrival: { kind: 'flash', jitterMs: 1000 },
  seed: 1,
};

function invariants(t: Test, cfg: ScaleConfig, r: ScaleResult): void {
  const label = `${cfg.hostedCaches} caches, ${cfg.arrival.kind}`;
  t.equal(r.completed, cfg.clients, `${label}: every client completed`);
  t.ok(r.completions.every(Number.isFinite), `${label}: every completion time is finite`);
  const total = r.bytesBySource.origin + r.bytesBySource.peer + r.bytesBySource.hostedCache;
  t.equal(total, cfg.fileBytes * cfg.clients, `${label}: bytes by source sum to file size x clients`);
  t.ok(r.originCopies >= 1, `${label}: the origin sent at least one copy (${r.originCopies})`);
  const H = cfg.hostedCaches === 'per-subnet' ? cfg.subnets : cfg.hostedCaches;
  // Subnets that share no hosted cache cannot reach each other: each needs its own copy.
  const groups = H === 0 ? cfg.subnets : Math.min(H, cfg.subnets);
  const perGroup = new Array<number>(groups).fill(0);
  r.originCopiesPerSubnet.forEach((copies, s) => {
    perGroup[s % groups]! += copies;
  });
  t.ok(
    perGroup.every((c) => c >= 0.999),
    `${label}: at least one copy per group that cannot reach the others (${perGroup.join(', ')})`,
  );
  if (H === 0) {
    t.equal(r.bytesBySource.hostedCache, 0, `${label}: nothing from hosted caches when there are none`);
    t.equal(r.hostedCachePullBytes, 0);
  } else {
    t.ok(r.hostedCachePullBytes <= cfg.fileBytes * H, `${label}: each cache pulled each block at most once`);
    t.ok(r.bytesBySource.hostedCache > 0, `${label}: the hosted caches served`);
  }
  t.ok(
    r.completions.every((ms) => ms >= r.plainMs / cfg.fileBytes),
    `${label}: nobody beats physics`,
  );
  const seriesBytes = r.originSeries.bytes.reduce((a, b) => a + b, 0);
  t.ok(Math.abs(seriesBytes - r.bytesBySource.origin) <= cfg.clients, `${label}: the origin rate series adds up`);
  t.ok(r.peakOriginBps <= cfg.wanBps * cfg.subnets * 1.0001, `${label}: no more origin rate than the WAN links carry`);
}

for (const hostedCaches of [0, 'per-subnet', 2] as const)
  for (const arrival of [base.arrival, { kind: 'spread', overMs: 20_000 } as const]) {
    t.test(`invariants: ${hostedCaches} hosted caches, ${arrival.kind} arrival`, async (t) => {
      const cfg = { ...base, hostedCaches, arrival };
      invariants(t, cfg, runScale(cfg));
    });
  }

t.test('invariants: a view smaller than the subnet (each client hears 3 of its 7 neighbours)', async (t) => {
  const cfg = { ...base, view: 3 };
  invariants(t, cfg, runScale(cfg));
});

t.test('the same seed gives the same run; another seed another', async (t) => {
  const cfg = { ...base, hostedCaches: 'per-subnet' as const };
  const a = runScale(cfg);
  const b = runScale(cfg);
  t.same(b, a, 'identical results, field by field');
  const c = runScale({ ...cfg, seed: 2 });
  t.not(JSON.stringify(c.completions), JSON.stringify(a.completions), 'seed 2 differs');
});

t.test('one client alone takes about a plain download', async (t) => {
  const r = runScale({ ...base, clients: 1, subnets: 1 });
  t.equal(r.originCopies, 1, 'exactly one copy');
  // The initial discovery wait (300 ms), one stream until the first block, then up to 6 streams.
  t.ok(r.completionMs.max >= r.plainMs, `not faster than the plain download (${r.completionMs.max} ms)`);
  t.ok(r.completionMs.max <= r.plainMs + 1000, `${r.completionMs.max} ms vs plain ${r.plainMs} ms`);
});

t.test('the SVG: per run a CDF, the plain-download line and the origin rate, side by side', async (t) => {
  const a = runScale(base);
  const b = runScale({ ...base, hostedCaches: 'per-subnet' });
  const out = svg([
    { label: 'no caches', result: a },
    { label: 'caches <&>', result: b },
  ]);
  t.match(out, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.ok(out.endsWith('</svg>'));
  t.equal(out.match(/<polyline /g)?.length, 6, 'three lines per run');
  t.match(out, /caches &lt;&amp;&gt;/, 'labels are escaped');
  t.notMatch(out, /NaN|Infinity/, 'every coordinate is a number');
});

t.test(
  'sequential arrivals: each client starts as the previous one completes; after the first, nothing from the origin',
  async (t) => {
    const cfg: ScaleConfig = { ...base, clients: 6, subnets: 1, arrival: { kind: 'sequential' } };
    const r = runScale(cfg);
    invariants(t, cfg, r);
    t.equal(r.originCopies, 1, 'one copy: the later clients take every block from the earlier ones');
    t.equal(r.bytesBySource.peer, cfg.fileBytes * (cfg.clients - 1), 'the other five copies came from peers');
    const sum = r.completions.reduce((a, b) => a + b, 0);
    t.ok(
      Math.abs(sum - r.simulatedMs) < 1,
      `the downloads follow each other: ${sum.toFixed(0)} ms in all, last done at ${r.simulatedMs} ms`,
    );
  },
);
