/**
 * The receiving side of the MS-PCCRR exchange alone (issue 25): a retrieval server in a child
 * process serves v1 or v2 content from memory; this process fetches every block
 * `--repeat` times with RetrievalClient (16 in flight, as many connections as the daemon opens per
 * peer), decrypting and verifying each as the daemon does (v2: one block per segment), and prints its own CPU seconds (user +
 * system, process.cpuUsage, all threads) per GiB received. The client transports ('net', the
 * client's own; 'undici', the one before) alternate in one invocation, so they share the load.
 *   npm run build && node dist/bench/pccrr-client.js [--size 32] [--version 2] [--repeat 4]
 *     [--alternations 3] [--inflight 16] [--transports net,undici,crypto]
 * ('crypto' is no exchange: decrypt and hash check of the same blocks in a loop, the floor.)
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { hashStream } from '../src/protocol/pccrc/hash.js';
import {
  blockCount,
  blockRange,
  verifyBlock,
  type ContentInfo,
  type SegmentInfo,
} from '../src/protocol/pccrc/types.js';
import { createRetrievalServer, type BlockSource } from '../src/retrieval/server.js';
import { RetrievalClient } from '../src/retrieval/client.js';
import { decryptBlock, encryptBlock } from '../src/protocol/pccrr/crypto.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '32' },
    version: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '4' },
    alternations: { type: 'string', default: '3' },
    inflight: { type: 'string', default: '16' },
    connections: { type: 'string', default: '16' },
    transports: { type: 'string', default: 'net,undici' },
    serve: { type: 'boolean', default: false },
  },
});
const version = Number(values.version) as 1 | 2;
const size = Number(values.size) * 1048576;

function content(): Buffer {
  const d = Buffer.alloc(size);
  for (let i = 0; i + 4 <= d.length; i += 4) d.writeUInt32BE((i * 2654435761) >>> 0, i);
  return d;
}

async function hashed(data: Buffer): Promise<ContentInfo> {
  return hashStream(
    (async function* () {
      yield data;
    })(),
    { secret: Buffer.from('bench secret'), version },
  );
}

const data = content();
const info = await hashed(data);
const segs = new Map(info.segments.map((g) => [g.segmentId.toString('hex'), g]));
/** Every block of the content: [segment, index]. */
const jobs: Array<[SegmentInfo, number]> = [];
for (const g of info.segments) for (let i = 0; i < blockCount(version, g); i++) jobs.push([g, i]);
const block = (g: SegmentInfo, i: number) => {
  const [s, e] = blockRange(version, g, i);
  return data.subarray(g.offset + s, g.offset + e);
};

if (values.serve) {
  const seg = (id: Buffer) => segs.get(id.toString('hex'));
  const has = (id: Buffer, i: number) => {
    const g = seg(id);
    return g !== undefined && i < blockCount(version, g);
  };
  const source = {
    getSegment: (id: Buffer) => {
      const g = seg(id);
      return g && { version, kp: g.kp, length: g.length, blockSize: g.blockSize };
    },
    hasBlock: has,
    presentBlocks: (id: Buffer) => {
      const g = seg(id);
      return g ? Array.from({ length: blockCount(version, g) }, (_, i) => i) : [];
    },
    readBlock: async (id: Buffer, i: number) => (has(id, i) ? block(seg(id)!, i) : undefined),
  } as BlockSource;
  const server = createRetrievalServer({ source, sealedBudgetBytes: 64 * 1048576, maxConcurrent: 256 });
  const { host, port } = await server.listen();
  process.send!({ peer: `${host}:${port}` });
  process.on('disconnect', () => void server.close());
} else {
  const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2), '--serve']);
  const peer = await new Promise<string>((r) => child.once('message', (m: { peer: string }) => r(m.peer)));
  const repeat = Number(values.repeat);
  const inflight = Number(values.inflight);
  /** 'crypto': no exchange at all, the decrypt and hash check of the same blocks (the floor). */
  const sealed = new Map<number, { cipher: Buffer; iv: Buffer }>();
  const floor = () => {
    if (sealed.size === 0)
      for (let k = 0; k < jobs.length; k++) {
        const [g, i] = jobs[k]!;
        sealed.set(k, encryptBlock(3, g.kp, block(g, i)));
      }
    let bytes = 0;
    const t0 = performance.now();
    const u0 = process.cpuUsage();
    for (let k = 0; k < jobs.length * repeat; k++) {
      const [g, i] = jobs[k % jobs.length]!;
      const { cipher, iv } = sealed.get(k % jobs.length)!;
      const plain = decryptBlock(3, g.kp, cipher, iv, block(g, i).length);
      if (!verifyBlock(version, g, i, plain)) throw new Error('bad block');
      bytes += plain.length;
    }
    const u = process.cpuUsage(u0);
    const cpu = (u.user + u.system) / 1e6;
    return { cpu, perGiB: cpu / (bytes / 2 ** 30), mbs: bytes / 1e6 / ((performance.now() - t0) / 1000) };
  };
  const run = async (transport: 'net' | 'undici' | 'crypto') => {
    if (transport === 'crypto') return floor();
    const c = new RetrievalClient({
      transport,
      connections: Number(values.connections),
      probation: false,
      requestTimeoutMs: 60_000,
      firstByteTimeoutMs: 30_000,
    });
    let next = 0;
    let bytes = 0;
    const total = jobs.length * repeat;
    const t0 = performance.now();
    const u0 = process.cpuUsage();
    const worker = async () => {
      while (next < total) {
        const [g, i] = jobs[next++ % jobs.length]!;
        const r = await c.getBlock({
          peer,
          segmentId: g.segmentId,
          index: i,
          kp: g.kp,
          expectedLength: block(g, i).length,
          verify: (p) => verifyBlock(version, g, i, p),
        });
        bytes += r.data.length;
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
    const u = process.cpuUsage(u0);
    const s = (performance.now() - t0) / 1000;
    await c.close();
    const cpu = (u.user + u.system) / 1e6;
    return { cpu, perGiB: cpu / (bytes / 2 ** 30), mbs: bytes / 1e6 / s };
  };
  const transports = values.transports!.split(',') as Array<'net' | 'undici' | 'crypto'>;
  console.log(
    `v${version}, ${jobs.length} blocks (${info.segments.length} segments) x ${repeat}, ${inflight} in flight, ${values.connections} connections`,
  );
  console.log('| alternation | transport | load (1 min) | CPU s | CPU s/GiB | MB/s |');
  console.log('|---:|---|---:|---:|---:|---:|');
  await run(transports[0]!); // warm-up (JIT, server's sealed memory)
  for (let a = 1; a <= Number(values.alternations); a++)
    for (const tr of transports) {
      const r = await run(tr);
      console.log(
        `| ${a} | ${tr} | ${loadavg()[0]!.toFixed(1)} | ${r.cpu.toFixed(2)} | ${r.perGiB.toFixed(2)} | ${r.mbs.toFixed(0)} |`,
      );
    }
  child.disconnect();
}
