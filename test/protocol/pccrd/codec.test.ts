import t from 'tap';
import {
  encodeProbe,
  encodeProbeMatches,
  parseDiscoveryMessage,
  encodeV2Scopes,
  decodeV2Scopes,
  encodeAvailability,
  decodeAvailability,
  parseXAddr,
  formatXAddr,
  NS,
  type Probe,
  type ProbeMatches,
} from '../../../src/protocol/pccrd/codec.js';
import { encodeSegmentAges, decodeSegmentAges, ageToMs, msToAge } from '../../../src/protocol/pccrd/segment-ages.js';
import { DiscoveryParseError } from '../../../src/protocol/pccrd/errors.js';
import { ParseError } from '../../../src/util/errors.js';
import { decodeBase64 } from '../../../src/protocol/pccrd/values.js';

const V2_ONE_B64 = 'ACABKQEaAQAAAAAwHRoBAAAAAEEAQQBEAHkAZwBNAE0AMQA=';
const V2_ONE_HEX = '00200129011a0100000000301d1a0100000000410041004400790067004d004d003100';
const V2_TWO_B64 = 'ACACI74aAQAAAAAwHRoBAAAAAEEAQQBEAHkAZwBNAE0AMQAjvhoBAAAAADAdGgEAAAAAQQBBAEQAeQBnAE0ATQAxAA==';
const V2_TWO_ID = '23BE1A0100000000301D1A0100000000410041004400790067004D004D003100';

const id = (fill: number, len = 32) => Buffer.alloc(len, fill);
const MID = 'urn:uuid:11111111-2222-4333-8444-555555555555';
const RID = 'urn:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa';
const EP = 'urn:uuid:bbbbbbbb-cccc-4ddd-8eee-ffffffffffff';

t.test('v2 probe scopes match the MS-PCCRD examples (vectors.md 4)', async (t) => {
  const one = Buffer.from(V2_ONE_HEX, 'hex').subarray(3);
  t.equal(encodeV2Scopes([one]), V2_ONE_B64);
  t.same(
    decodeV2Scopes(V2_ONE_B64).map((b) => b.toString('hex')),
    [one.toString('hex')],
  );
  const two = Buffer.from(V2_TWO_ID, 'hex');
  t.equal(encodeV2Scopes([two, two]), V2_TWO_B64);
  const dec = decodeV2Scopes(V2_TWO_B64);
  t.equal(dec.length, 2);
  t.equal(dec[1]!.toString('hex').toUpperCase(), V2_TWO_ID);
  // The example scopes wrap across lines in the spec; whitespace inside must be tolerated.
  t.equal(decodeV2Scopes(V2_TWO_B64.slice(0, 40) + '\r\n  ' + V2_TWO_B64.slice(40)).length, 2);
});

t.test('v2 availability array: spec example and MSB-first bit order', async (t) => {
  const all = Array.from({ length: 40 }, () => ({ partial: true, complete: true }));
  t.equal(encodeAvailability(all).toString('base64'), '/////////////w==');
  t.same(decodeAvailability(Buffer.from('/////////////w==', 'base64')).slice(0, 40), all);
  // segment 0 partial only (10), segment 1 absent (00), segment 2 complete (11), segment 3 absent
  const buf = encodeAvailability([
    { partial: true, complete: false },
    { partial: false, complete: false },
    { partial: true, complete: true },
  ]);
  t.equal(buf.toString('hex'), '8c');
  t.same(decodeAvailability(buf).slice(0, 3), [
    { partial: true, complete: false },
    { partial: false, complete: false },
    { partial: true, complete: true },
  ]);
});

t.test('segment ages blob: spec example', async (t) => {
  const ages = decodeSegmentAges(Buffer.from('AAEDAgBg6gACYOoA', 'base64'));
  t.same(ages, {
    units: 3,
    entries: [
      { index: 0, age: 60000 },
      { index: 2, age: 60000 },
    ],
  });
  t.equal(encodeSegmentAges(ages).toString('base64'), 'AAEDAgBg6gACYOoA');
  t.equal(ageToMs(60000, 3), 600000);
  t.equal(msToAge(600000, 3), 60000);
  t.equal(msToAge(1e12, 3), 0xffffff);
  t.throws(() => decodeSegmentAges(Buffer.from('000103', 'hex')), DiscoveryParseError);
  t.throws(() => decodeSegmentAges(Buffer.from('00010502', 'hex')), DiscoveryParseError); // units 5
  t.throws(() => decodeSegmentAges(Buffer.from('0001030200', 'hex')), DiscoveryParseError); // too short for 2
  t.throws(() => decodeSegmentAges(Buffer.from('00020300', 'hex')), DiscoveryParseError); // version 2
});

