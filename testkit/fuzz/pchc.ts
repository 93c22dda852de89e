/** Fuzz target: MS-PCHC codec (request decode/re-encode, response decode, SEGMENT_INFO content information). */
import { isDeepStrictEqual } from 'node:util';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeSegmentInformation,
  parseSegmentInformation,
} from '../../src/protocol/pchc/codec.js';
import { HostedCacheParseError } from '../../src/protocol/pchc/errors.js';
import { segmentIdOf } from '../../src/protocol/pccrc/keys.js';
import { OfferHandler } from '../../src/hostedcache/offers.js';
import type { SegmentMeta } from '../../src/cache/meta.js';
import type { IncomingMessage } from 'node:http';
import { encodeRequest as encodePccrr } from '../../src/protocol/pccrr/codec.js';
import {
  CROWD_HEADER,
  CROWD_REQUEST_VALUE,
  MAX_CROWD_ADDRESSES,
  formatCrowd,
  parseCrowd,
} from '../../src/protocol/pchc/crowd.js';
import { CrowdTracker, crowdHeaders } from '../../src/hostedcache/crowd.js';
import { Rng } from './lib.js';
import {
  fixturesDir,
  FuzzFailure,
  fromSeeds,
  hexValues,
  readJson,
  typed,
  type FuzzTarget,
  type Outcome,
} from './common.js';

export function pchcSeeds(): Buffer[] {
  const seeds = hexValues(readJson(fixturesDir('pchc', 'vectors.json'))).filter((b) => b.length >= 16);
  const rng = new Rng(0x9c);
  seeds.push(encodeRequest({ type: 'INITIAL_OFFER', port: 7170, hash: rng.bytes(64) }));
  seeds.push(
    encodeRequest({
      type: 'BATCHED_OFFER',
      port: 1,
      descriptors: Array.from({ length: 5 }, (_, k) => ({
        blockSize: 1000 + k,
        segmentSize: 1000 + k,
        contentTag: rng.bytes(1 + k),
        hashAlgorithm: k,
        segmentId: rng.bytes(32),
      })),
    }),
  );
  return seeds;
}

export function pchcCodecTarget(): FuzzTarget {
  const seeds = pchcSeeds();
  return {
    name: 'pchc-codec',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run(input): Outcome {
      let outcome: Outcome = 'rejected';
      try {
        const m = decodeRequest(input);
        const again = decodeRequest(encodeRequest(m));
        if (!isDeepStrictEqual(again, m)) throw new FuzzFailure(`${m.type} re-encodes differently`);
        outcome = 'accepted';
        if (m.type === 'SEGMENT_INFO') {
          try {
            const s = parseSegmentInformation(m.segmentInformation);
            if (!s.segmentId.equals(segmentIdOf(1, s.kp, s.hod)))
              throw new FuzzFailure('segment ID is not HMAC(Kp, HoD || C)');
            const back = encodeSegmentInformation(s);
            if (!isDeepStrictEqual(parseSegmentInformation(back), s))
              throw new FuzzFailure('SegmentInformation re-encodes differently');
          } catch (e) {
            typed(e, HostedCacheParseError);
          }
        }
      } catch (e) {
        typed(e, HostedCacheParseError);
      }
      try {
        decodeResponse(input.subarray(0, 5));
      } catch (e) {
        typed(e, HostedCacheParseError);
      }
      try {
        parseSegmentInformation(input);
      } catch (e) {
        typed(e, HostedCacheParseError);
      }
      return outcome;
    },
  };
}

/** The hosted cache's offer handler: any body ends in a response (OK / INTERESTED) or a typed drop, never a throw. */
export function pchcOffersTarget(): FuzzTarget {
  const seeds = pchcSeeds();
  const known = new Map<string, SegmentMeta>();
  const handler = new OfferHandler({
    store: { getSegment: (id) => known.get(id.toString('hex')), isComplete: () => false },
    pull: (task) => {
      if (!/^127\.0\.0\.1:\d+$/.test(task.peer))
        throw new FuzzFailure(`pull from ${task.peer}, not the offering address`);
      if (task.kind === 'v1') known.set(task.meta.segmentId.toString('hex'), task.meta);
      return 'queued';
    },
  });
  return {
    name: 'pchc-offers',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run(input): Outcome {
      const r = handler.handle(input, '::ffff:127.0.0.1');
      if (!r.ok) return typed(r.error, HostedCacheParseError);
      if (r.busy) throw new FuzzFailure('busy although every pull was queued');
      if (decodeResponse(r.body) !== r.code) throw new FuzzFailure('response body does not match its code');
      return 'accepted';
    },
  };
}

/**
 * The PeerDist-Crowd header (protocol/pchc.md, "Crowds across subnets"): any value parses to a
 * list of at most 32 IP addresses that formats back to itself, or to undefined; never a throw.
 * The hosted cache's hook takes any marked body: no throw, and a header it sends parses back.
 */
export function pchcCrowdTarget(): FuzzTarget {
  const seeds = ['', '10.0.2.11', '10.0.2.11 10.0.3.11', 'fd00::1 ::ffff:10.1.1.1', '1 2 3', '10.0.0.1,10.0.0.2'].map(
    (v) => Buffer.from(v, 'latin1'),
  );
  const rng = new Rng(0xc4);
  const bodies = [
    encodePccrr({
      type: 'GETSEGLIST',
      cryptoAlgo: 1,
      requestId: rng.bytes(16),
      segmentIds: [rng.bytes(32), rng.bytes(32)],
    }),
    encodePccrr({ type: 'GETBLKLIST', cryptoAlgo: 1, segmentId: rng.bytes(32), ranges: [[0, 4]] }),
    encodePccrr({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: rng.bytes(32), ranges: [[1, 1]] }),
  ];
  const { hook } = crowdHeaders(new CrowdTracker(), () => 0);
  let n = 0;
  return {
    name: 'pchc-crowd',
    generate: (r) => (r.bool(0.5) ? fromSeeds(r, seeds) : Buffer.concat([Buffer.from([0]), fromSeeds(r, bodies)])),
    run(input): Outcome {
      if (input[0] === 0) {
        const from = `10.9.${(n >> 8) & 255}.${n++ & 255}`;
        const req = { headers: { [CROWD_HEADER]: CROWD_REQUEST_VALUE }, socket: { remoteAddress: from } };
        const h = hook(req as unknown as IncomingMessage, input.subarray(1));
        if (h === undefined) return 'rejected';
        if (parseCrowd(h[CROWD_HEADER]) === undefined)
          throw new FuzzFailure(`hook sent an unparsable header ${h[CROWD_HEADER]}`);
        return 'accepted';
      }
      const v = input.toString('latin1');
      const list = parseCrowd(v);
      if (list === undefined) return 'rejected';
      if (list.length > MAX_CROWD_ADDRESSES) throw new FuzzFailure(`${list.length} addresses`);
      if (!isDeepStrictEqual(parseCrowd(formatCrowd(list)), list)) throw new FuzzFailure(`${v} does not format back`);
      return 'accepted';
    },
  };
}
