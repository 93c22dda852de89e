#!/usr/bin/env node
/**
 * `npm run sim -- --clients N --size SIZE --wan-rate RATE --mode sequential|flash [--json]`
 * Builds a simulated site (namespaces when root, else loopback), runs the downloads, prints per
 * client where the bytes came from, origin bytes / file size and time versus one plain download.
 */
import { Command, Option } from 'commander';
import { parseRate, parseSize } from './files.js';
import { runScenario, type Mode } from './scenarios.js';
import { formatScenario } from './report.js';
import { netnsSupport } from './netns.js';

const program = new Command()
  .name('sim')
  .description('peerdist network simulation: a shaped WAN origin and N client daemons')
  .option('--clients <n>', 'client hosts', '8')
  .option('--size <size>', 'payload size (e.g. 4MiB, 1GiB)', '8MiB')
  .option('--wan-rate <rate>', 'origin link rate (e.g. 20mbit); namespaces only', '20mbit')
  .option('--wan-delay <ms>', 'one-way WAN delay added by the delay proxy, ms', '20')
  .option('--lan-rate <rate>', 'client link rate (e.g. 400mbit); namespaces only')
  .addOption(new Option('--mode <mode>', 'download order').choices(['sequential', 'flash']).default('sequential'))
  .addOption(
    new Option('--network <kind>', 'netns (needs root) or loopback; default: netns when possible').choices([
      'netns',
      'loopback',
    ]),
  )
  .option('--timeout <s>', 'per-download timeout, seconds', '300')
  .option('--json', 'print the report as JSON')
  .action(async (o: Record<string, string | boolean | undefined>) => {
    const network =
      (o.network as 'netns' | 'loopback' | undefined) ?? ((await netnsSupport()).ok ? 'netns' : 'loopback');
    const log = (m: string) => {
      if (!o.json) process.stderr.write(`[sim] ${m}\n`);
    };
    if (network === 'loopback' && !o.json)
      log('loopback network: links are not shaped (run as root with iproute2 for namespaces)');
    const clients = Number(o.clients);
    if (!Number.isInteger(clients) || clients < 1 || clients > 200) throw new Error('--clients must be 1..200');
    const report = await runScenario({
      clients,
      size: parseSize(String(o.size)),
      mode: o.mode as Mode,
      network,
      wanRateBps: network === 'netns' ? parseRate(String(o.wanRate)) : undefined,
      wanDelayMs: Number(o.wanDelay),
      lanRateBps: o.lanRate && network === 'netns' ? parseRate(String(o.lanRate)) : undefined,
      timeoutMs: Number(o.timeout) * 1000,
      onNote: log,
      onDownload: (d) =>
        log(
          `client ${d.client}: ${d.seconds.toFixed(2)} s, origin ${d.fromOrigin} B, peers ${d.fromPeers} B, cache ${d.fromCache} B, ${d.correct ? 'ok' : 'WRONG'}`,
        ),
    });
    process.stdout.write((o.json ? JSON.stringify(report, null, 2) : formatScenario(report)) + '\n');
    if (!report.allCorrect) process.exitCode = 1;
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`sim: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
