/** Our messages byte for byte against fixtures/discovery, and read the way iPXE reads them. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  encodeProbe,
  encodeProbeMatches,
  parseDiscoveryMessage,
  type Probe,
  type ProbeMatches,
} from '../../../src/protocol/pccrd/codec.js';
import { fixture } from '../../helpers/paths.js';

const a = Buffer.from('0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9', 'hex');
const b = Buffer.from('F0E1D2C3B4A5968778695A4B3C2D1E0FF0E1D2C3B4A5968778695A4B3C2D1E0F', 'hex');
const c = Buffer.alloc(32, 0x33);
const read = (name: string) => readFileSync(fixture('discovery', name), 'utf8').replace(/\n$/, '');

const v1Match = {
  version: 1 as const,
  messageId: 'urn:uuid:7a2d9e13-6b4f-4f0a-8c3e-1d5b7f9a2c03',
  relatesTo: 'urn:uuid:5f1c8a52-0d4b-4c8e-9a51-2f6e3b7c9d01',
  instanceId: 1764030000,
  messageNumber: 12,
  endpoint: 'urn:uuid:c4e8b1f2-3a5d-4e6f-9b0c-7d1e2f3a4b05',
  matches: [
    { segmentId: a, blockCount: 512 },
    { segmentId: b, blockCount: 42 },
  ],
  xaddrs: ['192.0.2.10:80'],
};

t.test('encoders reproduce the golden fixtures', async (t) => {
  t.equal(
    encodeProbe({ version: 1, messageId: 'urn:uuid:5f1c8a52-0d4b-4c8e-9a51-2f6e3b7c9d01', segmentIds: [a, b] }),
    read('probe-v1.xml'),
  );
  t.equal(
    encodeProbe({ version: 2, messageId: 'urn:uuid:5f1c8a52-0d4b-4c8e-9a51-2f6e3b7c9d02', segmentIds: [a, b, c] }),
    read('probe-v2.xml'),
  );
  t.equal(encodeProbeMatches(v1Match), read('probematches-v1.xml'));
  t.equal(
    encodeProbeMatches(
      {
        version: 2,
        messageId: 'urn:uuid:7a2d9e13-6b4f-4f0a-8c3e-1d5b7f9a2c04',
        relatesTo: 'urn:uuid:5f1c8a52-0d4b-4c8e-9a51-2f6e3b7c9d02',
        instanceId: 1764030000,
        messageNumber: 13,
        endpoint: 'urn:uuid:c4e8b1f2-3a5d-4e6f-9b0c-7d1e2f3a4b05',
        matches: [
          { segmentId: a, partial: true, complete: true },
          { segmentId: c, partial: true, complete: false },
        ],
        xaddrs: ['192.0.2.10:80', '[2001:db8::10]:80'],
        segmentAges: { units: 3, entries: [{ index: 0, age: 60000 }] },
      },
      [a, b, c],
    ),
    read('probematches-v2.xml'),
  );
});

t.test('golden fixtures parse back', async (t) => {
  const p2 = parseDiscoveryMessage(read('probe-v2.xml')) as Probe;
  t.same(p2.segmentIds, [a, b, c]);
  const m2 = parseDiscoveryMessage(read('probematches-v2.xml'), { probeSegments: () => [a, b, c] }) as ProbeMatches;
  t.same(
    m2.matches.map((m) => [m.segmentId.equals(a) ? 'a' : m.segmentId.equals(c) ? 'c' : '?', m.complete]),
    [
      ['a', true],
      ['c', false],
    ],
  );
  t.same(m2.xaddrs, ['192.0.2.10:80', '[2001:db8::10]:80']);
});

/** What iPXE's pccrd.c does, in spirit: substring search for the three tags, whitespace split. */
function ipxeRead(xml: string): { scopes: string[]; xaddrs: string[]; counts: number[] } {
  const between = (open: string, close: string) => {
    const s = xml.indexOf(open);
    const e = xml.indexOf(close, s);
    if (s < 0 || e < 0) throw new Error(`${open} not found`);
    return xml.slice(s + open.length, e);
  };
  const scopes = between('<wsd:Scopes>', '</wsd:Scopes>').trim().split(/\s+/);
  const xaddrs = between('<wsd:XAddrs>', '</wsd:XAddrs>').trim().split(/\s+/);
  const bc = between('<PeerDist:BlockCount>', '</PeerDist:BlockCount>').trim();
  const counts = scopes.map((_, k) => parseInt(bc.slice(8 * k, 8 * k + 8), 16));
  return { scopes, xaddrs, counts };
}

t.test('an iPXE-style substring reader understands our v1 ProbeMatches', async (t) => {
  const got = ipxeRead(read('probematches-v1.xml'));
  t.same(got, {
    scopes: [a.toString('hex').toUpperCase(), b.toString('hex').toUpperCase()],
    xaddrs: ['192.0.2.10:80'],
    counts: [512, 42],
  });
});

