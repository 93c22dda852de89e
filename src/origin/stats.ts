/** Counters reported by `GET /.peerdist/stats` (see protocol/pccrtp.md, "Stats endpoint"). */
export interface OriginStats {
  /** Every HTTP request received, including refused ones and the stats endpoint. */
  requests: number;
  /** Identity bodies sent (200 and 206) other than missing-data requests. */
  bytesFull: number;
  fullResponses: number;
  /** Content-information bodies sent (Content-Encoding: peerdist). */
  bytesContentInfo: number;
  peerdistResponses: number;
  /** Bodies sent to requests flagged MissingDataRequest=true. */
  bytesMissingData: number;
  missingDataRequests: number;
  /** Normal responses that carried MakeHashRequest=true. */
  makeHashRequests: number;
  /** First PeerDist requests that waited for hashing up to the bound and then got the plain body. */
  firstWaitsExpired: number;
  /** Requests that carried HashRequest=true. */
  hashRequests: number;
  notModified: number;
  /** Hashing jobs started (each hashes one entity for one content-information version). */
  hashJobs: number;
  hashJobsFailed: number;
  /** PeerDist responses answered from the hash cache without waiting for a hash job. */
  cacheHits: number;
  /** Upstream mode: whole entities fetched into the entity store, and their bytes. */
  upstreamFetches: number;
  upstreamBytes: number;
  /** Upstream mode: revalidations the upstream answered 304 (stored version still current). */
  upstreamNotModified: number;
  /** Upstream mode: responses answered from the entity store. */
  storeResponses: number;
  /** Upstream mode with a store: entities and bytes held, entities evicted (gauges, not counters). */
  storeEntities?: number;
  storeBytes?: number;
  storeEvictions?: number;
  /** With --require-jwt: requests refused (401/403) for a missing, invalid or insufficient token. */
  authRejected?: number;
  /** Object-store mode (`--store`): requests answered 503 because the store was unreachable. */
  storeUnavailable?: number;
  /** Object-store mode: content-information records read from the store and accepted. */
  recordHits?: number;
  /** Object-store mode: records that failed their check and were recomputed. */
  recordsRejected?: number;
  /** Object-store mode: hash jobs that found another node hashing and waited for its record. */
  lockWaits?: number;
}

export function emptyStats(): OriginStats {
  return {
    requests: 0,
    bytesFull: 0,
    fullResponses: 0,
    bytesContentInfo: 0,
    peerdistResponses: 0,
    bytesMissingData: 0,
    missingDataRequests: 0,
    makeHashRequests: 0,
    firstWaitsExpired: 0,
    hashRequests: 0,
    notModified: 0,
    hashJobs: 0,
    hashJobsFailed: 0,
    cacheHits: 0,
    upstreamFetches: 0,
    upstreamBytes: 0,
    upstreamNotModified: 0,
    storeResponses: 0,
  };
}
