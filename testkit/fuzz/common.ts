/**
 * What every fuzz target shares: the target interface, the failure type, seed loading from
 * fixtures/, and the "typed rejection or finding" rule. See testkit/fuzz/targets.ts for the list.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mutate, type Rng } from './lib.js';

export type Outcome = 'accepted' | 'rejected';

/** A property of the code under test was violated by one input. */
export class FuzzFailure extends Error {}

export interface FuzzTarget {
  name: string;
  /** Start servers etc. (called once before the first case). */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** Builds the input of one case. */
  generate(rng: Rng): Buffer;
  /** Runs one input; resolves with its outcome, throws on a failure. */
  run(input: Buffer): Outcome | Promise<Outcome>;
}

export const fixturesDir = (...p: string[]) => join(process.cwd(), 'fixtures', ...p);

/** Every hex string value in a JSON document (recursively). */
export function hexValues(v: unknown, out: Buffer[] = []): Buffer[] {
  if (typeof v === 'string' && v.length >= 8 && v.length % 2 === 0 && /^[0-9a-f]+$/i.test(v))
    out.push(Buffer.from(v, 'hex'));
  else if (Array.isArray(v)) for (const x of v) hexValues(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) hexValues(x, out);
  return out;
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

/** Rejections must be the module's own typed error; anything else is a finding. */
export function typed(err: unknown, cls: abstract new (...a: never[]) => Error): Outcome {
  if (err instanceof cls) return 'rejected';
  throw err;
}

/** Pick a seed, then mostly mutate it; sometimes emit raw random bytes behind a valid prefix. */
export function fromSeeds(rng: Rng, seeds: Buffer[], prefix = 0): Buffer {
  const seed = rng.pick(seeds);
  if (rng.bool(0.05)) return Buffer.concat([seed.subarray(0, prefix), rng.bytes(rng.int(seed.length + 32))]);
  return mutate(rng, seed, { corpus: seeds, maxLength: Math.max(4096, seed.length * 2) });
}
