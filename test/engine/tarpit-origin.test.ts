/**
 * Issue 27.9, second round: with every silent address dropped after its one trial, a download
 * beside a tarpit still took about twice as long on the namespace bench (5.0 s -> 9.5 s). A trace
 * of one such download showed where: the origin gate waited the full 1.5 s trial timer (longer
 * while new addresses kept arriving) before the first origin request, and the download never
 * counted as "alone" (no peer known) because silent addresses stayed known peers, so every origin
 * request stayed one 64 KiB block long instead of 16-block ranges: 1,393 requests against 321.
 *
 * The design checked here: the origin waits for unproven peers only for the trial grace (a genuine
 * LAN peer answers within it), from the first trial on; an address that was asked and never
 * answered does not make the download less alone than it is, so the origin's range policy is the
 * same as without the tarpit. A whole v2 download on the engine in the fake world (injected clock:
 * an origin range request takes 50 ms whatever its length, a tarpit address fails its request at
 * the retrieval client's 1.5 s first-byte timer), once without and once with 16 tarpit addresses
 * named four at a time, 250 ms apart. Every time below is fake time, exact.
 */
import t from 'tap';
import { PeerError } from '../../src/protocol/pccrr/errors.js';
import { TRIAL_GRACE_MS } from '../../src/engine/scheduler.js';
import { type Content, FakePeers, type FakeClock, makeContent, runUntil, settle, world } from './fake-world.js';
import { readAll, sha256 } from './harness.js';

const BLOCKS = 512; // v2, fixed chunking: one 64 KiB block per segment (32 MiB)
const RANGE_MS = 50;
const TRIAL_TIMEOUT_MS = 1500;
const TARPITS = 16;

/** FakePeers where some addresses accept requests and never answer; `proven` as the retrieval client's. */
class TarpitPeers extends FakePeers {
  readonly silent = new Set<string>();
  readonly answered = new Set<string>();
  /** Block requests per silent address, with their fake times. */
  readonly asked = new Map<string, number[]>();
  proven(peer: string): boolean {
    return this.answered.has(peer);
  }
  private hang(peer: string): Promise<never> {
    return new Promise((_, reject) => {
      this.clock.set(() => reject(new PeerError('PEER_TIMEOUT', peer, 'no answer (tarpit)')), TRIAL_TIMEOUT_MS);
    });
  }
  override async getBlock(req: Parameters<FakePeers['getBlock']>[0]): ReturnType<FakePeers['getBlock']> {
    if (this.silent.has(req.peer)) {
      this.asked.set(req.peer, [...(this.asked.get(req.peer) ?? []), this.clock.t]);
      return this.hang(req.peer);
    }
    const r = await super.getBlock(req);
    this.answered.add(req.peer);
    return r;
  }
  override async getBlockList(req: Parameters<FakePeers['getBlockList']>[0]): ReturnType<FakePeers['getBlockList']> {
    if (this.silent.has(req.peer)) return this.hang(req.peer);
    return super.getBlockList(req);
  }
}

interface Outcome {
  ms: number;
  ranges: number;
  firstRangeAt: number;
  /** Blocks per origin range request. */
  longest: number;
  asked: Map<string, number[]>;
  fromPeers: number;
}

async function download(c: Content, tarpits: number): Promise<Outcome> {
  let peers: TarpitPeers | undefined;
  const w = world(c, {
    initialWaitMs: 300,
    peers: (clock: FakeClock) => {
      peers = new TarpitPeers(clock);
      return peers;
    },
  });
  w.origin.rangeDelayMs = RANGE_MS;
  const ids = c.ci.segments.map((s) => s.segmentId);
  for (let k = 0; k < tarpits; k++) {
    const addr = `10.0.0.66:${9000 + k}`;
    peers!.silent.add(addr);
    // Named four at a time, a ProbeMatch every 250 ms from 100 ms on: each claims every segment.
    w.clock.set(() => w.discovery.sight(addr, ids), 100 + Math.floor(k / 4) * 250);
  }
  const job = w.engine.download(w.url);
  const body = readAll(job.createReadStream());
  await settle();
  const t0 = w.clock.t;
  await runUntil(w.clock, job.done, 60_000);
  const r = await job.done;
  if (sha256(await body) !== sha256(c.data)) throw new Error('content wrong');
  const ranged = w.origin.ranged;
  let longest = 0;
  for (const q of ranged) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(q.range!)!;
    longest = Math.max(longest, Math.round((Number(m[2]) - Number(m[1]) + 1) / 65536));
  }
  return {
    ms: r.durationMs,
    ranges: ranged.length,
    firstRangeAt: ranged[0]!.t - t0,
    longest,
    asked: new Map([...peers!.asked].map(([a, times]) => [a, times.map((x) => x - t0)])),
    fromPeers: r.fromPeers,
  };
}

t.test('tarpit addresses: the origin neither waits for them nor changes its range policy', async (t) => {
  const c = await makeContent(BLOCKS * 65536, 2);
  t.equal(c.ci.segments.length, BLOCKS, 'v2 content, one block per segment');
  const base = await download(c, 0);
  const run = await download(c, TARPITS);
  t.comment(
    `without: ${base.ms} ms, ${base.ranges} origin requests (first at ${base.firstRangeAt} ms, longest ${base.longest} blocks)`,
  );
  t.comment(
    `with ${TARPITS} tarpit addresses: ${run.ms} ms, ${run.ranges} origin requests (first at ${run.firstRangeAt} ms, longest ${run.longest} blocks)`,
  );
  t.equal(run.fromPeers, 0, 'nothing came from the tarpit');
  t.equal(run.asked.size, TARPITS, 'every tarpit address was tried');
  t.ok(
    [...run.asked.values()].every((x) => x.length === 1),
    'once each (their trials run side by side, not one after another)',
  );
  const firstTrial = Math.min(...[...run.asked.values()].map((x) => x[0]!));
  // The origin waits for unproven addresses only for the trial grace from the first trial on,
  // not for the 1.5 s trial timer, and not again for each later batch of addresses.
  t.ok(
    run.firstRangeAt <= firstTrial + TRIAL_GRACE_MS,
    `first origin request at ${run.firstRangeAt} ms, at most the trial grace (${TRIAL_GRACE_MS} ms) after the first trial (${firstTrial} ms); before: 1,660 ms`,
  );
  // Silent addresses do not keep the download from being alone: the same long ranges as without.
  t.equal(run.longest, base.longest, 'origin ranges as long as without the tarpit');
  // Each silent address's one block may cost one request of its own, nothing more.
  t.ok(
    run.ranges <= base.ranges + TARPITS,
    `${run.ranges} origin requests <= ${base.ranges} without + one per tarpit address; before: one per block (${BLOCKS})`,
  );
  // What is left is the trial grace and the 16 blocks that went to the origin after their trial failed.
  t.ok(
    run.ms <= base.ms * 1.3,
    `${run.ms} ms with the tarpit <= 1.3 x ${base.ms} ms without (the issue's target, on the fake clock)`,
  );
});