t.test('v1 probe encodes and round-trips', async (t) => {
  const ids = [id(0xab), id(0x01, 64)];
  const xml = encodeProbe({ version: 1, messageId: MID, segmentIds: ids });
  t.match(
    xml,
    `<wsd:Scopes MatchBy="http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0">${'AB'.repeat(32)} ${'01'.repeat(64)}</wsd:Scopes>`,
  );
  t.match(xml, '<wsd:Types>PeerDist:PeerDistData</wsd:Types>');
  t.match(xml, `xmlns:PeerDist="${NS.PeerDist}"`);
  t.match(xml, '<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>');
  t.match(xml, '<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>');
  const p = parseDiscoveryMessage(xml) as Probe;
  t.equal(p.kind, 'Probe');
  t.equal(p.version, 1);
  t.equal(p.messageId, MID);
  t.same(
    p.segmentIds.map((b) => b.toString('hex')),
    ids.map((b) => b.toString('hex')),
  );
});

t.test('v1 probe with IDs wrapped across lines', async (t) => {
  const a = 'AB'.repeat(32),
    b = 'cd'.repeat(32);
  const xml = encodeProbe({ version: 1, messageId: MID, segmentIds: [id(0)] }).replace(
    />[0-9A-F]{64}</,
    `>\n  ${a.slice(0, 40)}\n  ${a.slice(40)}\t${b.slice(0, 10)}\r\n${b.slice(10)}\n<`,
  );
  const p = parseDiscoveryMessage(xml) as Probe;
  t.same(
    p.segmentIds.map((x) => x.toString('hex')),
    [a.toLowerCase(), b],
  );
});

t.test('v2 probe encodes and round-trips', async (t) => {
  const ids = [id(1), id(2), id(3)];
  const xml = encodeProbe({ version: 2, messageId: MID, segmentIds: ids });
  t.match(xml, '<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>');
  t.match(xml, 'MatchBy="http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule"');
  const p = parseDiscoveryMessage(Buffer.from(xml)) as Probe;
  t.equal(p.version, 2);
  t.same(p.segmentIds, ids);
});

t.test('v1 ProbeMatch: iPXE substrings, 8-digit upper-case BlockCount, round trip', async (t) => {
  const pm = {
    version: 1 as const,
    messageId: MID,
    relatesTo: RID,
    instanceId: 1700000000,
    messageNumber: 7,
    endpoint: EP,
    matches: [
      { segmentId: id(0xcd), blockCount: 42 },
      { segmentId: id(0xef), blockCount: 0x1abcd },
    ],
    xaddrs: ['127.0.0.2:8080', '[fe80::1]:80'],
  };
  const xml = encodeProbeMatches(pm);
  t.ok(xml.includes(`<wsd:Scopes>${'CD'.repeat(32)} ${'EF'.repeat(32)}</wsd:Scopes>`), 'plain <wsd:Scopes>');
  t.ok(xml.includes('<wsd:XAddrs>127.0.0.2:8080 [fe80::1]:80</wsd:XAddrs>'), 'plain <wsd:XAddrs>');
  t.ok(xml.includes('<PeerDist:BlockCount>0000002A0001ABCD</PeerDist:BlockCount>'), 'plain <PeerDist:BlockCount>');
  t.ok(xml.includes(`<wsa:RelatesTo>${RID}</wsa:RelatesTo>`));
  t.ok(xml.includes('<wsd:AppSequence InstanceId="1700000000" MessageNumber="7"/>'));
  t.ok(xml.includes('<wsd:MetadataVersion>1</wsd:MetadataVersion>'));
  t.notOk(/<wsd:Scopes\/>|<wsd:XAddrs\/>|<PeerDist:BlockCount\/>/.test(xml));
  const back = parseDiscoveryMessage(xml) as ProbeMatches;
  t.equal(back.kind, 'ProbeMatches');
  t.same(
    { ...back, kind: undefined, metadataVersion: undefined, availability: undefined, segmentAges: undefined },
    { ...pm, kind: undefined, metadataVersion: undefined, availability: undefined, segmentAges: undefined },
  );
  t.throws(() => encodeProbeMatches({ ...pm, matches: [{ segmentId: id(1), blockCount: 0 }] }), RangeError);
});

