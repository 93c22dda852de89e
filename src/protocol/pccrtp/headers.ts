/**
 * MS-PCCRTP header codec: the PeerDist HTTP extension headers, for both the client (download
 * engine) and the server (origin). Pure functions, no I/O. See protocol/pccrtp.md.
 */
import type { ContentVersion } from '../pccrc/types.js';

export const HDR_PEERDIST = 'X-P2P-PeerDist';
export const HDR_PEERDIST_EX = 'X-P2P-PeerDistEx';
export const PEERDIST_CODING = 'peerdist';

export interface PeerDistVersion {
  major: number;
  minor: number;
}

export type HeaderBag = Record<string, string | string[] | number | undefined>;

/** Case-insensitive header lookup; repeated headers are joined with ", " (RFC 9110 list syntax). */
export function getHeader(headers: HeaderBag, name: string): string | undefined {
  const want = name.toLowerCase();
  let out: string | undefined;
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== want || v === undefined) continue;
    const s = Array.isArray(v) ? v.join(', ') : String(v);
    out = out === undefined ? s : `${out}, ${s}`;
  }
  return out;
}

/**
 * Parses `Name=value, Name=value` parameter lists (X-P2P-PeerDist / X-P2P-PeerDistEx).
 * Names are case-insensitive and stored lower-case; surrounding whitespace is ignored; items
 * without `=` or with an empty name are skipped. The first occurrence of a name wins.
 */
export function parseParams(value: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!value) return out;
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const name = item.slice(0, eq).trim().toLowerCase();
    const val = item.slice(eq + 1).trim();
    if (!name || !/^[a-z0-9_-]+$/.test(name) || out.has(name)) continue;
    out.set(name, val);
  }
  return out;
}

/** `major.minor` with integer parts (no spaces around the dot); undefined when malformed. */
export function parseVersion(s: string | undefined): PeerDistVersion | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d{1,6})\.(\d{1,6})$/.exec(s.trim());
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]) };
}

/** Negative, zero or positive like a sort comparator; major and minor compare as integers. */
export function compareVersions(a: PeerDistVersion, b: PeerDistVersion): number {
  return a.major !== b.major ? a.major - b.major : a.minor - b.minor;
}

export function formatVersion(v: PeerDistVersion): string {
  return `${v.major}.${v.minor}`;
}

const V1_0: PeerDistVersion = { major: 1, minor: 0 };
const V1_1: PeerDistVersion = { major: 1, minor: 1 };
const V2_0: PeerDistVersion = { major: 2, minor: 0 };

/** Parses one `coding;q=x` list (Accept-Encoding / Content-Encoding) into lower-case tokens and q-values. */
function codings(value: string | undefined): Array<{ token: string; q: number }> {
  if (!value) return [];
  const out: Array<{ token: string; q: number }> = [];
  for (const part of value.split(',')) {
    const [tok, ...params] = part.split(';');
    const token = (tok ?? '').trim().toLowerCase();
    if (!token) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) {
        const n = Number(m[1]);
        q = Number.isFinite(n) ? n : 0;
      }
    }
    out.push({ token, q });
  }
  return out;
}

/** True when `peerdist` is listed in Accept-Encoding (case-insensitive) with a non-zero q-value. */
export function acceptsPeerDist(acceptEncoding: string | undefined): boolean {
  return codings(acceptEncoding).some((c) => c.token === PEERDIST_CODING && c.q > 0);
}

const isTrue = (v: string | undefined) => v !== undefined && v.toLowerCase() === 'true';

// ---------------------------------------------------------------------------------------------
// Client side

/** Headers for a GET that asks the origin for content information (MS-PCCRTP 1.1 client). */
export function clientRequestHeaders(opts: {
  maxContentVersion: ContentVersion;
  hashRequest?: boolean;
}): Record<string, string> {
  let ex = `MinContentInformation=1.0, MaxContentInformation=${opts.maxContentVersion === 2 ? '2.0' : '1.0'}`;
  if (opts.hashRequest) ex += ', HashRequest=true';
  return {
    'Accept-Encoding': PEERDIST_CODING,
    [HDR_PEERDIST]: 'Version=1.1',
    [HDR_PEERDIST_EX]: ex,
  };
}

/** Headers for a fallback ranged fetch from the origin (no `peerdist` coding offered). */
export function missingDataRequestHeaders(): Record<string, string> {
  return { [HDR_PEERDIST]: 'Version=1.1, MissingDataRequest=true' };
}

