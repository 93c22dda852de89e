/**
 * `peerdist peers`: lists the peerdist daemons announcing themselves on the subnet over DNS-SD
 * (`_peerdist._tcp.local`, see src/discovery/presence.ts), with their cache size from TXT.
 * With `--segment ID` it instead multicasts MS-PCCRD probes for those segment IDs and lists the
 * peers (any PeerDist implementation, Windows included) that answer.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { browsePeers } from '../discovery/presence.js';
import { Discovery, type PeerSighting } from '../discovery/discovery.js';
import { formatBytes as humanBytes } from '../util/size.js';
import { forTerminal, jsonForTerminal } from '../util/terminal.js';

function positiveInt(max: number) {
  return (value: string): number => {
    if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > max)
      throw new InvalidArgumentError(`expected an integer 1..${max}`);
    return Number(value);
  };
}

function segmentId(value: string, previous: Buffer[] = []): Buffer[] {
  if (!/^(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$/.test(value))
    throw new InvalidArgumentError('expected a 32, 48 or 64-byte segment ID in hex');
  return [...previous, Buffer.from(value, 'hex')];
}

function contentVersion(value: string): 1 | 2 {
  if (value !== '1' && value !== '2') throw new InvalidArgumentError('expected 1 or 2');
  return Number(value) as 1 | 2;
}

/** A table of cells; every cell is escaped first (names, addresses and TXT values come from any LAN host). */
function table(header: string[], cells: string[][]): string {
  const rows = cells.map((l) => l.map(forTerminal));
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((l) => l[k]!.length)));
  return [header, ...rows]
    .map(
      (l) =>
        l
          .map((c, k) => c.padEnd(widths[k]!))
          .join('  ')
          .trimEnd() + '\n',
    )
    .join('');
}

interface PeersOptions {
  json?: boolean;
  timeout: number;
  segment?: Buffer[];
  contentVersion: 1 | 2;
  mdnsPort?: number;
  discoveryPort?: number;
  interface?: string;
}

async function listDaemons(opts: PeersOptions): Promise<void> {
  const peers = await browsePeers({ timeoutMs: opts.timeout, mdnsPort: opts.mdnsPort, interface: opts.interface });
  const rows = peers.map((p) => {
    const cache = /^[0-9]{1,16}$/.test(p.txt.cache ?? '') ? Number(p.txt.cache) : undefined;
    return { ...p, cacheBytes: cache };
  });
  if (opts.json) {
    process.stdout.write(jsonForTerminal(rows, 2) + '\n');
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('no peerdist daemons seen\n');
    return;
  }
  process.stdout.write(
    table(
      ['NAME', 'ADDRESS', 'CACHE', 'VERSION'],
      rows.map((r) => [
        r.name,
        `${r.host}:${r.port}`,
        r.cacheBytes === undefined ? '-' : humanBytes(r.cacheBytes),
        r.txt.version ?? '-',
      ]),
    ),
  );
}

async function probeSegments(ids: Buffer[], opts: PeersOptions): Promise<void> {
  const loopback = opts.interface?.startsWith('127.') ?? false;
  const discovery = new Discovery({
    port: opts.discoveryPort,
    interfaces: opts.interface ? [opts.interface] : undefined,
    loopback,
    xaddrs: () => [], // we hold nothing and never answer
    lookup: (segmentIds) => segmentIds.map(() => undefined),
  });
  await discovery.start();
  let sightings: PeerSighting[] = [];
  try {
    const watch = discovery.watch(ids, opts.contentVersion);
    await new Promise((r) => setTimeout(r, opts.timeout));
    sightings = ids.flatMap((id) => watch.peers(id));
    watch.close();
  } finally {
    await discovery.close();
  }
  if (opts.json) {
    process.stdout.write(
      jsonForTerminal(
        sightings.map(({ segmentId, address, blockCount, complete }) => ({ segmentId, address, blockCount, complete })),
        2,
      ) + '\n',
    );
    return;
  }
  if (sightings.length === 0) {
    process.stdout.write('no peer answered\n');
    return;
  }
  process.stdout.write(
    table(
      ['SEGMENT', 'ADDRESS', 'BLOCKS', 'COMPLETE'],
      sightings.map((s) => [
        s.segmentId.slice(0, 16) + '…',
        s.address,
        String(s.blockCount),
        opts.contentVersion === 2 ? (s.complete ? 'yes' : 'no') : '-',
      ]),
    ),
  );
}

export function register(program: Command): void {
  program
    .command('peers')
    .description(
      'list peerdist daemons seen on the subnet (DNS-SD) with their cache sizes, or with --segment the peers holding a segment (MS-PCCRD probe)',
    )
    .option('--json', 'print JSON')
    .option('--timeout <ms>', 'how long to listen for answers', positiveInt(60_000), 1500)
    .option('--segment <hex>', 'probe for this segment ID instead (repeatable)', segmentId)
    .option('--content-version <n>', 'probe format for --segment: 1 or 2', contentVersion, 1)
    .addOption(new Option('--mdns-port <port>', 'mDNS port (testing)').argParser(positiveInt(65535)).hideHelp())
    .addOption(
      new Option('--discovery-port <port>', 'WS-Discovery port (testing)').argParser(positiveInt(65535)).hideHelp(),
    )
    .addOption(new Option('--interface <ipv4>', 'interface address to query on').hideHelp())
    .action(async (opts: PeersOptions) => {
      if (opts.segment?.length) await probeSegments(opts.segment, opts);
      else await listDaemons(opts);
    });
}
