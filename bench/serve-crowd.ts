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
 *     [--version 1|2] (v1: 64 KiB blocks, 512 per segment; v2: one 128 KiB block per segment, SHA-512)
 *     [--base DIR] (also a server built from another tree's dist/ DIR, alternating with this one)
 *     [--node-args '...'] (extra node options for the server child, e.g. --trace-gc)
 *     [--seal-worker on|off] (this build's server encrypts on a worker thread, seal-worker.ts; default on)
 *     [--floor] (after each alternation, bench/crypto-floor.js on the same size, v2 stages: the floor
 *       beside the server in the same minutes)
 * The server's CPU is split by thread: main; V8's platform threads (GC marking and sweeping, JIT;
 * the threads started with the process, next to the main thread); libuv's pool, LevelDB's and the
 * seal worker's (seal-worker.ts; it starts with the server); threads started while serving (none
 * expected). Mark-compacts / scavenges: the server's main isolate during the serving.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { execFile, fork } from 'node:child_process';
import { constants as perfConstants, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as StoreModule from '../src/cache/store.js';
import type * as ServerModule from '../src/retrieval/server.js';
import type { SegmentMeta } from '../src/cache/meta.js';
import { v1Segment, v2Segment } from '../test/cache/make.js';
import { V1_BLOCK_SIZE, V2_MAX_SEGMENT_SIZE } from '../src/protocol/pccrc/types.js';
import { RetrievalClient } from '../src/retrieval/client.js';

const { values } = benchArgs(import.meta.url, {
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
    version: { type: 'string', default: '1' },
    /** A dist/ directory of another build: its server alternates with this build's. */
    base: { type: 'string' },
    /** The dist/ directory the server child loads its modules from (set by the parent). */
    root: { type: 'string' },
    'node-args': { type: 'string' },
    /** Print each server thread's CPU seconds (to stderr). */
    threads: { type: 'boolean', default: false },
    floor: { type: 'boolean', default: false },
    /** This build's server encrypts on a worker thread (seal-worker.ts): on (default) or off. */
    'seal-worker': { type: 'string', default: 'on' },
  },
});
const V2 = values.version === '2';
const BLOCK = V2 ? V2_MAX_SEGMENT_SIZE : V1_BLOCK_SIZE;
const PER_SEG = V2 ? 1 : 512;
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
  return { meta: (V2 ? v2Segment(data) : v1Segment(data)).meta, data };
}

/** CPU seconds of every thread of `pid` by thread id (ascending: the main thread, V8's, then libuv's and LevelDB's as started). */
async function threadCpu(pid: number): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const t of (await readdir(`/proc/${pid}/task`)).map(Number).sort((a, b) => a - b))
    out.set(t, await cpuSeconds(pid, t).catch(() => 0));
  return out;
}

