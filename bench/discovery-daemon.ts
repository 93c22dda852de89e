/**
 * CPU per probe inside a running daemon (issue 24 item 3): bench/discovery-cost.ts measures the
 * Prober and Responder state machines alone; this one measures whole daemons, sockets, parsing,
 * the engine's side and GC included. Three daemons on loopback; clients 1 and 2 download a 16 MiB
 * file (1 from the origin, 2 from 1) while a socket in the discovery group records their probes.
 * Then the recorded probes are sent again, each with a new MessageID, from 50 loopback addresses
 * in turn, at `--rate` a second: daemons 1 and 2 hold every segment and answer, daemon 3 holds
 * none and stays silent. Per daemon: (CPU over the sending - CPU over as long idle) / the probes
 * its own counters say it handled.
 *   npm run build && node dist/bench/discovery-daemon.js [--probes 2000] [--rate 200] [--json]
 */
import { randomUUID } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { benchArgs } from './args.js';
import { IPV4_GROUP } from '../src/discovery/discovery.js';
import { Cluster } from '../testkit/sim/harness.js';
import { LoopbackNetwork } from '../testkit/sim/loopback.js';
import { processCpuSeconds } from '../testkit/sim/proc.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    probes: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '200' },
    json: { type: 'boolean' },
  },
});
const N = Number(values.probes);
const RATE = Number(values.rate);
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bindTo = (s: Socket, port: number, address: string) => new Promise<void>((r) => s.bind(port, address, () => r()));

const c = await Cluster.create({
  network: new LoopbackNetwork({ base: 180 }),
  clients: 3,
  files: [{ name: 'f.bin', size: 16 * 2 ** 20 }],
});
const recorder = createSocket({ type: 'udp4', reuseAddr: true });
const senders: Socket[] = [];
try {
  const probes: string[] = [];
  let recording = true;
  await bindTo(recorder, c.discoveryPort, '0.0.0.0');
  recorder.addMembership(IPV4_GROUP, '127.0.0.1');
  recorder.on('message', (m) => {
    const s = m.toString('utf8');
    if (recording && s.includes('/discovery/Probe<')) probes.push(s);
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
    const msg = probes[k % probes.length]!.replace(/urn:uuid:[0-9a-f-]{36}/i, `urn:uuid:${randomUUID()}`);
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
    return {
      daemon: i + 1,
      holds: i < 2,
      received: n,
      dropped,
      cpu: b[i]! - a[i]!,
      idle: idle[i]!,
      msPerProbe: ms / n,
    };
  });
  if (values.json)
    process.stdout.write(`${JSON.stringify({ sent: N, rate: RATE, probeBytes: probes[0]!.length, rows }, null, 2)}\n`);
  else {
    process.stdout.write(`${N} probes of ${probes[0]!.length} bytes sent at ${RATE}/s\n`);
    for (const r of rows)
      process.stdout.write(
        `daemon ${r.daemon} (${r.holds ? 'holds the file, answers' : 'holds nothing'}): ${r.received} probes received (${r.dropped} of them dropped), ${r.cpu.toFixed(2)} CPU s (idle ${r.idle.toFixed(2)}): ${r.msPerProbe.toFixed(3)} ms per probe\n`,
      );
  }
} finally {
  for (const s of senders) s.close();
  recorder.close();
  await c.close();
}