export interface PeerDistResponseInfo {
  /** The body is content information (Content-Encoding lists `peerdist`). */
  peerdist: boolean;
  version?: PeerDistVersion;
  /** Identity length of the entity (X-P2P-PeerDist ContentLength), when present and valid. */
  contentLength?: number;
  /** The server has no hashes yet and invites a HashRequest. */
  makeHashRequest: boolean;
}

export function parsePeerDistResponse(headers: HeaderBag): PeerDistResponseInfo {
  const peerdist = codings(getHeader(headers, 'content-encoding')).some((c) => c.token === PEERDIST_CODING);
  const pd = parseParams(getHeader(headers, HDR_PEERDIST));
  const ex = parseParams(getHeader(headers, HDR_PEERDIST_EX));
  const out: PeerDistResponseInfo = { peerdist, makeHashRequest: isTrue(ex.get('makehashrequest')) };
  const version = parseVersion(pd.get('version'));
  if (version) out.version = version;
  const cl = pd.get('contentlength');
  if (cl !== undefined && /^\d{1,16}$/.test(cl)) {
    const n = Number(cl);
    if (Number.isSafeInteger(n)) out.contentLength = n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server side

export interface Negotiation {
  /** Answer with content information instead of the entity. */
  peerdist: boolean;
  /** Content information version to send (set when peerdist). */
  contentVersion?: ContentVersion;
  /** Version for our X-P2P-PeerDist response header: 1.0 to 1.0 clients, else 1.1. */
  responseVersion: '1.0' | '1.1';
  /** Client asked us to produce hashes now (X-P2P-PeerDistEx HashRequest=true). */
  hashRequest: boolean;
  /** Client is fetching data its peers lacked (X-P2P-PeerDist MissingDataRequest=true). */
  missingData: boolean;
}

/**
 * Decides how to answer a request (MS-PCCRTP 3.2; protocol/pccrtp.md, "Negotiation"). Whether hashes exist, the
 * method and the entity's validators are the caller's business; this only reads the headers.
 * We pick the highest content-information version in the client's [Min, Max] (2.0, then 1.0)
 * unless `preferVersion: 1` asks for 1.0 whenever the client allows it.
 */
export function negotiate(headers: HeaderBag, opts: { preferVersion?: ContentVersion } = {}): Negotiation {
  const pd = parseParams(getHeader(headers, HDR_PEERDIST));
  const exRaw = getHeader(headers, HDR_PEERDIST_EX);
  const ex = parseParams(exRaw);
  const clientVersion = parseVersion(pd.get('version'));
  const missingData = isTrue(pd.get('missingdatarequest'));
  const hashRequest = isTrue(ex.get('hashrequest'));
  const responseVersion = clientVersion && compareVersions(clientVersion, V1_1) < 0 ? '1.0' : '1.1';
  const plain: Negotiation = { peerdist: false, responseVersion, hashRequest, missingData };

  if (missingData || !acceptsPeerDist(getHeader(headers, 'accept-encoding'))) return plain;
  if (!clientVersion || clientVersion.major < 1) return plain;
  // A 1.0 client (Windows 7 / 2008 R2) only understands content information v1.
  if (compareVersions(clientVersion, V1_1) < 0) return { ...plain, peerdist: true, contentVersion: 1 };
  // 1.1 and later must state an acceptable content-information range.
  const max = parseVersion(ex.get('maxcontentinformation'));
  const minRaw = ex.get('mincontentinformation');
  const min = minRaw === undefined ? V1_0 : parseVersion(minRaw);
  if (!max || !min) return plain;
  const fits = (v: PeerDistVersion) => compareVersions(min, v) <= 0 && compareVersions(v, max) <= 0;
  const order: ContentVersion[] = opts.preferVersion === 1 ? [1, 2] : [2, 1];
  for (const v of order) {
    if (fits(v === 2 ? V2_0 : V1_0)) return { ...plain, peerdist: true, contentVersion: v };
  }
  return plain;
}

/** Response headers for a PeerDist body (besides Content-Length and validators). */
export function peerDistResponseHeaders(
  responseVersion: '1.0' | '1.1',
  identityLength: number,
): Record<string, string> {
  return {
    'Content-Encoding': PEERDIST_CODING,
    [HDR_PEERDIST]: `Version=${responseVersion}, ContentLength=${identityLength}`,
  };
}

/** Added to a normal response when the client offered PeerDist but hashes are not ready. */
export function makeHashRequestHeaders(): Record<string, string> {
  return { [HDR_PEERDIST_EX]: 'MakeHashRequest=true' };
}
