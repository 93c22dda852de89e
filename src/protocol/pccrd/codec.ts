/**
 * MS-PCCRD (WS-Discovery for PeerDist) message codec: v1 and v2 Probe and ProbeMatches.
 * Pure: no I/O, no clocks, no randomness (callers pass message IDs). See protocol/pccrd.md.
 *
 * Output always uses the prefixes soap/wsa/wsd/PeerDist and writes <wsd:Scopes>, <wsd:XAddrs> and
 * <PeerDist:BlockCount> as plain start tags in ProbeMatches, because iPXE finds them by substring.
 * Input is parsed namespace-aware by ./xml.ts with hard limits; every rejection is a
 * DiscoveryParseError.
 */
import { DiscoveryParseError, type DiscoveryErrorCode } from './errors.js';
import {
  MAX_SCOPES,
  segmentIdHex,
  encodeV2Scopes,
  decodeV2Scopes,
  encodeAvailability,
  encodeAvailabilityPairs,
  decodeAvailability,
  availabilityPairs,
  decodeBase64,
  parseXAddr,
  type Availability,
} from './values.js';
import {
  parseXml,
  child,
  attr,
  resolveQName,
  escapeXml,
  type XmlElement,
  type XmlLimits,
  DEFAULT_XML_LIMITS,
} from './xml.js';
import { encodeSegmentAges, decodeSegmentAges, type SegmentAges } from './segment-ages.js';

export type DiscoveryVersion = 1 | 2;

export const NS = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  wsa: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  wsd: 'http://schemas.xmlsoap.org/ws/2005/04/discovery',
  PeerDist: 'http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery',
} as const;

export const WSD_TO = 'urn:schemas-xmlsoap-org:ws:2005:04:discovery';
export const ANONYMOUS_TO = 'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous';
export const ACTION_PROBE = 'http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe';
export const ACTION_PROBE_MATCHES = 'http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches';
export const MATCH_BY_V1 = 'http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0';
export const MATCH_BY_V2 = 'http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule';
const TYPE_LOCAL: Record<DiscoveryVersion, string> = { 1: 'PeerDistData', 2: 'PeerDistDataV2' };

export {
  MAX_SCOPES,
  V2_SEGMENT_HASH_SIZE,
  segmentIdHex,
  encodeV2Scopes,
  decodeV2Scopes,
  encodeAvailability,
  encodeAvailabilityPairs,
  decodeAvailability,
  availabilityPairs,
  decodeBase64,
  formatXAddr,
  parseXAddr,
  type Availability,
} from './values.js';

/** Accepted v1 HoHoDk sizes (SHA-256/384/512). */
const V1_ID_SIZES = new Set([32, 48, 64]);
/** XAddrs entries kept from (and sent in) one ProbeMatch. */
export const MAX_XADDRS = 16;
const MAX_URI = 256;

export interface Probe {
  kind: 'Probe';
  version: DiscoveryVersion;
  messageId: string;
  segmentIds: Buffer[];
}

export interface ProbeMatchEntry {
  segmentId: Buffer;
  /** v1: blocks of the segment this peer can serve (never 0 in parsed output). */
  blockCount?: number;
  /** v2: high bit of the pair, "has this segment at least partly". */
  partial?: boolean;
  /** v2: low bit of the pair, "has all of this segment". */
  complete?: boolean;
}

export interface ProbeMatches {
  kind: 'ProbeMatches';
  version: DiscoveryVersion;
  messageId: string;
  relatesTo: string;
  instanceId: number;
  messageNumber: number;
  /** wsa:EndpointReference/wsa:Address, `urn:uuid:...`. */
  endpoint: string;
  /** v1: listed segments with a non-zero count. v2: probed segments whose pair is non-zero (needs the probe's IDs). */
  matches: ProbeMatchEntry[];
  /** `host:port` entries (IPv6 as `[addr]:port`). */
  xaddrs: string[];
  metadataVersion?: number;
  /** v2: the raw two-bit pairs (four per byte, so trailing pad pairs included). */
  availability?: Availability[];
  /** v2 with ParseOptions.pairs: the same pairs as numbers 0..3 (availabilityPairs), instead of `availability`. */
  pairs?: Uint8Array;
  /** v2: decoded SegmentAges blob, if present and valid (an invalid blob is discarded, protocol/pccrd.md). */
  segmentAges?: SegmentAges;
}

