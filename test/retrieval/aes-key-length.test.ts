/**
 * Issue 27.11: Microsoft's BranchCache protocol test suite encrypts CryptoAlgoId AES_128 (and
 * AES_192) blocks with AES keyed by the whole 32-byte segment secret Kp (its crypto library sizes
 * the key by the bytes given), where we and iPXE key AES-128 with the first 16 bytes. A block that
 * fails the hash check under the first reading is decrypted once more as AES-256 over the whole
 * secret before it is rejected, and both outcomes are counted. A real peer on loopback sends the
 * MSG_BLK; the client's hash check against the content information decides.
 */
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { verifyBlock } from '../../src/protocol/pccrc/types.js';
import { RetrievalClient, PeerError } from '../../src/retrieval/client.js';
import { createRetrievalServer } from '../../src/retrieval/server.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { renderMetrics } from '../../src/daemon/metrics.js';
import { collectMetrics, type DaemonParts } from '../../src/daemon/status-report.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { PeerTracker } from '../../src/daemon/peer-tracker.js';
import { FakeEngine } from '../daemon/fake-engine.js';
import { blockOf, makeContent, MemorySource, raw } from './source.js';
import { Agent } from 'undici';

const A = await makeContent(65536 + 5000);

/**
 * A peer that answers every MSG_GETBLKS with the block encrypted by `encrypt` and labelled with
 * CryptoAlgoId `label`.
 */
async function peer(t: Test, label: 1 | 2 | 3, encrypt: (plain: Buffer) => { cipher: Buffer; iv: Buffer }) {
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = decodeRequest(Buffer.concat(chunks));
      if (r.type !== 'GETBLKS') throw new Error('expected GETBLKS');
      const index = r.ranges[0]![0];
      const { cipher, iv } = encrypt(blockOf(A, index));
      const body = encodeResponse({
        type: 'BLK',
        cryptoAlgo: label,
        segmentId: r.segmentId,
        blockIndex: index,
        nextBlockIndex: 0,
        block: cipher,
        iv,
      });
      res.writeHead(200, { 'Content-Length': body.length });
      res.end(body);
    });
  });
  const sockets = new Set<Socket>();
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        srv.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  );
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

const want = (p: string, index = 1) => ({
  peer: p,
  segmentId: A.seg.segmentId,
  index,
  kp: A.seg.kp,
  expectedLength: blockOf(A, index).length,
  verify: (b: Buffer) => verifyBlock(1, A.seg, index, b),
});

/** AES keyed with the whole 32-byte secret: what the test suite sends for every AES id. */
const wholeSecret = (plain: Buffer) => encryptBlock(3, A.seg.kp, plain);

t.test('the segment secret is 32 bytes (what the fallback keys AES-256 with)', async (t) => {
  t.equal(A.seg.kp.length, 32);
});

for (const label of [1, 2] as const) {
  t.test(`AES_${label === 1 ? 128 : 192} block encrypted over the whole secret is accepted`, async (t) => {
    const client = new RetrievalClient({ probation: false });
    t.teardown(() => client.close());
    const p = await peer(t, label, wholeSecret);
    const r = await client.getBlock(want(p));
    t.ok(r.data.equals(blockOf(A, 1)), 'the plaintext block, byte for byte');
    t.same(client.stats().aesWholeSecret, { recovered: 1, rejected: 0 }, 'counted as recovered');
  });
}

t.test('a block that fails both readings is rejected as BAD_BLOCK and counted', async (t) => {
  const client = new RetrievalClient({ probation: false });
  t.teardown(() => client.close());
  // Encrypted with a key that is neither reading of Kp.
  const other = Buffer.alloc(32, 7);
  const p = await peer(t, 1, (plain) => encryptBlock(3, other, plain));
  const err = await client.getBlock(want(p)).catch((e: unknown) => e);
  t.ok(err instanceof PeerError && err.code === 'BAD_BLOCK', `rejected: ${(err as Error).message}`);
  t.same(client.stats().aesWholeSecret, { recovered: 0, rejected: 1 }, 'counted as rejected');
});

t.test('the first-16-bytes reading needs no fallback; AES_256 gets no second try', async (t) => {
  const client = new RetrievalClient({ probation: false });
  t.teardown(() => client.close());
  const ours = await peer(t, 1, (plain) => encryptBlock(1, A.seg.kp, plain));
  t.ok((await client.getBlock(want(ours))).data.equals(blockOf(A, 1)), 'AES-128 with Kp[0..16) still works');
  const bad256 = await peer(t, 3, (plain) => encryptBlock(3, Buffer.alloc(32, 9), plain));
  const err = await client.getBlock(want(bad256)).catch((e: unknown) => e);
  t.ok(err instanceof PeerError && err.code === 'BAD_BLOCK', 'a bad AES_256 block is rejected');
  t.same(client.stats().aesWholeSecret, { recovered: 0, rejected: 0 }, 'neither case used the fallback');
});

t.test('as a server we keep answering AES_256 to an AES_128 request', async (t) => {
  const server = createRetrievalServer({ source: new MemorySource().add(A) });
  const { host, port } = await server.listen();
  const agent = new Agent();
  t.teardown(async () => {
    await agent.close();
    await server.close();
  });
  const body = encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: A.seg.segmentId, ranges: [[0, 1]] });
  const r = await raw(agent, `http://${host}:${port}`, { body });
  const msg = decodeResponse(r.body);
  t.equal(msg.type, 'BLK');
  t.equal(msg.type === 'BLK' ? msg.cryptoAlgo : -1, 3, 'CryptoAlgoId 3 (AES-256 over the whole secret)');
});

t.test('the daemon exports both outcomes as metrics', async (t) => {
  const engine = new FakeEngine();
  const parts: DaemonParts = {
    engine,
    jobs: new JobBook(engine),
    peers: new PeerTracker(),
    started: 0,
    version: '0',
    store: { stats: () => ({ bytes: 0, limitBytes: 0, segments: 0, blocks: 0 }) },
    server: { stats: () => ({ blocksServed: 0, bytesServed: 0, requests: 0, blocksMissing: 0, busy: 0 }) },
    discovery: { stats: () => ({}) },
    retrievalClient: { stats: () => ({ aesWholeSecret: { recovered: 3, rejected: 2 } }) },
  };
  const lines = renderMetrics(collectMetrics(parts)).split('\n');
  t.ok(lines.includes('peerdist_retrieval_aes_whole_secret_total{outcome="recovered"} 3'), 'recovered');
  t.ok(lines.includes('peerdist_retrieval_aes_whole_secret_total{outcome="rejected"} 2'), 'rejected');
});