t.test('a foreign-style v1 ProbeMatches (other prefixes, default namespace, wrapped values) parses', async (t) => {
  const m = parseDiscoveryMessage(readFileSync(fixture('discovery', 'foreign-probematches-v1.xml'))) as ProbeMatches;
  t.equal(m.version, 1);
  t.equal(m.relatesTo, 'urn:uuid:5f1c8a52-0d4b-4c8e-9a51-2f6e3b7c9d01');
  t.equal(m.instanceId, 1700000001);
  t.equal(m.messageNumber, 3);
  t.same(m.xaddrs, ['192.0.2.20:8080'], 'the malformed XAddrs entry is skipped');
  t.same(
    m.matches.map((x) => [x.segmentId.toString('hex'), x.blockCount]),
    [
      [a.toString('hex'), 512],
      [b.toString('hex'), 42],
    ],
  );
});

/**
 * MS-PCCRD's own section 4 examples (fixtures/discovery/spec-*.xml; the README says what was fixed
 * to make them well-formed). 4.4 carries the v2 SegmentAges in <PeerDist:PeerDistData> (as do
 * 2.2.2.2 and 2.2.3.9): PeerDistDataV2 is only the wsd:Types name.
 */
t.test('MS-PCCRD 4.2 v2 Probe example parses', async (t) => {
  const p = parseDiscoveryMessage(read('spec-probe-v2.xml')) as Probe;
  t.equal(p.version, 2);
  t.equal(p.messageId, 'urn:uuid:91528b47-b96d-4e30-981f-308c0586926f');
  const hohodk = '23BE1A0100000000301D1A0100000000410041004400790067004D004D003100';
  t.same(
    p.segmentIds.map((x) => x.toString('hex').toUpperCase()),
    [hohodk, hohodk],
  );
});

t.test(
  'MS-PCCRD 4.3 v1 ProbeMatch example parses: one 64-byte ID wrapped in two lines, 42 blocks (issue 27.15)',
  async (t) => {
    const m = parseDiscoveryMessage(read('spec-probematches-v1.xml')) as ProbeMatches;
    t.equal(m.version, 1);
    t.equal(m.relatesTo, 'urn:uuid:91528b47-b96d-4e30-981f-308c0586926f');
    t.equal(m.instanceId, 1218765447);
    t.equal(m.messageNumber, 4);
    t.equal(m.endpoint, 'urn:uuid:87A89944-0230-43a5-AC4E-FAB1386C8E2C');
    t.same(m.xaddrs, ['157.59.141.183:54321']);
    t.same(
      m.matches.map((x) => [x.segmentId.toString('hex'), x.blockCount]),
      [['02' + '00'.repeat(63), 42]],
    );
  },
);

t.test(
  'MS-PCCRD 4.4 v2 ProbeMatch example parses: 40 complete segments, ages of segments 1 and 3 (issue 27.14)',
  async (t) => {
    const m = parseDiscoveryMessage(read('spec-probematches-v2.xml')) as ProbeMatches;
    t.equal(m.version, 2);
    t.equal(m.metadataVersion, 2);
    t.same(m.xaddrs, ['157.59.141.183:54321']);
    t.equal(m.availability?.length, 40);
    t.ok(m.availability?.every((a) => a.partial && a.complete));
    t.same(m.segmentAges, {
      units: 3,
      entries: [
        { index: 0, age: 60000 },
        { index: 2, age: 60000 },
      ],
    });
    // Read against a 40-segment probe, every probed segment is a complete match.
    const probed = Array.from({ length: 40 }, (_, k) => Buffer.alloc(32, k));
    const r = parseDiscoveryMessage(read('spec-probematches-v2.xml'), { probeSegments: () => probed }) as ProbeMatches;
    t.equal(r.matches.filter((x) => x.complete).length, 40);
  },
);

t.test('our v2 ProbeMatch has the shape of the MS-PCCRD 4.4 example: SegmentAges inside PeerDistData', async (t) => {
  const ours = read('probematches-v2.xml');
  t.match(ours, /<wsd:Types>PeerDist:PeerDistDataV2<\/wsd:Types>/);
  t.match(
    ours,
    /<PeerDist:PeerDistData><PeerDist:SegmentAges>[A-Za-z0-9+\/=]+<\/PeerDist:SegmentAges><\/PeerDist:PeerDistData>/,
  );
  t.notMatch(ours, /<PeerDist:PeerDistDataV2>/);
  const spec = read('spec-probematches-v2.xml').replace(/\s+/g, '');
  t.match(
    spec,
    /<PeerDist:PeerDistData><PeerDist:SegmentAges>AAEDAgBg6gACYOoA<\/PeerDist:SegmentAges><\/PeerDist:PeerDistData>/,
  );
});
