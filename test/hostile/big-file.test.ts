/**
 * Issue 16.7: big files under the shipped systemd unit's memory settings
 * (packaging/peerdist.service: NODE_OPTIONS=--max-old-space-size=64 --max-semi-space-size=2,
 * MALLOC_ARENA_MAX=2). A real `peerdist daemon` child with those settings downloads a 5 GiB sparse
 * file (81,921 v1 blocks) from a loopback origin through its admin API. Bounded in time: once the
 * content information and block state for all 81,921 blocks are set up and 32 MiB went through,
 * the daemon's V8 heap is measured (PEERDIST_BIG_FILE_FULL=1 runs all 5 GiB; not yet measured, RELIABILITY.md). A download whose
 * block state cannot fit in the daemon's memory is refused with a clear error, and the daemon
 * keeps serving other downloads.
 *
 * v2 (RELIABILITY.md "Found 2026-12-07"): under the same settings, a v2 download of 40,000
 * segments, whose state does not fit, is refused with TOO_LARGE before anything is fetched (the
 * budget assumed 700 bytes per v2 segment where the daemon held about 1.9 KB, so it admitted it and
 * ran at its heap limit), and an admitted one runs within the heap (the largest the budget admits,
 * 24,466 segments, with PEERDIST_BIG_FILE_FULL=1: minutes of index writes on a busy machine). When
 * the origin also has v1 content information for the file, the daemon asks for it and the download
 * goes through (a tenth of the state) instead of failing.
 *
 * The origin here is a small MS-PCCRTP server of the test's own: content information for a sparse
 * file (zeros except a 16-byte marker at the start of every segment, so every segment has its own
 * ID) is computed from that structure instead of hashing 5 GiB, which would take minutes on a
 * shared machine; block bodies are read from the sparse file.
 */
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { open, truncate } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { encodeContentInfo } from '../../src/protocol/pccrc/codec.js';
import { segmentIdOf, segmentSecret, serverSecret } from '../../src/protocol/pccrc/keys.js';
import { V1_BLOCK_SIZE, V1_SEGMENT_SIZE, type ContentInfo, type SegmentInfo } from '../../src/protocol/pccrc/types.js';
import { negotiate, peerDistResponseHeaders } from '../../src/protocol/pccrtp/headers.js';
import { loopbackDaemonArgs, startDaemonChild, type DaemonChild } from '../daemon/daemon-child.js';
import { tmpDir } from './rig.js';
import { BYTES_PER_V2_SEGMENT } from '../../src/engine/budget.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The systemd unit's settings (packaging/peerdist.service). */
const UNIT_ENV = { NODE_OPTIONS: '--max-old-space-size=64 --max-semi-space-size=2', MALLOC_ARENA_MAX: '2' };

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

function marker(seg: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(seg, 0);
  b.write('peerdist', 4, 'latin1');
  return b;
}

/** Writes the sparse file (when `path` is given) and computes its v1 content information. */
async function sparseContent(size: number, path?: string): Promise<{ ci: ContentInfo; body: Buffer }> {
  if (path) {
    await truncate(path, 0).catch(() => undefined);
    const fh = await open(path, 'w');
    try {
      await fh.truncate(size);
      for (let s = 0; s * V1_SEGMENT_SIZE < size; s++) await fh.write(marker(s), 0, 16, s * V1_SEGMENT_SIZE);
    } finally {
      await fh.close();
    }
  }
  const ks = serverSecret(1, randomBytes(32));
  const zeroBlock = sha256(Buffer.alloc(V1_BLOCK_SIZE));
  const segments: SegmentInfo[] = [];
  for (let s = 0, offset = 0; offset < size; s++, offset += V1_SEGMENT_SIZE) {
    const length = Math.min(V1_SEGMENT_SIZE, size - offset);
    const n = Math.ceil(length / V1_BLOCK_SIZE);
    const blockHashes: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const len = Math.min(V1_BLOCK_SIZE, length - i * V1_BLOCK_SIZE);
      const block = Buffer.alloc(len);
      if (i === 0) marker(s).copy(block, 0, 0, Math.min(16, len));
      blockHashes.push(i > 0 && len === V1_BLOCK_SIZE ? zeroBlock : sha256(block));
    }
    const hod = sha256(Buffer.concat(blockHashes));
    const kp = segmentSecret(1, ks, hod);
    segments.push({
      index: s,
      offset,
      length,
      blockSize: V1_BLOCK_SIZE,
      hod,
      kp,
      segmentId: segmentIdOf(1, kp, hod),
      blockHashes,
    });
  }
  const ci: ContentInfo = {
    version: 1,
    hashAlgorithm: 'SHA-256',
    rangeStart: 0,
    rangeEnd: size,
    contentLength: size,
    segments,
  };
  return { ci, body: encodeContentInfo(ci) };
}

