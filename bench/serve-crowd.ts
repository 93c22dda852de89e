/**
 * Serving side of a crowd (issue 25): one retrieval server over a real BlockStore, and P peers
 * that each fetch every block of the same content at the same time (16 requests in flight each),
 * decrypting and verifying as the daemon does. Run twice side by side in one invocation: with the
 * sealed-block memory (a block is read, verified and encrypted once for all peers) and without it
 * (sealedBudgetBytes 0: every request reads, verifies and encrypts). The server runs in a child
 * process; its CPU (user + system, /proc/<pid>/stat) per GiB served is the figure. The peers run
 * in this process: their CPU per GiB received (exchange, decrypt, verify; no cache, no scheduler)
 * is printed too (--peers 1 --only 0 compares receiving code between builds).
 *   npm run build && node dist/bench/serve-crowd.js [--size 64] [--peers 4] [--alternations 2] [--profile DIR]
 *     [--transport lean|node|both] (both: the lean server and node:http alternating)
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BlockStore } from '../src/cache/store.js';
import type { SegmentMeta } from '../src/cache/meta.js';
import { v1Segment } from '../test/cache/make.js';
import { V1_BLOCK_SIZE } from '../src/protocol/pccrc/types.js';
import { createRetrievalServer } from '../src/retrieval/server.js';
import { RetrievalClient } from '../src/retrieval/client.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '64' },
    peers: { type: 'string', default: '4' },
    alternations: { type: 'string', default: '2' },
    /** Only this setting of the sealed memory (bytes), not both. */
    only: { type: 'string' },
    serve: { type: 'string' },
    sealed: { type: 'string' },
    /** Write a CPU profile of the server child into this directory (node --cpu-prof). */
    profile: { type: 'string' },
    /** The server's transport: lean, node, or both (alternating lean and node:http in each alternation). */
    transport: { type: 'string', default: 'lean' },
  },
});
const BLOCK = V1_BLOCK_SIZE;
const PER_SEG = 512;
const SIZE_MIB = Number(values.size);
const totalBlocks = Math.max(1, Math.floor((SIZE_MIB * 1048576) / BLOCK));
const nSegs = Math.ceil(totalBlocks / PER_SEG);
const base = Buffer.alloc(PER_SEG * BLOCK);
for (let i = 0; i < base.length; i += 4) base.writeUInt32BE((i * 2654435761) >>> 0, i); // same in both processes

/** Segment `s`: base with the segment number stamped into every block (distinct IDs and hashes). */
function segment(s: number): { meta: SegmentMeta; data: Buffer } {
  const n = Math.min(PER_SEG, totalBlocks - s * PER_SEG);
  const data = Buffer.from(base.subarray(0, n * BLOCK));
  for (let i = 0; i < n; i++) data.writeUInt32BE(s, i * BLOCK);
  return { meta: v1Segment(data).meta, data };
}

async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

if (values.serve) {
  // Child: fill the store, serve, report the port; exit when the parent disconnects.
  const store = await BlockStore.open({ dir: values.serve, limitBytes: 2 ** 50 });
  for (let s = 0; s < nSegs; s++) {
    const { meta, data } = segment(s);
    await store.addSegment(meta);
    for (let i = 0; i * BLOCK < data.length; i++)
      await store.putBlock(meta.segmentId, i, data.subarray(i * BLOCK, (i + 1) * BLOCK));
  }
  const server = createRetrievalServer({
    source: store,
    sealedBudgetBytes: Number(values.sealed),
    transport: values.transport === 'node' ? 'node' : 'lean',
  });
  const { host, port } = await server.listen();
  process.send!({ peer: `${host}:${port}` });
  process.on('disconnect', () => void server.close().then(() => store.close?.()));
} else {
  const peers = Number(values.peers);
  const segs = Array.from({ length: nSegs }, (_, s) => segment(s).meta);
  const run = async (sealed: number, transport: string) => {
    const dir = await mkdtemp(join(tmpdir(), 'peerdist-bench-serve-'));
    const child = fork(
      fileURLToPath(import.meta.url),
      ['--serve', dir, '--sealed', String(sealed), '--size', String(SIZE_MIB), '--transport', transport],
      {
        env: { ...process.env, PEERDIST_LOG: 'warn' },
        execArgv: values.profile ? [...process.execArgv, '--cpu-prof', '--cpu-prof-dir', values.profile] : undefined,
      },
    );
    const { peer } = await new Promise<{ peer: string }>((r) => child.once('message', (m) => r(m as { peer: string })));
    const cpu0 = await cpuSeconds(child.pid!);
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: peers }, async () => {
        const c = new RetrievalClient({
          connections: 16,
          probation: false,
          requestTimeoutMs: 60_000,
          firstByteTimeoutMs: 30_000,
        });
        const jobs: Array<[SegmentMeta, number]> = [];
        for (const m of segs) for (let i = 0; i * BLOCK < m.length; i++) jobs.push([m, i]);
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < jobs.length) {
              const [m, i] = jobs[next++]!;
              const len = Math.min(BLOCK, m.length - i * BLOCK);
              await c.getBlock({
                peer,
                segmentId: m.segmentId,
                index: i,
                kp: m.kp,
                expectedLength: len,
                verify: (p) => createHash('sha256').update(p).digest().equals(m.blockHashes[i]!),
              });
            }
          }),
        );
        await c.close();
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(child.pid!)) - cpu0;
    const own = process.cpuUsage(own0);
    child.disconnect();
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
    const gib = (peers * totalBlocks * BLOCK) / 2 ** 30;
    return { seconds, cpu, perGiB: cpu / gib, clientPerGiB: (own.user + own.system) / 1e6 / gib };
  };
  process.stdout.write(
    `${peers} peers x ${SIZE_MIB} MiB (${totalBlocks} blocks of ${BLOCK} bytes), 16 requests in flight each\n| alternation | transport | sealed memory | server CPU s | CPU s per GiB served | peers' CPU s per GiB received | wall s | load |\n|---|---|---|---:|---:|---:|---:|---|\n`,
  );
  for (let k = 0; k < Number(values.alternations); k++) {
    for (const transport of values.transport === 'both' ? ['lean', 'node'] : [values.transport!])
      for (const sealed of values.only !== undefined ? [Number(values.only)] : [0, 16 * 1024 * 1024]) {
        const r = await run(sealed, transport);
        process.stdout.write(
          `| ${k + 1} | ${transport} | ${sealed ? '16 MiB' : 'off'} | ${r.cpu.toFixed(2)} | ${r.perGiB.toFixed(1)} | ${r.clientPerGiB.toFixed(1)} | ${r.seconds.toFixed(2)} | ${loadavg()[0]!.toFixed(1)} |\n`,
        );
      }
  }
}
