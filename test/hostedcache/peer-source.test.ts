/**
 * HostedCacheSource with a fake retrieval client: hosted caches as relay peers, the crowd a
 * peerdist hosted cache names (PeerDist-Crowd) reaching the engine as foreign probes, the bridged
 * flag that keeps ownership off until every hosted cache names its crowd, and the fast polls of a
 * download's first watches.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { HostedCacheSource, type ListClient } from '../../src/hostedcache/peer-source.js';
import { PeerTracker } from '../../src/daemon/peer-tracker.js';
import type { CrowdCallback } from '../../src/retrieval/client.js';
import type { DiscoveryLike, SightingLike, WatchLike } from '../../src/engine/types.js';

class InnerWatch extends EventEmitter implements WatchLike {
  closed = false;
  peers(): SightingLike[] {
    return [];
  }
  reportFailure(): void {}
  waitForPeers(): Promise<void> {
    return new Promise(() => undefined);
  }
  close(): void {
    this.closed = true;
  }
}

function inner(): DiscoveryLike & { probe: (ids: Buffer[], from: string) => void } {
  const listeners = new Set<(ids: Buffer[], from: string) => void>();
  return {
    initialWaitMs: 100,
    watch: () => new InnerWatch(),
    onForeignProbe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    probe: (ids, from) => {
      for (const fn of listeners) fn(ids, from);
    },
  };
}

/** A fake hosted cache: holds `held`, names `crowd` (undefined: no header, like Windows). */
class FakeCaches implements ListClient {
  polls = new Map<string, number>();
  held = new Set<string>();
  crowd = new Map<string, string[] | undefined>();
  async getSegmentList(req: { peer: string; segmentIds: Buffer[]; crowd?: CrowdCallback }): Promise<number[]> {
    this.polls.set(req.peer, (this.polls.get(req.peer) ?? 0) + 1);
    req.crowd?.(this.crowd.get(req.peer));
    return req.segmentIds.flatMap((id, k) => (this.held.has(id.toString('hex')) ? [k] : []));
  }
  async getBlockList(req: { peer: string; crowd?: CrowdCallback }): Promise<{ ranges: Array<[number, number]> }> {
    req.crowd?.(this.crowd.get(req.peer));
    return { ranges: [] };
  }
}

const ids = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

t.test('a hosted cache that holds a segment is a relay peer of the watch', async (t) => {
  const client = new FakeCaches();
  client.held.add(ids[1]!.toString('hex'));
  const src = new HostedCacheSource({ caches: [{ address: '10.0.0.5:80', version: 2 }], client });
  const w = src.wrap(inner()).watch(ids, 2);
  t.teardown(() => w.close());
  const seen: SightingLike[] = [];
  w.on('peer', (p) => seen.push(p));
  await until(() => seen.length > 0);
  t.same(seen, [
    {
      segmentId: ids[1]!.toString('hex').toUpperCase(),
      address: '10.0.0.5:80',
      blockCount: 1,
      complete: false,
      relay: true,
    },
  ]);
});

t.test('the crowd a hosted cache names reaches onForeignProbe listeners, beside our own subnet probes', async (t) => {
  const client = new FakeCaches();
  client.crowd.set('10.0.0.5:80', ['10.0.2.11', '10.0.3.11']);
  const src = new HostedCacheSource({ caches: [{ address: '10.0.0.5:80', version: 2 }], client });
  const base = inner();
  const d = src.wrap(base);
  const got: Array<[string, string]> = [];
  const stop = d.onForeignProbe!((probed, from) => got.push([probed.map((b) => b[0]).join(','), from]));
  base.probe([ids[0]!], '10.0.1.12');
  const w = d.watch(ids, 2);
  await until(() => got.length >= 3);
  w.close();
  t.same(got, [
    ['1', '10.0.1.12'],
    ['1,2', '10.0.2.11'],
    ['1,2', '10.0.3.11'],
  ]);
  t.equal(src.stats.crowdMembers, 2);
  stop();
  base.probe([ids[0]!], '10.0.1.13');
  src.crowdAnswer({ address: '10.0.0.5:80', version: 2 }, ids, ['10.0.4.4']);
  t.equal(got.length, 3, 'nothing after the listener stopped');
});