/** A loopback MS-PCCRTP origin for one file: content information, and ranges read from `path`. */
async function sparseOrigin(
  t: Test,
  files: Record<
    string,
    {
      size: number;
      body: Buffer;
      /** v1 content information, for a client that asks for at most v1 (`body` is then v2). */
      bodyV1?: Buffer;
      path?: string;
      bytes?: (start: number, end: number) => Buffer;
    }
  >,
): Promise<{ base: string; rangeBytes: () => number; askedV1: () => number }> {
  let rangeBytes = 0;
  let askedV1 = 0;
  const server = createServer((req: IncomingMessage, res) => {
    const f = files[(req.url ?? '/').slice(1)];
    if (!f) {
      res.writeHead(404, { 'Content-Length': 0 }).end();
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
    if (range) {
      const start = Number(range[1]),
        end = Math.min(Number(range[2]), f.size - 1);
      if (!(f.path || f.bytes) || start > end) {
        res.writeHead(416, { 'Content-Length': 0 }).end();
        return;
      }
      rangeBytes += end - start + 1;
      res.writeHead(206, { 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${f.size}` });
      if (f.bytes) res.end(f.bytes(start, end + 1));
      else createReadStream(f.path!, { start, end }).pipe(res);
      return;
    }
    const n = negotiate(req.headers);
    if (!n.peerdist) {
      res.writeHead(406, { 'Content-Length': 0 }).end();
      return;
    } // this test origin speaks PeerDist only
    const body = n.contentVersion === 1 && f.bodyV1 ? f.bodyV1 : f.body;
    if (n.contentVersion === 1) askedV1++;
    res.writeHead(200, { ...peerDistResponseHeaders(n.responseVersion, f.size), 'Content-Length': body.length });
    res.end(body);
  });
  server.on('connection', (s) => t.teardown(() => s.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    rangeBytes: () => rangeBytes,
    askedV1: () => askedV1,
  };
}

function adminJson<T>(admin: string, path: string): Promise<T> {
  const [host, port] = admin.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString()) as T);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

interface Status {
  memory?: { heapUsedBytes: number; heapLimitBytes: number; rssBytes: number };
  downloads: Array<{ blocksTotal: number; bytesDone: number }>;
}

/**
 * Streams GET /v1/fetch?url= from the daemon; `onBytes(total)` sees the count as it grows and may
 * return true to stop. Resolves with the status code, bytes read, and the error body if not 200.
 */
function fetchThrough(
  admin: string,
  url: string,
  onBytes: (n: number) => boolean | Promise<boolean>,
): Promise<{ status: number; bytes: number; error?: string }> {
  const [host, port] = admin.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path: `/v1/fetch?url=${encodeURIComponent(url)}` }, (res) => {
      let n = 0;
      const parts: Buffer[] = [];
      let stopping = false;
      res.on('data', (d: Buffer) => {
        n += d.length;
        if (res.statusCode !== 200) {
          parts.push(d);
          return;
        }
        if (stopping) return;
        res.pause();
        void Promise.resolve(onBytes(n)).then((stop) => {
          if (stop) {
            stopping = true;
            req.destroy();
            resolve({ status: 200, bytes: n });
          } else res.resume();
        }, reject);
      });
      const settle = () =>
        resolve({
          status: res.statusCode ?? 0,
          bytes: n,
          ...(res.statusCode !== 200 ? { error: Buffer.concat(parts).toString() } : {}),
        });
      res.on('end', settle);
      res.on('close', settle); // cut short by the daemon: the count says how far it got
      res.on('error', () => undefined);
    });
    req.on('error', (e) => {
      if (!(e as NodeJS.ErrnoException).code?.includes('ECONNRESET')) reject(e);
    });
    req.end();
  });
}

t.test(
  '5 GiB download under the unit heap cap: block state stays small, the daemon survives; a download that cannot fit is refused',
  async (t) => {
    const root = await tmpDir(t, 'bigfile');
    const size = 5 * GiB + 12345; // 161 segments, 81,921 blocks
    const path = join(root, 'big.bin');
    const big = await sparseContent(size, path);
    const small = await sparseContent(3 * MiB + 5, join(root, 'small.bin'));
    // 200 GiB (3,276,800 blocks; 105 MiB of content information, under the 256 MiB cap): block
    // state that does not fit under a 64 MiB heap.
    const hugeSize = 200 * GiB;
    const hugeBody = await hugeContentInfo(hugeSize);
    const origin = await sparseOrigin(t, {
      'big.bin': { size, body: big.body, path },
      'small.bin': { size: 3 * MiB + 5, body: small.body, path: join(root, 'small.bin') },
      'huge.bin': { size: hugeSize, body: hugeBody },
    });
    const children: DaemonChild[] = [];
    t.teardown(() => Promise.all(children.map((c) => c.stop(3000))));
    const d = await startDaemonChild(
      [...(await loopbackDaemonArgs(join(root, 'state'))), '--max-content-version', '1', '--cache-limit', '256M'],
      { env: UNIT_ENV, timeoutMs: 30_000 },
    );
    children.push(d);
    let exitCode: number | null | undefined;
    d.proc.once('exit', (code, sig) => {
      exitCode = code ?? (sig ? -1 : null);
    });

    const before = await adminJson<Status>(d.ready.admin, '/v1/status');
    t.ok(before.memory, 'status reports the daemon memory');
    t.equal(
      before.memory!.heapLimitBytes < 128 * MiB,
      true,
      `the unit's heap cap is in force (${(before.memory!.heapLimitBytes / MiB).toFixed(0)} MiB)`,
    );

    // 1. 5 GiB: stop once 32 MiB went through, measuring the heap along the way (the whole file
    // with PEERDIST_BIG_FILE_FULL=1: minutes, so not in the suite; figures in RELIABILITY.md).
    let peakHeap = 0,
      blocksTotal = 0,
      samples = 0;
    const part = process.env.PEERDIST_BIG_FILE_FULL === '1' ? size : 32 * MiB;
    const r = await fetchThrough(d.ready.admin, `${origin.base}/big.bin`, async (n) => {
      if (n < part && n % (8 * MiB) >= 1 * MiB) return false;
      const s = await adminJson<Status>(d.ready.admin, '/v1/status');
      samples++;
      peakHeap = Math.max(peakHeap, s.memory?.heapUsedBytes ?? 0);
      blocksTotal = Math.max(blocksTotal, s.downloads[0]?.blocksTotal ?? 0);
      return n >= part;
    });
    t.equal(r.status, 200, `5 GiB download streams (${r.error ?? ''})`);
    t.ok(r.bytes >= part, `${(r.bytes / MiB).toFixed(0)} MiB went through`);
    t.equal(blocksTotal, 81_921, 'block state for all 81,921 blocks was set up');
    t.equal(exitCode, undefined, 'the daemon is alive');
    t.comment(
      `heap: ${(before.memory!.heapUsedBytes / MiB).toFixed(1)} MiB idle, peak ${(peakHeap / MiB).toFixed(1)} MiB with the 5 GiB download running (${samples} samples), limit ${(before.memory!.heapLimitBytes / MiB).toFixed(0)} MiB`,
    );
    t.ok(
      peakHeap - before.memory!.heapUsedBytes < 24 * MiB,
      `the 5 GiB download adds ${((peakHeap - before.memory!.heapUsedBytes) / MiB).toFixed(1)} MiB of heap (< 24 MiB)`,
    );

    // 2. Block state that cannot fit: refused with a clear error, the daemon is unharmed.
    const h = await fetchThrough(d.ready.admin, `${origin.base}/huge.bin`, () => true);
    t.not(h.status, 200, 'a 200 GiB download is refused');
    t.match(h.error ?? '', /TOO_LARGE|too large|memory/i, `with a clear error: ${h.error}`);
    t.equal(exitCode, undefined, 'the daemon is alive');
    const s = await fetchThrough(d.ready.admin, `${origin.base}/small.bin`, () => false);
    t.equal(s.status, 200, 'another download works afterwards');
    t.equal(s.bytes, 3 * MiB + 5, 'completely');
  },
);

/** Content information for `size` bytes of zeros (no file behind it): identical 32 MiB segments. */
async function hugeContentInfo(size: number): Promise<Buffer> {
  const zeroBlock = sha256(Buffer.alloc(V1_BLOCK_SIZE));
  const blockHashes = Array.from({ length: V1_SEGMENT_SIZE / V1_BLOCK_SIZE }, () => zeroBlock);
  const hod = sha256(Buffer.concat(blockHashes));
  const kp = segmentSecret(1, serverSecret(1, randomBytes(32)), hod);
  const segmentId = segmentIdOf(1, kp, hod);
  const segments: SegmentInfo[] = [];
  for (let s = 0; s * V1_SEGMENT_SIZE < size; s++)
    segments.push({
      index: s,
      offset: s * V1_SEGMENT_SIZE,
      length: V1_SEGMENT_SIZE,
      blockSize: V1_BLOCK_SIZE,
      hod,
      kp,
      segmentId,
      blockHashes,
    });
  return encodeContentInfo({
    version: 1,
    hashAlgorithm: 'SHA-256',
    rangeStart: 0,
    rangeEnd: size,
    contentLength: size,
    segments,
  });
}

/**
 * v2 content of `n` segments of `segLen` bytes: segment k is its marker then zeros (no file). The
 * first `real` segments have their true hashes; the others distinct made-up ones (they are never
 * fetched: hashing them all would cost the suite seconds).
 */
function smallSegmentsV2(
  n: number,
  segLen: number,
  real: number,
): { body: Buffer; size: number; bytes: (a: number, b: number) => Buffer } {
  const ks = serverSecret(2, randomBytes(32));
  const segments: SegmentInfo[] = [];
  const data = Buffer.alloc(segLen);
  for (let k = 0; k < n; k++) {
    let hod: Buffer, kp: Buffer;
    if (k < real) {
      marker(k).copy(data, 0);
      hod = createHash('sha512').update(data).digest().subarray(0, 32);
      kp = segmentSecret(2, ks, hod);
    } else {
      hod = Buffer.alloc(32, 0x5a);
      hod.writeUInt32BE(k, 0);
      kp = Buffer.alloc(32, 0xa5);
      kp.writeUInt32BE(k, 28);
    }
    segments.push({
      index: k,
      offset: k * segLen,
      length: segLen,
      blockSize: segLen,
      hod,
      kp,
      segmentId: Buffer.alloc(32), // not on the wire (the daemon derives it)
      blockHashes: [],
    });
  }
  const size = n * segLen;
  const body = encodeContentInfo({
    version: 2,
    hashAlgorithm: 'SHA-512/256t',
    rangeStart: 0,
    rangeEnd: size,
    contentLength: size,
    segments,
  });
  const bytes = (a: number, b: number) => {
    const out = Buffer.alloc(b - a);
    for (let k = Math.floor(a / segLen); k * segLen < b; k++) {
      const m = marker(k);
      for (let i = 0; i < 16; i++) {
        const at = k * segLen + i;
        if (at >= a && at < b) out[at - a] = m[i]!;
      }
    }
    return out;
  };
  return { body, size, bytes };
}

t.test(
  'v2 under the unit heap cap: a download the state budget admits runs within the heap (the largest with PEERDIST_BIG_FILE_FULL=1); one whose state does not fit is refused with TOO_LARGE',
  async (t) => {
    const root = await tmpDir(t, 'bigfile-v2');
    const d = await startDaemonChild([...(await loopbackDaemonArgs(join(root, 'state'))), '--cache-limit', '256M'], {
      env: UNIT_ENV,
      timeoutMs: 30_000,
    });
    t.teardown(() => d.stop(3000));
    let exitCode: number | null | undefined;
    d.proc.once('exit', (code, sig) => {
      exitCode = code ?? (sig ? -1 : null);
    });
    const before = await adminJson<Status>(d.ready.admin, '/v1/status');
    const limit = before.memory!.heapLimitBytes;
    t.ok(limit < 128 * MiB, `the unit's heap cap is in force (${(limit / MiB).toFixed(0)} MiB)`);
    // The engine's budget is half the heap limit (src/engine/budget.ts): the most v2 segments it
    // admits. In the suite a download of 2,000 segments is run (registering 24,000 segments in the
    // cache index alone takes seconds); PEERDIST_BIG_FILE_FULL=1 runs the largest it admits.
    const budget = Math.floor(limit / 2);
    const most = Math.floor(budget / BYTES_PER_V2_SEGMENT);
    const admit = process.env.PEERDIST_BIG_FILE_FULL === '1' ? most : Math.min(most, 2000);
    const segLen = 4096; // the state is per segment, whatever its length: little data to move
    const part = 512 * 1024;
    // All with their true hashes: the daemon fetches ahead of the reader, and a made-up hash would
    // fail the download (ORIGIN_MISMATCH) wherever it got to first.
    const fit = smallSegmentsV2(admit, segLen, admit);
    // 40,960 segments (about 2.9 GiB of v2 content at the chunker's average): about 40 MB of state
    // at the ~1 KB per segment measured (test/engine/budget.test.ts), which with the idle daemon
    // does not fit under the unit's 64 MiB. The budget's old 700 B per segment admitted it. Its
    // 160 MiB are zeros: as v1 content information, five identical 32 MiB segments.
    const refused = 40_960;
    const tooMany = v2Descriptors(refused, segLen);
    const zeros = (a: number, b: number) => Buffer.alloc(b - a);
    const origin = await sparseOrigin(t, {
      'fit.bin': { size: fit.size, body: fit.body, bytes: fit.bytes },
      'too-many.bin': { size: refused * segLen, body: tooMany },
      'too-many-v1.bin': {
        size: refused * segLen,
        body: tooMany,
        bodyV1: await hugeContentInfo(refused * segLen),
        bytes: zeros,
      },
    });

    // 1. v2 state that does not fit, from an origin that has nothing else: refused before anything
    // is fetched, the daemon unharmed.
    const h = await fetchThrough(d.ready.admin, `${origin.base}/too-many.bin`, () => true);
    t.not(h.status, 200, `${refused} v2 segments are refused (the budget admits ${most})`);
    t.match(h.error ?? '', /TOO_LARGE.*too large/, `with a clear error: ${h.error}`);
    t.equal(origin.rangeBytes(), 0, 'nothing was fetched');
    t.equal(origin.askedV1(), 1, 'after asking for v1 content information once');
    t.equal(exitCode, undefined, 'the daemon is alive');

    // 1b. The same from an origin that also has v1 content information: the daemon asks for it
    // and the download goes through whole (protocol/engine.md "Memory per download").
    const v1 = await fetchThrough(d.ready.admin, `${origin.base}/too-many-v1.bin`, () => false);
    t.equal(v1.status, 200, `${refused} v2 segments: downloaded with v1 content information (${v1.error ?? ''})`);
    t.equal(v1.bytes, refused * segLen, 'completely');
    t.equal(origin.askedV1(), 2, 'the daemon asked for v1');
    t.equal(exitCode, undefined, 'the daemon is alive');

    // 2. A download it admits runs, with its whole state in hand, within the heap.
    const heap: number[] = [];
    let blocksTotal = 0;
    // Sampled at the first bytes of every 128 KiB step, however the stream is cut into chunks.
    let nextSample = 0;
    const r = await fetchThrough(d.ready.admin, `${origin.base}/fit.bin`, async (n) => {
      if (n < nextSample && n < part) return false;
      nextSample = (Math.floor(n / (128 * 1024)) + 1) * 128 * 1024;
      const s = await adminJson<Status>(d.ready.admin, '/v1/status');
      heap.push(s.memory?.heapUsedBytes ?? 0);
      for (const j of s.downloads) blocksTotal = Math.max(blocksTotal, j.blocksTotal);
      return n >= part;
    });
    t.equal(
      r.status,
      200,
      `${admit} v2 segments (${((admit * BYTES_PER_V2_SEGMENT) / MiB).toFixed(1)} MiB of the ${(budget / MiB).toFixed(1)} MiB budget) are admitted (${r.bytes} bytes read${r.error ? `, ${r.error}` : ''})`,
    );
    t.ok(r.bytes >= part, `${r.bytes} bytes streamed (the download did not fail)`);
    t.equal(blocksTotal, admit, 'with block state for every segment');
    t.equal(exitCode, undefined, 'the daemon is alive');
    const idle = before.memory!.heapUsedBytes;
    const low = Math.min(...heap);
    t.comment(
      `heap: idle ${(idle / MiB).toFixed(1)} MiB; with ${admit} v2 segments in hand ${(low / MiB).toFixed(1)}-${(Math.max(...heap) / MiB).toFixed(1)} MiB (${heap.length} samples), limit ${(limit / MiB).toFixed(0)} MiB`,
    );
    t.ok(
      low - idle <= budget,
      `the download's state (${((low - idle) / MiB).toFixed(1)} MiB) fits in the ${(budget / MiB).toFixed(1)} MiB the budget holds for it`,
    );
  },
);

/**
 * Wire v2 content information (MS-PCCRC 2.4) of `n` segments of `segLen` bytes with made-up,
 * distinct HoD and Kp, written directly (no SegmentInfo objects): content that is never fetched.
 */
function v2Descriptors(n: number, segLen: number): Buffer {
  const perChunk = 1000;
  const chunks = Math.ceil(n / perChunk);
  const out = Buffer.alloc(31 + chunks * 5 + n * 68);
  out.writeUInt8(0, 0); // bMinorVersion
  out.writeUInt8(2, 1); // bMajorVersion
  out.writeUInt8(4, 2); // bHashAlgo: truncated SHA-512
  // ullStartInContent, ullIndexOfFirstSegment, dwOffsetInFirstSegment, ullLengthOfRange: all 0
  let p = 31;
  for (let k = 0; k < n; k += perChunk) {
    const m = Math.min(perChunk, n - k);
    out.writeUInt8(0, p);
    out.writeUInt32BE(m * 68, p + 1);
    p += 5;
    for (let j = k; j < k + m; j++) {
      out.writeUInt32BE(segLen, p);
      out.fill(0x5a, p + 4, p + 68);
      out.writeUInt32BE(j, p + 4); // HoD
      out.writeUInt32BE(j, p + 64); // Kp
      p += 68;
    }
  }
  return out;
}