t.test('v1 spec example BlockCount 0000002A (64-byte placeholder ID, wrapped values, other prefixes)', async (t) => {
  const sid = '02' + '00'.repeat(63);
  const xml = `<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="${NS.soap}" xmlns:a="${NS.wsa}" xmlns:d="${NS.wsd}">
 <s:Header>
  <a:Action>${NS.wsd}/ProbeMatches</a:Action>
  <a:MessageID>${MID}</a:MessageID>
  <a:RelatesTo>
     ${RID}
  </a:RelatesTo>
  <d:AppSequence InstanceId="3" MessageNumber="4"></d:AppSequence>
 </s:Header>
 <s:Body><d:ProbeMatches><d:ProbeMatch>
  <a:EndpointReference><a:Address>${EP}</a:Address></a:EndpointReference>
  <d:Types xmlns:pd="${NS.PeerDist}">pd:PeerDistData</d:Types>
  <d:Scopes>${sid.slice(0, 50)}
     ${sid.slice(50)}</d:Scopes>
  <d:XAddrs>
    192.0.2.10:80
  </d:XAddrs>
  <d:MetadataVersion>1</d:MetadataVersion>
  <PeerDistData xmlns="${NS.PeerDist}"><BlockCount>0000
  002A</BlockCount></PeerDistData>
 </d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>`;
  const pm = parseDiscoveryMessage(xml) as ProbeMatches;
  t.equal(pm.version, 1);
  t.equal(pm.relatesTo, RID);
  t.equal(pm.instanceId, 3);
  t.equal(pm.messageNumber, 4);
  t.same(pm.xaddrs, ['192.0.2.10:80']);
  t.equal(pm.matches.length, 1);
  t.equal(pm.matches[0]!.segmentId.toString('hex'), sid);
  t.equal(pm.matches[0]!.blockCount, 42);
});

t.test('v1 zero counts are dropped when parsing', async (t) => {
  const pm = parseDiscoveryMessage(v1MatchWith([id(1), id(2)], '0000000000000009')) as ProbeMatches;
  t.same(
    pm.matches.map((m) => [m.segmentId[0], m.blockCount]),
    [[2, 9]],
  );
});

t.test('v2 ProbeMatch round trip with availability and ages', async (t) => {
  const probeIds = [id(1), id(2), id(3), id(4), id(5)];
  const pm = {
    version: 2 as const,
    messageId: MID,
    relatesTo: RID,
    instanceId: 9,
    messageNumber: 2,
    endpoint: EP,
    matches: [
      { segmentId: id(2), partial: true, complete: false },
      { segmentId: id(5), partial: true, complete: true },
    ],
    xaddrs: ['127.0.0.3:80'],
    segmentAges: { units: 3 as const, entries: [{ index: 4, age: 123 }] },
  };
  const xml = encodeProbeMatches(pm, probeIds);
  t.ok(xml.includes('<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>'));
  t.ok(xml.includes('<wsd:MetadataVersion>2</wsd:MetadataVersion>'));
  // pairs: 00 10 00 00 | 11 -> 0x20 0xC0
  t.ok(xml.includes(`<wsd:Scopes>${Buffer.from([0x20, 0xc0]).toString('base64')}</wsd:Scopes>`));
  t.ok(
    xml.includes(
      `<PeerDist:SegmentAges>${encodeSegmentAges(pm.segmentAges).toString('base64')}</PeerDist:SegmentAges>`,
    ),
  );
  const back = parseDiscoveryMessage(xml, { probeSegments: (r) => (r === RID ? probeIds : undefined) }) as ProbeMatches;
  t.same(back.matches, pm.matches);
  t.same(back.segmentAges, pm.segmentAges);
  const unbound = parseDiscoveryMessage(xml) as ProbeMatches;
  t.same(unbound.matches, [], 'without the probe list there is nothing to bind');
  t.same(
    unbound.availability!.slice(0, 5).map((a) => a.partial),
    [false, true, false, false, true],
  );
  // wrong probe size for the bit array is a typed error
  t.throws(() => parseDiscoveryMessage(xml, { probeSegments: () => probeIds.slice(0, 3) }), DiscoveryParseError);
  // an invalid ages blob is discarded, not the message
  const badAges = xml.replace(
    /<PeerDist:SegmentAges>[^<]*</,
    `<PeerDist:SegmentAges>${Buffer.from('00010902', 'hex').toString('base64')}<`,
  );
  const kept = parseDiscoveryMessage(badAges, { probeSegments: () => probeIds }) as ProbeMatches;
  t.equal(kept.segmentAges, undefined);
  t.equal(kept.matches.length, 2);
});