t.test('a v1.0 hosted cache (GETBLKLIST per segment) names the crowd of each segment asked', async (t) => {
  const client = new FakeCaches();
  client.crowd.set('10.0.0.7:443', ['10.0.2.11']);
  const src = new HostedCacheSource({ caches: [{ address: '10.0.0.7:443', version: 1 }], client });
  const d = src.wrap(inner());
  const got: string[] = [];
  d.onForeignProbe!((probed, from) => got.push(`${probed.map((b) => b[0]).join(',')}@${from}`));
  const w = d.watch(ids, 1);
  await until(() => got.length >= 2);
  w.close();
  t.same(got.slice(0, 2), ['1@10.0.2.11', '2@10.0.2.11']);
  t.equal(d.bridged, false);
});

t.test('bridged until every hosted cache names its crowd, read live through the daemon wrappers', async (t) => {
  const client = new FakeCaches();
  const caches = [
    { address: '10.0.0.5:80', version: 2 as const },
    { address: '10.0.0.6:80', version: 2 as const },
  ];
  const src = new HostedCacheSource({ caches, client });
  // As the daemon builds it: PeerTracker around the hosted-cache wrapper.
  const d = new PeerTracker().wrap(src.wrap(inner()));
  t.equal(d.bridged, true, 'before any answer: clients on other subnets may be unseen');
  src.crowdAnswer(caches[0]!, ids, []);
  t.equal(d.bridged, true, 'one of two hosted caches names its crowd');
  src.crowdAnswer(caches[1]!, ids, ['10.0.2.11']);
  t.equal(d.bridged, false, 'both do: the crowd is complete');
  src.crowdAnswer(caches[1]!, ids, undefined);
  t.equal(d.bridged, true, 'an answer without a valid crowd header: unseen again');
  t.equal(
    new HostedCacheSource({ caches: [], client }).wrap(inner()).bridged,
    undefined,
    'no hosted cache: not bridged',
  );
});

t.test('a hosted cache that stops answering names nobody: bridged again', async (t) => {
  const client = new FakeCaches();
  client.crowd.set('10.0.0.5:80', []);
  let failing = false;
  const list = client.getSegmentList.bind(client);
  client.getSegmentList = async (req) => {
    if (failing) {
      client.polls.set('failed', (client.polls.get('failed') ?? 0) + 1);
      throw new Error('connect ECONNREFUSED');
    }
    return list(req);
  };
  const src = new HostedCacheSource({
    caches: [{ address: '10.0.0.5:80', version: 2 }],
    client,
    pollMs: 1,
    fastPollMs: 1,
  });
  const d = src.wrap(inner());
  const w = d.watch(ids, 2);
  t.teardown(() => w.close());
  await until(() => d.bridged === false);
  failing = true;
  await until(() => (client.polls.get('failed') ?? 0) > 0);
  t.equal(d.bridged, true, 'after a failed poll the crowd is not known to be complete');
  t.equal(src.stats.failures, 1);
});

t.test("a download's first watches poll fast while young, later ones at the normal period", async (t) => {
  const client = new FakeCaches();
  const caches = Array.from({ length: 5 }, (_, k) => ({ address: `10.0.0.${k + 1}:80`, version: 2 as const }));
  let now = 0;
  // One source per cache address, so that each watch's polls are counted apart.
  const watches: WatchLike[] = [];
  const src = new HostedCacheSource({
    caches,
    client,
    pollMs: 60_000,
    fastPollMs: 1,
    fastWindowMs: 1000,
    now: () => now,
  });
  const d = src.wrap(inner());
  for (let k = 0; k < 5; k++) watches.push(d.watch([Buffer.alloc(32, 10 + k)], 2));
  t.teardown(() => {
    for (const w of watches) w.close();
  });
  t.equal(src.liveWatches, 5);
  await until(() => (client.polls.get('10.0.0.1:80') ?? 0) >= 5 * 6);
  const fastPolls = client.polls.get('10.0.0.1:80')!;
  t.ok(fastPolls >= 30, `fast polls while young (${fastPolls} requests to one hosted cache, 5 watches)`);
  now = 1000;
  const settle = async () => {
    const before = client.polls.get('10.0.0.1:80');
    await new Promise((r) => setTimeout(r, 30));
    return before === client.polls.get('10.0.0.1:80');
  };
  await until(() => true);
  let still = false;
  for (let k = 0; k < 10 && !still; k++) still = await settle();
  t.ok(still, 'once the window is over, the next poll waits for the normal period');
  for (const w of watches) w.close();
  t.equal(src.liveWatches, 0, 'closed watches are counted out');
});
