/**
 * XML attacks against the discovery parser: entity expansion (billion laughs), external entities,
 * deep nesting, huge attributes, many elements/attributes, oversize documents. Each must be refused
 * with a typed DiscoveryParseError, cheaply: we time every refusal (median of 20 runs) and print it.
 */
import t from 'tap';
import { parseDiscoveryMessage } from '../../src/protocol/pccrd/codec.js';
import { DiscoveryParseError } from '../../src/protocol/pccrd/errors.js';
import { encodeProbe } from '../../src/protocol/pccrd/codec.js';

const probe = encodeProbe({
  version: 1,
  messageId: 'urn:uuid:11111111-2222-4333-8444-555555555555',
  segmentIds: [Buffer.alloc(32, 1)],
});
const body = probe.replace(/^<\?xml[^>]*\?>/, '');
const lol =
  '<!DOCTYPE lolz [<!ENTITY lol "lol">' +
  Array.from({ length: 9 }, (_, k) => `<!ENTITY lol${k + 1} "${`&lol${k || ''};`.repeat(10)}">`).join('') +
  ']>';

const attacks: Array<[string, string, RegExp]> = [
  [
    'billion laughs (internal entity expansion)',
    `<?xml version="1.0"?>${lol}${body.replace('urn:uuid:1111', '&lol9;')}`,
    /XML_DOCTYPE/,
  ],
  [
    'external entity (file)',
    `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${body.replace('urn:uuid:1111', '&xxe;')}`,
    /XML_DOCTYPE/,
  ],
  ['external DTD', `<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd">${body}`, /XML_DOCTYPE/],
  [
    'parameter entity without DOCTYPE',
    `${body.slice(0, 40)}<!ENTITY % p SYSTEM "http://127.0.0.1:1/">${body.slice(40)}`,
    /XML_(ENTITY|MALFORMED)/,
  ],
  ['undeclared entity reference', body.replace('urn:uuid:1111', '&xxe;'), /XML_ENTITY/],
  [
    'deep nesting (10,000 levels)',
    body.replace('<soap:Body>', `<soap:Body>${'<a>'.repeat(10_000)}${'</a>'.repeat(10_000)}`),
    /XML_(DEPTH|TOO_LARGE)/,
  ],
  [
    'deep nesting inside the limit size (17 levels)',
    body.replace('<soap:Body>', `<soap:Body>${'<a>'.repeat(17)}${'</a>'.repeat(17)}`),
    /XML_DEPTH/,
  ],
  ['huge attribute (30 KB)', body.replace('<wsd:Scopes', `<wsd:Scopes x="${'A'.repeat(30_000)}"`), /XML_LIMIT/],
  [
    'many attributes',
    body.replace('<wsd:Scopes', `<wsd:Scopes ${Array.from({ length: 40 }, (_, k) => `a${k}="1"`).join(' ')}`),
    /XML_LIMIT/,
  ],
  ['many elements', body.replace('<soap:Body>', `<soap:Body>${'<a/>'.repeat(3000)}`), /XML_LIMIT/],
  ['long name', body.replace('<soap:Body>', `<soap:Body><${'n'.repeat(5000)}/>`), /XML_LIMIT/],
  [
    'oversize datagram (1 MiB)',
    body.replace('<soap:Body>', `<soap:Body><!--${'x'.repeat(1 << 20)}-->`),
    /XML_TOO_LARGE/,
  ],
  ['unterminated comment at 32 KB', `${body.slice(0, 100)}<!--${'-'.repeat(31_000)}`, /XML_MALFORMED/],
  ['many character references', body.replace('urn:uuid:1111', '&#x41;'.repeat(4000)), /PCCRD_INVALID|XML_/],
  ['processing instruction', body.replace('<soap:Body>', '<soap:Body><?xml-stylesheet href="http://x/"?>'), /XML_PI/],
  ['UTF-16 declared', probe.replace('encoding="utf-8"', 'encoding="utf-16"'), /XML_ENCODING/],
];

const timings: string[] = [];
for (const [name, doc, code] of attacks) {
  t.test(name, async (t) => {
    const input = Buffer.from(doc, 'utf8');
    let err: unknown;
    try {
      parseDiscoveryMessage(input);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof DiscoveryParseError, `typed rejection (${String(err)})`);
    t.match((err as DiscoveryParseError).code, code);
    const runs: number[] = [];
    for (let k = 0; k < 20; k++) {
      const s = process.hrtime.bigint();
      try {
        parseDiscoveryMessage(input);
      } catch {
        /* expected */
      }
      runs.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    runs.sort((a, b) => a - b);
    const median = runs[10]!;
    timings.push(`${name}: ${input.length} B, median ${median.toFixed(3)} ms, max ${runs[19]!.toFixed(3)} ms`);
    // A guard against super-linear blow-up, not a performance assertion: the parser is linear and
    // bounded by the 32 KiB limit (well under a millisecond normally; figures in RELIABILITY.md).
    t.ok(median < 50, `refused in ${median.toFixed(3)} ms (median of 20)`);
  });
}

t.test('the unmodified probe parses (the attacks differ only by the attack)', async (t) => {
  t.equal(parseDiscoveryMessage(probe).kind, 'Probe');
});

t.teardown(() => {
  for (const l of timings) console.log(`# xml refusal: ${l}`);
});
