/**
 * Fetching blocks from the origin: one range request flagged MissingDataRequest (MS-PCCRTP) covers
 * one block, or a run of adjacent blocks when the scheduler allows it (MS-PCCRTP allows any range;
 * protocol/engine.md "Origin"), after a last check that no known peer gained them meanwhile. The
 * body is cut into blocks as it arrives; each block is verified against the content information
 * and stored on its own, so a run costs one round trip, a bad block costs only itself (the blocks
 * after it go back to the scheduler), and memory holds at most one unverified block per request
 * plus MAX_PENDING_STORES cache writes.
 */
import { missingDataRequestHeaders } from '../protocol/pccrtp/headers.js';
import { DownloadError } from './errors.js';
import { header } from './origin-client.js';
import { nodeFault } from './origins.js';
import { hostOf } from './scheduler.js';
import type { Session } from './session.js';
import type { OriginReason } from './trace.js';

/** Pre-origin re-check: peers asked, and how long we wait for them. */
const RECHECK_PEERS = 8;
const RECHECK_WAIT_MS = 50;
/**
 * How long the re-check waits in all for the peers asked that have answered validly before
 * (retrieval `proven`): a member of a CPU-starved crowd that fetched the block itself answered
 * yes after the 50 ms in 153-213 of a 32-client crowd's later copies (protocol/engine.md "Flash
 * crowds" 14). An address that never answered validly (a tarpit) still costs at most
 * RECHECK_WAIT_MS.
 */
const RECHECK_PROVEN_WAIT_MS = 300;
/** Cache writes a range request may have pending before it stops reading the body (backpressure). */
const MAX_PENDING_STORES = 4;

