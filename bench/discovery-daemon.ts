/**
 * CPU per probe and per ProbeMatch inside a running daemon (issue 24 item 3):
 * bench/discovery-cost.ts measures the Prober and Responder state machines alone; this one
 * measures whole daemons, sockets, parsing, the engine's side and GC included. Three daemons on
 * loopback; clients 1 and 2 download a 16 MiB file (1 from the origin, 2 from 1) while a socket in
 * the discovery group records their probes.
 *
 * Probes: the recorded probes are sent again, each with a new MessageID, from 50 loopback
 * addresses in turn, at `--rate` a second: daemons 1 and 2 hold every segment and answer, daemon
 * 3 holds none and stays silent. Per daemon: (CPU over the sending - CPU over as long idle) / the
 * probes its own counters say it handled.
 *
 * ProbeMatches: daemon 3 then downloads a second 16 MiB file nobody holds; once its first probe
 * for it is seen the origin is stopped (SIGSTOP), so the download waits with its watches open and
 * the daemon keeps probing. The 50 addresses answer its latest probe, in turn, at `--match-rate` a
 * second, with v2 ProbeMatches (each its own endpoint; every other segment complete, the rest
 * absent; XAddrs naming a closed port of the sender, so the engine's side runs but fetches
 * nothing). Per ProbeMatch: (CPU over the sending - CPU over as long idle) / matchesReceived.
 *   npm run build && node dist/bench/discovery-daemon.js [--probes 2000] [--rate 200]
 *     [--matches 1500] [--match-rate 150] [--floor] [--json]
 */
import { randomUUID } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { benchArgs } from './args.js';
import { IPV4_GROUP } from '../src/discovery/discovery.js';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { processCpuSeconds } from '../testkit/sim/proc.js';
import { encodeProbeMatches, parseDiscoveryMessage, type Probe } from '../src/protocol/pccrd/codec.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    probes: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '200' },
    matches: { type: 'string', default: '1500' },
    'match-rate': { type: 'string', default: '150' },
    floor: { type: 'boolean' },
    json: { type: 'boolean' },
  },
});
const N = Number(values.probes);
const RATE = Number(values.rate);
const M = Number(values.matches);
const MATCH_RATE = Number(values['match-rate']);
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bindTo = (s: Socket, port: number, address: string) => new Promise<void>((r) => s.bind(port, address, () => r()));

