/** Fuzz target: MS-PCCRC content information parser (parseContentInfo), with a re-encode check. */
import { isDeepStrictEqual } from 'node:util';
import { encodeContentInfo, parseContentInfo, ContentInfoError } from '../../src/protocol/pccrc/codec.js';
import { segmentIdOf } from '../../src/protocol/pccrc/keys.js';
import { digest, V1_BLOCK_SIZE, type ContentInfo, type SegmentInfo } from '../../src/protocol/pccrc/types.js';
import { Rng } from './lib.js';
import { fixturesDir, FuzzFailure, fromSeeds, hexValues, readJson, typed, type FuzzTarget } from './common.js';

/** A well-formed content information model of `length` bytes with seeded hashes (no I/O). */
export function syntheticContentInfo(rng: Rng, version: 1 | 2, length: number): ContentInfo {
  const segments: SegmentInfo[] = [];
  const segSize = version === 1 ? 32 * 1024 * 1024 : 128 * 1024;
  for (let offset = 0, index = 0; offset < length; offset += segSize, index++) {
    const segLen = Math.min(segSize, length - offset);
    const blockHashes =
      version === 1 ? Array.from({ length: Math.ceil(segLen / V1_BLOCK_SIZE) }, () => rng.bytes(32)) : [];
    const hod = version === 1 ? digest('SHA-256', Buffer.concat(blockHashes)) : rng.bytes(32);
    const kp = rng.bytes(32);
    segments.push({
      index,
      offset,
      length: segLen,
      blockSize: version === 1 ? V1_BLOCK_SIZE : segLen,
      hod,
      kp,
      segmentId: segmentIdOf(version, kp, hod),
      blockHashes,
    });
  }
  return {
    version,
    hashAlgorithm: version === 1 ? 'SHA-256' : 'SHA-512/256t',
    rangeStart: 0,
    rangeEnd: length,
    contentLength: length,
    segments,
  };
}

function contentInfoSeeds(): Buffer[] {
  const seeds = hexValues(readJson(fixturesDir('contentinfo', 'vectors.json'))).filter(
    (b) => b.length >= 18 && (b[1] === 1 || b[1] === 2) && b[0]! <= 1,
  );
  const rng = new Rng(0xc1);
  for (const len of [1, 65_536, 100_000, 1_000_000]) seeds.push(encodeContentInfo(syntheticContentInfo(rng, 1, len)));
  for (const len of [1, 131_072, 400_000]) seeds.push(encodeContentInfo(syntheticContentInfo(rng, 2, len)));
  return seeds;
}

export function contentInfoTarget(): FuzzTarget {
  const seeds = contentInfoSeeds();
  return {
    name: 'contentinfo',
    generate: (rng) => fromSeeds(rng, seeds, 2),
    run(input) {
      let ci: ContentInfo;
      try {
        ci = parseContentInfo(input);
      } catch (e) {
        return typed(e, ContentInfoError);
      }
      // Accepted input must describe itself consistently and survive a re-encode unchanged.
      const again = parseContentInfo(encodeContentInfo(ci));
      if (!isDeepStrictEqual(again, ci)) throw new FuzzFailure('re-encoded content information parses differently');
      if (!(ci.rangeStart <= ci.rangeEnd && ci.rangeEnd <= ci.contentLength))
        throw new FuzzFailure('range outside the content');
      return 'accepted';
    },
  };
}