/** Fetches blocks g .. g + count - 1 (contiguous content bytes) and reports each to the scheduler once. */
export async function fetchFromOrigin(s: Session, g: number, count = 1): Promise<void> {
  const { sched } = s,
    blocks = s.layout.blocks,
    offsets = s.layout.offsets;
  const end = g + count; // exclusive
  // Every block of the assignment is reported exactly once (`endsRequest` false), then the slot is freed.
  let reported = g;
  const skipRest = () => {
    while (reported < end) sched.originSkipped(reported++, false);
    sched.originRequestEnded();
  };
  // Crowd ownership at the pick (launch() calls us right after the Scheduler's pick), for traces.
  const pick = crowdAtPick(s, g);
  const held = await peersHoldNow(s, g, count, pick);
  if (s.stopped()) return;
  // Fetch the leading run that no peer holds; the rest goes back to the scheduler (peers first).
  let last = g;
  while (last < end && !held.has(last)) last++;
  if (last === g) {
    s.trace({ type: 'origin-skipped', block: g });
    skipRest();
    return;
  }
  const start = offsets[g]!;
  const stop = offsets[last - 1]! + blocks.at(last - 1)!.length; // exclusive
  const t0 = s.ctx.now();
  const reason = sched.whyOrigin(g, t0);
  const pending: Promise<void>[] = [];
  let t = t0;
  let failure: string | undefined;
  /** Reports the block being received (`reported`) as failed. */
  const fail = (why: 'error' | 'mismatch', message: string) => {
    const block = reported++;
    failure = message;
    sched.originFailed(block, why, s.ctx.now(), false);
    s.trace({ type: 'origin-fail', block, reason, error: message });
    s.recheckStore(block);
  };
  // With mirrors (get --mirror), the node the request goes to: the current one, or the next that
  // describes the same content when it failed (origins.ts).
  const node = s.origins ? await s.origins.pick() : s.url;
  try {
    try {
      if (s.stopped()) return;
      const res = await s.ctx.http.get(
        node,
        { ...s.headers, ...missingDataRequestHeaders(), Range: `bytes=${start}-${stop - 1}` },
        s.signal,
      );
      if (res.status !== 206 && !(res.status === 200 && start === 0 && stop === s.ci.contentLength)) {
        res.discard();
        throw new DownloadError('ORIGIN_STATUS', `origin answered HTTP ${res.status} to a range request`, {
          status: res.status,
        });
      }
      let cur = Buffer.allocUnsafe(blocks.at(g)!.length);
      let filled = 0;
      for await (const chunk of res.body) {
        let off = 0;
        while (off < chunk.length) {
          if (reported >= last) {
            res.discard();
            throw new DownloadError('ORIGIN_MISMATCH', `origin sent more than the ${stop - start} bytes asked for`);
          }
          const n = Math.min(chunk.length - off, cur.length - filled);
          chunk.copy(cur, filled, off, off + n);
          filled += n;
          off += n;
          if (filled < cur.length) continue;
          if (s.stopped()) {
            res.discard();
            return;
          }
          const block = reported;
          if (!s.check(block, cur)) {
            const b = blocks.at(block)!;
            s.log.warn('origin block does not match the content information', {
              block,
              segment: b.seg,
              index: b.index,
            });
            res.discard();
            // Another version than the content information describes (the blob was replaced)?
            const now = header(res.headers, 'etag');
            if (s.etag !== undefined && now !== undefined && now !== s.etag) s.originEtagNow = now;
            fail('mismatch', "the origin's block does not match the content information");
            return;
          }
          reported++;
          stored(s, pending, block, cur, t, reason, pick);
          t = s.ctx.now();
          if (reported < last) {
            cur = Buffer.allocUnsafe(blocks.at(reported)!.length);
            filled = 0;
          }
          while (pending.length >= MAX_PENDING_STORES) await pending.shift();
        }
      }
      if (reported < last)
        throw new DownloadError('ORIGIN_MISMATCH', `origin sent ${filled} bytes short of the range asked for`);
      s.origins?.succeeded(node);
    } catch (err) {
      if (s.stopped()) return;
      if (err instanceof DownloadError && err.code === 'LOCAL') throw err; // the cache failed: the job fails
      s.log.debug('origin range failed', { first: g, count: last - g, node, err });
      // Refused, reset, 5xx, cut short: the node is in trouble (backoff; the next request fails over).
      if (nodeFault(err)) s.origins?.failed(node);
      // The block being received failed; blocks not started yet go back without penalty.
      if (reported < last)
        fail(
          err instanceof DownloadError && err.code === 'ORIGIN_MISMATCH' ? 'mismatch' : 'error',
          (err as Error).message,
        );
    }
  } finally {
    // Blocks already verified are stored (and reported) before the request's slot is freed.
    const settled = await Promise.allSettled(pending);
    if (!s.stopped()) skipRest();
    if (failure !== undefined) s.lastOriginError = failure;
    const bad = settled.find((r) => r.status === 'rejected');
    // biome-ignore lint/correctness/noUnsafeFinally: a failed cache write fails the job (DownloadError LOCAL)
    if (bad && !s.stopped()) throw (bad as PromiseRejectedResult).reason;
  }
}

interface CrowdPick {
  picked: number;
  rank?: number;
  owner?: string;
  members?: number;
  /** Members left out of the ranking that outscore us for the block (Scheduler.crowdShadow). */
  shadow?: string;
  /** The pre-origin re-check's hosts and answers so far (trace.ts `asked`), set by peersHoldNow. */
  asked?: () => string;
}

/** When the origin request of block `g` was picked and, when it went by crowd ownership, how. */
function crowdAtPick(s: Session, g: number): CrowdPick {
  const { sched } = s;
  const rank = sched.crowdRank(g);
  if (rank === undefined) return { picked: s.ctx.now() };
  const shadow = sched.crowdShadow(g);
  return {
    picked: s.ctx.now(),
    rank,
    owner: sched.crowdOwner(g),
    members: sched.crowdRanked().length,
    ...(shadow ? { shadow } : {}),
  };
}

