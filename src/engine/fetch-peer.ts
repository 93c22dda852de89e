/**
 * Fetching one block from a peer (MS-PCCRR MSG_GETBLKS), verified against its hash before it is
 * stored. The hash is computed once: in the retrieval client's verify callback (which is how a bad
 * peer is told from a good one), and the store does not hash the same buffer again.
 */
import { PeerError } from '../protocol/pccrr/errors.js';
import type { PeerFailure } from './scheduler.js';
import type { Session } from './session.js';

export async function fetchFromPeer(s: Session, g: number, peer: string): Promise<void> {
  const { sched } = s,
    b = s.layout.blocks.at(g)!,
    seg = s.segInfo(g);
  const t0 = s.ctx.now();
  let data: Buffer;
  let next = 0;
  let verified: Buffer | undefined;
  try {
    const r = await s.ctx.deps.retrieval.getBlock({
      peer,
      segmentId: seg.segmentId,
      index: b.index,
      kp: seg.kp,
      expectedLength: b.length,
      verify: (plain) => {
        const ok = s.check(g, plain);
        if (ok) verified = plain;
        return ok;
      },
      signal: s.signal,
    });
    data = r.data;
    next = r.nextBlockIndex;
    // Whatever the client did with the callback, only bytes that passed it are stored.
    if (data !== verified && !s.check(g, data))
      throw new PeerError('BAD_BLOCK', peer, `block ${b.index} does not match its hash`);
  } catch (err) {
    if (s.stopped()) return;
    let why = classifyPeerError(err);
    // An address that never answered validly and failed now is quarantined by the client: drop it.
    if (why !== 'bad-block' && why !== 'not-available' && s.ctx.deps.retrieval.usable?.(peer) === false)
      why = 'unusable';
    s.log.debug('peer block failed', { peer, block: g, why, err });
    if (why === 'bad-block') {
      s.log.warn('peer sent a block that does not match its hash; not using it again for this download', {
        peer,
        segment: b.seg,
        index: b.index,
      });
      s.badPeer(peer);
    }
    s.trace({ type: 'peer-fail', peer, block: g, why });
    sched.peerFailed(peer, g, why, s.ctx.now());
    s.recheckStore(g);
    return;
  }
  if (s.stopped()) return;
  const ms = s.ctx.now() - t0;
  // The peer's part is done once the block is verified: its slot goes back to the scheduler while
  // the cache makes the block durable (a group commit's fdatasync takes milliseconds to tens of
  // them; holding the slot through it capped a peer download at about what 16 slots carry per
  // fdatasync). The download still ends only after every write (Transfer.pump), and a
  // block is still in the index only once its bytes are on disk. Memory stays bounded: beyond
  // STORE_BACKLOG_BLOCKS unfinished writes, the slot is held through the write as before.
  const write = s.store(g, data);
  if (s.storeBacklog() > STORE_BACKLOG_BLOCKS) await write;
  sched.peerSucceeded(peer, g, b.length, ms);
  if (next > b.index) sched.peerHasBlock(peer, b.seg, next);
  s.pumpSoon(); // the freed slot takes its next block now, not when the write is done
  await write;
  s.trace({ type: 'peer-block', peer, block: g, bytes: b.length, ms });
  s.landed('fromPeers', b.length);
}

/** Verified peer blocks that may wait for their cache write without holding a peer slot (~8 MiB of v2). */
export const STORE_BACKLOG_BLOCKS = 64;

/** How the scheduler should treat a failed peer request (anything but a PeerError is a plain error). */
export function classifyPeerError(err: unknown): PeerFailure {
  if (!(err instanceof PeerError)) return 'error';
  switch (err.code) {
    case 'BAD_BLOCK':
      return 'bad-block';
    case 'PEER_NOT_AVAILABLE':
      return 'not-available';
    case 'PEER_TIMEOUT':
      return 'timeout';
    case 'PEER_BUSY':
      return 'busy';
    case 'PEER_QUARANTINED':
      return 'unusable';
    default:
      return 'error';
  }
}
