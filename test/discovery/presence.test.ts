/** DNS-SD presence on loopback: two announced daemons are found by a browse and by `peerdist peers`. */
import t from 'tap';
import { startPresence, browsePeers } from '../../src/discovery/presence.js';
import { runCli } from '../helpers/cli.js';

const mdnsPort = 20000 + Math.floor(Math.random() * 40000);
const common = { mdnsPort, interface: '127.0.0.1', loopback: true };

t.test('two presences are found by a browse, and the goodbye removes one', async (t) => {
  const a = await startPresence({ ...common, name: 'daemon-a', port: 4101, txt: { version: '0.1.0', cache: '1048576' } });
  const b = await startPresence({ ...common, name: 'daemon b!', port: 4102, txt: { version: '0.1.0', cache: '0' } });
  t.teardown(async () => { await a.close(); await b.close(); });
  t.equal(b.instance, 'daemon-b._peerdist._tcp.local', 'names are sanitised to one DNS label');
  const seen = await browsePeers({ timeoutMs: 400, ...common });
  t.same(seen, [
    { name: 'daemon-a', host: '127.0.0.1', port: 4101, txt: { version: '0.1.0', cache: '1048576' } },
    { name: 'daemon-b', host: '127.0.0.1', port: 4102, txt: { version: '0.1.0', cache: '0' } },
  ]);

  b.update({ version: '0.1.0', cache: '2048' });
  const again = await browsePeers({ timeoutMs: 300, ...common });
  t.equal(again.find((p) => p.name === 'daemon-b')?.txt.cache, '2048', 'TXT update is visible');

  const out = await runCli(['peers', '--json', '--timeout', '400', '--mdns-port', String(mdnsPort), '--interface', '127.0.0.1'], { timeoutMs: 20_000 });
  t.equal(out.code, 0, out.stderr);
  const rows = JSON.parse(out.stdout) as Array<{ name: string; port: number; cacheBytes?: number }>;
  t.same(rows.map((r) => [r.name, r.port, r.cacheBytes]), [['daemon-a', 4101, 1048576], ['daemon-b', 4102, 2048]]);

  const text = await runCli(['peers', '--timeout', '400', '--mdns-port', String(mdnsPort), '--interface', '127.0.0.1'], { timeoutMs: 20_000 });
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^NAME\s+ADDRESS\s+CACHE\s+VERSION\n/);
  t.match(text.stdout, /daemon-a\s+127\.0\.0\.1:4101\s+1\.0 MiB\s+0\.1\.0/);

  await a.close();
  const after = await browsePeers({ timeoutMs: 300, ...common });
  t.same(after.map((p) => p.name), ['daemon-b'], 'closed daemon no longer answers');
});

t.test('peers with nobody around, and bad arguments', async (t) => {
  const port = mdnsPort + 1;
  const out = await runCli(['peers', '--timeout', '200', '--mdns-port', String(port), '--interface', '127.0.0.1']);
  t.equal(out.code, 0, out.stderr);
  t.equal(out.stdout, 'no peerdist daemons seen\n');
  const bad = await runCli(['peers', '--timeout', 'soon']);
  t.equal(bad.code, 2);
});