/** Stores a verified origin block and reports it when it is in the cache. */
function stored(
  s: Session,
  pending: Promise<void>[],
  block: number,
  data: Buffer,
  since: number,
  reason: OriginReason,
  pick: CrowdPick,
) {
  const p = s.store(block, data).then(() => {
    const ms = s.ctx.now() - since;
    s.sched.originSucceeded(block, ms, false);
    const { asked, ...at } = pick;
    s.trace({
      type: 'origin-block',
      block,
      bytes: data.length,
      ms,
      reason,
      ...at,
      ...(asked ? { asked: asked() } : {}),
    });
    s.landed('fromOrigin', data.length);
    // Probably the first copy on the subnet: clients that probed for it moments ago hear now
    // (a follow-up ProbeMatch), not at their next probe (protocol/pccrd.md).
    s.ctx.deps.discovery.announce?.(s.segInfo(block).segmentId.toString('hex'));
  });
  p.catch(() => undefined);
  pending.push(p);
}

/**
 * Last check before an origin fetch: asks the known peers that might have gained these blocks
 * since our last look (one MSG_GETBLKLIST per peer and segment, bounded wait). A yes saves a WAN
 * transfer. Returns the blocks some peer holds.
 */
async function peersHoldNow(s: Session, g: number, count: number, pick?: CrowdPick): Promise<Set<number>> {
  const { sched } = s,
    blocks = s.layout.blocks;
  const held = new Set<number>();
  // Blocks of the run grouped by segment: [seg, first index, count, first block number].
  const groups: Array<[number, number, number, number]> = [];
  for (let h = g; h < g + count; h++) {
    const b = blocks.at(h)!,
      prev = groups[groups.length - 1];
    if (prev && prev[0] === b.seg) prev[2]++;
    else groups.push([b.seg, b.index, 1, h]);
  }
  const asks: Promise<void>[] = [];
  // The asks to proven peers (see RECHECK_PROVEN_WAIT_MS).
  const provenAsks: Promise<void>[] = [];
  const retrieval = s.ctx.deps.retrieval;
  // Resolved once some peer holds every block asked about: nothing left to wait for.
  let allHeld = () => {};
  const heldAll = new Promise<void>((r) => {
    allHeld = r;
  });
  // For traces: each asked host's answer, in asking order (see CrowdPick.asked).
  const answers: Array<[string, string]> = [];
  let waited = false;
  for (const [seg, first, n, g0] of groups) {
    // The likely holders first (Scheduler.recheckPeers): by the crowd's ranking of the block.
    const peers = sched.recheckPeers(seg, s.ctx.now(), RECHECK_PEERS, g0).filter((p) => !s.noBlockLists.has(p));
    const segmentId = s.ci.segments[seg]!.segmentId;
    for (const peer of peers) {
      const answer: [string, string] = [hostOf(peer), '?'];
      if (pick && seg === blocks.at(g)!.seg) answers.push(answer);
      const ask = (async () => {
        try {
          const r = await s.ctx.deps.retrieval.getBlockList({
            peer,
            segmentId,
            ranges: [[first, n]],
            signal: s.signal,
          });
          const has = r.ranges.some(([f, c]) => f <= first && first < f + c);
          answer[1] = waited ? (has ? 'Y' : 'N') : has ? 'y' : 'n';
          for (let i = first; i < first + n; i++) {
            if (!r.ranges.some(([f, c]) => f <= i && i < f + c)) continue;
            held.add(g0 + i - first);
            if (s.ci.version === 2) sched.peerHasSegment(peer, seg, s.ctx.now());
            else sched.peerHasBlock(peer, seg, i);
          }
          if (held.size >= count) allHeld();
        } catch {
          /* no answer: the origin it is */
          answer[1] = 'x';
        }
      })();
      asks.push(ask);
      if (retrieval.proven?.(peer)) provenAsks.push(ask);
    }
  }
  const started = s.ctx.now();
  if (asks.length > 0) await s.until(Promise.all(asks), RECHECK_WAIT_MS);
  // Proven peers that have not answered yet get the rest of RECHECK_PROVEN_WAIT_MS, unless one of
  // them (or anyone) has already said it holds every block asked about.
  const rest = RECHECK_PROVEN_WAIT_MS - (s.ctx.now() - started);
  if (provenAsks.length > 0 && held.size < count && rest > 0 && !s.stopped())
    await s.until(Promise.race([Promise.all(provenAsks), heldAll]), rest);
  waited = true;
  if (pick && answers.length > 0) pick.asked = () => answers.map(([h, a]) => `${h}=${a}`).join(' ');
  return held;
}
