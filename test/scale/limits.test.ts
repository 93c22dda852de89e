/**
 * The scale model's discovery through the daemon's real limits (testkit/scale/limits.ts, sim.ts
 * `limits`): crowd members and holdings reach a client only through the probes its responder
 * accepts, the answers its prober takes in and the peers DiscoveryFeed admits. Simulated time.
 */
import t from 'tap';
import { REAL_LIMITS, probeRate, type RealLimits } from '../../testkit/scale/limits.js';
import { DAEMON_DISCOVERY, runScale, type ScaleConfig } from '../../testkit/scale/sim.js';

const MiB = 2 ** 20;
const base: ScaleConfig = {
  clients: 12,
  subnets: 1,
  hostedCaches: 0,
  fileBytes: 64 * MiB,
  wanBps: 50e6,
  lanBps: 1e9,
  arrival: { kind: 'flash', jitterMs: 500 },
  seed: 3,
  limits: REAL_LIMITS,
};

t.test('a small crowd: every probe gets through, the crowd shares, nothing is capped', async (t) => {
  const r = runScale(base);
  t.equal(r.completed, base.clients);
  const l = r.limits!;
  // 12 probers of 4 probes' worth of segments each: well under a responder's 200/s.
  t.equal(l.minAcceptedShare, 1, 'every responder accepted every probe');
  t.equal(l.probesDropped, 0);
  t.ok(l.probesSent > 0 && l.probesAccepted === l.probesSent * (base.clients - 1), `${l.probesAccepted} accepted`);
  t.equal(l.capped, 0, 'no sighting over the peer cap');
  t.ok(l.admittedMax <= base.clients - 1);
  t.ok(r.originCopies < 1.3, `origin copies ${r.originCopies}`);
  t.ok(r.bytesBySource.peer > (base.clients - 2) * base.fileBytes, 'most bytes came from peers');
  t.equal(r.config.view, 0, 'no view: the limits decide what a client hears');
});

t.test("a responder's global limit drops probes in proportion; the caps bound what is admitted", async (t) => {
  const tight: RealLimits = { ...REAL_LIMITS, globalRate: 10, peerCap: 2, crowdPeerCap: 3 };
  const r = runScale({ ...base, clients: 30, limits: tight });
  t.equal(r.completed, 30, 'every client still completes');
  const l = r.limits!;
  t.ok(l.minAcceptedShare < 0.2, `share accepted ${l.minAcceptedShare}`);
  t.ok(l.probesDropped > l.probesAccepted, `${l.probesDropped} dropped, ${l.probesAccepted} accepted`);
  t.ok(l.admittedMax <= 3, `at most 3 peers admitted (${l.admittedMax})`);
  t.ok(l.capped > 0, `${l.capped} sightings capped`);
  const free = runScale({ ...base, clients: 30 });
  t.ok(free.limits!.admittedMax > 3, 'with the real caps more peers are admitted');
});

t.test('the prober inbound limit and the follow-up rate count what they drop', async (t) => {
  const r = runScale({
    ...base,
    clients: 30,
    limits: { ...REAL_LIMITS, inboundRate: 5, inboundBurst: 5, followUpRate: 2, followUpBurst: 2 },
  });
  t.equal(r.completed, 30);
  t.ok(r.limits!.matchesDropped > 0, `${r.limits!.matchesDropped} ProbeMatches dropped at the prober`);
  t.ok(r.limits!.followUpsDropped > 0, `${r.limits!.followUpsDropped} follow-ups over the rate`);
});

t.test('datagrams cost CPU only with costs and a CPU model', async (t) => {
  const cpu = { receiveSecPerGiB: 18, serveSecPerGiB: 12 };
  const free = runScale({ ...base, cpu });
  const costly = runScale({ ...base, cpu, limits: { ...REAL_LIMITS, costs: DAEMON_DISCOVERY } });
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  t.ok(
    sum(costly.cpu!.daemonSeconds) > sum(free.cpu!.daemonSeconds),
    `${sum(costly.cpu!.daemonSeconds)} s with datagram costs, ${sum(free.cpu!.daemonSeconds)} s without`,
  );
});

t.test('probe rate: the pacer bounds a big watch; few chunks go at their repeat period', async (t) => {
  t.equal(probeRate(REAL_LIMITS, 64, 1), 15, '64 probes a cycle: 15/s, the pacer');
  t.equal(probeRate(REAL_LIMITS, 3, 1), 2, '3 probes every 1.5 s');
  t.equal(probeRate(REAL_LIMITS, 3, 3), 3 / 4.5, 'crowd factor 3: every 4.5 s (the cap)');
});

t.test('limits and the per-datagram discovery are one model at a time', async (t) => {
  t.throws(() => runScale({ ...base, discovery: DAEMON_DISCOVERY }), RangeError);
});
