/**
 * Hosted cache benchmark on a namespace branch (root + iproute2): N subnets joined by a router that
 * does not forward multicast, K clients per subnet, a shaped WAN to the origin, shaped LAN links.
 * Side by side in one run: the same downloads without a hosted cache and with one (on subnet 1).
 *   npm run build && node dist/bench/hosted-cache.js [--subnets 3] [--per-subnet 2] [--size 8MiB] [--wan-rate 20mbit] [--lan-rate 100mbit] [--json]
 * Prints origin bytes / file size for sequential (one client per subnet, one after another; target
 * <= 1.05 with the hosted cache) and flash (every client at once; target <= 1.3), and the rate of a
 * client on a subnet with no peer that gets the file from the hosted cache, against the LAN rate
 * and against a plain HTTP GET of the same file from the hosted cache's host over the same link,
 * for the whole download and for its data phase (after the content information from the origin).
 */
import { benchArgs } from './args.js';
import { parseRate, parseSize } from '../testkit/sim/files.js';
import { agentEntry } from '../testkit/sim/entrypoints.js';
import { Cluster, lastJsonLine, originBlockBytes } from '../testkit/sim/harness.js';
import { NetnsNetwork } from '../testkit/sim/network.js';
import { netnsSupport } from '../testkit/sim/netns.js';
import { runDownloads } from '../testkit/sim/scenarios.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    subnets: { type: 'string', default: '3' },
    'per-subnet': { type: 'string', default: '2' },
    size: { type: 'string', default: '8MiB' },
    'wan-rate': { type: 'string', default: '20mbit' },
    'wan-delay': { type: 'string', default: '20' },
    'lan-rate': { type: 'string', default: '100mbit' },
    json: { type: 'boolean' },
  },
});
const support = await netnsSupport();
if (!support.ok) {
  process.stderr.write(`bench/hosted-cache: ${support.reason}\n`);
  process.exit(2);
}
const subnets = Number(values.subnets),
  per = Number(values['per-subnet']),
  size = parseSize(values.size!);
const wanRateBps = parseRate(values['wan-rate']!),
  lanRateBps = parseRate(values['lan-rate']!),
  wanDelayMs = Number(values['wan-delay']);
const note = (m: string) => process.stderr.write(`[bench] ${m}\n`);

async function run(withHc: boolean) {
  note(`${withHc ? 'with' : 'without'} a hosted cache: building ${subnets} subnets x ${per} clients`);
  const c = await Cluster.create({
    network: await NetnsNetwork.create({ subnets }),
    clients: subnets * per,
    wan: { rateBps: wanRateBps, delayMs: wanDelayMs },
    lanRateBps,
    files: [
      { name: 'seq.bin', size, seed: 'hc-seq' },
      { name: 'flash.bin', size, seed: 'hc-flash' },
    ],
    readyTimeoutMs: 120_000,
  });
  try {
    let hc: Awaited<ReturnType<typeof c.startHostedCache>> | undefined;
    if (withHc) {
      hc = await c.startHostedCache({ subnet: 1 });
      await c.network.shapeHost(hc.host, { rateBps: lanRateBps });
    }
    await c.startDaemons();
    const firstRow = Array.from({ length: subnets }, (_, k) => k + 1); // client k+1 is on subnet k+1
    note('sequential');
    const seq = await runDownloads(c, 'seq.bin', { mode: 'sequential', clients: firstRow, timeoutMs: 900_000 });
    note('flash crowd');
    const flash = await runDownloads(c, 'flash.bin', {
      mode: 'flash',
      clients: c.hosts.map((_, k) => k + 1),
      timeoutMs: 900_000,
    });
    const hcStatus = withHc ? (await c.hostedCacheStatus()).hostedCache : undefined;
    // The LAN reference, side by side: a plain HTTP GET of the same file from the hosted cache's
    // host (same shaped link) by each client that was alone on its subnet in the sequential run.
    const plainLan: Array<{ client: number; seconds: number }> = [];
    if (hc) {
      const server = c.network.spawn(hc.host, process.execPath, [
        agentEntry,
        'serve-file',
        '--listen',
        `${hc.address.slice(0, hc.address.lastIndexOf(':'))}:0`,
        '--dir',
        c.originRoot,
      ]);
      try {
        const up = await server.firstJsonLine<{ address: string }>((v) => v.event === 'ready', 30_000);
        for (const client of firstRow.slice(1)) {
          const r = await c.network.run(
            c.hosts[client - 1]!,
            process.execPath,
            [agentEntry, 'fetch', `http://${up.address}/seq.bin`],
            { timeoutMs: 900_000 },
          );
          const j = lastJsonLine(r.stdout);
          if (r.code !== 0 || !j || j.bytes !== size)
            throw new Error(`plain LAN fetch failed: ${r.stderr.slice(-500)}`);
          plainLan.push({ client, seconds: j.seconds as number });
        }
      } finally {
        await server.stop('SIGTERM', 2000);
      }
    }
    return {
      withHostedCache: withHc,
      sequential: {
        originRatio: originBlockBytes(seq.origin) / size,
        downloads: seq.downloads.map((d) => ({
          client: d.client,
          seconds: d.seconds,
          originAnswerSeconds: d.originAnswerSeconds,
          fromOrigin: d.fromOrigin,
          fromPeers: d.fromPeers,
          correct: d.correct,
        })),
      },
      flash: {
        originRatio: originBlockBytes(flash.origin) / size,
        totalSeconds: flash.totalSeconds,
        allCorrect: flash.downloads.every((d) => d.correct),
      },
      hostedCache: hcStatus,
      plainLan,
    };
  } finally {
    await c.close();
  }
}

