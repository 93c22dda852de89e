/**
 * `peerdist peers`: lists the peerdist daemons announcing themselves on the subnet over DNS-SD
 * (`_peerdist._tcp.local`, see src/discovery/presence.ts), with their cache size from TXT.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { browsePeers } from '../discovery/presence.js';
import { humanBytes } from '../daemon/format.js';

function positiveInt(max: number) {
  return (value: string): number => {
    if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > max) throw new InvalidArgumentError(`expected an integer 1..${max}`);
    return Number(value);
  };
}

export function register(program: Command): void {
  program
    .command('peers')
    .description('list peerdist daemons seen on the subnet (DNS-SD) with their cache sizes')
    .option('--json', 'print JSON')
    .option('--timeout <ms>', 'how long to listen for answers', positiveInt(60_000), 1500)
    .addOption(new Option('--mdns-port <port>', 'mDNS port (testing)').argParser(positiveInt(65535)).hideHelp())
    .addOption(new Option('--interface <ipv4>', 'interface address to query on').hideHelp())
    .action(async (opts: { json?: boolean; timeout: number; mdnsPort?: number; interface?: string }) => {
      const peers = await browsePeers({ timeoutMs: opts.timeout, mdnsPort: opts.mdnsPort, interface: opts.interface });
      const rows = peers.map((p) => {
        const cache = /^[0-9]{1,16}$/.test(p.txt.cache ?? '') ? Number(p.txt.cache) : undefined;
        return { ...p, cacheBytes: cache };
      });
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no peerdist daemons seen\n');
        return;
      }
      const lines = rows.map((r) => [r.name, `${r.host}:${r.port}`, r.cacheBytes === undefined ? '-' : humanBytes(r.cacheBytes), r.txt.version ?? '-']);
      const header = ['NAME', 'ADDRESS', 'CACHE', 'VERSION'];
      const widths = header.map((h, k) => Math.max(h.length, ...lines.map((l) => l[k]!.length)));
      for (const l of [header, ...lines]) process.stdout.write(l.map((c, k) => c.padEnd(widths[k]!)).join('  ').trimEnd() + '\n');
    });
}
