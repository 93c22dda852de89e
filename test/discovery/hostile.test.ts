/** Hostile and malformed discovery input: every case is a typed DiscoveryParseError, and fast. */
import tap from 'tap';
const t = tap;
import { encodeProbe, encodeProbeMatches, parseDiscoveryMessage, NS } from '../../src/protocol/pccrd/codec.js';
import { parseXml } from '../../src/protocol/pccrd/xml.js';
import { DiscoveryParseError } from '../../src/protocol/pccrd/errors.js';

const MID = 'urn:uuid:11111111-2222-4333-8444-555555555555';
const RID = 'urn:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa';
const EP = 'urn:uuid:bbbbbbbb-cccc-4ddd-8eee-ffffffffffff';
const sid = Buffer.alloc(32, 0x5a);
const probeV1 = encodeProbe({ version: 1, messageId: MID, segmentIds: [sid] });
const probeV2 = encodeProbe({ version: 2, messageId: MID, segmentIds: [sid] });
const matchV1 = encodeProbeMatches({
  version: 1,
  messageId: MID,
  relatesTo: RID,
  instanceId: 1,
  messageNumber: 1,
  endpoint: EP,
  matches: [{ segmentId: sid, blockCount: 3 }],
  xaddrs: ['127.0.0.1:80'],
});

