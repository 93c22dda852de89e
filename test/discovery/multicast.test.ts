/**
 * Several real Discovery instances on this host over real multicast sockets on loopback
 * (127.0.0.1 membership, loopback delivery on, random high port), finding each other's segments.
 */
import t from 'tap';
import { Discovery, type DiscoveryOptions, type PeerSighting } from '../../src/discovery/discovery.js';

const port = 20000 + Math.floor(Math.random() * 40000);
const seg = (n: number) => Buffer.alloc(32, n);
const hex = (b: Buffer) => b.toString('hex').toUpperCase();

type Held = Map<string, { blockCount: number; complete: boolean }>;

async function node(t: Tap, name: string, ip: string, held: Held, extra: Partial<DiscoveryOptions> = {}) {
  const d = new Discovery({
    port,
    interfaces: ['127.0.0.1'],
    loopback: true,
    localSubnets: [],
    xaddrs: () => [`${ip}:8${name.charCodeAt(0)}`],
    lookup: (ids) => ids.map((id) => held.get(hex(id))),
    timing: { repeatMinMs: 150, repeatMaxMs: 250 },
    ...extra,
  });
  t.teardown(() => d.close());
  await d.start();
  return d;
}
type Tap = Pick<typeof t, 'teardown'>;

function until<T>(what: string, fn: () => T | undefined, ms = 3000): Promise<T> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      const v = fn();
      if (v !== undefined) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

t.test("three daemons find each other's segments (v1, partial holder, late joiner)", async (t) => {
  const s1 = seg(1),
    s2 = seg(2),
    s3 = seg(3);
  const a = await node(t, 'A', '127.0.0.2', new Map([[hex(s1), { blockCount: 5, complete: true }]]));
  const b = await node(
    t,
    'B',
    '127.0.0.3',
    new Map([
      [hex(s1), { blockCount: 3, complete: false }],
      [hex(s2), { blockCount: 7, complete: true }],
      [hex(s3), { blockCount: 0, complete: false }],
    ]),
  );
  const c = await node(t, 'C', '127.0.0.4', new Map());

  const w = c.watch([s1, s2, s3], 1);
  t.teardown(() => w.close());
  const events: PeerSighting[] = [];
  w.on('peer', (p: PeerSighting) => events.push(p));
  const t0 = Date.now();
  await w.waitForPeers(2000);
  t.ok(Date.now() - t0 < 1500, `first peer after ${Date.now() - t0} ms`);
  const p1 = await until('two peers for s1', () => (w.peers(s1).length >= 2 ? w.peers(s1) : undefined));
  t.same(
    p1.map((p) => [p.address, p.blockCount]),
    [
      ['127.0.0.2:865', 5],
      ['127.0.0.3:866', 3],
    ],
    'full holder first, partial count sent',
  );
  const p2 = await until('peer for s2', () => (w.peers(s2).length ? w.peers(s2) : undefined));
  t.same(
    p2.map((p) => [p.segmentId, p.address, p.blockCount]),
    [[hex(s2), '127.0.0.3:866', 7]],
  );
  t.same(w.peers(s3), [], 'a zero count is not announced');
  t.ok(
    events.some((e) => e.segmentId === hex(s1) && e.address === '127.0.0.2:865'),
    'peer event emitted',
  );

  // A late joiner is found by the continuing probes (new MessageIDs).
  const d = await node(t, 'D', '127.0.0.5', new Map([[hex(s3), { blockCount: 2, complete: false }]]));
  const p3 = await until('late peer for s3', () => (w.peers(s3).length ? w.peers(s3) : undefined));
  t.same(
    p3.map((p) => [p.address, p.blockCount]),
    [['127.0.0.5:868', 2]],
  );

  // Nobody lists itself: A watching s1 sees only B.
  const wa = a.watch([s1], 1);
  t.teardown(() => wa.close());
  await until('A sees B', () => (wa.peers(s1).length ? true : undefined));
  await new Promise((r) => setTimeout(r, 400));
  t.same(
    wa.peers(s1).map((p) => p.address),
    ['127.0.0.3:866'],
  );

  t.ok(c.stats().probesSent >= 3, 'C probed');
  t.equal(c.stats().peersKnown, 3, 'C knows A, B and D');
  t.equal(c.stats().watches, 1);
  t.ok(c.stats().matchesReceived >= 3, 'C received matches');
  t.ok(a.stats().matchesSent >= 1 && b.stats().matchesSent >= 1 && d.stats().matchesSent >= 1, 'responders answered');
  t.equal(c.stats().matchesSent, 0, 'C holds nothing and stayed silent');
  t.ok((c.stats().dropped.notHeld ?? 0) > 0, 'C saw probes it could not answer');
  t.equal(b.stats().dropped.malformed ?? 0, 0);
});

