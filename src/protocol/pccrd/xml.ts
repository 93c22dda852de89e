/**
 * A small, strict, namespace-aware XML reader for untrusted discovery datagrams.
 *
 * It builds a tiny element tree (elements, attributes, direct text) and refuses everything a
 * WS-Discovery message never needs: DOCTYPE/DTD, entity declarations, entity references other than
 * the five predefined and numeric ones, processing instructions other than the XML declaration,
 * non-ASCII names, unbound prefixes. Every limit is checked while scanning; every scan is linear in
 * the input, so hostile input is rejected quickly with a DiscoveryParseError.
 */
import { DiscoveryParseError, type DiscoveryErrorCode } from './errors.js';

export interface XmlLimits {
  maxBytes: number;
  maxDepth: number;
  maxElements: number;
  maxAttributes: number;
  maxAttributeLength: number;
  maxNameLength: number;
  /** Entity and character references in the whole document (messages need almost none). */
  maxReferences: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = {
  maxBytes: 32 * 1024,
  maxDepth: 16,
  maxElements: 512,
  maxAttributes: 16,
  maxAttributeLength: 1024,
  maxNameLength: 128,
  maxReferences: 256,
};

export interface XmlAttribute {
  ns: string;
  local: string;
  value: string;
}

export interface XmlElement {
  /** Namespace URI ('' when none). */
  ns: string;
  local: string;
  attrs: XmlAttribute[];
  children: XmlElement[];
  /** Concatenated character data directly inside this element (entities decoded). */
  text: string;
  /** Prefix -> URI bindings in scope at this element ('' key = default namespace). */
  bindings: ReadonlyMap<string, string>;
}

const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';
const NAME_RE = /[A-Za-z_][A-Za-z0-9._-]*(?::[A-Za-z_][A-Za-z0-9._-]*)?/y;
const DECL_RE =
  /^<\?xml\s+version\s*=\s*(["'])1\.[0-9]\1(?:\s+encoding\s*=\s*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:\s+standalone\s*=\s*(["'])(?:yes|no)\4)?\s*\?>/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finds the characters XML 1.0 forbids
const BAD_CHARS_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
/** In-scope prefix bindings (each new declaration copies the map, so this bounds the work). */
const MAX_BINDINGS = 64;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

const fail = (code: DiscoveryErrorCode, field: string, msg: string): never => {
  throw new DiscoveryParseError(code, field, msg);
};

function isXmlWhitespace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r';
}

function validCodePoint(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

/**
 * Decodes the five predefined entities and numeric character references; anything else is refused.
 * `budget.left` (when given) is how many references may still be decoded in this document.
 */
export function decodeEntities(raw: string, field: string, budget?: { left: number }): string {
  if (!raw.includes('&')) return raw;
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const amp = raw.indexOf('&', i);
    if (amp < 0) {
      out += raw.slice(i);
      break;
    }
    out += raw.slice(i, amp);
    if (budget && --budget.left < 0) fail('XML_LIMIT', field, 'too many entity references');
    const semi = raw.indexOf(';', amp + 1);
    if (semi < 0 || semi - amp > 12) fail('XML_ENTITY', field, 'unterminated or overlong entity reference');
    const name = raw.slice(amp + 1, semi);
    const predefined = PREDEFINED[name];
    if (predefined !== undefined && Object.hasOwn(PREDEFINED, name)) out += predefined;
    else if (/^#[0-9]{1,7}$/.test(name) || /^#x[0-9A-Fa-f]{1,6}$/.test(name)) {
      const cp = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      if (!validCodePoint(cp)) fail('XML_ENTITY', field, `character reference &${name}; is not an XML character`);
      out += String.fromCodePoint(cp);
    } else fail('XML_ENTITY', field, `entity reference &${name.slice(0, 12)}; is not allowed`);
    i = semi + 1;
  }
  return out;
}

function toText(input: Buffer | string, limits: XmlLimits): string {
  if (Buffer.isBuffer(input)) {
    if (input.length > limits.maxBytes)
      fail('XML_TOO_LARGE', 'document', `${input.length} bytes exceeds ${limits.maxBytes}`);
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(input);
    } catch {
      return fail('XML_ENCODING', 'document', 'not valid UTF-8');
    }
  }
  if (typeof input !== 'string') fail('XML_MALFORMED', 'document', 'input must be a Buffer or string');
  // Cheap bound first (a UTF-16 unit is at least one UTF-8 byte), then the exact byte length.
  if (input.length > limits.maxBytes || Buffer.byteLength(input, 'utf8') > limits.maxBytes) {
    fail('XML_TOO_LARGE', 'document', `document exceeds ${limits.maxBytes} bytes`);
  }
  return input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
}

interface Open {
  el: XmlElement;
  qname: string;
}

/** Parses one XML document into its root element. Throws DiscoveryParseError on any violation. */
export function parseXml(input: Buffer | string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  const s = toText(input, limits);
  if (BAD_CHARS_RE.test(s)) fail('XML_MALFORMED', 'document', 'contains characters not allowed in XML');
  const n = s.length;
  let i = 0;
  if (s.startsWith('<?xml') && (isXmlWhitespace(s[5]) || s[5] === '?')) {
    const m = DECL_RE.exec(s.slice(0, 256));
    if (!m) fail('XML_MALFORMED', 'xml-declaration', 'malformed XML declaration');
    const enc = m![3];
    if (enc !== undefined && !/^utf-?8$/i.test(enc))
      fail('XML_ENCODING', 'xml-declaration', `unsupported encoding ${enc}`);
    i = m![0].length;
  }
  const stack: Open[] = [];
  let root: XmlElement | undefined;
  let elements = 0;
  const refs = { left: limits.maxReferences };

  const readName = (field: string): string => {
    NAME_RE.lastIndex = i;
    const m = NAME_RE.exec(s);
    if (!m) return fail('XML_MALFORMED', field, `expected a name at offset ${i}`);
    if (m[0].length > limits.maxNameLength) fail('XML_LIMIT', field, 'name too long');
    i += m[0].length;
    return m[0];
  };
  const skipWs = (): boolean => {
    const start = i;
    while (i < n && isXmlWhitespace(s[i])) i++;
    return i > start;
  };

  while (i < n) {
    if (s[i] !== '<') {
      const next = s.indexOf('<', i);
      const end = next < 0 ? n : next;
      const raw = s.slice(i, end);
      i = end;
      const top = stack[stack.length - 1];
      if (!top) {
        if (!/^[ \t\r\n]*$/.test(raw)) fail('XML_MALFORMED', 'document', 'text outside the root element');
        continue;
      }
      if (raw.includes(']]>')) fail('XML_MALFORMED', top.qname, "']]>' in character data");
      top.el.text += decodeEntities(raw, top.qname, refs);
      continue;
    }
    if (s.startsWith('<!--', i)) {
      const end = s.indexOf('-->', i + 4);
      if (end < 0) fail('XML_MALFORMED', 'comment', 'unterminated comment');
      if (s.slice(i + 4, end).includes('--')) fail('XML_MALFORMED', 'comment', "'--' inside a comment");
      i = end + 3;
      continue;
    }
    if (s.startsWith('<![CDATA[', i)) {
      const top = stack[stack.length - 1];
      if (!top) fail('XML_MALFORMED', 'document', 'CDATA outside the root element');
      const end = s.indexOf(']]>', i + 9);
      if (end < 0) fail('XML_MALFORMED', top!.qname, 'unterminated CDATA section');
      top!.el.text += s.slice(i + 9, end);
      i = end + 3;
      continue;
    }
    if (s.startsWith('<!DOCTYPE', i)) fail('XML_DOCTYPE', 'document', 'DOCTYPE/DTD is not allowed');
    if (s.startsWith('<!ENTITY', i)) fail('XML_ENTITY', 'document', 'entity declarations are not allowed');
    if (s.startsWith('<!', i)) fail('XML_MALFORMED', 'document', 'markup declarations are not allowed');
    if (s.startsWith('<?', i)) fail('XML_PI', 'document', 'processing instructions are not allowed');
    if (s.startsWith('</', i)) {
      i += 2;
      const name = readName('end-tag');
      skipWs();
      if (s[i] !== '>') fail('XML_MALFORMED', name, 'malformed end tag');
      i++;
      const top = stack.pop();
      if (!top || top.qname !== name)
        fail('XML_MALFORMED', name, `end tag does not match ${top ? top.qname : 'any open element'}`);
      continue;
    }
    // Start tag.
    i++;
    if (root && stack.length === 0) fail('XML_MALFORMED', 'document', 'more than one root element');
    if (stack.length + 1 > limits.maxDepth) fail('XML_DEPTH', 'document', `nesting deeper than ${limits.maxDepth}`);
    if (++elements > limits.maxElements) fail('XML_LIMIT', 'document', `more than ${limits.maxElements} elements`);
    const qname = readName('start-tag');
    const rawAttrs: Array<[string, string]> = [];
    let selfClosing = false;
    for (;;) {
      const hadWs = skipWs();
      if (i >= n) fail('XML_MALFORMED', qname, 'unterminated start tag');
      if (s[i] === '>') {
        i++;
        break;
      }
      if (s[i] === '/' && s[i + 1] === '>') {
        i += 2;
        selfClosing = true;
        break;
      }
      if (!hadWs) fail('XML_MALFORMED', qname, 'expected whitespace before attribute');
      const aname = readName(qname);
      skipWs();
      if (s[i] !== '=') fail('XML_MALFORMED', `${qname}@${aname}`, "expected '='");
      i++;
      skipWs();
      const q = s[i];
      if (q !== '"' && q !== "'") fail('XML_MALFORMED', `${qname}@${aname}`, 'attribute value must be quoted');
      const close = s.indexOf(q!, i + 1);
      if (close < 0) fail('XML_MALFORMED', `${qname}@${aname}`, 'unterminated attribute value');
      if (close - i - 1 > limits.maxAttributeLength) fail('XML_LIMIT', `${qname}@${aname}`, 'attribute value too long');
      const rawValue = s.slice(i + 1, close);
      if (rawValue.includes('<')) fail('XML_MALFORMED', `${qname}@${aname}`, "'<' in attribute value");
      i = close + 1;
      if (rawAttrs.length >= limits.maxAttributes)
        fail('XML_LIMIT', qname, `more than ${limits.maxAttributes} attributes`);
      if (rawAttrs.some(([a]) => a === aname)) fail('XML_MALFORMED', `${qname}@${aname}`, 'duplicate attribute');
      // Normalise literal whitespace first so character references (&#10;) survive, as XML specifies.
      rawAttrs.push([aname, decodeEntities(rawValue.replace(/[\t\n\r]/g, ' '), `${qname}@${aname}`, refs)]);
    }
    const parent = stack[stack.length - 1];
    let bindings: Map<string, string> | ReadonlyMap<string, string> = parent
      ? parent.el.bindings
      : new Map([['xml', XML_NS]]);
    const decls = rawAttrs.filter(([a]) => a === 'xmlns' || a.startsWith('xmlns:'));
    if (decls.length > 0) {
      const copy = new Map(bindings);
      for (const [a, v] of decls) {
        const prefix = a === 'xmlns' ? '' : a.slice(6);
        if (prefix === 'xmlns' || (prefix === 'xml' && v !== XML_NS) || v === XMLNS_NS)
          fail('XML_NAMESPACE', `${qname}@${a}`, 'reserved namespace binding');
        if (prefix !== '' && v === '') fail('XML_NAMESPACE', `${qname}@${a}`, 'prefix bound to an empty URI');
        if (prefix === '' && v === '') copy.delete('');
        else copy.set(prefix, v);
      }
      if (copy.size > MAX_BINDINGS) fail('XML_LIMIT', qname, `more than ${MAX_BINDINGS} namespace bindings in scope`);
      bindings = copy;
    }
    const resolve = (name: string, isAttr: boolean): [string, string] => {
      const colon = name.indexOf(':');
      if (colon < 0) return [isAttr ? '' : (bindings.get('') ?? ''), name];
      const uri = bindings.get(name.slice(0, colon));
      if (uri === undefined) return fail('XML_NAMESPACE', name, `unbound prefix ${name.slice(0, colon)}`);
      return [uri, name.slice(colon + 1)];
    };
    const [ns, local] = resolve(qname, false);
    const attrs: XmlAttribute[] = [];
    for (const [a, v] of rawAttrs) {
      if (a === 'xmlns' || a.startsWith('xmlns:')) continue;
      const [ans, alocal] = resolve(a, true);
      if (attrs.some((x) => x.ns === ans && x.local === alocal))
        fail('XML_MALFORMED', `${qname}@${a}`, 'duplicate expanded attribute name');
      attrs.push({ ns: ans, local: alocal, value: v });
    }
    const el: XmlElement = { ns, local, attrs, children: [], text: '', bindings };
    if (parent) parent.el.children.push(el);
    else root = el;
    if (!selfClosing) stack.push({ el, qname });
  }
  if (stack.length > 0) fail('XML_MALFORMED', stack[stack.length - 1]!.qname, 'unclosed element');
  if (!root) fail('XML_MALFORMED', 'document', 'no root element');
  return root!;
}

/** First child with the given expanded name. */
export function child(el: XmlElement, ns: string, local: string): XmlElement | undefined {
  return el.children.find((c) => c.ns === ns && c.local === local);
}

/** Unprefixed attribute value by local name (WS-Discovery attributes are unqualified). */
export function attr(el: XmlElement, local: string): string | undefined {
  return el.attrs.find((a) => a.ns === '' && a.local === local)?.value;
}

/** Resolves a QName appearing in text content (e.g. wsd:Types) against the element's bindings. */
export function resolveQName(el: XmlElement, qname: string): { ns: string; local: string } | undefined {
  const colon = qname.indexOf(':');
  if (colon < 0) return { ns: el.bindings.get('') ?? '', local: qname };
  const ns = el.bindings.get(qname.slice(0, colon));
  return ns === undefined ? undefined : { ns, local: qname.slice(colon + 1) };
}

/** Escapes text for element content or a double-quoted attribute. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;',
  );
}
