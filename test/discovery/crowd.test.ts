/**
 * Discovery that scales with the crowd (issue 25): a daemon among 24 answering peers probes less
 * often than a daemon with one, and what it no longer asks for comes as follow-ups, which the
 * responders keep for the longer repeat period. Fake clock, fake transport.
 */
import t from 'tap';
import { Prober, CROWD_REPEAT_CAP_MS } from '../../src/discovery/prober.js';
import { DampingTable } from '../../src/discovery/damping.js';
import { encodeProbeMatches, parseDiscoveryMessage, type Probe } from '../../src/protocol/pccrd/codec.js';
import { localAddressFilter } from '../../src/discovery/subnet.js';
import { FakeClock, fakeRuntime } from './fakes.js';

const seg = (n: number) => Buffer.alloc(32, n);
const OWN = 'urn:uuid:00000000-1111-4000-8000-000000000000';

/** One prober watching 4 segments for `seconds`, every probe answered by `answerers` distinct peers. */
function probesSent(answerers: number, seconds: number) {
  const clock = new FakeClock();
  const rt = fakeRuntime(clock, () => 0.5);
  const sent: Probe[] = [];
  let n = 0;
  const prober: Prober = new Prober(
    {
      send: (d) => {
        const probe = parseDiscoveryMessage(d) as Probe;
        sent.push(probe);
        // Each peer answers a moment later (unicast ProbeMatches for the segments it holds).
        clock.set(() => {
          for (let k = 1; k <= answerers; k++)
            prober.handle(
              Buffer.from(
                encodeProbeMatches(
                  {
                    version: 2,
                    messageId: `urn:uuid:99999999-0000-4000-8000-${String(++n).padStart(12, '0')}`,
                    relatesTo: probe.messageId,
                    instanceId: 1,
                    messageNumber: n,
                    endpoint: `urn:uuid:eeeeeeee-0000-4000-8000-${String(k).padStart(12, '0')}`,
                    matches: [{ segmentId: seg(1), partial: true, complete: false }],
                    xaddrs: [`10.0.0.${k + 10}:80`],
                  },
                  probe.segmentIds,
                ),
              ),
              { address: `10.0.0.${k + 10}`, port: 3702 },
            );
        }, 20);
      },
      isLocal: localAddressFilter([{ address: '10.0.0.1', netmask: '255.255.255.0' }]),
      ownEndpoint: OWN,
      damping: new DampingTable(),
    },
    rt,
  );
  const w = prober.watch([seg(1), seg(2), seg(3), seg(4)], 2);
  clock.advance(seconds * 1000);
  const ttl = prober.followUpTtlMs;
  w.close();
  return { probes: sent.length, ttl, peers: prober.crowdFactor(clock.t) };
}

t.test('a prober among many answering peers repeats its probe less often; alone as before', async (t) => {
  const alone = probesSent(1, 60);
  const crowd = probesSent(24, 60);
  // Alone: the first probe, its 2 retransmits, then one every 1.5 s (random 0.5 of 1-2 s).
  t.equal(alone.probes, 3 + 39, `one answering peer: ${alone.probes} probes in 60 s (unchanged)`);
  t.equal(alone.ttl, 3000, 'follow-ups remembered 3 s, as before');
  // 24 answering peers: 3 x the period (4.5 s, the cap), so about a third of the probes.
  t.ok(crowd.probes <= 3 + Math.ceil(60_000 / 4000), `24 answering peers: ${crowd.probes} probes in 60 s`);
  t.ok(crowd.probes >= 3 + Math.floor(60_000 / CROWD_REPEAT_CAP_MS) - 1, 'but still probing');
  t.ok(crowd.ttl > CROWD_REPEAT_CAP_MS, `follow-ups remembered ${crowd.ttl} ms: longer than the crowd's repeat period`);
});
