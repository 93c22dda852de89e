import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers/paths.js';
import { hashStream } from '../../src/protocol/pccrc/hash.js';
import { replyBody, respond, type ResponderDeps } from '../../src/retrieval/block-responder.js';
import { decodeResponse, encodeRequest, protVerToU32 } from '../../src/protocol/pccrr/codec.js';
import { IntoSource, MemorySource, type Content } from './source.js';

const V = JSON.parse(readFileSync(fixture('retrieval', 'vectors.json'), 'utf8')) as Record<string, string>;
const T = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
const IV = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

async function contentOf(data: Buffer, version: 1 | 2): Promise<Content> {
  const info = await hashStream(
    (async function* () {
      yield data;
    })(),
    { secret: Buffer.from('no more secrets'), version, chunking: 'fixed' },
  );
  return { data, info, seg: info.segments[0]! };
}
const T1 = await contentOf(T, 1);
const T2 = await contentOf(T, 2);

t.test('the served MSG_BLK for T is byte-identical to the section 6 vectors (fixed IV)', async (t) => {
  t.equal(
    T1.seg.segmentId.toString('hex'),
    V.t_v1_segment_id,
    'our content information reproduces the vector segment ID',
  );
  t.equal(T2.seg.segmentId.toString('hex'), V.t_v2_segment_id);
  for (const source of [new MemorySource().add(T1).add(T2), new IntoSource().add(T1).add(T2)])
    await t.test(source.constructor.name, (t) => vectors(t, source));
});

/** The vectors from one source: readBlock (a fresh buffer) or readBlockInto (a reused buffer). */
async function vectors(t: Test, source: MemorySource): Promise<void> {
  const deps = (cryptoAlgo: 1 | 2 | 3): ResponderDeps => ({ source, cryptoAlgo, busy: false, randomIv: () => IV });
  const req = (id: Buffer, algo: 0 | 1 = 1) =>
    encodeRequest({ type: 'GETBLKS', cryptoAlgo: algo, segmentId: id, ranges: [[0, 1]] });
  for (const [algo, key] of [
    [1, 't_blk_aes128'],
    [2, 't_blk_aes192'],
    [3, 't_blk_aes256'],
  ] as const) {
    const r = await respond(req(T1.seg.segmentId, 0), deps(algo));
    t.ok(r.ok);
    if (r.ok) {
      t.equal(replyBody(r).toString('hex'), V[key], `${key} byte for byte`);
      t.equal(r.outcome, 'served');
      t.equal(r.blockBytes, 100);
    }
  }
  const v2 = await respond(req(T2.seg.segmentId), deps(1));
  t.equal(v2.ok && replyBody(v2).toString('hex'), V.t_blk_v2_aes128, 'v2 segment vector');
  const missing = await respond(req(T1.seg.segmentId), { source: new MemorySource(), cryptoAlgo: 3, busy: false });
  t.equal(missing.ok && replyBody(missing).toString('hex'), V.t_blk_not_available, 'not-available vector');
  t.equal(missing.ok && missing.outcome, 'missing');
  if (source instanceof IntoSource) t.equal(source.intoReads, 4, 'every block was read into a reused buffer');
}

t.test('busy: empty answers and no store access', async (t) => {
  const source = new MemorySource().add(T1);
  const deps: ResponderDeps = { source, cryptoAlgo: 3, busy: true };
  const r = await respond(encodeRequest({ type: 'GETBLKS', segmentId: T1.seg.segmentId, ranges: [[0, 1]] }), deps);
  t.equal(r.ok && r.outcome, 'busy');
  t.equal(r.ok && replyBody(r).toString('hex'), V.t_blk_not_available, 'same bytes as not-available');
  const l = await respond(encodeRequest({ type: 'GETBLKLIST', segmentId: T1.seg.segmentId, ranges: [[0, 1]] }), deps);
  const m = l.ok ? decodeResponse(replyBody(l)) : undefined;
  t.same(m?.type === 'BLKLIST' && [m.ranges, m.nextBlockIndex], [[], 0]);
  t.equal(source.reads, 0);
});

