/**
 * The first request of a download: asks the origin for content information (MS-PCCRTP) and
 * checks what comes back (signature, format, lengths). A non-PeerDist answer is handed back
 * unread as a plain download.
 */
import { parseContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentInfo } from '../protocol/pccrc/types.js';
import { clientRequestHeaders, parsePeerDistResponse } from '../protocol/pccrtp/headers.js';
import { type MemoryBudget, minStateBytes } from './budget.js';
import { checkSignature } from './check-signature.js';
import { DownloadError } from './errors.js';
import { type OriginResponse, header, readBody } from './origin-client.js';
import type { JobContext } from './session.js';
import type { JobInfo } from './types.js';

const MAX_CONTENT_INFO = 256 * 1024 * 1024;

/** Origin metadata passed on to readers (ETag, Last-Modified, Content-Type). */
export type OriginMeta = Omit<JobInfo, 'contentLength' | 'peerdist' | 'contentInfo'>;

export type Negotiated =
  | { peerdist: false; meta: OriginMeta; res: OriginResponse }
  | { peerdist: true; meta: OriginMeta; contentInfo: ContentInfo };

export async function negotiate(
  ctx: Pick<JobContext, 'deps' | 'http'>,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  onContentInfoBytes: (n: number) => void,
  budget?: MemoryBudget,
  /** Ask for at most this content-information version (default: the daemon's setting, else 2). */
  maxVersion?: 1 | 2,
): Promise<Negotiated> {
  const { deps, http } = ctx;
  const maxContentVersion = maxVersion ?? deps.maxContentVersion ?? 2;
  const reqHeaders = { ...headers, ...clientRequestHeaders({ maxContentVersion }) };
  const res = await http.get(url, reqHeaders, signal);
  if (res.status !== 200) {
    res.discard();
    throw new DownloadError('ORIGIN_STATUS', `origin answered HTTP ${res.status} for ${url}`, { status: res.status });
  }
  const pd = parsePeerDistResponse(res.headers);
  const meta: OriginMeta = {};
  const etag = header(res.headers, 'etag');
  if (etag) meta.etag = etag;
  const lm = header(res.headers, 'last-modified');
  if (lm) meta.lastModified = lm;
  const ct = header(res.headers, 'content-type');
  if (ct) meta.contentType = ct;
  if (!pd.peerdist) return { peerdist: false, meta, res };

  // Refuse before reading content information whose block state could never fit (issue 16.7).
  if (budget && pd.contentLength !== undefined && !budget.fits(minStateBytes(pd.contentLength))) {
    res.discard();
    throw tooLarge(url, pd.contentLength, minStateBytes(pd.contentLength), budget);
  }
  const body = await readBody(res, MAX_CONTENT_INFO);
  onContentInfoBytes(body.length);
  if (deps.signaturePublicKeyPem) {
    const why = checkSignature(deps.signaturePublicKeyPem, url, res.headers, body);
    if (why) throw new DownloadError('BAD_SIGNATURE', `content information for ${url} rejected: ${why}`);
  }
  let ci: ContentInfo;
  try {
    ci = parseContentInfo(body);
  } catch (err) {
    throw new DownloadError(
      'BAD_CONTENT_INFO',
      `origin sent malformed content information for ${url}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (pd.contentLength === undefined)
    throw new DownloadError('BAD_CONTENT_INFO', `PeerDist response for ${url} lacks X-P2P-PeerDist ContentLength`);
  if (ci.rangeStart !== 0 || ci.rangeEnd !== pd.contentLength || ci.contentLength !== pd.contentLength) {
    throw new DownloadError(
      'BAD_CONTENT_INFO',
      `content information for ${url} covers ${ci.rangeStart}-${ci.rangeEnd} of ${ci.contentLength} bytes but ContentLength is ${pd.contentLength}`,
    );
  }
  if (ci.version > maxContentVersion)
    throw new DownloadError(
      'BAD_CONTENT_INFO',
      `origin sent content information v${ci.version}, we asked for at most v${maxContentVersion}`,
    );
  return { peerdist: true, meta, contentInfo: ci };
}

export function tooLarge(
  url: string,
  length: number,
  need: number,
  budget: MemoryBudget,
  also?: string,
): DownloadError {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  return new DownloadError(
    'TOO_LARGE',
    `download of ${url} (${length} bytes) is too large for this daemon's memory: its block state needs about ${mib(need)}, ${mib(Math.max(0, budget.total - budget.inUse))} of ${mib(budget.total)} is free (raise --max-old-space-size)${also ? `; ${also}` : ''}`,
  );
}