t.test('XAddrs parsing and formatting', async (t) => {
  t.same(parseXAddr('192.0.2.10:80'), { host: '192.0.2.10', port: 80 });
  t.same(parseXAddr('[fe80::1]:8080'), { host: 'fe80::1', port: 8080 });
  t.same(parseXAddr('peer-1.local:3'), { host: 'peer-1.local', port: 3 });
  for (const bad of [
    '192.0.2.10',
    '192.0.2.10:0',
    '192.0.2.10:65536',
    'fe80::1:80',
    '[zz::1]:80',
    'http://a:80/',
    '999.1.1.1:80',
    ':80',
    'a b:80',
  ]) {
    t.equal(parseXAddr(bad), undefined, bad);
  }
  t.equal(formatXAddr('::1', 80), '[::1]:80');
  t.equal(formatXAddr('10.0.0.1', 80), '10.0.0.1:80');
});

t.test('error type is a ParseError subclass naming the field', async (t) => {
  try {
    parseDiscoveryMessage('<x/>');
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof DiscoveryParseError);
    t.ok(err instanceof ParseError);
    t.equal((err as DiscoveryParseError).field, 'Envelope');
  }
});

t.test('base64 fields: canonical standard base64 only', async (t) => {
  t.same(decodeBase64('QUJD', 'f'), Buffer.from('ABC'));
  t.same(decodeBase64('QUI=', 'f'), Buffer.from('AB'));
  t.same(decodeBase64('QQ==', 'f'), Buffer.from('A'));
  t.same(decodeBase64(' QU\nJD ', 'f'), Buffer.from('ABC'), 'whitespace is ignored');
  for (const bad of ['', 'QUJ', 'QUJDR', 'QU=D', 'Q===', '====', 'QUJD====', 'QU-D', 'QU_D', 'QUJ*', 'QQ=A']) {
    t.throws(() => decodeBase64(bad, 'f'), { code: 'PCCRD_INVALID' }, `refused: ${JSON.stringify(bad)}`);
  }
  t.throws(() => decodeBase64('QR==', 'f'), /non-canonical/, 'non-zero pad bits');
  t.throws(() => decodeBase64('QUJ=', 'f'), /non-canonical/, 'non-zero pad bits (one =)');
});

t.test('ProbeMatch v2 pairs: matches listed out of probe order or as copies of the IDs pair by ID', async (t) => {
  const ids = [0, 1, 2, 3].map((i) => Buffer.alloc(32, i));
  const base = {
    version: 2 as const,
    messageId: 'urn:uuid:00000000-0000-4000-8000-000000000001',
    relatesTo: 'urn:uuid:00000000-0000-4000-8000-000000000002',
    instanceId: 1,
    messageNumber: 1,
    endpoint: 'urn:uuid:00000000-0000-4000-8000-000000000003',
    xaddrs: ['10.0.0.1:80'],
  };
  const byRef = encodeProbeMatches(
    {
      ...base,
      matches: [
        { segmentId: ids[1]!, complete: true },
        { segmentId: ids[3]!, partial: true },
      ],
    },
    ids,
  );
  const copies = encodeProbeMatches(
    {
      ...base,
      matches: [
        { segmentId: Buffer.from(ids[3]!), partial: true },
        { segmentId: Buffer.from(ids[1]!), complete: true },
      ],
    },
    ids,
  );
  t.equal(copies, byRef, 'same datagram');
  const pm = parseDiscoveryMessage(Buffer.from(byRef));
  t.same(pm.kind === 'ProbeMatches' && pm.availability?.slice(0, 4), [
    { partial: false, complete: false },
    { partial: true, complete: true },
    { partial: false, complete: false },
    { partial: true, complete: false },
  ]);
});