t.test('v2 discovery over real sockets', async (t) => {
  const x = seg(0x21),
    y = seg(0x22),
    z = seg(0x23);
  await node(
    t,
    'E',
    '127.0.0.6',
    new Map([
      [hex(x), { blockCount: 1, complete: true }],
      [hex(z), { blockCount: 1, complete: true }],
    ]),
  );
  await node(t, 'F', '127.0.0.7', new Map([[hex(y), { blockCount: 1, complete: true }]]));
  const g = await node(t, 'G', '127.0.0.8', new Map());
  const w = g.watch([x, y, z], 2);
  t.teardown(() => w.close());
  await until('v2 peers', () => (w.peers(x).length && w.peers(y).length && w.peers(z).length ? true : undefined));
  t.same(
    w.peers(x).map((p) => [p.address, p.blockCount, p.complete]),
    [['127.0.0.6:869', 1, true]],
  );
  t.same(
    w.peers(y).map((p) => [p.address, p.blockCount, p.complete]),
    [['127.0.0.7:870', 1, true]],
  );
  t.same(
    w.peers(z).map((p) => p.address),
    ['127.0.0.6:869'],
  );
  t.equal(g.initialWaitMs, 300, 'replies keep the initial wait at its maximum');
});

t.test('nobody home: waitForPeers times out and the initial wait drops toward 0', async (t) => {
  const h = await node(t, 'H', '127.0.0.9', new Map(), {
    timing: { repeatMinMs: 100, repeatMaxMs: 100, requestTimerMs: 150 },
  });
  const w = h.watch([seg(0x40)], 1);
  t.teardown(() => w.close());
  const t0 = Date.now();
  await w.waitForPeers(200);
  const waited = Date.now() - t0;
  t.ok(waited >= 190 && waited < 2000, `waited ${waited} ms`);
  await until('wait drops to 0', () => (h.initialWaitMs === 0 ? true : undefined), 3000);
  w.close();
  t.equal(h.stats().matchesReceived, 0);
});

t.test('hostile datagrams sent to a live responder are counted and ignored', async (t) => {
  const { createSocket } = await import('node:dgram');
  const s = seg(0x60);
  const d = await node(t, 'I', '127.0.0.12', new Map([[hex(s), { blockCount: 4, complete: true }]]));
  const sock = createSocket('udp4');
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  const replies: Buffer[] = [];
  sock.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const bad = [
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>',
    '<a>'.repeat(1000),
    Buffer.alloc(40000, 0x41).toString(),
    'not xml at all',
  ];
  for (const b of bad) sock.send(Buffer.from(b), port, '127.0.0.1');
  // then a valid unicast probe: still answered, to our socket
  const { encodeProbe } = await import('../../src/protocol/pccrd/codec.js');
  sock.send(
    Buffer.from(
      encodeProbe({ version: 1, messageId: 'urn:uuid:12121212-0000-4000-8000-000000000001', segmentIds: [s] }),
    ),
    port,
    '127.0.0.1',
  );
  await until('a reply', () => (replies.length ? true : undefined));
  t.match(replies[0]!.toString(), '<PeerDist:BlockCount>00000004</PeerDist:BlockCount>');
  t.ok((d.stats().dropped.malformed ?? 0) >= 3, `malformed counted: ${JSON.stringify(d.stats().dropped)}`);
});

