/**
 * Every error code peerdist raises, in one place: code -> one-line meaning. Codes are
 * UPPER_SNAKE_CASE; `PeerdistError` (./errors.ts) accepts only these, so a new code must be added
 * here (and explained for users, with what to do about it, in protocol/errors.md). The CLI prints
 * `peerdist: error: CODE: message`; the admin API and the proxy put `CODE: message` in their errors.
 */
export const ERROR_CODES = {
  // Command line, settings, startup
  USAGE: 'the command line contradicts itself or lacks something required (the CLI exits 2)',
  BAD_SIZE: 'a size value (bytes, or with a K/M/G/T suffix) does not parse',
  BAD_ADDRESS: 'a HOST:PORT or admin address is invalid, or the admin API was asked to listen off loopback',
  BAD_CONFIG: 'a daemon setting (flag, PEERDIST_* variable or config file) is invalid',
  BAD_INTERFACE: 'the discovery interface names no local interface or IPv4 address',
  START_FAILED: 'a daemon component could not start (port in use, unreadable key file, ...)',

  // Origin (serve, publish, secret, hash)
  NOT_A_DIRECTORY: 'the directory to serve or publish is not a directory',
  HASH_CACHE_LOCKED: "the origin's hash cache is in use by another serve or publish process",
  BAD_SECRET: 'the server secret file is empty or unusable',
  NO_SECRET: 'hashing needs the server secret and none was given or found',
  BAD_SIGNING_KEY: 'the signing key file does not hold an RSA private key in PEM',
  BAD_STORE_CONFIG: 'the object-store config file does not parse or gives no credentials for the account',

  // Content information (MS-PCCRC) and its signature
  BAD_CONTENT_INFO: 'content information is malformed, or inconsistent with the content it describes',
  BAD_SIGNATURE: 'a signature on content information is required and missing or invalid',

  // Wire codecs: retrieval (MS-PCCRR), discovery (MS-PCCRD and its XML), hosted cache (MS-PCHC)
  PCCRR_MALFORMED: 'a retrieval message does not decode (the field is named)',
  PCCRR_VERSION: 'a retrieval message carries a protocol version we do not speak',
  PCCRR_ENCODE: 'a retrieval message we were asked to build cannot be represented (a bug)',
  PCCRD_INVALID: 'a discovery message has a field with an invalid value',
  PCCRD_MISSING: 'a discovery message lacks a required element or attribute',
  PCCRD_NOT_PEERDIST: 'a WS-Discovery message that is not about PeerDist (ignored)',
  PCCRD_UNSUPPORTED: 'a WS-Discovery action we do not handle (ignored)',
  XML_MALFORMED: 'a discovery datagram is not well-formed XML',
  XML_TOO_LARGE: 'a discovery datagram is larger than we parse',
  XML_LIMIT: 'a discovery datagram exceeds a size limit (names, attributes, elements, text)',
  XML_DEPTH: 'a discovery datagram nests elements too deeply',
  XML_DOCTYPE: 'a discovery datagram has a DOCTYPE (refused: entity expansion)',
  XML_ENTITY: 'a discovery datagram uses an entity other than the five predefined ones',
  XML_PI: 'a discovery datagram has a processing instruction',
  XML_ENCODING: 'a discovery datagram declares an encoding other than UTF-8',
  XML_NAMESPACE: 'a discovery datagram uses an unbound namespace prefix or a reserved or empty binding',
  PCHC_MALFORMED: 'a hosted-cache message does not decode (the field is named)',
  PCHC_VERSION: 'a hosted-cache message carries a protocol version we do not speak',
  PCHC_TOO_LARGE: 'a hosted-cache message is larger than we accept',
  PCHC_ENCODE: 'a hosted-cache message we were asked to build cannot be represented (a bug)',

  // Block cache
  BAD_BLOCK: 'block data does not match its hash (or has the wrong length)',
  BAD_SEGMENT: 'segment metadata is invalid',
  UNKNOWN_SEGMENT: 'the segment is not in the cache',
  SEGMENT_CONFLICT: 'the segment is already cached with different metadata',
  BAD_LIMIT: 'an invalid cache size limit',
  CACHE_LOCKED: 'the cache is in use by a running daemon',
  CACHE_CLOSED: 'the block store is closed (the daemon is shutting down)',
  CACHE_FULL:
    'the cache is at its size limit and the rest is pinned by downloads in progress (the block is delivered without caching)',
  NO_SPACE: "the cache's filesystem is full and nothing is left to evict (the block is delivered without caching)",
  BAD_PACKAGE: 'a cache package is truncated, malformed or of an unknown version',
  REPLAY_SEGMENT: "the segment is a hosted cache's replay record (v2, kept encrypted) and cannot be exported",

  // Hosted cache (peerdist hosted-cache)
  BAD_CERTIFICATE: "the hosted cache's TLS certificate or key cannot be read, parsed or generated",

  // Block retrieval from one peer (MS-PCCRR client): the engine tries another source
  PEER_NOT_AVAILABLE: 'the peer does not have the block (or is at its cap)',
  PEER_PROTOCOL: 'the peer sent an undecodable or inconsistent response',
  PEER_TIMEOUT: 'the peer did not answer within the time limits',
  PEER_HTTP: 'the peer answered with an HTTP status other than 200 or 503',
  PEER_BUSY: 'the peer answered HTTP 503',
  PEER_UNREACHABLE: 'the connection to the peer failed (refused, reset, bad address, client closed)',
  PEER_QUARANTINED: 'not sent: the address failed while on probation and is in quarantine',
  ABORTED: 'the caller cancelled the operation (signal, Ctrl-C)',

  // Downloads (engine)
  ORIGIN_UNREACHABLE: 'the origin could not be reached, or closed the connection before sending everything',
  ORIGIN_STATUS: 'the origin answered with an error status, or the URL cannot be fetched',
  ORIGIN_MISMATCH: "the origin's bytes do not match its own content information",
  ORIGIN_CHANGED:
    'the content changed at the origin during the download (a new ETag); no byte of the new version was used',
  BLOCK_FAILED: 'a block could not be obtained from any peer or the origin',
  CANCELLED: 'the download was cancelled',
  ENGINE_CLOSED: 'the download engine is closed (the daemon is shutting down)',
  LOCAL: 'a local failure during a download (cache, temporary file)',
  TOO_LARGE: "the download's block state would not fit in the memory the daemon may use",

  // Local HTTP proxy
  PROXY_REFUSED:
    "the proxy refused the request: its target is a loopback, link-local or unspecified address or one of this host's own, or the client is outside --proxy-allow",

  // Clients of the daemon (get, status)
  NO_DAEMON: 'no daemon answers at the admin address',
  DAEMON_GONE: 'the daemon closed the connection (stopped or crashed)',
  ADMIN_IO: 'the admin API connection failed, or its answer was too large',
  ADMIN_HTTP: 'the admin API answered with an error status or an invalid document',
  DOWNLOAD_FAILED: 'the daemon could not complete the download',
  TRUNCATED: 'the daemon sent fewer bytes than the content has',
  OUTPUT: 'the output file cannot be written',
  STREAM_BROKEN: "the daemon's stream ended early while its download had not failed (see the daemon's log)",

  // Test kit (testkit/sim: namespace simulation; not shipped)
  SIM_LAB: 'the simulation lab (namespaces, links) was misused or is gone',
  SIM_CLUSTER: 'a simulation step refers to a host, daemon or file that does not exist or is in the wrong state',
  SIM_PROCESS: 'a simulated process failed, or exited before it was ready',
  SIM_TIMEOUT: 'a simulated process was not ready in time',
  SIM_STEP: 'a simulation step (publish, get, fetch, status, stats) failed',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.hasOwn(ERROR_CODES, s);
}