/** A v1 ProbeMatches listing `ids` with the BlockCount text `bc` as given (any width). */
function v1MatchWith(ids: Buffer[], bc: string): string {
  const xml = encodeProbeMatches({
    version: 1,
    messageId: MID,
    relatesTo: RID,
    instanceId: 1,
    messageNumber: 1,
    endpoint: EP,
    matches: ids.map((segmentId) => ({ segmentId, blockCount: 1 })),
    xaddrs: ['127.0.0.1:1'],
  });
  return xml.replace(
    /<PeerDist:BlockCount>[0-9A-F]*<\/PeerDist:BlockCount>/,
    `<PeerDist:BlockCount>${bc}</PeerDist:BlockCount>`,
  );
}

t.test('v1 BlockCount of 4 hex digits per segment, the MS-PCCRD 2.2.3.9 prose example (issue 27.15)', async (t) => {
  const ids = [id(1), id(2), id(3)];
  const pm = parseDiscoveryMessage(v1MatchWith(ids, '001900040010')) as ProbeMatches;
  t.same(
    pm.matches.map((m) => [m.segmentId[0], m.blockCount]),
    [
      [1, 25],
      [2, 4],
      [3, 16],
    ],
  );
  // Zero counts are dropped at either width; line breaks inside the value are fine.
  const z = parseDiscoveryMessage(v1MatchWith(ids, '0000\n01FF 0002')) as ProbeMatches;
  t.same(
    z.matches.map((m) => [m.segmentId[0], m.blockCount]),
    [
      [2, 511],
      [3, 2],
    ],
  );
  // The same counts at 8 digits still read as before.
  const eight = parseDiscoveryMessage(v1MatchWith(ids, '000000190000000400000010')) as ProbeMatches;
  t.same(
    eight.matches.map((m) => m.blockCount),
    [25, 4, 16],
  );
});

t.test('v1 BlockCount lengths that fit neither width are rejected', async (t) => {
  const ids = [id(1), id(2)];
  for (const bc of ['', '0019', '001900', '0019000400', '00190004001000', '000000190000000400'])
    t.throws(
      () => parseDiscoveryMessage(v1MatchWith(ids, bc)),
      { code: 'PCCRD_INVALID', field: 'BlockCount' },
      `${bc.length} digits for 2 segments`,
    );
});

t.test('v1 BlockCount width decides how wrapped Scopes split: 8 digits before 4 (issue 27.15)', async (t) => {
  // Two 64-hex-digit lines are either two 32-byte IDs or one 64-byte ID wrapped (as in MS-PCCRD 4.3).
  const a = 'AB'.repeat(32);
  const b = 'CD'.repeat(32);
  const wrapped = (bc: string) =>
    v1MatchWith([id(9)], bc).replace(/<wsd:Scopes>[0-9A-F]*<\/wsd:Scopes>/, `<wsd:Scopes>${a}\n${b}</wsd:Scopes>`);
  const one = parseDiscoveryMessage(wrapped('0000002A')) as ProbeMatches;
  t.same(
    one.matches.map((m) => [m.segmentId.toString('hex').toUpperCase(), m.blockCount]),
    [[a + b, 42]],
    '8 digits: one 64-byte ID',
  );
  const two = parseDiscoveryMessage(wrapped('0000002A00000007')) as ProbeMatches;
  t.same(
    two.matches.map((m) => [m.segmentId.toString('hex').toUpperCase(), m.blockCount]),
    [
      [a, 42],
      [b, 7],
    ],
    '16 digits: two 32-byte IDs at 8 digits each',
  );
});
