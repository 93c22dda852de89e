/**
 * Probe floods against the discovery responder.
 * - A real `peerdist daemon` child holding a file: one source sends 1,000 probes per second for
 *   2 s while an honest neighbour probes 10 times per second; the neighbour gets every answer, the
 *   flooder gets no more than the per-source limit allows, and bytes out / bytes in is reported.
 *   (Regression: the global bucket used to be charged before the per-source one, so a single
 *   flooder drained it and the neighbour went unanswered.)
 * - State machine (fake clock): probes from outside the local subnets never get a ProbeMatch, and no
 *   ProbeMatch exceeds the reply bound whatever the probe lists.
 */
import t from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { encodeProbe, parseDiscoveryMessage } from '../../src/protocol/pccrd/codec.js';
import { DampingTable } from '../../src/discovery/damping.js';
import { join } from 'node:path';
import { request } from 'node:http';
import { fetchContentInfo } from '../../testkit/sim/evilpeer.js';
import { runCli } from '../helpers/cli.js';
import { Responder, MAX_REPLY_BYTES } from '../../src/discovery/probe-responder.js';
import { newStats, type Peer } from '../../src/discovery/runtime.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { nullLogger } from '../../src/util/log.js';
import { freeUdpPort, startDaemonChild } from '../daemon/daemon-child.js';
import { publishedOrigin, tmpDir } from './rig.js';

const held = Array.from({ length: 255 }, () => randomBytes(32));
const heldSet = new Set(held.map((h) => h.toString('hex')));
const lookup = (ids: Buffer[]) =>
  ids.map((id) => (heldSet.has(id.toString('hex')) ? { blockCount: 512, complete: true } : undefined));
