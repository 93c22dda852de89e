/**
 * Issue 27.2 as the issue saw it: a daemon's proxy on a LAN address (in a namespace lab, so the
 * addresses are real and not loopback). With the default target checks and no test exemption:
 * an allowed LAN client downloads a file from a LAN origin through the proxy; the same client
 * asking for the daemon's admin API, another 127.0.0.1 service or the daemon's own LAN address
 * gets 403; a LAN host outside --proxy-allow gets 403 for everything. Skips unless running as
 * root with iproute2.
 */
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsLab, netnsSupport, type NsHost } from '../../testkit/sim/netns.js';
import { agentEntry } from '../../testkit/sim/entrypoints.js';
import { writePayload } from '../../testkit/sim/files.js';
import { lastJsonLine } from '../../testkit/sim/harness.js';
import { cliEntry } from '../helpers/paths.js';

/** A client of the proxy: one absolute-form request, the answer as a JSON line. */
const CLIENT = `
const http = require('node:http'), crypto = require('node:crypto');
const [proxy, method, url] = process.argv.slice(1);
const i = proxy.lastIndexOf(':');
const req = http.request({ host: proxy.slice(0, i), port: Number(proxy.slice(i + 1)), method, path: url }, (res) => {
  const h = crypto.createHash('sha256'); let n = 0, head = '';
  res.on('data', (c) => { h.update(c); n += c.length; if (head.length < 300) head += c.toString('latin1'); });
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, bytes: n, sha256: h.digest('hex'), head })));
});
req.on('error', (e) => console.log(JSON.stringify({ error: e.message })));
req.end();
`;

const support = await netnsSupport();
if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  const lab = await NetnsLab.create({ subnet: '10.227.0' });
  t.teardown(() => lab.destroy());
  const origin = await lab.addHost('origin', 2);
  const daemon = await lab.addHost('daemon', 3);
  const client = await lab.addHost('client', 4);
  const dir = await mkdtemp(join(tmpdir(), 'pd-proxy-lan-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = await writePayload(join(dir, 'f.bin'), 512 * 1024, 'proxy-lan');

  const serveFile = async (h: NsHost, listen: string) => {
    const child = lab.spawn(h, process.execPath, [agentEntry, 'serve-file', '--listen', listen, '--dir', dir]);
    t.teardown(() => child.stop());
    await child.firstJsonLine((v) => v.event === 'ready', 20_000);
  };
  await serveFile(origin, `${origin.address}:8080`);
  // A loopback-only service inside the daemon's host: must stay unreachable from the LAN.
  await serveFile(daemon, '127.0.0.1:9000');
  const d = lab.spawn(daemon, process.execPath, [
    cliEntry,
    'daemon',
    '--state-dir',
    join(dir, 'state'),
    '--listen',
    `${daemon.address}:7170`,
    '--interface',
    daemon.address,
    '--admin',
    '127.0.0.1:7171',
    '--no-presence',
    '--proxy-port',
    '3128',
    '--proxy-host',
    daemon.address,
    '--proxy-allow',
    `${client.address}/32`,
  ]);
  t.teardown(() => d.stop());
  await d.firstJsonLine((v) => v.event === 'ready', 30_000);
  const proxy = `${daemon.address}:3128`;

  const via = async (h: NsHost, method: string, url: string) => {
    const r = await lab.run(h, process.execPath, ['-e', CLIENT, proxy, method, url], { timeoutMs: 60_000 });
    const j = lastJsonLine(r.stdout) as { status?: number; sha256?: string; bytes?: number; head?: string } | undefined;
    if (!j) throw new Error(`client printed nothing: ${r.stderr}`);
    return j;
  };

  t.test('an allowed LAN client downloads through the proxy', async (t) => {
    const r = await via(client, 'GET', `http://${origin.address}:8080/f.bin`);
    t.equal(r.status, 200);
    t.equal(r.bytes, file.size);
    t.equal(r.sha256, file.sha256, 'the body is the file');
  });

  t.test("the same client cannot reach the daemon's host through it", async (t) => {
    for (const url of [
      'http://127.0.0.1:7171/v1/status',
      `http://127.0.0.1:7171/v1/fetch?url=${encodeURIComponent('http://127.0.0.1:9000/f.bin')}`,
      'http://localhost:9000/f.bin',
      `http://${daemon.address}:7170/`,
      `http://${daemon.address}:3128/`,
    ]) {
      const r = await via(client, 'GET', url);
      t.equal(r.status, 403, `${url}: ${r.head?.trim()}`);
      t.match(r.head, /PROXY_REFUSED/);
    }
    const post = await via(client, 'POST', 'http://127.0.0.1:7171/v1/cache/verify');
    t.equal(post.status, 403, 'POST /v1/cache/verify');
  });

  t.test('a LAN host outside --proxy-allow is refused', async (t) => {
    const r = await via(origin, 'GET', `http://${origin.address}:8080/f.bin`);
    t.equal(r.status, 403);
    t.match(r.head, /PROXY_REFUSED: client 10\.227\.0\.2 is not on loopback nor in an allowed network/);
  });
}
