/** DNS-SD presence on loopback: two announced daemons are found by a browse and by `peerdist peers`. */
import t from 'tap';
import { createSocket } from 'node:dgram';
import { startPresence, browsePeers, rateLimitedWarn } from '../../src/discovery/presence.js';
import type { Logger } from '../../src/util/log.js';
import { runCli } from '../helpers/cli.js';

const mdnsPort = 20000 + Math.floor(Math.random() * 40000);
const common = { mdnsPort, interface: '127.0.0.1', loopback: true };

t.test('two presences are found by a browse, and the goodbye removes one', async (t) => {
  const a = await startPresence({
    ...common,
    name: 'daemon-a',
    port: 4101,
    txt: { version: '0.1.0', cache: '1048576' },
  });
  const b = await startPresence({ ...common, name: 'daemon b!', port: 4102, txt: { version: '0.1.0', cache: '0' } });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  t.equal(b.instance, 'daemon-b._peerdist._tcp.local', 'names are sanitised to one DNS label');
  const seen = await browsePeers({ timeoutMs: 400, ...common });
  t.same(seen, [
    { name: 'daemon-a', host: '127.0.0.1', port: 4101, txt: { version: '0.1.0', cache: '1048576' } },
    { name: 'daemon-b', host: '127.0.0.1', port: 4102, txt: { version: '0.1.0', cache: '0' } },
  ]);

  b.update({ version: '0.1.0', cache: '2048' });
  const again = await browsePeers({ timeoutMs: 300, ...common });
  t.equal(again.find((p) => p.name === 'daemon-b')?.txt.cache, '2048', 'TXT update is visible');

  const out = await runCli(
    ['peers', '--json', '--timeout', '400', '--mdns-port', String(mdnsPort), '--interface', '127.0.0.1'],
    { timeoutMs: 20_000 },
  );
  t.equal(out.code, 0, out.stderr);
  const rows = JSON.parse(out.stdout) as Array<{ name: string; port: number; cacheBytes?: number }>;
  t.same(
    rows.map((r) => [r.name, r.port, r.cacheBytes]),
    [
      ['daemon-a', 4101, 1048576],
      ['daemon-b', 4102, 2048],
    ],
  );

  const text = await runCli(
    ['peers', '--timeout', '400', '--mdns-port', String(mdnsPort), '--interface', '127.0.0.1'],
    { timeoutMs: 20_000 },
  );
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^NAME\s+ADDRESS\s+CACHE\s+VERSION\n/);
  t.match(text.stdout, /daemon-a\s+127\.0\.0\.1:4101\s+1\.0 MiB\s+0\.1\.0/);

  await a.close();
  const after = await browsePeers({ timeoutMs: 300, ...common });
  t.same(
    after.map((p) => p.name),
    ['daemon-b'],
    'closed daemon no longer answers',
  );
});

t.test('peers with nobody around, and bad arguments', async (t) => {
  const port = mdnsPort + 1;
  const out = await runCli(['peers', '--timeout', '200', '--mdns-port', String(port), '--interface', '127.0.0.1']);
  t.equal(out.code, 0, out.stderr);
  t.equal(out.stdout, 'no peerdist daemons seen\n');
  const bad = await runCli(['peers', '--timeout', 'soon']);
  t.equal(bad.code, 2);
});

t.test(
  'malformed mDNS packets and socket errors are logged, at most one line a minute of each',
  { timeout: 20_000 },
  async (t) => {
    const lines: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
    let logged!: () => void;
    let firstLine = new Promise<void>((r) => {
      logged = r;
    });
    const logger: Logger = {
      debug() {},
      info() {},
      error() {},
      warn(msg, fields) {
        lines.push({ msg, fields });
        logged();
      },
      child() {
        return logger;
      },
    };
    // The rate limiter reads the clock once per report: counting the reads tells when a packet that
    // was held back (not logged) has been handled.
    let clock = 1_000_000,
      reads = 0;
    let readWaiter: { n: number; resolve: () => void } | undefined;
    const now = () => {
      reads++;
      if (readWaiter && reads >= readWaiter.n) readWaiter.resolve();
      return clock;
    };
    const reported = (n: number) =>
      new Promise<void>((resolve) => {
        if (reads >= n) resolve();
        else readWaiter = { n, resolve };
      });
    const port = mdnsPort + 2;
    const p = await startPresence({
      mdnsPort: port,
      interface: '127.0.0.1',
      loopback: true,
      name: 'noisy',
      port: 4103,
      txt: {},
      logger,
      now,
    });
    t.teardown(() => p.close());
    const sock = createSocket('udp4');
    t.teardown(() => sock.close());
    const garbage = () =>
      new Promise<void>((r) => sock.send(Buffer.from([0xff, 0x00, 0x01]), port, '127.0.0.1', () => r()));
    await garbage();
    await firstLine;
    t.equal(lines.length, 1);
    t.match(lines[0]!.msg, /mDNS presence: ignored a malformed packet/);
    t.ok(lines[0]!.fields?.err instanceof Error, 'the decoder error is logged');
    // More garbage within the minute is counted, not logged; after it, one line with the count.
    await garbage();
    await garbage();
    await reported(3);
    t.equal(lines.length, 1, 'held back within the minute');
    clock += 60_000;
    firstLine = new Promise<void>((r) => {
      logged = r;
    });
    await garbage();
    await firstLine;
    t.equal(lines.length, 2, 'one more line after a minute');
    t.equal(lines[1]!.fields?.suppressed, 2, 'saying how many were held back');
  },
);

t.test('rateLimitedWarn: per kind, with an injected clock', async (t) => {
  const got: Array<[string, Record<string, unknown> | undefined]> = [];
  const log = {
    warn: (m: string, f?: Record<string, unknown>) => {
      got.push([m, f]);
    },
  } as unknown as Logger;
  let now = 0;
  const warn = rateLimitedWarn(log, 1000, () => now);
  warn('a', 'first a', new Error('x'));
  warn('a', 'second a', new Error('x'));
  warn('b', 'first b', new Error('y'));
  now = 999;
  warn('a', 'third a', undefined);
  now = 1000;
  warn('a', 'fourth a', undefined);
  t.same(
    got.map(([m]) => m),
    ['first a', 'first b', 'fourth a'],
  );
  t.equal(got[2]![1]?.suppressed, 2);
});