let seq = 0;
const probe = (ids: Buffer[], version: 1 | 2 = 1) =>
  Buffer.from(
    encodeProbe({
      version,
      messageId: `urn:uuid:00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
      segmentIds: ids,
    }),
  );

function adminText(hostPort: string, path: string): Promise<string> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(Buffer.concat(parts).toString()));
    });
    req.on('error', reject);
    req.end();
  });
}

async function udp(host: string): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  return s;
}

t.test(
  'a daemon under 1,000 probes/s from one source keeps answering its neighbour, within its rate limit',
  async (t) => {
    const root = await tmpDir(t, 'flood');
    const data = randomBytes(300_000);
    const { base } = await publishedOrigin(t, root, { 'f.bin': data });
    const port = await freeUdpPort();
    const d = await startDaemonChild([
      '--state-dir',
      join(root, 'd'),
      '--listen',
      '127.0.0.2:0',
      '--interface',
      '127.0.0.1',
      '--admin',
      '127.0.0.1:0',
      '--discovery-port',
      String(port),
      '--mdns-port',
      String(await freeUdpPort()),
      '--no-presence',
      '--max-content-version',
      '1',
    ]);
    t.teardown(() => d.stop(3000));
    const got0 = await runCli(['get', `${base}/f.bin`, '-o', join(root, 'f.bin'), '--daemon', d.ready.admin], {
      timeoutMs: 30_000,
    });
    t.equal(got0.code, 0, got0.stderr);
    const segmentId = (await fetchContentInfo(`${base}/f.bin`, 1))!.segments[0]!.segmentId;

    const flooder = await udp('127.0.0.50');
    const neighbour = await udp('127.0.0.60');
    t.teardown(() => {
      flooder.close();
      neighbour.close();
    });
    const got = { flooder: 0, flooderBytes: 0, neighbour: 0 };
    flooder.on('message', (m) => {
      got.flooder++;
      got.flooderBytes += m.length;
    });
    neighbour.on('message', (m) => {
      if (parseDiscoveryMessage(m).kind === 'ProbeMatches') got.neighbour++;
    });

    const DURATION_MS = 2000;
    let sentBytes = 0;
    let sent = 0;
    let neighbourSent = 0;
    const start = Date.now();
    // 1,000 probes per second (sent in 10 ms ticks); the neighbour sends one every 100 ms.
    await new Promise<void>((resolve) => {
      let lastNeighbour = start;
      const timer = setInterval(() => {
        const now = Date.now();
        const due = Math.min(now - start, DURATION_MS);
        while (sent < due) {
          const p = probe([segmentId]);
          sentBytes += p.length;
          sent++;
          flooder.send(p, port, '127.0.0.1');
        }
        if (now - lastNeighbour >= 100 && now - start < DURATION_MS) {
          lastNeighbour = now;
          neighbourSent++;
          neighbour.send(probe([segmentId]), port, '127.0.0.1');
        }
        if (now - start >= DURATION_MS && sent >= DURATION_MS) {
          clearInterval(timer);
          resolve();
        }
      }, 10);
    });
    await new Promise((r) => setTimeout(r, 300)); // replies are delayed up to 65 ms
    const elapsed = (Date.now() - start) / 1000;
    const metrics = await adminText(d.ready.admin, '/metrics');
    t.comment(
      `neighbour: ${got.neighbour}/${neighbourSent} answered; flooder: ${sent} probes (${sentBytes} B) in ${elapsed.toFixed(1)} s → ${got.flooder} ProbeMatches (${got.flooderBytes} B), bytes out/in ${(got.flooderBytes / sentBytes).toFixed(4)}`,
    );
    t.equal(sent, DURATION_MS);
    // A datagram can still be lost in the kernel's receive queue on a loaded machine: allow one in ten.
    t.ok(
      got.neighbour >= Math.ceil(neighbourSent * 0.9),
      `the neighbour got ${got.neighbour} of ${neighbourSent} answers during the flood`,
    );
    const allowed = 40 + 20 * elapsed; // per-source limit: 20/s with a burst of 40
    t.ok(got.flooder <= allowed, `flooder answered ${got.flooder} times (limit ${allowed.toFixed(0)})`);
    t.ok(got.flooder > 0, 'the flooder is a local peer and does get some answers');
    t.ok(got.flooderBytes / sentBytes < 0.1, 'no amplification: bytes out are a small fraction of bytes in');
    const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    const matchesSent = metric('peerdist_probe_matches_sent_total');
    t.ok(
      matchesSent >= got.flooder + got.neighbour && matchesSent <= allowed + neighbourSent,
      `daemon metrics: ${matchesSent} ProbeMatches sent in all (${metric('peerdist_probes_received_total')} probes past the rate limits)`,
    );
    const d2 = await runCli(['status', '--daemon', d.ready.admin, '--json']);
    t.equal(d2.code, 0, 'status answers');
  },
);

function machine(localSubnets = [{ address: '192.168.10.1', netmask: '255.255.255.0' }]) {
  const sent: Array<{ d: Buffer; to: Peer }> = [];
  let now = 1_000_000;
  const timers: Array<() => void> = [];
  const stats = newStats();
  const r = new Responder(
    {
      lookup,
      xaddrs: () => ['192.168.10.1:7170'],
      endpoint: 'urn:uuid:me',
      instanceId: 1,
      nextMessageNumber: () => 1,
      isLocal: localAddressFilter(localSubnets),
      isOwnProbe: () => false,
      damping: new DampingTable(),
      send: (d, to) => sent.push({ d, to }),
    },
    {
      now: () => now,
      random: () => 0.5,
      timers: { set: (fn) => timers.push(fn), clear: () => undefined },
      newMessageId: () => `urn:uuid:r${++seq}`,
      logger: nullLogger,
      stats,
    },
  );
  return {
    r,
    sent,
    stats,
    tick: (ms: number) => {
      now += ms;
      for (const fn of timers.splice(0)) fn();
    },
  };
}

t.test('off-subnet sources never get a ProbeMatch (no reflection outside the LAN)', async (t) => {
  const m = machine();
  for (let k = 0; k < 1000; k++) {
    m.r.handle(probe([held[k % 255]!]), {
      address: ['8.8.8.8', '10.0.0.1', '192.168.11.5', '2001:db8::1', '::ffff:1.2.3.4'][k % 5]!,
      port: 3702,
    });
    m.tick(1);
  }
  t.equal(m.sent.length, 0, 'nothing sent to 1,000 off-subnet probes');
  t.equal(m.stats.dropped.notLocal, 1000);
  m.r.handle(probe([held[0]!]), { address: '192.168.10.77', port: 3702 });
  m.tick(100);
  t.equal(m.sent.length, 1, 'an on-subnet probe is answered');
  t.equal(m.sent[0]!.to.address, '192.168.10.77', 'unicast back to its source');
});

t.test('reply size is bounded whatever the probe lists', async (t) => {
  const m = machine();
  const cases: Array<[string, Buffer]> = [
    ['v1, 1 held ID', probe([held[0]!])],
    ['v1, 255 held IDs', probe(held)],
    ['v2, 1 held ID', probe([held[0]!], 2)],
    ['v2, 255 held IDs', probe(held, 2)],
  ];
  for (const [name, p] of cases) {
    m.r.handle(p, { address: '192.168.10.9', port: 3702 });
    m.tick(100);
    const reply = m.sent.pop();
    t.ok(reply, `${name}: answered`);
    if (!reply) continue;
    t.ok(reply.d.length <= MAX_REPLY_BYTES, `${name}: ${reply.d.length} B ≤ ${MAX_REPLY_BYTES}`);
    t.comment(
      `${name}: probe ${p.length} B → ProbeMatch ${reply.d.length} B (ratio ${(reply.d.length / p.length).toFixed(2)})`,
    );
    t.equal(parseDiscoveryMessage(reply.d).kind, 'ProbeMatches');
  }
});