function rejects(t: Pick<typeof tap, 'ok' | 'match'>, input: Buffer | string, code: string | RegExp, name: string) {
  const start = process.hrtime.bigint();
  let err: unknown;
  try {
    parseDiscoveryMessage(input);
  } catch (e) {
    err = e;
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.ok(
    err instanceof DiscoveryParseError,
    `${name}: typed error (got ${err instanceof Error ? err.name + ' ' + err.message : String(err)})`,
  );
  if (err instanceof DiscoveryParseError) t.match(err.code, code, `${name}: code ${err.code} (${err.message})`);
  // A hang guard, not a performance goal (per-refusal times are measured in testkit/fuzz/main.ts).
  t.ok(ms < 1000, `${name}: rejected without hanging (${ms.toFixed(1)} ms)`);
}

t.test('sanity: the unmodified messages parse', async (t) => {
  t.equal(parseDiscoveryMessage(probeV1).kind, 'Probe');
  t.equal(parseDiscoveryMessage(probeV2).kind, 'Probe');
  t.equal(parseDiscoveryMessage(matchV1).kind, 'ProbeMatches');
});

t.test('size and structure limits', async (t) => {
  rejects(t, Buffer.alloc(64 * 1024, 0x20), 'XML_TOO_LARGE', 'oversized buffer');
  rejects(t, 'x'.repeat(40000), 'XML_TOO_LARGE', 'oversized string');
  rejects(
    t,
    probeV1.replace('</wsd:Scopes>', ' ' + 'é'.repeat(17000) + '</wsd:Scopes>'),
    'XML_TOO_LARGE',
    'multi-byte characters count as bytes',
  );
  rejects(t, '<a>'.repeat(5000) + '</a>'.repeat(5000), /XML_DEPTH|XML_TOO_LARGE/, 'deep nesting');
  rejects(t, '<a>'.repeat(100), 'XML_DEPTH', 'moderately deep nesting');
  rejects(t, '<a>' + '<b/>'.repeat(2000) + '</a>', 'XML_LIMIT', 'too many elements');
  rejects(t, `<a x="${'y'.repeat(5000)}"/>`, 'XML_LIMIT', 'huge attribute');
  rejects(
    t,
    '<a ' + Array.from({ length: 40 }, (_, i) => `a${i}="1"`).join(' ') + '/>',
    'XML_LIMIT',
    'many attributes',
  );
  rejects(t, `<${'a'.repeat(300)}/>`, 'XML_LIMIT', 'long name');
  rejects(t, '<a>' + '&amp;'.repeat(6000) + '</a>', 'XML_LIMIT', 'too many entity references');
  rejects(
    t,
    Array.from(
      { length: 12 },
      (_, d) => `<e${d} ` + Array.from({ length: 8 }, (_, k) => `xmlns:p${d}x${k}="u:${k}"`).join(' ') + '>',
    ).join(''),
    'XML_LIMIT',
    'namespace bindings pile up',
  );
  rejects(t, '<a>' + '<b x="&lt;"/>'.repeat(300) + '</a>', 'XML_LIMIT', 'references counted across the document');
  const manyIds = encodeProbe({ version: 1, messageId: MID, segmentIds: [sid] }).replace(
    />[0-9A-F]{64}</,
    '>' + Array.from({ length: 300 }, () => 'AB'.repeat(32)).join(' ') + '<',
  );
  rejects(t, manyIds, 'XML_LIMIT', 'too many scopes');
});

t.test('malformed XML', async (t) => {
  rejects(t, '', 'XML_MALFORMED', 'empty');
  rejects(t, probeV1.slice(0, probeV1.length - 20), 'XML_MALFORMED', 'truncated');
  rejects(t, '<a><b></a></b>', 'XML_MALFORMED', 'crossed tags');
  rejects(t, '<a><b></b>', 'XML_MALFORMED', 'unclosed tag');
  rejects(t, '<a', 'XML_MALFORMED', 'unterminated start tag');
  rejects(t, '<a x=1/>', 'XML_MALFORMED', 'unquoted attribute');
  rejects(t, '<a x="1" x="2"/>', 'XML_MALFORMED', 'duplicate attribute');
  rejects(t, '<a x="1"y="2"/>', 'XML_MALFORMED', 'attributes without whitespace');
  rejects(t, '<a/><b/>', 'XML_MALFORMED', 'two roots');
  rejects(t, 'junk<a/>', 'XML_MALFORMED', 'text before root');
  rejects(t, '<a><!-- unterminated </a>', 'XML_MALFORMED', 'unterminated comment');
  rejects(t, '<a>\u0001</a>', 'XML_MALFORMED', 'control character');
  rejects(t, Buffer.from([0x3c, 0x61, 0x3e, 0xff, 0xfe, 0x3c, 0x2f, 0x61, 0x3e]), 'XML_ENCODING', 'invalid UTF-8');
  rejects(t, '<?xml version="1.0" encoding="UTF-16"?><a/>', 'XML_ENCODING', 'declared UTF-16');
  rejects(t, '<p:a/>', 'XML_NAMESPACE', 'unbound prefix');
  rejects(t, '<a xmlns:p=""/>', 'XML_NAMESPACE', 'prefix bound to empty URI');
  rejects(t, '<a>&#0;</a>', 'XML_ENTITY', 'NUL character reference');
  rejects(t, '<a>&#x110000;</a>', 'XML_ENTITY', 'out-of-range character reference');
  rejects(t, '<a>& b</a>', 'XML_ENTITY', 'bare ampersand');
  rejects(t, 5 as unknown as string, 'XML_MALFORMED', 'not a string');
});

t.test('DTDs, entities and processing instructions are refused', async (t) => {
  const laughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>';
  rejects(t, laughs, 'XML_DOCTYPE', 'billion laughs');
  rejects(
    t,
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
    'XML_DOCTYPE',
    'external entity',
  );
  rejects(
    t,
    '<!DOCTYPE soap:Envelope SYSTEM "http://example.invalid/x.dtd">' + probeV1.replace(/^<\?xml[^>]*>/, ''),
    'XML_DOCTYPE',
    'external DTD',
  );
  rejects(t, '<a><!ENTITY x "y"></a>', 'XML_ENTITY', 'entity declaration inside content');
  rejects(t, '<a>&xxe;</a>', 'XML_ENTITY', 'undeclared entity reference');
  rejects(t, probeV1.replace('</wsd:Scopes>', '&lol;</wsd:Scopes>'), 'XML_ENTITY', 'entity inside scopes');
  rejects(t, '<a x="&ent;"/>', 'XML_ENTITY', 'entity inside attribute');
  rejects(t, '<?xml-stylesheet href="x"?><a/>', 'XML_PI', 'processing instruction');
  rejects(t, '<a><?php echo 1 ?></a>', 'XML_PI', 'processing instruction in content');
  rejects(t, ' <?xml version="1.0"?><a/>', 'XML_PI', 'XML declaration not at start');
});

t.test('predefined and numeric entities decode (and nothing else expands)', async (t) => {
  const el = parseXml('<a x="&lt;&#65;&#x42;">&amp;&quot;&apos;&gt;<![CDATA[&lol;]]></a>');
  t.equal(el.attrs[0]!.value, '<AB');
  t.equal(el.text, '&"\'>&lol;');
});

t.test('wrong namespaces: right local names, wrong URIs', async (t) => {
  rejects(
    t,
    probeV1.replace(`xmlns:soap="${NS.soap}"`, 'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'),
    'PCCRD_INVALID',
    'SOAP 1.1 envelope',
  );
  rejects(
    t,
    probeV1.replace(`xmlns:wsa="${NS.wsa}"`, 'xmlns:wsa="http://www.w3.org/2005/08/addressing"'),
    'PCCRD_MISSING',
    'other WS-Addressing version',
  );
  rejects(
    t,
    probeV1.replace(`xmlns:wsd="${NS.wsd}"`, 'xmlns:wsd="http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"'),
    'PCCRD_MISSING',
    'WS-Discovery 1.1 namespace',
  );
  rejects(
    t,
    probeV1.replace(`xmlns:PeerDist="${NS.PeerDist}"`, 'xmlns:PeerDist="urn:example:not-peerdist"'),
    'PCCRD_NOT_PEERDIST',
    'non-PeerDist type',
  );
  rejects(
    t,
    probeV1.replace('PeerDist:PeerDistData', 'PeerDistData'),
    'PCCRD_NOT_PEERDIST',
    'unprefixed type in no namespace',
  );
  rejects(
    t,
    probeV1.replace('PeerDist:PeerDistData', 'Nope:PeerDistData'),
    'PCCRD_NOT_PEERDIST',
    'type with unbound prefix',
  );
  rejects(
    t,
    matchV1
      .replace(`xmlns:PeerDist="${NS.PeerDist}"`, `xmlns:PeerDist="${NS.PeerDist}" xmlns:X="urn:x"`)
      .replace('<PeerDist:PeerDistData>', '<X:PeerDistData>')
      .replace('</PeerDist:PeerDistData>', '</X:PeerDistData>'),
    'PCCRD_MISSING',
    'BlockCount under a foreign PeerDistData',
  );
});

t.test('PCCRD field validation', async (t) => {
  rejects(t, probeV1.replace(/>[0-9A-F]{64}</, '>' + 'ZZ'.repeat(32) + '<'), 'PCCRD_INVALID', 'non-hex scope');
  rejects(t, probeV1.replace(/>[0-9A-F]{64}</, '>ABCD<'), 'PCCRD_INVALID', 'short scope');
  rejects(t, probeV1.replace(/>[0-9A-F]{64}</, '><'), 'PCCRD_INVALID', 'empty scopes');
  rejects(t, probeV1.replace('strcmp0', 'rfc3986'), 'PCCRD_INVALID', 'wrong v1 MatchBy');
  rejects(t, probeV2.replace(/MatchBy="[^"]*"/, ''), 'PCCRD_INVALID', 'v2 without MatchBy');
  rejects(t, probeV2.replace(/(MatchBy="[^"]*">)[^<]*</, '$1!!notbase64!!<'), 'PCCRD_INVALID', 'bad base64');
  rejects(t, probeV2.replace(/(MatchBy="[^"]*">)[^<]*</, '$1AC<'), 'PCCRD_INVALID', 'base64 without padding');
  rejects(
    t,
    probeV2.replace(
      /(MatchBy="[^"]*">)[^<]*</,
      `$1${Buffer.from('002001' + '00'.repeat(31), 'hex').toString('base64')}<`,
    ),
    'PCCRD_INVALID',
    'v2 scopes length mismatch',
  );
  rejects(
    t,
    probeV2.replace(
      /(MatchBy="[^"]*">)[^<]*</,
      `$1${Buffer.from('001401' + '00'.repeat(20), 'hex').toString('base64')}<`,
    ),
    'PCCRD_INVALID',
    'v2 hash size 20',
  );
  rejects(
    t,
    probeV2.replace(/(MatchBy="[^"]*">)[^<]*</, `$1${Buffer.from('002000', 'hex').toString('base64')}<`),
    'PCCRD_INVALID',
    'v2 zero count',
  );
  rejects(t, matchV1.replace('00000003', '0000003'), 'PCCRD_INVALID', 'BlockCount length mismatch');
  rejects(t, matchV1.replace('00000003', '0000000300000004'), 'PCCRD_INVALID', 'BlockCount longer than scopes');
  rejects(t, matchV1.replace('00000003', '0000000G'), 'PCCRD_INVALID', 'BlockCount not hex');
  rejects(t, matchV1.replace('127.0.0.1:80', 'not an address'), 'PCCRD_INVALID', 'no valid XAddrs');
  rejects(t, matchV1.replace(/<wsa:RelatesTo>[^<]*<\/wsa:RelatesTo>/, ''), 'PCCRD_MISSING', 'missing RelatesTo');
  rejects(t, matchV1.replace('InstanceId="1"', 'InstanceId="-1"'), 'PCCRD_INVALID', 'negative InstanceId');
  rejects(
    t,
    matchV1.replace('MessageNumber="1"', 'MessageNumber="99999999999"'),
    'PCCRD_INVALID',
    'MessageNumber over 32 bits',
  );
  rejects(t, probeV1.replace(/<wsa:MessageID>[^<]*</, '<wsa:MessageID><'), 'PCCRD_INVALID', 'empty MessageID');
  rejects(t, probeV1.replace('discovery/Probe<', 'discovery/Hello<'), 'PCCRD_UNSUPPORTED', 'Hello action');
  rejects(
    t,
    probeV1.replace('<wsd:Probe>', '<wsd:Resolve>').replace('</wsd:Probe>', '</wsd:Resolve>'),
    'PCCRD_MISSING',
    'body does not match action',
  );
});

t.test('random mutations never escape as untyped errors', async (t) => {
  // Deterministic LCG so a failure is reproducible.
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const bases = [probeV1, probeV2, matchV1];
  let typed = 0,
    parsed = 0;
  const start = Date.now();
  for (let k = 0; k < 3000; k++) {
    const base = Buffer.from(bases[k % 3]!);
    const buf = Buffer.from(base);
    const edits = 1 + Math.floor(rnd() * 4);
    for (let e = 0; e < edits; e++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    const cut = rnd() < 0.2 ? buf.subarray(0, Math.floor(rnd() * buf.length)) : buf;
    try {
      parseDiscoveryMessage(cut);
      parsed++;
    } catch (err) {
      if (!(err instanceof DiscoveryParseError)) {
        t.fail(`untyped error ${String(err)} for ${cut.toString('latin1')}`);
        return;
      }
      typed++;
    }
  }
  t.equal(typed + parsed, 3000);
  t.ok(typed > 1000, `${typed} rejected, ${parsed} still valid`);
  t.ok(Date.now() - start < 5000, 'fuzz loop is fast');
});
