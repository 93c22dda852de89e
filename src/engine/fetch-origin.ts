/**
 * Fetching one block from the origin: a range request flagged MissingDataRequest (MS-PCCRTP),
 * after a last check that no known peer gained the block meanwhile. The bytes are verified
 * against the content information before they are stored.
 */
import { missingDataRequestHeaders } from '../protocol/pccrtp/headers.js';
import { DownloadError } from './errors.js';
import { readBody } from './origin-client.js';
import type { Session } from './session.js';

/** Pre-origin re-check: peers asked, and how long we wait for them. */
const RECHECK_PEERS = 8;
const RECHECK_WAIT_MS = 50;

export async function fetchFromOrigin(s: Session, g: number): Promise<void> {
  const { ci, sched } = s,
    b = s.layout.blocks.at(g)!;
  const start = s.layout.offsets[g]!;
  if (await peerHasItNow(s, g)) {
    if (s.stopped()) return;
    sched.originSkipped(g);
    s.trace({ type: 'origin-skipped', block: g });
    return;
  }
  if (s.stopped()) return;
  const t0 = s.ctx.now();
  const reason = sched.whyOrigin(g, t0);
  let data: Buffer;
  try {
    const res = await s.ctx.http.get(
      s.url,
      { ...s.headers, ...missingDataRequestHeaders(), Range: `bytes=${start}-${start + b.length - 1}` },
      s.signal,
    );
    if (res.status !== 206 && !(res.status === 200 && start === 0 && b.length === ci.contentLength)) {
      res.discard();
      throw new DownloadError('ORIGIN_STATUS', `origin answered HTTP ${res.status} to a range request`);
    }
    data = await readBody(res, b.length, 'ORIGIN_MISMATCH');
  } catch (err) {
    if (s.stopped()) return;
    s.lastOriginError = (err as Error).message;
    s.log.debug('origin block failed', { block: g, err });
    s.trace({ type: 'origin-fail', block: g, reason, error: (err as Error).message });
    sched.originFailed(
      g,
      err instanceof DownloadError && err.code === 'ORIGIN_MISMATCH' ? 'mismatch' : 'error',
      s.ctx.now(),
    );
    s.recheckStore(g);
    return;
  }
  if (s.stopped()) return;
  if (!s.check(g, data)) {
    s.log.warn('origin block does not match the content information', { block: g, segment: b.seg, index: b.index });
    sched.originFailed(g, 'mismatch', s.ctx.now());
    s.trace({
      type: 'origin-fail',
      block: g,
      reason,
      error: "the origin's block does not match the content information",
    });
    s.recheckStore(g);
    return;
  }
  await s.store(g, data);
  sched.originSucceeded(g, s.ctx.now() - t0);
  s.trace({ type: 'origin-block', block: g, bytes: b.length, ms: s.ctx.now() - t0, reason });
  s.landed('fromOrigin', b.length);
}

/**
 * Last check before an origin fetch: asks the known peers that might have gained this block
 * since our last look (one MSG_GETBLKLIST each, bounded wait). A yes saves a WAN transfer.
 */
async function peerHasItNow(s: Session, g: number): Promise<boolean> {
  const { sched } = s,
    b = s.layout.blocks.at(g)!,
    seg = s.segInfo(g);
  const peers = sched.recheckPeers(b.seg, s.ctx.now(), RECHECK_PEERS).filter((p) => !s.noBlockLists.has(p));
  if (peers.length === 0) return false;
  let found = false;
  const asks = peers.map(async (peer) => {
    try {
      const r = await s.ctx.deps.retrieval.getBlockList({
        peer,
        segmentId: seg.segmentId,
        ranges: [[b.index, 1]],
        signal: s.signal,
      });
      if (r.ranges.some(([first, count]) => first <= b.index && b.index < first + count)) {
        found = true;
        if (s.ci.version === 2) sched.peerHasSegment(peer, b.seg, s.ctx.now());
        else sched.peerHasBlock(peer, b.seg, b.index);
      }
    } catch {
      /* no answer: the origin it is */
    }
  });
  await s.until(Promise.all(asks), RECHECK_WAIT_MS);
  return found;
}