export type DiscoveryMessage = Probe | ProbeMatches;

const fail = (code: DiscoveryErrorCode, field: string, msg: string): never => {
  throw new DiscoveryParseError(code, field, msg);
};

// ---------------------------------------------------------------------------------------------
// Encoders

const ENVELOPE_OPEN =
  '<?xml version="1.0" encoding="utf-8"?>' +
  `<soap:Envelope xmlns:soap="${NS.soap}" xmlns:wsa="${NS.wsa}" xmlns:wsd="${NS.wsd}" xmlns:PeerDist="${NS.PeerDist}">`;
const ENVELOPE_CLOSE = '</soap:Envelope>';

function checkUri(value: string, field: string): string {
  if (value.length === 0 || value.length > MAX_URI || /[\s<>&"']/.test(value))
    throw new RangeError(`${field}: invalid URI ${JSON.stringify(value)}`);
  return value;
}

function checkU32(v: number, field: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${field}: not an unsigned 32-bit integer`);
  return v;
}

export function encodeProbe(probe: Omit<Probe, 'kind'>): string {
  const ids = probe.segmentIds;
  if (ids.length < 1 || ids.length > MAX_SCOPES) throw new RangeError(`probe carries 1..${MAX_SCOPES} segment IDs`);
  let scopes: string;
  if (probe.version === 1) {
    for (const id of ids)
      if (!V1_ID_SIZES.has(id.length)) throw new RangeError('v1 segment IDs are 32, 48 or 64 bytes');
    scopes = `<wsd:Scopes MatchBy="${MATCH_BY_V1}">${ids.map(segmentIdHex).join(' ')}</wsd:Scopes>`;
  } else {
    scopes = `<wsd:Scopes MatchBy="${MATCH_BY_V2}">${encodeV2Scopes(ids)}</wsd:Scopes>`;
  }
  return (
    ENVELOPE_OPEN +
    '<soap:Header>' +
    `<wsa:To>${WSD_TO}</wsa:To>` +
    `<wsa:Action>${ACTION_PROBE}</wsa:Action>` +
    `<wsa:MessageID>${escapeXml(checkUri(probe.messageId, 'MessageID'))}</wsa:MessageID>` +
    '</soap:Header>' +
    '<soap:Body><wsd:Probe>' +
    `<wsd:Types>PeerDist:${TYPE_LOCAL[probe.version]}</wsd:Types>` +
    scopes +
    '</wsd:Probe></soap:Body>' +
    ENVELOPE_CLOSE
  );
}

/**
 * The match of each probed ID (undefined: not held). The responder builds its matches from the
 * probe's own ID buffers, so they pair by reference; other callers' matches pair by ID. (The
 * former search of every match for every probed ID was the largest single cost of a daemon in a
 * 32-client flash crowd.)
 */
function pairMatches(ids: Buffer[], matches: ProbeMatchEntry[]): Array<ProbeMatchEntry | undefined> {
  const byRef = new Map<Buffer, ProbeMatchEntry>();
  for (const m of matches) byRef.set(m.segmentId, m);
  const used = new Set<ProbeMatchEntry>();
  const out = ids.map((id) => {
    const m = byRef.get(id);
    if (m) used.add(m);
    return m;
  });
  if (used.size === matches.length) return out;
  const byId = new Map<string, ProbeMatchEntry>();
  for (const m of matches) {
    const k = m.segmentId.toString('hex');
    if (!byId.has(k)) byId.set(k, m);
  }
  return ids.map((id) => byId.get(id.toString('hex')));
}

/**
 * Encodes a ProbeMatches message. v1: `matches` lists the segments held, each with its block count
 * (8 upper-case hex digits each in BlockCount). v2: `probeSegmentIds` (the probe's list, in its
 * order) is required; each probed segment's pair comes from the match with the same ID (absent = 00).
 */
export function encodeProbeMatches(pm: Omit<ProbeMatches, 'kind'>, probeSegmentIds?: Buffer[]): string {
  checkXAddrs(pm.xaddrs);
  let scopes: string;
  let data: string;
  if (pm.version === 1) {
    if (pm.matches.length < 1 || pm.matches.length > MAX_SCOPES)
      throw new RangeError(`ProbeMatch carries 1..${MAX_SCOPES} segments`);
    const counts = pm.matches.map((m) => {
      const c = checkU32(m.blockCount ?? -1, 'BlockCount');
      if (c === 0) throw new RangeError('BlockCount 0 must not be announced');
      return c.toString(16).toUpperCase().padStart(8, '0');
    });
    scopes = pm.matches.map((m) => segmentIdHex(m.segmentId)).join(' ');
    data = `<PeerDist:BlockCount>${counts.join('')}</PeerDist:BlockCount>`;
  } else {
    if (!probeSegmentIds || probeSegmentIds.length < 1 || probeSegmentIds.length > MAX_SCOPES)
      throw new RangeError("v2 ProbeMatch needs the probe's segment IDs");
    const pairs = pairMatches(probeSegmentIds, pm.matches).map((m) => ({
      partial: !!m && (!!m.partial || !!m.complete),
      complete: !!m && !!m.complete,
    }));
    scopes = encodeAvailability(pairs).toString('base64');
    data = v2Data(pm.segmentAges);
  }
  return probeMatchesEnvelope(pm, scopes, data);
}

/**
 * A v2 ProbeMatches from its availability pairs directly (one per probed segment, in probe order:
 * 0 none, 2 part, 3 all; see encodeAvailabilityPairs): the same bytes as encodeProbeMatches for the
 * same segments, without a match object per segment (the responder's hot path).
 */
export function encodeProbeMatchesV2(
  pm: Omit<ProbeMatches, 'kind' | 'matches' | 'version'>,
  pairs: Uint8Array,
): string {
  checkXAddrs(pm.xaddrs);
  if (pairs.length < 1 || pairs.length > MAX_SCOPES)
    throw new RangeError("v2 ProbeMatch needs the probe's segment IDs");
  return probeMatchesEnvelope(
    { ...pm, version: 2 },
    encodeAvailabilityPairs(pairs).toString('base64'),
    v2Data(pm.segmentAges),
  );
}

function checkXAddrs(xaddrs: string[]): void {
  if (xaddrs.length === 0) throw new RangeError('XAddrs must not be empty');
  for (const x of xaddrs) if (!parseXAddr(x)) throw new RangeError(`XAddrs: invalid entry ${JSON.stringify(x)}`);
}

function v2Data(segmentAges: SegmentAges | undefined): string {
  const ages = segmentAges ?? { units: 3, entries: [] };
  return `<PeerDist:SegmentAges>${encodeSegmentAges(ages).toString('base64')}</PeerDist:SegmentAges>`;
}

function probeMatchesEnvelope(pm: Omit<ProbeMatches, 'kind' | 'matches'>, scopes: string, data: string): string {
  return (
    ENVELOPE_OPEN +
    '<soap:Header>' +
    `<wsa:To>${ANONYMOUS_TO}</wsa:To>` +
    `<wsa:Action>${ACTION_PROBE_MATCHES}</wsa:Action>` +
    `<wsa:MessageID>${escapeXml(checkUri(pm.messageId, 'MessageID'))}</wsa:MessageID>` +
    `<wsa:RelatesTo>${escapeXml(checkUri(pm.relatesTo, 'RelatesTo'))}</wsa:RelatesTo>` +
    `<wsd:AppSequence InstanceId="${checkU32(pm.instanceId, 'InstanceId')}" MessageNumber="${checkU32(pm.messageNumber, 'MessageNumber')}"/>` +
    '</soap:Header>' +
    '<soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>' +
    `<wsa:EndpointReference><wsa:Address>${escapeXml(checkUri(pm.endpoint, 'Address'))}</wsa:Address></wsa:EndpointReference>` +
    `<wsd:Types>PeerDist:${TYPE_LOCAL[pm.version]}</wsd:Types>` +
    `<wsd:Scopes>${scopes}</wsd:Scopes>` +
    `<wsd:XAddrs>${pm.xaddrs.join(' ')}</wsd:XAddrs>` +
    `<wsd:MetadataVersion>${pm.metadataVersion ?? pm.version}</wsd:MetadataVersion>` +
    `<PeerDist:PeerDistData>${data}</PeerDist:PeerDistData>` +
    '</wsd:ProbeMatch></wsd:ProbeMatches></soap:Body>' +
    ENVELOPE_CLOSE
  );
}

// ---------------------------------------------------------------------------------------------
// Parser

export interface ParseOptions {
  /** v2 ProbeMatches carry only bits in probe order: return the probe's IDs for a RelatesTo to get `matches`. */
  probeSegments?: (relatesTo: string) => Buffer[] | undefined;
  /**
   * v2 ProbeMatches: return the availability as `pairs` (numbers, availabilityPairs) instead of
   * an `availability` object per pair, and no `matches` unless probeSegments is given (the
   * prober's hot path reads the pairs by position).
   */
  pairs?: boolean;
  limits?: XmlLimits;
}

function need(el: XmlElement | undefined, field: string): XmlElement {
  if (!el) return fail('PCCRD_MISSING', field, 'required element missing');
  return el;
}

function uriText(el: XmlElement | undefined, field: string): string {
  const v = need(el, field).text.trim();
  // Same rule as the encoders' checkUri, so every ID we accept can be echoed (RelatesTo) in a reply.
  if (v.length === 0 || v.length > MAX_URI || /[\s<>&"']/.test(v))
    fail('PCCRD_INVALID', field, 'empty, overlong, or contains whitespace or <>&"\'');
  return v;
}

function tokens(text: string): string[] {
  return text.split(/[ \t\r\n]+/).filter((s) => s.length > 0);
}

/** Whitespace tokens of a hex Scopes value, checked for size and hex digits. */
function hexTokens(text: string, field: string): string[] {
  const toks = tokens(text);
  if (toks.length === 0) fail('PCCRD_INVALID', field, 'no segment IDs');
  if (toks.length > MAX_SCOPES * 4) fail('XML_LIMIT', field, 'too many tokens');
  for (const tok of toks) if (!/^[0-9A-Fa-f]+$/.test(tok)) fail('PCCRD_INVALID', field, 'segment ID is not hex');
  return toks;
}

/**
 * The ways a hex Scopes value can be read as segment IDs, in order of preference: the tokens
 * themselves when each is a whole ID, then the concatenated hex re-split into equal IDs of 32, 48
 * or 64 bytes whose boundaries no token crosses (the spec's examples wrap one long ID across lines,
 * even as two 32-byte halves of a 64-byte ID).
 */
function hexIdReadings(toks: string[]): string[][] {
  const readings: string[][] = [];
  if (toks.every((tok) => V1_ID_SIZES.has(tok.length / 2))) readings.push(toks);
  const all = toks.join('');
  for (const s of [64, 96, 128]) {
    if (all.length % s !== 0) continue;
    let at = 0;
    const fits = toks.every((tok) => {
      const ok = Math.floor(at / s) === Math.floor((at + tok.length - 1) / s);
      at += tok.length;
      return ok;
    });
    if (!fits) continue;
    const ids: string[] = [];
    for (let k = 0; k < all.length; k += s) ids.push(all.slice(k, k + s));
    if (!readings.some((r) => r.length === ids.length)) readings.push(ids);
  }
  return readings;
}

function toIds(hex: string[], field: string): Buffer[] {
  if (hex.length > MAX_SCOPES) fail('XML_LIMIT', field, `more than ${MAX_SCOPES} segment IDs`);
  return hex.map((tok) => Buffer.from(tok, 'hex'));
}

/** Whitespace-separated hex segment IDs (a Probe's Scopes): the first reading of hexIdReadings. */
function parseHexIds(text: string, field: string): Buffer[] {
  const first = hexIdReadings(hexTokens(text, field))[0];
  if (!first) return fail('PCCRD_INVALID', field, 'segment IDs are not 32/48/64 bytes of hex');
  return toIds(first, field);
}

/**
 * A v1 ProbeMatch's Scopes and BlockCount read together (protocol/pccrd.md, "BlockCount width").
 * A count is 8 hex digits (what we send, the spec's message examples, iPXE) or 4 (the 2.2.3.9 prose
 * example). 8 digits per segment of any Scopes reading of hexIdReadings are tried first (the spec's
 * 4.3 example needs its two 64-digit lines read as one 64-byte ID); 4 digits only with the first
 * reading, so a 4-digit BlockCount never also re-joins whole IDs into a longer one. For a given
 * number of segments the widths give different lengths: the length decides.
 */
function parseV1Matches(scopesText: string, bcText: string): ProbeMatchEntry[] {
  const readings = hexIdReadings(hexTokens(scopesText, 'Scopes'));
  if (readings.length === 0) fail('PCCRD_INVALID', 'Scopes', 'segment IDs are not 32/48/64 bytes of hex');
  if (!/^[0-9A-Fa-f]*$/.test(bcText)) fail('PCCRD_INVALID', 'BlockCount', 'not hex');
  let width = 8;
  let hex = readings.find((r) => r.length * 8 === bcText.length);
  if (!hex && readings[0]!.length * 4 === bcText.length) {
    width = 4;
    hex = readings[0];
  }
  if (!hex)
    return fail(
      'PCCRD_INVALID',
      'BlockCount',
      `${bcText.length} hex digits for ${readings[0]!.length} segments (8 or 4 per segment)`,
    );
  const matches: ProbeMatchEntry[] = [];
  toIds(hex, 'Scopes').forEach((segmentId, k) => {
    const blockCount = parseInt(bcText.slice(width * k, width * k + width), 16);
    if (blockCount > 0) matches.push({ segmentId, blockCount });
  });
  return matches;
}

/** Version from wsd:Types (a QName list; the PeerDist one decides). */
function typesVersion(el: XmlElement | undefined): DiscoveryVersion {
  const types = need(el, 'Types');
  for (const tok of tokens(types.text)) {
    const q = resolveQName(types, tok);
    if (q?.ns !== NS.PeerDist) continue;
    if (q.local === TYPE_LOCAL[1]) return 1;
    if (q.local === TYPE_LOCAL[2]) return 2;
  }
  return fail('PCCRD_NOT_PEERDIST', 'Types', 'no PeerDist:PeerDistData or PeerDist:PeerDistDataV2 type');
}

function parseU32Attr(el: XmlElement, name: string): number {
  const v = attr(el, name);
  if (v === undefined) return fail('PCCRD_MISSING', `AppSequence@${name}`, 'attribute missing');
  if (!/^[0-9]{1,10}$/.test(v.trim()) || Number(v) > 0xffffffff)
    fail('PCCRD_INVALID', `AppSequence@${name}`, 'not an unsigned 32-bit integer');
  return Number(v);
}

function parseProbe(body: XmlElement, messageId: string): Probe {
  const probe = need(child(body, NS.wsd, 'Probe'), 'Probe');
  const version = typesVersion(child(probe, NS.wsd, 'Types'));
  const scopes = need(child(probe, NS.wsd, 'Scopes'), 'Scopes');
  const matchBy = attr(scopes, 'MatchBy')?.trim();
  if (version === 1) {
    if (matchBy !== undefined && matchBy !== MATCH_BY_V1)
      fail('PCCRD_INVALID', 'Scopes@MatchBy', 'unsupported matching rule for v1');
    return { kind: 'Probe', version, messageId, segmentIds: parseHexIds(scopes.text, 'Scopes') };
  }
  if (matchBy !== MATCH_BY_V2) fail('PCCRD_INVALID', 'Scopes@MatchBy', 'v2 probe needs the PeerDistV2MatchingRule');
  return { kind: 'Probe', version, messageId, segmentIds: decodeV2Scopes(scopes.text) };
}

function parseProbeMatches(header: XmlElement, body: XmlElement, messageId: string, opts: ParseOptions): ProbeMatches {
  const relatesTo = uriText(child(header, NS.wsa, 'RelatesTo'), 'RelatesTo');
  const seq = child(header, NS.wsd, 'AppSequence');
  const instanceId = seq ? parseU32Attr(seq, 'InstanceId') : 0;
  const messageNumber = seq ? parseU32Attr(seq, 'MessageNumber') : 0;
  const pms = need(child(body, NS.wsd, 'ProbeMatches'), 'ProbeMatches');
  const pm = need(child(pms, NS.wsd, 'ProbeMatch'), 'ProbeMatch');
  const epr = need(child(pm, NS.wsa, 'EndpointReference'), 'EndpointReference');
  const endpoint = uriText(child(epr, NS.wsa, 'Address'), 'Address');
  const version = typesVersion(child(pm, NS.wsd, 'Types'));
  const scopes = need(child(pm, NS.wsd, 'Scopes'), 'Scopes');
  const xaddrs = tokens(need(child(pm, NS.wsd, 'XAddrs'), 'XAddrs').text)
    .slice(0, MAX_XADDRS * 4)
    .filter((x) => parseXAddr(x) !== undefined)
    .slice(0, MAX_XADDRS);
  if (xaddrs.length === 0) fail('PCCRD_INVALID', 'XAddrs', 'no valid host:port address');
  const mvEl = child(pm, NS.wsd, 'MetadataVersion');
  let metadataVersion: number | undefined;
  if (mvEl) {
    const t = mvEl.text.trim();
    if (!/^[0-9]{1,10}$/.test(t)) fail('PCCRD_INVALID', 'MetadataVersion', 'not an unsigned integer');
    metadataVersion = Number(t);
  }
  const data = child(pm, NS.PeerDist, 'PeerDistData');
  const base = {
    kind: 'ProbeMatches' as const,
    version,
    messageId,
    relatesTo,
    instanceId,
    messageNumber,
    endpoint,
    xaddrs,
    metadataVersion,
  };
  if (version === 1) {
    const bcText = need(data && child(data, NS.PeerDist, 'BlockCount'), 'BlockCount').text.replace(/[ \t\r\n]+/g, '');
    return { ...base, matches: parseV1Matches(scopes.text, bcText) };
  }
  const bits = decodeBase64(scopes.text, 'Scopes');
  if (bits.length > Math.ceil(MAX_SCOPES / 4))
    fail('XML_LIMIT', 'Scopes', 'availability array longer than 255 segments');
  let segmentAges: SegmentAges | undefined;
  const agesEl = data && child(data, NS.PeerDist, 'SegmentAges');
  if (agesEl) {
    try {
      segmentAges = decodeSegmentAges(decodeBase64(agesEl.text, 'SegmentAges'));
    } catch (err) {
      if (!(err instanceof DiscoveryParseError)) throw err;
      segmentAges = undefined; // an invalid blob is discarded, not the message (protocol/pccrd.md)
    }
  }
  const matches: ProbeMatchEntry[] = [];
  const probed = opts.probeSegments?.(relatesTo);
  if (probed && bits.length !== Math.ceil(probed.length / 4))
    fail('PCCRD_INVALID', 'Scopes', `${bits.length} bytes of availability for ${probed.length} probed segments`);
  if (opts.pairs) {
    const pairs = availabilityPairs(bits);
    if (probed)
      probed.forEach((segmentId, k) => {
        const p = pairs[k]!;
        if (p !== 0) matches.push({ segmentId, partial: true, complete: (p & 1) !== 0 });
      });
    return { ...base, matches, pairs, segmentAges };
  }
  const availability = decodeAvailability(bits);
  if (probed)
    probed.forEach((segmentId, k) => {
      const a = availability[k]!;
      if (a.partial || a.complete) matches.push({ segmentId, partial: a.partial || a.complete, complete: a.complete });
    });
  return { ...base, matches, availability, segmentAges };
}

/** Parses a Probe or ProbeMatches datagram. Throws DiscoveryParseError for anything else. */
export function parseDiscoveryMessage(input: Buffer | string, opts: ParseOptions = {}): DiscoveryMessage {
  const env = parseXml(input, opts.limits ?? DEFAULT_XML_LIMITS);
  if (env.ns !== NS.soap || env.local !== 'Envelope')
    fail('PCCRD_INVALID', 'Envelope', 'root is not a SOAP 1.2 Envelope');
  const header = need(child(env, NS.soap, 'Header'), 'Header');
  const body = need(child(env, NS.soap, 'Body'), 'Body');
  const action = uriText(child(header, NS.wsa, 'Action'), 'Action');
  const messageId = uriText(child(header, NS.wsa, 'MessageID'), 'MessageID');
  if (action === ACTION_PROBE) return parseProbe(body, messageId);
  if (action === ACTION_PROBE_MATCHES) return parseProbeMatches(header, body, messageId, opts);
  return fail('PCCRD_UNSUPPORTED', 'Action', `unsupported action ${action.slice(0, 100)}`);
}
