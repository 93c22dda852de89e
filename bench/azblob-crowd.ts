/**
 * Issue 22, item 8, measured: three `peerdist serve --store` nodes over one Azurite container,
 * eight client daemons (half through a balancer, half naming a node with the others as mirrors),
 * a sequential run and a flash crowd with node 3 killed mid-crowd (testkit/sim/azblob-site.ts).
 * Prints per run the origin bytes summed over the nodes in copies of the file (target: at most
 * 1.1), the hash jobs per node (target: one per blob over all nodes), whether every file was
 * right, and the load average beside the wall-clock figures.
 * With --netns (root, iproute2) every client daemon runs in a network namespace of its own, so crowd
 * members have distinct addresses; by default all are on loopback.
 *   npm run build && node dist/bench/azblob-crowd.js [--netns] [--seq 1M] [--crowd 2M] [--kill-after 256K]
 */
import { benchArgs } from './args.js';
import { loadavg } from 'node:os';
import { parseSize } from '../src/util/size.js';
import { runAzblobSite } from '../testkit/sim/azblob-site.js';
import { NetnsNetwork } from '../testkit/sim/network.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    seq: { type: 'string', default: '1M' },
    crowd: { type: 'string', default: '2M' },
    'kill-after': { type: 'string', default: '256K' },
    netns: { type: 'boolean', default: false },
  },
});
const load0 = loadavg()[0]!.toFixed(1);
const r = await runAzblobSite({
  seqSize: parseSize(values.seq!),
  crowdSize: parseSize(values.crowd!),
  killAfter: parseSize(values['kill-after']!),
  ...(values.netns ? { network: await NetnsNetwork.create() } : {}),
});
console.log(`clients ${values.netns ? 'in network namespaces (one address each)' : 'on loopback'}`);
for (const run of [r.sequential, r.crowd]) {
  const ok = run.clients.every((c) => c.correct);
  console.log(
    `${run.blob} (${run.size} bytes, ${run.clients.length} clients): origin bytes over the nodes ${run.originBytes} = ` +
      `${run.copies.toFixed(3)} copies (target <= 1.1: ${run.copies <= 1.1 ? 'met' : 'NOT met'}); ` +
      `from peers ${run.clients.reduce((n, c) => n + c.fromPeers, 0)}; all correct: ${ok}; ${run.seconds.toFixed(1)} s wall`,
  );
  for (const c of run.clients)
    console.log(
      `  c${c.client} via ${c.via}: origin ${c.fromOrigin} peers ${c.fromPeers} cache ${c.fromCache} ${c.seconds.toFixed(1)} s`,
    );
}
const hashed = r.hashJobs.reduce((a, b) => a + b, 0);
console.log(
  `hash jobs per node ${JSON.stringify(r.hashJobs)}: ${hashed} for 2 blobs (${hashed === 2 ? 'once each' : 'NOT once each'})`,
);
for (const [blob, cis] of Object.entries(r.contentInfo))
  console.log(
    `${blob}: content information identical from ${cis.length} nodes: ${cis.every((x) => x !== '' && x === cis[0])}`,
  );
console.log(`node 3 killed after ${r.killedAfterBytes} bytes of the crowd`);
console.log(`load average ${load0} at start, ${loadavg()[0]!.toFixed(1)} at the end (2 cores)`);
