/**
 * The Scheduler's incremental indexes (issue 24: per-peer block bitmaps, the per-block holder
 * count, the bitmaps of missing and held blocks) against what they stand for, recomputed from
 * scratch after every step of seeded random runs: sightings of whole segments, block lists,
 * single blocks, peer answers and failures (not-available moves a full segment to partial),
 * origin results, blocks marked missing and done again. v1-like segments of several blocks and
 * v2 segments of one. The decisions themselves are compared with the previous revision's on
 * seeded scale runs by bench/scheduler-ab.ts.
 */
import t from 'tap';
import { type BlockDesc, Scheduler } from '../../src/engine/scheduler.js';
import { rng } from '../helpers/rng.js';

interface PeerView {
  full: Set<number>;
  partial: Map<number, Set<number>> | undefined;
  /** Where its bitmap starts in heldPool. */
  off: number;
  heldCount: number;
}
interface Internals {
  peers: Map<string, PeerView>;
  heldPool: Uint32Array;
  words: number;
  state: Uint8Array;
  holderCount: Uint32Array;
  heldBits: Uint32Array;
  missBits: Uint32Array;
  blocks: { seg: Uint32Array; index: Uint32Array };
}

const MISSING = 0;
const bit = (words: Uint32Array, g: number) => (words[g >>> 5]! & (1 << (g & 31))) !== 0;

/** Every index entry against the sets and states it is kept from; returns the first mismatch. */
function mismatch(s: Scheduler, n: number): string | undefined {
  const x = s as unknown as Internals;
  const bitsOf = (p: PeerView) => x.heldPool.subarray(p.off, p.off + x.words);
  for (let g = 0; g < n; g++) {
    if (bit(x.missBits, g) !== (x.state[g] === MISSING)) return `missBits of block ${g}`;
    let holders = 0;
    for (const [address, p] of x.peers) {
      const seg = x.blocks.seg[g]!;
      const holds = p.full.has(seg) || (p.partial?.get(seg)?.has(x.blocks.index[g]!) ?? false);
      if (bit(bitsOf(p), g) !== holds) return `bit of block ${g} for ${address}`;
      if (holds) holders++;
    }
    if (x.holderCount[g] !== holders) return `holderCount of block ${g}: ${x.holderCount[g]} for ${holders}`;
    if (bit(x.heldBits, g) !== holders > 0) return `heldBits of block ${g}`;
  }
  for (const [address, p] of x.peers) {
    let count = 0;
    for (let g = 0; g < n; g++) if (bit(bitsOf(p), g)) count++;
    if (p.heldCount !== count) return `heldCount of ${address}: ${p.heldCount} for ${count}`;
  }
  return undefined;
}

function run(seed: number, perSeg: number, segments: number, steps: number): { failed?: string; ops: number } {
  const r = rng(seed);
  const n = perSeg * segments;
  const blocks: BlockDesc[] = Array.from({ length: n }, (_, g) => ({
    seg: Math.floor(g / perSeg),
    index: g % perSeg,
    length: 65536,
  }));
  const s = new Scheduler({ blocks, random: rng(seed + 1), present: (g) => g % 7 === 3, self: '10.0.0.1' });
  const peers = ['10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80', '[fe80::5]:80'];
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
  const inflight: Array<{ kind: 'peer' | 'origin'; block: number; peer?: string }> = [];
  let now = 0;
  for (let step = 0; step < steps; step++) {
    now += Math.floor(r() * 200);
    const op = Math.floor(r() * 10);
    const seg = Math.floor(r() * (segments + 1)); // one past the end: a segment the content lacks
    const peer = pick(peers);
    if (op === 0) s.peerHasSegment(peer, seg, r() < 0.5 ? now : undefined);
    else if (op === 1) {
      const indices = Array.from({ length: perSeg + 1 }, (_, i) => i - (r() < 0.1 ? 1 : 0)).filter(() => r() < 0.6);
      s.peerBlocks(peer, seg, indices, now);
    } else if (op === 2) s.peerHasBlock(peer, seg, Math.floor(r() * (perSeg + 1)) - (r() < 0.1 ? 1 : 0));
    else if (op === 3) s.crowdSeen(pick(peers).replace(/:80$/, ''), now);
    else if (op <= 6) {
      for (const a of s.next(now, r() < 0.8)) {
        if (a.kind === 'peer') inflight.push({ kind: 'peer', block: a.block, peer: a.peer });
        else for (let k = 0; k < (a.count ?? 1); k++) inflight.push({ kind: 'origin', block: a.block + k });
      }
    } else if (op <= 8 && inflight.length > 0) {
      const a = inflight.splice(Math.floor(r() * inflight.length), 1)[0]!;
      const v = r();
      if (a.kind === 'peer') {
        if (v < 0.6) s.peerSucceeded(a.peer!, a.block, 65536, 5);
        else s.peerFailed(a.peer!, a.block, v < 0.85 ? 'not-available' : v < 0.95 ? 'timeout' : 'bad-block', now);
      } else if (v < 0.8) s.originSucceeded(a.block, 50);
      else if (v < 0.9) s.originFailed(a.block, 'error', now);
      else s.originSkipped(a.block);
    } else if (op === 9) {
      const g = Math.floor(r() * n);
      if (r() < 0.5) s.markMissing(g);
      else s.markDone(g);
    }
    const failed = mismatch(s, n);
    if (failed) return { failed: `seed ${seed} step ${step} (op ${op}): ${failed}`, ops: step + 1 };
  }
  return { ops: steps };
}

t.test('the incremental indexes match their sets after every step (v1-like segments of 8 blocks)', async (t) => {
  for (let seed = 1; seed <= 6; seed++) {
    const r = run(seed, 8, 9, 600);
    t.equal(r.failed, undefined, `seed ${seed}: ${r.ops} steps, 72 blocks`);
  }
});

t.test('the incremental indexes match their sets after every step (v2: one block per segment)', async (t) => {
  for (let seed = 11; seed <= 14; seed++) {
    const r = run(seed, 1, 70, 600);
    t.equal(r.failed, undefined, `seed ${seed}: ${r.ops} steps, 70 blocks (three words of the bitmaps)`);
  }
});