const without = await run(false);
const withHc = await run(true);
// LAN-speed figure: clients 2..N of the sequential run are alone on their subnet; with the hosted cache they get the file from it.
const lonely = withHc.sequential.downloads.slice(1);
const lanFigure = lonely.map((d) => {
  const plain = withHc.plainLan.find((p) => p.client === d.client)?.seconds;
  return {
    client: d.client,
    mbitPerSec: (size * 8) / d.seconds / 1e6,
    ofLanRate: (size * 8) / d.seconds / lanRateBps,
    plainLanSeconds: plain,
    /** Throughput from the hosted cache / a plain GET over the same LAN path. */
    ofPlainLan: plain === undefined ? undefined : plain / d.seconds,
    /** The content information's exchange with the origin over the WAN, s (the daemon's figure). */
    originAnswerSeconds: d.originAnswerSeconds,
    /** The same ratio for the data phase (after the origin's answer; the plain GET includes its own connect). */
    dataOfPlainLan:
      plain === undefined || d.originAnswerSeconds === undefined
        ? undefined
        : plain / (d.seconds - d.originAnswerSeconds),
    fromPeers: d.fromPeers,
  };
});
const out = { subnets, perSubnet: per, size, wanRateBps, wanDelayMs, lanRateBps, without, with: withHc, lanFigure };
if (values.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
else {
  const f = (x: number) => x.toFixed(3);
  process.stdout.write(
    `origin bytes / file size (${subnets} subnets, ${subnets * per} clients, ${size} bytes, WAN ${wanRateBps / 1e6} Mbit/s + ${wanDelayMs} ms, LAN ${lanRateBps / 1e6} Mbit/s)\n`,
  );
  process.stdout.write(
    `  sequential, one client per subnet: without ${f(without.sequential.originRatio)}, with hosted cache ${f(withHc.sequential.originRatio)} (target <= 1.05: ${withHc.sequential.originRatio <= 1.05 ? 'met' : 'NOT met'})\n`,
  );
  process.stdout.write(
    `  flash crowd, every client:         without ${f(without.flash.originRatio)}, with hosted cache ${f(withHc.flash.originRatio)} (target <= 1.3: ${withHc.flash.originRatio <= 1.3 ? 'met' : 'NOT met'})\n`,
  );
  for (const l of lanFigure)
    process.stdout.write(
      `  client ${l.client} (no peer on its subnet): ${l.mbitPerSec.toFixed(1)} Mbit/s from the hosted cache = ${l.ofLanRate.toFixed(2)} x the LAN rate, ${l.ofPlainLan?.toFixed(2) ?? 'n/a'} x a plain HTTP GET from the hosted cache's host (${l.plainLanSeconds?.toFixed(2) ?? 'n/a'} s); after the content information (${l.originAnswerSeconds?.toFixed(3) ?? 'n/a'} s over the WAN): ${l.dataOfPlainLan?.toFixed(2) ?? 'n/a'} x\n`,
    );
}