async function cpuSeconds(pid: number, tid?: number): Promise<number> {
  const stat = await readFile(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** The main isolate's collections (mark-compacts, scavenges) so far, counted in the server child. */
const gcCount = { major: 0, minor: 0 };

if (values.serve) {
  // Child: fill the store, serve, report the port; exit when the parent disconnects.
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcCount.major++;
      else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcCount.minor++;
    }
  }).observe({ entryTypes: ['gc'] });
  const root = values.root ?? fileURLToPath(new URL('..', import.meta.url));
  const { BlockStore } = (await import(pathToFileURL(join(root, 'src/cache/store.js')).href)) as typeof StoreModule;
  const { createRetrievalServer } = (await import(
    pathToFileURL(join(root, 'src/retrieval/server.js')).href
  )) as typeof ServerModule;
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
    sealWorker: values['seal-worker'] !== 'off',
  });
  const { host, port } = await server.listen();
  await new Promise((r) => setImmediate(r)); // the fill's GC entries are delivered
  process.send!({ peer: `${host}:${port}`, gc: { ...gcCount } });
  process.on('message', (m) => {
    // Blocks read from the store for peers (the base build has no sealing counters; this tells both).
    if (m === 'stats')
      setImmediate(() =>
        process.send!({ stats: server.stats(), storeReads: store.stats().hitsPeer, gc: { ...gcCount } }),
      );
  });
  process.on('disconnect', () => void server.close().then(() => store.close?.()));
} else {
  const peers = Number(values.peers);
  const segs = Array.from({ length: nSegs }, (_, s) => segment(s).meta);
  const run = async (sealed: number, transport: string, root: string | undefined) => {
    const dir = await mkdtemp(join(tmpdir(), 'peerdist-bench-serve-'));
    const execArgv = [...process.execArgv, ...(values['node-args']?.split(' ').filter(Boolean) ?? [])];
    if (values.profile) execArgv.push('--cpu-prof', '--cpu-prof-dir', values.profile);
    const child = fork(
      fileURLToPath(import.meta.url),
      [
        '--serve',
        dir,
        '--sealed',
        String(sealed),
        '--size',
        String(SIZE_MIB),
        '--transport',
        transport,
        '--seal-worker',
        values['seal-worker']!,
        '--version',
        V2 ? '2' : '1',
        ...(root ? ['--root', root] : []),
      ],
      { env: { ...process.env, PEERDIST_LOG: 'warn' }, execArgv },
    );
    const { peer, gc: gc0 } = await new Promise<{ peer: string; gc: typeof gcCount }>((r) =>
      child.once('message', (m) => r(m as never)),
    );
    const cpu0 = await cpuSeconds(child.pid!);
    const main0 = await cpuSeconds(child.pid!, child.pid!);
    const threads0 = await threadCpu(child.pid!);
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
                verify: (p) =>
                  V2
                    ? createHash('sha512').update(p).digest().subarray(0, 32).equals(m.hod)
                    : createHash('sha256').update(p).digest().equals(m.blockHashes[i]!),
              });
            }
          }),
        );
        await c.close();
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    child.send('stats');
    const { stats, storeReads, gc } = await new Promise<{
      stats: { blocksServed: number; blocksSealed?: number; sealedHits?: number };
      storeReads: number;
      gc: typeof gcCount;
    }>((r) => child.once('message', (m) => r(m as never)));
    const cpu = (await cpuSeconds(child.pid!)) - cpu0;
    // The main thread (JavaScript, syscalls it makes); the rest is V8's GC / compiler threads and libuv's pool.
    const main = (await cpuSeconds(child.pid!, child.pid!)) - main0;
    const threads1 = await threadCpu(child.pid!);
    const threads = [...threads1]
      .map(([tid, c]) => [tid, c - (threads0.get(tid) ?? 0)] as const)
      .filter(([, c]) => c > 0);
    // By group: V8's platform threads are the first six after the main thread (four workers; the
    // others idle), the pool's come later; threads that were not there before serving are new.
    const order = [...threads0.keys()];
    const group = { v8: 0, pool: 0, fresh: 0 };
    for (const [tid, c] of threads) {
      const at = order.indexOf(tid);
      if (at === 0) continue;
      if (at < 0) group.fresh += c;
      else if (at <= 6) group.v8 += c;
      else group.pool += c;
    }
    const own = process.cpuUsage(own0);
    child.disconnect();
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
    const gib = (peers * totalBlocks * BLOCK) / 2 ** 30;
    return {
      seconds,
      cpu,
      perGiB: cpu / gib,
      mainPerGiB: main / gib,
      stats,
      storeReads,
      threads,
      group: { v8: group.v8 / gib, pool: group.pool / gib, fresh: group.fresh / gib },
      gc: { major: gc.major - gc0.major, minor: gc.minor - gc0.minor },
      clientPerGiB: (own.user + own.system) / 1e6 / gib,
    };
  };
  process.stdout.write(
    `${peers} peers x ${SIZE_MIB} MiB (v${V2 ? 2 : 1}, ${totalBlocks} blocks of ${BLOCK} bytes), 16 requests in flight each\n| alternation | build | transport | sealed memory | server CPU s | CPU s per GiB served | of it main thread | other threads | V8 helpers | pool, LevelDB, seal worker | started while serving | mark-compacts / scavenges | peers' CPU s per GiB received | wall s | load | blocks served / sealed / from memory | blocks read from the store |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|\n`,
  );
  for (let k = 0; k < Number(values.alternations); k++) {
    for (const root of values.base ? [undefined, values.base] : [undefined])
      for (const transport of values.transport === 'both' ? ['lean', 'node'] : [values.transport!])
        for (const sealed of values.only !== undefined ? [Number(values.only)] : [0, 16 * 1024 * 1024]) {
          const r = await run(sealed, transport, root);
          if (values.threads)
            process.stderr.write(
              `threads (tid: CPU s): ${r.threads.map(([t, c]) => `${t - r.threads[0]![0]}: ${c.toFixed(2)}`).join(', ')}\n`,
            );
          process.stdout.write(
            `| ${k + 1} | ${root ? 'base' : 'this'} | ${transport} | ${sealed ? '16 MiB' : 'off'} | ${r.cpu.toFixed(2)} | ${r.perGiB.toFixed(1)} | ${r.mainPerGiB.toFixed(1)} | ${(r.perGiB - r.mainPerGiB).toFixed(1)} | ${r.group.v8.toFixed(1)} | ${r.group.pool.toFixed(1)} | ${r.group.fresh.toFixed(1)} | ${r.gc.major} / ${r.gc.minor} | ${r.clientPerGiB.toFixed(1)} | ${r.seconds.toFixed(2)} | ${loadavg()[0]!.toFixed(1)} | ${r.stats.blocksServed} / ${r.stats.blocksSealed ?? 'n/a'} / ${r.stats.sealedHits ?? 'n/a'} | ${r.storeReads} |\n`,
          );
        }
    if (values.floor) process.stdout.write(`floor: ${await floor()}\n`);
  }
}

/** bench/crypto-floor.js, one round on the same size: its v2 stages (CPU s per GiB) on one line. */
async function floor(): Promise<string> {
  const script = fileURLToPath(new URL('./crypto-floor.js', import.meta.url));
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      [script, '--size', String(Math.min(256, SIZE_MIB)), '--rounds', '1', '--json'],
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
  const j = JSON.parse(out.trim().split('\n').pop()!) as {
    load: number[];
    perGiB: Record<string, Record<string, number[]>>;
  };
  const v2 = Object.entries(j.perGiB).find(([k]) => k.startsWith('v2'))![1];
  return `${Object.entries(v2)
    .map(([k, v]) => `${k}: ${v[0]!.toFixed(2)}`)
    .join('; ')} (load ${j.load[0]!.toFixed(1)})`;
}
