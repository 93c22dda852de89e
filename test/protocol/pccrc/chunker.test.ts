/** The v2 content-defined chunker: pinned boundaries, incremental feeding, size bounds, edit resilience. */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pseudoRandomBytes, withInsertion } from '../../../bench/contentinfo-data.js';
import {
  CDC_MAX_SIZE,
  CDC_MIN_SIZE,
  CdcChunker,
  FixedChunker,
  GEAR,
  segmentLengths,
  type Chunker,
} from '../../../src/protocol/pccrc/chunker.js';
import { hashStream } from '../../../src/protocol/pccrc/hash.js';
import { fixture } from '../../helpers/paths.js';

const pin = JSON.parse(readFileSync(fixture('contentinfo', 'cdc.json'), 'utf8'));

/** Feeds `data` in pieces of the given sizes (cycled) and collects segment lengths (the tail counts as one). */
function lengthsInPieces(chunker: Chunker, data: Buffer, sizes: number[]): number[] {
  const out: number[] = [];
  let segStart = 0;
  let k = 0;
  for (let off = 0; off < data.length; k++) {
    const piece = data.subarray(off, off + sizes[k % sizes.length]!);
    let start = 0;
    for (;;) {
      const cut = chunker.findCut(piece, start);
      if (cut < 0) break;
      out.push(off + cut - segStart);
      segStart = off + cut;
      start = cut;
    }
    off += piece.length;
  }
  if (segStart < data.length) out.push(data.length - segStart);
  return out;
}

t.test('gear table and boundaries match the pinned definition', async (t) => {
  const be = Buffer.alloc(1024);
  GEAR.forEach((g, i) => {
    be.writeInt32BE(g, i * 4);
  });
  t.equal(createHash('sha256').update(be).digest('hex'), pin.gearTableSha256, 'gear table');
  t.same(
    Array.from(GEAR.subarray(0, 4), (g) => (g >>> 0).toString(16).padStart(8, '0')),
    pin.gearFirst,
  );
  const data = pseudoRandomBytes(pin.input.length, pin.input.seed);
  t.equal(createHash('sha256').update(data).digest('hex'), pin.input.sha256, 'input');
  t.same(segmentLengths(new CdcChunker(), data), pin.segmentLengths, 'segment lengths');
  t.same(
    segmentLengths(new CdcChunker(), Buffer.alloc(pin.zeros.length)),
    pin.zeros.segmentLengths,
    'zeros cut at the maximum',
  );
});

t.test('incremental feeding gives the same cuts whatever the piece sizes', async (t) => {
  const data = pseudoRandomBytes(3 * 1024 * 1024, 'pieces');
  const whole = segmentLengths(new CdcChunker(), data);
  for (const sizes of [[1], [7, 65536, 3], [16384], [16385, 49151], [131072], [1 << 20], [4 << 20]]) {
    const d = sizes[0] === 1 ? data.subarray(0, 300000) : data;
    const want = sizes[0] === 1 ? segmentLengths(new CdcChunker(), d) : whole;
    t.same(lengthsInPieces(new CdcChunker(), d, sizes), want, `pieces ${sizes.join(',')}`);
  }
  t.same(
    lengthsInPieces(new FixedChunker(), data, [7, 100000]),
    segmentLengths(new FixedChunker(), data),
    'fixed chunker too',
  );
});

t.test('segment sizes stay within bounds', async (t) => {
  const data = pseudoRandomBytes(16 * 1024 * 1024, 'bounds');
  const lengths = segmentLengths(new CdcChunker(), data);
  const inner = lengths.slice(0, -1);
  t.ok(
    inner.every((n) => n > CDC_MIN_SIZE && n <= CDC_MAX_SIZE),
    'min < length <= max',
  );
  const avg = data.length / lengths.length;
  t.ok(avg > 60000 && avg < 90000, `average ${avg.toFixed(0)} near the 64 KiB target`);
  t.ok(inner.filter((n) => n === CDC_MAX_SIZE).length < lengths.length * 0.05, 'few forced cuts on random data');
  t.same(segmentLengths(new FixedChunker(), data.subarray(0, 150000)), [65536, 65536, 18928]);
});

t.test('an insertion near the start: cdc keeps most segment IDs, fixed loses them', async (t) => {
  const secret = Buffer.from('cdc test');
  const old = pseudoRandomBytes(8 * 1024 * 1024, 'insertion');
  const edited = withInsertion(old, 1000, Buffer.from('hello'));
  const one = (b: Buffer) =>
    (async function* () {
      for (let i = 0; i < b.length; i += 1 << 20) yield b.subarray(i, i + (1 << 20));
    })();
  for (const chunking of ['cdc', 'fixed'] as const) {
    const a = await hashStream(one(old), { secret, version: 2, chunking });
    const b = await hashStream(one(edited), { secret, version: 2, chunking });
    const ids = new Set(a.segments.map((s) => s.segmentId.toString('hex')));
    const shared = b.segments.filter((s) => ids.has(s.segmentId.toString('hex'))).length / b.segments.length;
    if (chunking === 'cdc') t.ok(shared > 0.9, `cdc shares ${(shared * 100).toFixed(1)}% of segments`);
    else t.ok(shared < 0.1, `fixed shares ${(shared * 100).toFixed(1)}% of segments`);
  }
});
