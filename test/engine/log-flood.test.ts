// An origin whose file changes mid-download (issue 16.10): once produced thousands of identical
// warnings for one download. The job's log now carries a bounded number of them plus a count of
// the suppressed ones, and the download fails with the real cause.
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../src/util/log.js';
import { DownloadError } from '../../src/engine/engine.js';
import { MiB, payload, startNode, startOrigin, testPort } from './harness.js';

t.test('an origin file changing mid-download: few warning lines, the real cause', async (t) => {
  const size = 4 * MiB;
  const origin = await startOrigin(t, { 'f.bin': payload(size) });
  await origin.warm('f.bin', 1);
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({}, 'warn', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const b = await startNode(t, 31, testPort(), { engine: { logger } });
  const job = b.engine.download(origin.url('f.bin'));
  await job.info;
  // The file changes under the origin after it sent the content information.
  await writeFile(join(origin.root, 'f.bin'), payload(size));
  const err = await job.done.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof DownloadError, 'the download fails');
  // ORIGIN_CHANGED when the mismatching ranges come with another ETag (the file's new mtime);
  // ORIGIN_MISMATCH if the validator did not change (same mtime), BLOCK_FAILED after the retries.
  t.match((err as DownloadError).code, /^(ORIGIN_CHANGED|ORIGIN_MISMATCH|BLOCK_FAILED)$/);
  const mism = lines.filter((l) => l.msg === 'origin block does not match the content information');
  const suppressed = mism.reduce((a, l) => a + (typeof l.suppressed === 'number' ? l.suppressed : 0), 0);
  t.ok(mism.length > 0, 'the mismatch is logged');
  t.ok(mism.length <= 12, `bounded warning lines for one download (${mism.length}, ${suppressed} suppressed)`);
  t.ok(mism.length + suppressed >= 64, `every mismatch is still counted (${mism.length + suppressed})`);
});
