/**
 * `peerdist get` and `peerdist status`: clients of a running daemon's admin API
 * (protocol/admin-api.md).
 */
import { parseHeaderArgs } from '../util/origin-headers.js';
import { UsageError } from '../util/errors.js';
import type { Command } from 'commander';
import { daemonAddress, adminJson } from '../client/admin-client.js';
import { getToFile } from '../client/get.js';
import { finalLine, progressLine, statusText, type StatusDoc } from '../client/format.js';
import { jsonForTerminal } from '../util/terminal.js';

export function register(program: Command): void {
  program
    .command('get')
    .description('download URL through the local daemon (peer cache first, origin for the rest)')
    .argument('<url>', 'http:// or https:// URL')
    .option(
      '-o, --output <file>',
      'output file; - for stdout; an existing directory gets DIR/<name> (default: the last path segment of the URL)',
    )
    .option(
      '--daemon <addr>',
      'daemon admin address HOST:PORT or socket path (default $PEERDIST_DAEMON or 127.0.0.1:7171)',
    )
    .option('--json', 'print one JSON object with the result and where the bytes came from')
    .option(
      '-H, --header <header>',
      "send 'Name: value' to the origin only (repeatable; e.g. 'Authorization: Bearer ...'); never to peers, never logged",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--mirror <url>',
      "another origin node with the same content (repeatable): origin ranges fail over to it when the origin fails, once its content information matches; a bare http://host:port takes the URL's path",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .action(
      async (
        url: string,
        o: { output?: string; daemon?: string; json?: boolean; header?: string[]; mirror?: string[] },
      ) => {
        const daemon = daemonAddress(o.daemon);
        for (const m of o.mirror ?? [])
          if (!/^https?:\/\/[^/]/i.test(m)) throw new UsageError(`--mirror ${m}: not an http:// or https:// URL`);
        const originHeaders = parseHeaderArgs(o.header ?? []);
        const ac = new AbortController();
        const onSignal = () => ac.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        const tty = !o.json && process.stderr.isTTY === true;
        const t0 = Date.now();
        let shown = false;
        try {
          const r = await getToFile({
            daemon,
            url,
            output: o.output,
            originHeaders,
            ...(o.mirror?.length ? { mirrors: o.mirror } : {}),
            signal: ac.signal,
            onProgress: tty
              ? (p) => {
                  shown = true;
                  process.stderr.write(`\r\x1b[K${progressLine({ ...p, seconds: (Date.now() - t0) / 1000 })}`);
                }
              : undefined,
          });
          if (shown) process.stderr.write('\r\x1b[K');
          // With -o - the content went to stdout: the result line goes to stderr.
          (r.output === '-' ? process.stderr : process.stdout).write(
            o.json ? jsonForTerminal({ ...r, cpuSeconds: cpuSecondsSoFar() }) + '\n' : finalLine(r) + '\n',
          );
        } catch (err) {
          if (shown) process.stderr.write('\n');
          throw err;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      },
    );

  program
    .command('status')
    .description('downloads in progress and byte totals of the local daemon')
    .option(
      '--daemon <addr>',
      'daemon admin address HOST:PORT or socket path (default $PEERDIST_DAEMON or 127.0.0.1:7171)',
    )
    .option('--json', 'print the raw /v1/status JSON')
    .action(async (o: { daemon?: string; json?: boolean }) => {
      const s = await adminJson<StatusDoc>(daemonAddress(o.daemon), '/v1/status');
      process.stdout.write(o.json ? jsonForTerminal(s) + '\n' : statusText(s) + '\n');
    });
}

/** CPU seconds (user + system) this process used so far: `get --json` reports its own cost. */
function cpuSecondsSoFar(): number {
  const u = process.cpuUsage();
  return Math.round((u.user + u.system) / 1000) / 1000;
}