t.test('peerdist peers --segment probes over real sockets and lists the holders', async (t) => {
  const { runCli } = await import('../helpers/cli.js');
  const s1 = seg(0x70),
    s2 = seg(0x71);
  await node(t, 'J', '127.0.0.13', new Map([[hex(s1), { blockCount: 9, complete: true }]]));
  await node(
    t,
    'K',
    '127.0.0.14',
    new Map([
      [hex(s1), { blockCount: 2, complete: false }],
      [hex(s2), { blockCount: 1, complete: true }],
    ]),
  );
  const args = [
    'peers',
    '--segment',
    hex(s1),
    '--segment',
    hex(s2).toLowerCase(),
    '--timeout',
    '700',
    '--discovery-port',
    String(port),
    '--interface',
    '127.0.0.1',
  ];
  const out = await runCli([...args, '--json'], { timeoutMs: 20_000 });
  t.equal(out.code, 0, out.stderr);
  const rows = JSON.parse(out.stdout) as Array<{ segmentId: string; address: string; blockCount: number }>;
  t.same(
    rows.map((r) => [r.segmentId.slice(0, 2), r.address, r.blockCount]),
    [
      ['70', '127.0.0.13:874', 9],
      ['70', '127.0.0.14:875', 2],
      ['71', '127.0.0.14:875', 1],
    ],
  );
  const text = await runCli(args, { timeoutMs: 20_000 });
  t.match(text.stdout, /^SEGMENT\s+ADDRESS\s+BLOCKS\s+COMPLETE\n7070707070707070…\s+127\.0\.0\.13:874\s+9\s+-\n/);
  const bad = await runCli(['peers', '--segment', 'abc']);
  t.equal(bad.code, 2, 'a malformed segment ID is a usage error');
});

t.test('start fails cleanly when the discovery port is taken exclusively', async (t) => {
  const { createSocket } = await import('node:dgram');
  const blocker = createSocket({ type: 'udp4' });
  await new Promise<void>((r) => blocker.bind({ port: 0, address: '0.0.0.0', exclusive: true }, () => r()));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const taken = blocker.address().port;
  const d = new Discovery({ port: taken, interfaces: ['127.0.0.1'], xaddrs: () => ['127.0.0.1:80'], lookup: () => [] });
  await t.rejects(d.start(), { code: 'EADDRINUSE' });
  await d.close(); // idempotent after the failed start
  t.throws(() => d.watch([seg(1)], 1), /closed/);
});

t.test(
  'follow-up ProbeMatch over real sockets; foreign probes reach a listener that subscribes after them',
  async (t) => {
    const s7 = seg(7);
    const heldA: Held = new Map();
    const a = await node(t, 'F', '127.0.0.5', heldA);
    const b = await node(t, 'G', '127.0.0.6', new Map(), { timing: { repeatMinMs: 60_000, repeatMaxMs: 60_000 } });
    const w = b.watch([s7], 2);
    t.teardown(() => w.close());
    // A hears B's probe; a listener that subscribes afterwards still gets it (replayed), once.
    await until('A received the probe', () => (a.stats().probesReceived > 0 ? true : undefined));
    const seen: string[] = [];
    const stop = a.onForeignProbe((ids, from) => seen.push(`${from} ${ids.map(hex).join(',')}`));
    t.teardown(stop);
    t.same(seen, [`127.0.0.1 ${hex(s7)}`], 'the probe sent before the subscription is replayed');
    // B probes only once a minute from now on: the sighting can only come from A's follow-up.
    heldA.set(hex(s7), { blockCount: 1, complete: true });
    a.announce(hex(s7));
    const sighting = await until('B sees A', () => w.peers(s7)[0]);
    t.equal(sighting.address, '127.0.0.5:870', "A's follow-up ProbeMatch reached B's watch");
    t.equal(a.stats().followUpsSent, 1, 'one follow-up sent');
  },
);
