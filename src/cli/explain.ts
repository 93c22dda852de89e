/**
 * `peerdist explain [URL | JOB_ID]`: why a download's bytes came from where they came from (the
 * daemon's trace of it; default the last download). See protocol/admin-api.md.
 */
import type { Command } from 'commander';
import { adminJson, daemonAddress } from '../client/admin-client.js';
import { explainText } from '../client/explain.js';
import type { DownloadTrace } from '../daemon/traces.js';
import { jsonForTerminal } from '../util/terminal.js';

export function register(program: Command): void {
  program
    .command('explain')
    .description(
      'per-download trace: discovery rounds, which peer served what, and why each origin block went to the origin',
    )
    .argument('[target]', 'a URL, a job ID (X-PeerDist-Job), or nothing for the last download')
    .option(
      '--daemon <addr>',
      'daemon admin address HOST:PORT or socket path (default $PEERDIST_DAEMON or 127.0.0.1:7171)',
    )
    .option('--json', 'print the trace as JSON')
    .action(async (target: string | undefined, o: { daemon?: string; json?: boolean }) => {
      const q =
        target === undefined || target === 'last'
          ? ''
          : /^[a-z][a-z0-9+.-]*:\/\//i.test(target)
            ? `?url=${encodeURIComponent(target)}`
            : `?job=${encodeURIComponent(target)}`;
      const t = await adminJson<DownloadTrace>(daemonAddress(o.daemon), `/v1/explain${q}`);
      process.stdout.write(o.json ? jsonForTerminal(t) + '\n' : explainText(t) + '\n');
    });
}
