/**
 * A small seeded fuzzing library: a deterministic PRNG and structure-blind mutators for binary
 * and text inputs. Pure (no I/O, no global randomness), so a case is reproducible from
 * (seed, case number) alone. Used by testkit/fuzz/main.ts and test/hostile/.
 */

/** Deterministic 32-bit PRNG (mulberry32). Same seed, same sequence, on every platform. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Next unsigned 32-bit value. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  /** Uniform float in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }
  /** Uniform integer in [0, n) (n >= 1). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  bool(p = 0.5): boolean {
    return this.float() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** Seed for case `n` of a run with `seed` (independent streams per case, so any case replays alone). */
export function caseSeed(seed: number, n: number): number {
  // Mix the seed fully before adding the case number, so two seeds are not permutations of the
  // same cases (seed ^ n would be), then finalise (murmur3 fmix32).
  const fmix = (x: number): number => {
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return (x ^ (x >>> 16)) >>> 0;
  };
  return fmix((fmix(seed ^ 0x9e3779b9) + Math.imul(n, 0x27d4eb2f)) >>> 0);
}

/** Integer values that tend to sit on boundaries of length and count fields. */
export const INTERESTING_U32: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 68, 127, 128, 255, 256, 511, 512, 513, 0x7fff, 0x8000,
  0xffff, 0x10000, 65535, 65536, 98_304, 393_216, 0x200_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff,
];

export interface MutateOptions {
  /** Upper bound of the output length (default: 2 × input + 64). */
  maxLength?: number;
  /** Other valid inputs to splice from. */
  corpus?: readonly Buffer[];
  /** Mutations applied in sequence (default 1..4, random). */
  rounds?: number;
}

type Mutator = (rng: Rng, b: Buffer, opts: MutateOptions) => Buffer;

const at = (rng: Rng, b: Buffer) => (b.length === 0 ? 0 : rng.int(b.length));

/** Byte-level mutators; each returns a new buffer. */
const BINARY_MUTATORS: readonly Mutator[] = [
  // flip one bit
  (rng, b) => {
    const o = Buffer.from(b);
    if (o.length) {
      const i = at(rng, o);
      o[i]! ^= 1 << rng.int(8);
    }
    return o;
  },
  // set a byte to a random / boundary value
  (rng, b) => {
    const o = Buffer.from(b);
    if (o.length) o[at(rng, o)] = rng.pick([0, 1, 0x7f, 0x80, 0xff, rng.int(256)]);
    return o;
  },
  // overwrite an aligned or unaligned u32 (either byte order) with an interesting value
  (rng, b) => {
    const o = Buffer.from(b);
    if (o.length < 4) return o;
    let i = rng.int(o.length - 3);
    if (rng.bool(0.7)) i &= ~3;
    const v = rng.bool(0.8) ? rng.pick(INTERESTING_U32) : rng.u32();
    if (rng.bool()) o.writeUInt32BE(v >>> 0, i);
    else o.writeUInt32LE(v >>> 0, i);
    return o;
  },
  // add/subtract a small delta to a u32 (length fields off by a few)
  (rng, b) => {
    const o = Buffer.from(b);
    if (o.length < 4) return o;
    const i = rng.int(o.length - 3) & ~3;
    const delta = rng.range(-8, 8);
    if (rng.bool()) o.writeUInt32BE((o.readUInt32BE(i) + delta) >>> 0, i);
    else o.writeUInt32LE((o.readUInt32LE(i) + delta) >>> 0, i);
    return o;
  },
  // truncate
  (rng, b) => b.subarray(0, rng.int(b.length + 1)),
  // drop a range
  (rng, b) => {
    const i = at(rng, b);
    const n = rng.range(1, 16);
    return Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
  },
  // insert random bytes
  (rng, b) => {
    const i = at(rng, b);
    return Buffer.concat([b.subarray(0, i), rng.bytes(rng.range(1, 16)), b.subarray(i)]);
  },
  // duplicate a range in place
  (rng, b) => {
    const i = at(rng, b);
    const n = rng.range(1, 64);
    return Buffer.concat([b.subarray(0, i + n), b.subarray(i, i + n), b.subarray(i + n)]);
  },
  // append garbage
  (rng, b) => Buffer.concat([b, rng.bytes(rng.range(1, 32))]),
  // splice the head of this input with the tail of another
  (rng, b, opts) => {
    const other = opts.corpus?.length ? rng.pick(opts.corpus) : b;
    return Buffer.concat([b.subarray(0, at(rng, b)), other.subarray(at(rng, other))]);
  },
];

/**
 * Applies 1..4 random byte-level mutations to `input` (the input itself is not modified).
 * Output length is bounded by opts.maxLength.
 */
