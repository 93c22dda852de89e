/**
 * Upload cap: a retrieval server with `uploadRateLimit` (the daemon's serving path: BlockStore ->
 * MS-PCCRR server with its token bucket) is pulled as hard as possible by 16 concurrent block
 * requests over loopback for a fixed time; the served rate is compared with the cap, and with
 * the same server uncapped in the same run. Target: served rate within 10% of the cap.
 *   npm run build && node dist/bench/upload-cap.js [--seconds 10] [--caps 1M,2M,4M,8M]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { BlockStore, segmentMetaFrom } from '../src/cache/store.js';
import { hashStream } from '../src/protocol/pccrc/hash.js';
import { blockCount, blockRange, verifyBlock } from '../src/protocol/pccrc/types.js';
import { createRetrievalServer } from '../src/retrieval/server.js';
import { RetrievalClient } from '../src/retrieval/client.js';
import { parseSize, formatBytes } from '../src/util/size.js';
import { nullLogger } from '../src/util/log.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    seconds: { type: 'string', default: '10' },
    caps: { type: 'string', default: '1M,2M,4M,8M' },
    json: { type: 'boolean' },
  },
});
const seconds = Number(values.seconds);
const caps = values.caps!.split(',').map((c) => parseSize(c));

const dir = await mkdtemp(join(tmpdir(), 'pd-bench-cap-'));
const data = randomBytes(16 * 1024 * 1024);
const ci = await hashStream(
  (async function* () {
    yield data;
  })(),
  { secret: Buffer.from('bench'), version: 1 },
);
const store = await BlockStore.open({ dir, limitBytes: 1 << 30, fsync: false });
const blocks: Array<{ seg: (typeof ci.segments)[number]; index: number; length: number }> = [];
for (const seg of ci.segments) {
  await store.addSegment(segmentMetaFrom(ci.version, ci.hashAlgorithm, seg));
  for (let i = 0; i < blockCount(ci.version, seg); i++) {
    const [s, e] = blockRange(ci.version, seg, i);
    await store.putBlock(seg.segmentId, i, data.subarray(seg.offset + s, seg.offset + e));
    blocks.push({ seg, index: i, length: e - s });
  }
}

async function run(
  cap: number | undefined,
): Promise<{ cap: number | undefined; bytes: number; seconds: number; rate: number; busy: number; throttled: number }> {
  const server = createRetrievalServer({ source: store, uploadRateLimit: cap, maxConcurrent: 64, logger: nullLogger });
  const { host, port } = await server.listen();
  const client = new RetrievalClient({ connections: 16 });
  const peer = `${host}:${port}`;
  let bytes = 0,
    busy = 0,
    k = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const b = blocks[k++ % blocks.length]!;
      try {
        const r = await client.getBlock({
          peer,
          segmentId: b.seg.segmentId,
          index: b.index,
          kp: b.seg.kp,
          expectedLength: b.length,
          verify: (p) => verifyBlock(ci.version, b.seg, b.index, p),
        });
        if (performance.now() <= end) bytes += r.data.length;
      } catch {
        busy++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  // Bytes received inside the window over the window (responses still queued at its end do not count).
  const secs = seconds;
  const throttled = server.stats().throttled;
  await client.close();
  await server.close();
  return { cap, bytes, seconds: secs, rate: bytes / secs, busy, throttled };
}

const rows = [];
for (const cap of [undefined, ...caps]) {
  const r = await run(cap);
  rows.push(r);
  const vs = r.cap ? ` = ${(r.rate / r.cap).toFixed(3)} x cap` : '';
  process.stdout.write(
    `cap ${r.cap ? formatBytes(r.cap) + '/s' : 'none'.padEnd(10)}  served ${formatBytes(Math.round(r.rate))}/s over ${r.seconds} s${vs}  (busy answers ${r.busy}, delayed responses ${r.throttled})\n`,
  );
}
if (values.json) process.stdout.write(JSON.stringify(rows) + '\n');
await store.close();
await rm(dir, { recursive: true, force: true });
