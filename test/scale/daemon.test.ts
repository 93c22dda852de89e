/**
 * The scale model's daemon discovery and peer timeouts (issue 24 item 3, testkit/scale/sim.ts
 * `discovery`, `peerTimeouts`): holdings are learnt only from ProbeMatches, the datagrams cost
 * the daemons CPU, a served block later than the first-byte timeout fails and goes elsewhere.
 * Times are simulated, not measured.
 */
import t from 'tap';
import { type DaemonDiscovery, runScale, type ScaleConfig } from '../../testkit/scale/sim.js';

const MiB = 2 ** 20;
const FREE: DaemonDiscovery = { probeSentMs: 0, probeHandledMs: 0, matchHandledMs: 0, followUpMs: 0 };
const base: ScaleConfig = {
  clients: 6,
  subnets: 1,
  hostedCaches: 0,
  fileBytes: 8 * MiB,
  wanBps: 50e6,
  lanBps: 1e9,
  arrival: { kind: 'flash', jitterMs: 100 },
  seed: 5,
};

t.test("one after another: the second learns the first one's blocks from its ProbeMatch", async (t) => {
  const r = runScale({ ...base, clients: 2, arrival: { kind: 'sequential' }, discovery: FREE });
  t.equal(r.completed, 2);
  t.equal(r.bytesBySource.origin, base.fileBytes, 'the origin sent the file once');
  t.equal(r.bytesBySource.peer, base.fileBytes, 'the second client took all of it from the first');
  // The first client alone probes from its start to its end; the second one probe at least, each
  // handled by the other, and one answer.
  t.ok(r.discoveryDatagrams >= 5, `${r.discoveryDatagrams} datagrams`);
});

t.test('a flash crowd still shares through probes and follow-ups; datagrams cost CPU', async (t) => {
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12, cores: 2 };
  const free = runScale({ ...base, cpu, discovery: FREE });
  t.equal(free.completed, base.clients);
  t.ok(free.originCopies < 1.2, `origin copies ${free.originCopies}`);
  t.ok(free.bytesBySource.peer > (base.clients - 2) * base.fileBytes, 'most bytes from peers');
  const costly: DaemonDiscovery = { probeSentMs: 2, probeHandledMs: 5, matchHandledMs: 5, followUpMs: 2 };
  const slow = runScale({ ...base, cpu, discovery: costly });
  t.equal(slow.completed, base.clients);
  // The same kind of traffic: more datagrams' worth of CPU makes the crowd finish later.
  t.ok(
    slow.simulatedMs > free.simulatedMs,
    `with datagram costs done at ${slow.simulatedMs} ms, free at ${free.simulatedMs} ms`,
  );
  const without = runScale({ ...base, cpu });
  t.equal(without.discoveryDatagrams, 0, 'without the option: no datagrams, the tick instead');
});

t.test('a peer serving later than the first-byte timeout fails; its blocks go elsewhere', async (t) => {
  // Sealing a 64 KiB block takes 2.4 s of the sender's CPU: every peer request times out.
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 40_000 };
  const cfg: ScaleConfig = { ...base, clients: 3, fileBytes: 2 * MiB, cpu, discovery: FREE };
  const patient = runScale(cfg);
  t.equal(patient.peerTimeouts, 0, 'without peerTimeouts nothing times out');
  const r = runScale({ ...cfg, peerTimeouts: true });
  t.equal(r.completed, 3, 'every client completed');
  t.ok(r.peerTimeouts > 0, `${r.peerTimeouts} peer requests timed out`);
  t.equal(r.bytesBySource.peer, 0, 'no block came from a peer');
  t.ok(r.originCopies > 2.9, `the origin sent ${r.originCopies} copies`);
  t.ok(patient.bytesBySource.peer > 0, 'the patient crowd did take blocks from peers');
});