export function mutate(rng: Rng, input: Buffer, opts: MutateOptions = {}): Buffer {
  const max = opts.maxLength ?? input.length * 2 + 64;
  let out = input;
  const rounds = opts.rounds ?? rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    out = rng.pick(BINARY_MUTATORS)(rng, out, opts);
    if (out.length > max) out = out.subarray(0, max);
  }
  return out === input ? Buffer.from(input) : out;
}

/** Tokens that stress XML readers (markup, entities, namespaces, whitespace, non-ASCII). */
export const XML_TOKENS: readonly string[] = [
  '<',
  '>',
  '/>',
  '</',
  '<!--',
  '-->',
  '<![CDATA[',
  ']]>',
  '<?',
  '?>',
  '<!DOCTYPE x [<!ENTITY a "b">]>',
  '<!ENTITY e SYSTEM "file:///etc/passwd">',
  '&amp;',
  '&lt;',
  '&#0;',
  '&#x10FFFF;',
  '&#xD800;',
  '&e;',
  '&',
  ';',
  '"',
  "'",
  '=',
  ' ',
  '\t',
  '\r\n',
  '\u0000',
  '\uFFFE',
  'é',
  '\u{1F600}',
  'xmlns=""',
  'xmlns:x="urn:x"',
  'xmlns:soap="http://www.w3.org/2003/05/soap-envelope"',
  'x:y',
  ':',
  'a:b:c',
  '0',
  '-1',
  '4294967296',
  'urn:uuid:00000000-0000-0000-0000-000000000000',
  'AAAA',
  '====',
  'ZZ',
  'ff',
  'FFFFFFFF',
  '00000000',
];

/** Text mutations: byte-level ones on the UTF-8 form, plus token insertion and tag-level edits. */
export function mutateText(rng: Rng, input: string, opts: MutateOptions & { tokens?: readonly string[] } = {}): string {
  const tokens = opts.tokens ?? XML_TOKENS;
  let s = input;
  const rounds = opts.rounds ?? rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    const k = rng.int(6);
    const i = rng.int(s.length + 1);
    if (k === 0) s = s.slice(0, i) + rng.pick(tokens) + s.slice(i);
    else if (k === 1) s = s.slice(0, i) + s.slice(i + rng.range(1, 24));
    else if (k === 2) {
      // replace the text between two '>' '<' (an element's content) with a token or garbage
      const gt = s.indexOf('>', i);
      const lt = gt < 0 ? -1 : s.indexOf('<', gt);
      if (lt > gt)
        s =
          s.slice(0, gt + 1) +
          (rng.bool() ? rng.pick(tokens) : rng.pick(tokens).repeat(rng.range(1, 64))) +
          s.slice(lt);
    } else if (k === 3) {
      // duplicate a run (repeated elements, attributes)
      const n = rng.range(1, 200);
      s = s.slice(0, i + n) + s.slice(i, i + n) + s.slice(i + n);
    } else if (k === 4) {
      // swap two characters
      const j = rng.int(s.length + 1);
      if (i < s.length && j < s.length)
        s =
          s.slice(0, Math.min(i, j)) +
          s[Math.max(i, j)] +
          s.slice(Math.min(i, j) + 1, Math.max(i, j)) +
          s[Math.min(i, j)] +
          s.slice(Math.max(i, j) + 1);
    } else {
      s = mutate(rng, Buffer.from(s, 'utf8'), { rounds: 1, maxLength: opts.maxLength }).toString('latin1');
    }
    if (opts.maxLength !== undefined && s.length > opts.maxLength) s = s.slice(0, opts.maxLength);
  }
  return s;
}

/** Running figures of a fuzz run: cases, outcomes, time per case (max, mean) and heap. */
export class FuzzStats {
  cases = 0;
  accepted = 0;
  rejected = 0;
  failures = 0;
  maxNs = 0n;
  totalNs = 0n;
  slowestCase = -1;
  private readonly samples: number[] = [];
  record(caseNo: number, ns: bigint, outcome: 'accepted' | 'rejected' | 'failure'): void {
    this.samples.push(Number(ns));
    this.cases++;
    this[outcome === 'failure' ? 'failures' : outcome]++;
    this.totalNs += ns;
    if (ns > this.maxNs) {
      this.maxNs = ns;
      this.slowestCase = caseNo;
    }
  }
  get maxMs(): number {
    return Number(this.maxNs) / 1e6;
  }
  /** Time per case at quantile q (0..1), in ms. */
  quantileMs(q: number): number {
    if (this.samples.length === 0) return 0;
    const sorted = Float64Array.from(this.samples).sort();
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! / 1e6;
  }
  get meanUs(): number {
    return this.cases ? Number(this.totalNs / BigInt(this.cases)) / 1e3 : 0;
  }
}