const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 180 }),
  clients: 3,
  files: [
    { name: 'f.bin', size: 16 * 2 ** 20 },
    { name: 'g.bin', size: 16 * 2 ** 20 },
  ],
});
let originStopped = false;
const recorder = createSocket({ type: 'udp4', reuseAddr: true });
const senders: Socket[] = [];
try {
  const probes: string[] = [];
  let recording = true;
  /** Daemon 3's probes for g.bin (phase 2), the latest last. */
  let watching = false;
  const watched: Array<{ probe: Probe; from: { address: string; port: number } }> = [];
  let firstWatched: () => void = () => undefined;
  await bindTo(recorder, c.discoveryPort, '0.0.0.0');
  recorder.addMembership(IPV4_GROUP, '127.0.0.1');
  recorder.on('message', (m, rinfo) => {
    const s = m.toString('utf8');
    if (!s.includes('/discovery/Probe<')) return;
    if (recording) probes.push(s);
    if (watching) {
      const p = parseDiscoveryMessage(m);
      if (p.kind !== 'Probe') return;
      watched.push({ probe: p, from: { address: rinfo.address, port: rinfo.port } });
      firstWatched();
    }
  });
  await c.startDaemons();
  for (const i of [1, 2])
    if (!(await c.download(i, 'f.bin', 300_000)).correct) throw new Error(`client ${i} download wrong`);
  recording = false;
  if (probes.length === 0) throw new Error('no probe recorded');
  for (let i = 0; i < 50; i++) {
    const s = createSocket({ type: 'udp4' });
    await bindTo(s, 0, `127.0.0.${10 + i}`);
    s.setMulticastInterface('127.0.0.1');
    s.setMulticastLoopback(true);
    s.setMulticastTTL(1);
    senders.push(s);
  }
  const pids = c.daemons.map((d) => d!.pid);
  const cpu = () => Promise.all(pids.map(processCpuSeconds));
  /** Probes each daemon read (probesReceived), and of them dropped (any reason). */
  const handled = async () =>
    Promise.all(
      [1, 2, 3].map(async (i) => {
        const d = (await c.daemonStatus(i)).discovery as { probesReceived: number; dropped: Record<string, number> };
        return { handled: d.probesReceived, dropped: Object.values(d.dropped).reduce((x, y) => x + y, 0) };
      }),
    );
  const span = (N / RATE) * 1000 + 2000;
  let a = await cpu();
  await wait(span);
  let b = await cpu();
  const idle = b.map((x, i) => x - a[i]!);
  const h0 = await handled();
  a = await cpu();
  const t0 = performance.now();
  for (let k = 0; k < N; k++) {
    const real = probes[k % probes.length]!.replace(/urn:uuid:[0-9a-f-]{36}/i, `urn:uuid:${randomUUID()}`);
    // --floor: as many bytes that are not XML (dropped by the parser at once): the daemon's cost per
    // datagram outside discovery's work (receiving, the drop counter), to set the figures against.
    const msg = values.floor ? '#'.repeat(real.length) : real;
    senders[k % senders.length]!.send(msg, c.discoveryPort, IPV4_GROUP);
    const d = t0 + ((k + 1) * 1000) / RATE - performance.now();
    if (d > 0) await wait(d);
  }
  await wait(2000);
  b = await cpu();
  const h1 = await handled();
  const rows = pids.map((_, i) => {
    // Every probe read counts in probesReceived, also those then dropped (notHeld, duplicate).
    const n = h1[i]!.handled - h0[i]!.handled;
    const dropped = h1[i]!.dropped - h0[i]!.dropped;
    const ms = (b[i]! - a[i]! - idle[i]!) * 1000;
    // --floor: every datagram is dropped unread; per datagram then.
    const per = values.floor ? dropped : n;
    return {
      daemon: i + 1,
      holds: i < 2,
      received: n,
      dropped,
      cpu: b[i]! - a[i]!,
      idle: idle[i]!,
      msPerProbe: ms / per,
    };
  });

  // Phase 2: ProbeMatches for daemon 3's open watch.
  let matchRow:
    | {
        daemon: number;
        sent: number;
        rate: number;
        matchBytes: number;
        received: number;
        dropped: number;
        probesFromDaemon: number;
        cpu: number;
        idle: number;
        msPerMatch: number;
      }
    | undefined;
  if (M > 0) {
    watching = true;
    const seen = new Promise<void>((r) => {
      firstWatched = r;
    });
    const get = c.getRaw(3, 'g.bin', 600_000);
    await seen;
    process.kill(c.originPid, 'SIGSTOP');
    originStopped = true;
    const pid3 = pids[2]!;
    const mstat = async () => {
      const d = (await c.daemonStatus(3)).discovery as { matchesReceived: number; dropped: Record<string, number> };
      return { received: d.matchesReceived, dropped: Object.values(d.dropped).reduce((x, y) => x + y, 0) };
    };
    const mspan = (M / MATCH_RATE) * 1000 + 2000;
    // The download's own work (its first origin requests, the probes' first replies) settles first.
    await wait(3000);
    let ma = await processCpuSeconds(pid3);
    await wait(mspan);
    let mb = await processCpuSeconds(pid3);
    const midle = mb - ma;
    const m0 = await mstat();
    const endpoints = senders.map(() => `urn:uuid:${randomUUID()}`);
    const ports = senders.map((s) => s.address().port);
    ma = await processCpuSeconds(pid3);
    const t1 = performance.now();
    let bytes = 0;
    for (let k = 0; k < M; k++) {
      const { probe, from } = watched[watched.length - 1]!;
      const j = k % senders.length;
      const held = probe.segmentIds.filter((_, x) => (x + k) % 2 === 0);
      const pm = Buffer.from(
        encodeProbeMatches(
          {
            version: 2,
            messageId: `urn:uuid:${randomUUID()}`,
            relatesTo: probe.messageId,
            instanceId: 1_700_000_000,
            messageNumber: k + 1,
            endpoint: endpoints[j]!,
            xaddrs: [`127.0.0.${10 + j}:${ports[j]}`],
            matches: held.map((segmentId) => ({ segmentId, partial: true, complete: true })),
          },
          probe.segmentIds,
        ),
      );
      bytes = pm.length;
      senders[j]!.send(pm, from.port, from.address);
      const d = t1 + ((k + 1) * 1000) / MATCH_RATE - performance.now();
      if (d > 0) await wait(d);
    }
    await wait(2000);
    mb = await processCpuSeconds(pid3);
    const m1 = await mstat();
    const n = m1.received - m0.received;
    matchRow = {
      daemon: 3,
      sent: M,
      rate: MATCH_RATE,
      matchBytes: bytes,
      received: n,
      dropped: m1.dropped - m0.dropped,
      probesFromDaemon: watched.length,
      cpu: mb - ma,
      idle: midle,
      msPerMatch: ((mb - ma - midle) * 1000) / n,
    };
    process.kill(c.originPid, 'SIGCONT');
    originStopped = false;
    void get.catch(() => undefined);
  }
  if (values.json)
    process.stdout.write(
      `${JSON.stringify({ sent: N, rate: RATE, probeBytes: probes[0]!.length, rows, matches: matchRow }, null, 2)}\n`,
    );
  else {
    process.stdout.write(`${N} probes of ${probes[0]!.length} bytes sent at ${RATE}/s\n`);
    for (const r of rows)
      process.stdout.write(
        `daemon ${r.daemon} (${r.holds ? 'holds the file, answers' : 'holds nothing'}): ${r.received} probes received (${r.dropped} of them dropped), ${r.cpu.toFixed(2)} CPU s (idle ${r.idle.toFixed(2)}): ${r.msPerProbe.toFixed(3)} ms per probe\n`,
      );
    if (matchRow)
      process.stdout.write(
        `daemon 3 (watching a file): ${matchRow.received} of ${M} ProbeMatches of ${matchRow.matchBytes} bytes at ${MATCH_RATE}/s received (${matchRow.dropped} dropped), ${matchRow.cpu.toFixed(2)} CPU s (idle ${matchRow.idle.toFixed(2)}): ${matchRow.msPerMatch.toFixed(3)} ms per ProbeMatch\n`,
      );
  }
} finally {
  if (originStopped) process.kill(c.originPid, 'SIGCONT');
  for (const s of senders) s.close();
  recorder.close();
  await c.close();
}