t.test('version handling and malformed input', async (t) => {
  const deps: ResponderDeps = { source: new MemorySource().add(T1), cryptoAlgo: 3, busy: false };
  const nego = await respond(
    encodeRequest({ type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 5, minor: 0 } }),
    deps,
  );
  const n = nego.ok ? decodeResponse(replyBody(nego)) : undefined;
  t.same(n?.type === 'NEGO_RESP' && [n.min, n.max], [
    { major: 1, minor: 0 },
    { major: 2, minor: 0 },
  ]);
  for (const major of [0, 3, 0xffff]) {
    const b = encodeRequest({ type: 'GETBLKS', segmentId: T1.seg.segmentId, ranges: [[0, 1]] });
    b.writeUInt32BE(protVerToU32({ major, minor: 7 }), 0);
    b.writeUInt32BE(99, 4); // an unknown type in an unknown version is still answered with our range
    const r = await respond(b, deps);
    t.equal(r.ok && r.outcome, 'version', `major ${major}`);
    t.equal(
      r.ok && replyBody(r).toString('hex'),
      '000000180000000100000001000000180000000000000001' + '00000002',
      'NEGO_RESP 1.0..2.0 bytes',
    );
  }
  const bad = encodeRequest({ type: 'GETBLKS', segmentId: T1.seg.segmentId, ranges: [[0, 1]] });
  bad.writeUInt32BE(protVerToU32({ major: 3, minor: 0 }), 0);
  bad.writeUInt32BE(1000, 8);
  const r = await respond(bad, deps);
  t.notOk(r.ok, 'unknown version with a wrong MsgSize is malformed');
  t.equal(!r.ok && r.error.field, 'MsgSize');
  const g = await respond(Buffer.from('0000000100000003', 'hex'), deps);
  t.notOk(g.ok);
  const minor = encodeRequest({ type: 'GETBLKS', segmentId: T1.seg.segmentId, ranges: [[0, 1]] });
  minor.writeUInt32BE(protVerToU32({ major: 1, minor: 9 }), 0);
  const mr = await respond(minor, deps);
  t.equal(mr.ok && mr.outcome, 'served', 'another minor version of 1.x is served');
});

t.test('mutated requests never throw: every answer is a response or a named parse error', async (t) => {
  const source = new MemorySource().add(T1).add(T2);
  const deps: ResponderDeps = { source, cryptoAlgo: 3, busy: false, randomIv: () => IV };
  const seeds = [
    encodeRequest({ type: 'GETBLKS', cryptoAlgo: 1, segmentId: T1.seg.segmentId, ranges: [[0, 1]] }),
    encodeRequest({
      type: 'GETBLKLIST',
      segmentId: T1.seg.segmentId,
      ranges: [
        [0, 1],
        [3, 4],
      ],
    }),
    encodeRequest({
      type: 'GETSEGLIST',
      requestId: Buffer.alloc(16),
      segmentIds: [T1.seg.segmentId, T2.seg.segmentId],
    }),
    encodeRequest({ type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } }),
  ];
  // deterministic PRNG so a failure is reproducible
  let x = 0x12345678;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const seen = { ok: 0, bad: 0 };
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(seeds[i % seeds.length]!);
    for (let k = 1 + rnd(3); k > 0; k--) {
      const off = rnd(b.length);
      if (rnd(2)) b[off] = rnd(256);
      else if (off + 4 <= b.length) b.writeUInt32BE([0, 1, 2, 3, 16, 32, 0xffffffff, b.length][rnd(8)]!, off & ~3);
    }
    const cut = rnd(4) === 0 ? b.subarray(0, rnd(b.length + 1)) : b;
    const r = await respond(cut, deps);
    if (r.ok) {
      seen.ok++;
      decodeResponse(replyBody(r)); // our own answers always decode
    } else {
      seen.bad++;
      if (typeof r.error.field !== 'string' || !r.error.field) t.fail('parse error without a field');
    }
  }
  t.ok(seen.ok > 100 && seen.bad > 100, `answered ${seen.ok}, rejected ${seen.bad}`);
});
