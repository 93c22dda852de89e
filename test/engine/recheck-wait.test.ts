/**
 * The pre-origin re-check (src/engine/fetch-origin.ts) waits longer for peers that have answered
 * validly before (protocol/engine.md "Flash crowds" 14). In a CPU-starved 32-client crowd the
 * member that had fetched a block itself answered the re-check's MSG_GETBLKLIST "yes" after the
 * 50 ms wait in 153-213 of the later origin copies (BENCHMARKS.md, "The pre-origin re-check waits
 * for proven peers"). Here, in the fake world (injected clock, every time exact): a v2 download of
 * eight one-block segments; one peer holds them all but discovery saw it holding only segment 0,
 * and its block-list answers take `listMs`. A proven peer's late yes now keeps the block from the
 * origin; an address that never answered validly still costs the re-check only its 50 ms.
 */
import t from 'tap';
import {
  type Content,
  type FakeClock,
  type FakePeers,
  ProvingPeers,
  blocksOf,
  makeContent,
  runUntil,
  settle,
  world,
} from './fake-world.js';
import { readAll, sha256 } from './harness.js';

const BLOCKS = 8;
const PEER = '10.0.0.7:9000';

/** Peers whose block-list answers take `listMs`; proven once they gave a block (ProvingPeers). */
class SlowListPeers extends ProvingPeers {
  lists = 0;
  constructor(
    clock: FakeClock,
    private readonly listMs: number,
  ) {
    super(clock);
  }
  override async getBlockList(req: Parameters<FakePeers['getBlockList']>[0]): ReturnType<FakePeers['getBlockList']> {
    this.lists++;
    await new Promise<void>((r) => {
      this.clock.set(r, this.listMs);
    });
    return super.getBlockList(req);
  }
}

async function download(c: Content, listMs: number) {
  let peers: SlowListPeers | undefined;
  const w = world(c, {
    initialWaitMs: 300,
    peers: (clock) => {
      peers = new SlowListPeers(clock, listMs);
      return peers;
    },
  });
  peers!.add(PEER, blocksOf(c));
  w.discovery.sight(PEER, [c.ci.segments[0]!.segmentId]);
  const job = w.engine.download(w.url);
  const body = readAll(job.createReadStream());
  await settle();
  await runUntil(w.clock, job.done, 60_000);
  const r = await job.done;
  t.equal(sha256(await body), sha256(c.data), `content correct (block lists in ${listMs} ms)`);
  return { r, ranged: w.origin.ranged.length, lists: peers!.lists };
}

t.test('a proven peer that answers the re-check late still keeps the block from the origin', async (t) => {
  const c = await makeContent(BLOCKS * 65536, 2);
  t.equal(c.ci.segments.length, BLOCKS, 'v2 content, one block per segment');
  const prompt = await download(c, 20);
  const late = await download(c, 150);
  t.comment(
    `block lists in 20 ms: ${prompt.ranged} origin requests, ${prompt.r.fromPeers} B from the peer; in 150 ms: ${late.ranged}, ${late.r.fromPeers} B (${late.lists} lists)`,
  );
  t.equal(prompt.r.fromOrigin, 0, 'answers within 50 ms: nothing from the origin');
  t.ok(late.lists > 0, 'the re-check asked the peer');
  // Before: a yes after 50 ms came too late, and each of segments 1-7 came from the origin.
  t.equal(late.r.fromOrigin, 0, 'answers after 150 ms: nothing from the origin either');
  t.equal(late.r.fromPeers, c.data.length, 'every byte from the peer');
});
