/** JSON form: exact shape for the Windows vectors and validation on the way back. */
import t from 'tap';
import { ContentInfoError, parseContentInfo } from '../../../src/protocol/pccrc/codec.js';
import { contentInfoFromJson, contentInfoToJson } from '../../../src/protocol/pccrc/json.js';
import { hex, vectors } from './vectors.js';
import { plainSegment } from '../../../src/protocol/pccrc/packed.js';

const v1 = parseContentInfo(hex(vectors.iis85.v1.blob));
const v2 = parseContentInfo(hex(vectors.iis85.v2.blob));

t.test('shape', async (t) => {
  t.same(contentInfoToJson(v1), {
    version: 1,
    hashAlgorithm: 'SHA-256',
    contentLength: 99710,
    segments: vectors.iis85.v1.segments.map(({ offset, length, hod, kp, segmentId, blockHashes }) => ({
      offset,
      length,
      hod,
      kp,
      segmentId,
      blockHashes,
    })),
  });
  const j2 = contentInfoToJson(v2);
  t.same(j2, {
    version: 2,
    hashAlgorithm: 'SHA-512/256t',
    contentLength: 99710,
    segments: vectors.iis85.v2.segments.map(({ offset, length, hod, kp, segmentId }) => ({
      offset,
      length,
      hod,
      kp,
      segmentId,
    })),
  });
  t.notOk('blockHashes' in j2.segments[0]!, 'v2 segments have no blockHashes key');
});

t.test('round trip and rejection', async (t) => {
  // Parsed v2 segments are packed (getters over shared columns): compared as plain objects.
  for (const ci of [v1, v2])
    t.same(contentInfoFromJson(JSON.parse(JSON.stringify(contentInfoToJson(ci)))), {
      ...ci,
      segments: ci.version === 2 ? ci.segments.map(plainSegment) : ci.segments,
    });
  // biome-ignore lint/suspicious/noExplicitAny: the mutators reach into arbitrary JSON
  const bad = (mutate: (j: Record<string, any>) => void, field: string) => {
    const j = JSON.parse(JSON.stringify(contentInfoToJson(v1)));
    mutate(j);
    try {
      contentInfoFromJson(j);
      t.fail(`${field}: accepted`);
    } catch (err) {
      t.ok(err instanceof ContentInfoError && err.field === field, `${field}: ${(err as Error).message}`);
    }
  };
  bad((j) => {
    j.version = 3;
  }, 'version');
  bad((j) => {
    j.hashAlgorithm = 'SHA-512/256t';
  }, 'hashAlgorithm');
  bad((j) => {
    j.contentLength = 5;
  }, 'contentLength');
  bad((j) => {
    j.segments = {};
  }, 'segments');
  bad((j) => {
    j.segments[0].segmentId = '00'.repeat(32);
  }, 'segments[0].segmentId');
  bad((j) => {
    j.segments[0].hod = 'xyz';
  }, 'segments[0].hod');
  bad((j) => {
    j.segments[0].offset = -1;
  }, 'segments[0].offset');
  bad((j) => {
    delete j.segments[0].blockHashes;
  }, 'segments[0].blockHashes');
  t.throws(() => contentInfoFromJson(null), ContentInfoError);
});
