/**
 * Regression (found by testkit/fuzz/main.ts, target pccrd-responder): a Probe whose MessageID held one of
 * < > & " ' (legal XML once escaped) was accepted by the parser, and the responder then threw a
 * RangeError building the ProbeMatch (its RelatesTo cannot carry such a URI). Such IDs are now a
 * typed DiscoveryParseError, and the responder counts the datagram as malformed.
 */
import t from 'tap';
import { encodeProbe, parseDiscoveryMessage } from '../../src/protocol/pccrd/codec.js';
import { DiscoveryParseError } from '../../src/protocol/pccrd/errors.js';
import { DampingTable } from '../../src/discovery/damping.js';
import { Responder } from '../../src/discovery/probe-responder.js';
import { newStats } from '../../src/discovery/runtime.js';
import { nullLogger } from '../../src/util/log.js';

const id = Buffer.alloc(32, 7);
const valid = encodeProbe({ version: 1, messageId: 'urn:uuid:11111111-2222-4333-8444-555555555555', segmentIds: [id] });

for (const bad of ['urn:a&amp;b', 'urn:a&gt;b', 'urn:&quot;', 'urn:&apos;x', 'urn:x>y', '&lt;']) {
  const probe = valid.replace('urn:uuid:11111111-2222-4333-8444-555555555555', bad);
  t.test(`MessageID ${bad}`, async (t) => {
    t.throws(() => parseDiscoveryMessage(probe), DiscoveryParseError, 'typed rejection');
    const sent: Buffer[] = [];
    const stats = newStats();
    const timers: Array<() => void> = [];
    const r = new Responder(
      {
        lookup: (ids) => ids.map(() => ({ blockCount: 1, complete: true })),
        xaddrs: () => ['127.0.0.2:7170'],
        endpoint: 'urn:uuid:me',
        instanceId: 1,
        nextMessageNumber: () => 1,
        isLocal: () => true,
        isOwnProbe: () => false,
        damping: new DampingTable(),
        send: (d) => sent.push(d),
      },
      {
        now: () => 1000,
        random: () => 0.5,
        timers: { set: (fn) => timers.push(fn), clear: () => undefined },
        newMessageId: () => 'urn:uuid:r',
        logger: nullLogger,
        stats,
      },
    );
    t.doesNotThrow(() => r.handle(Buffer.from(probe), { address: '127.0.0.1', port: 3702 }));
    for (const fn of timers) fn();
    t.equal(stats.dropped.malformed, 1, 'counted as malformed');
    t.equal(sent.length, 0, 'no reply');
  });
}

t.test('a well-formed probe is still answered', async (t) => {
  t.equal(
    (parseDiscoveryMessage(valid) as { messageId: string }).messageId,
    'urn:uuid:11111111-2222-4333-8444-555555555555',
  );
});
