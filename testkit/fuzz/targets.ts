/**
 * Fuzz targets shared by the bench run (testkit/fuzz/main.ts, 100,000+ cases each) and the bounded CI
 * run (test/hostile/fuzz.test.ts). Each target seeds itself from valid messages (the vectors in
 * fixtures/ and encoder output), generates mutated inputs from a seeded Rng, and runs one input
 * through the code under test. An input is "accepted" (parsed, and the result re-checked) or
 * "rejected" with the module's typed ParseError subclass; anything else throws FuzzFailure or the
 * unexpected error itself, and the runner keeps the input as a crasher.
 */
import { contentInfoTarget } from './contentinfo.js';
import { pccrrCodecTarget, pccrrResponderTarget } from './pccrr.js';
import { pccrrClientTarget, pccrrFramingTarget, pccrrServerTarget } from './pccrr-http.js';
import { pccrdCodecTarget, pccrdProberTarget, pccrdResponderTarget } from './pccrd.js';
import { pchcCodecTarget, pchcCrowdTarget, pchcOffersTarget } from './pchc.js';
import type { FuzzTarget } from './common.js';

export { FuzzFailure, type FuzzTarget, type Outcome } from './common.js';
export {
  contentInfoTarget,
  pccrrCodecTarget,
  pccrrResponderTarget,
  pccrrClientTarget,
  pccrrServerTarget,
  pccrrFramingTarget,
  pccrdCodecTarget,
  pccrdProberTarget,
  pccrdResponderTarget,
  pchcCodecTarget,
  pchcOffersTarget,
  pchcCrowdTarget,
};

/** All targets, in report order. */
export function allTargets(): FuzzTarget[] {
  return [
    contentInfoTarget(),
    pccrrCodecTarget(),
    pccrrResponderTarget(),
    pccrrServerTarget(),
    pccrrFramingTarget(),
    pccrrClientTarget(),
    pccrdCodecTarget(),
    pccrdResponderTarget(),
    pccrdProberTarget(),
    pchcCodecTarget(),
    pchcOffersTarget(),
    pchcCrowdTarget(),
  ];
}
