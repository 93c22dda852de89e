import t from 'tap';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { coalesce } from '../../src/origin/coalesce.js';

/** Collects what reaches the sink, chunk by chunk. */
function sink(): { chunks: Buffer[]; w: Writable } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  return { chunks, w };
}

t.test('a burst of 64 KiB chunks reaches the sink as few large writes, bytes unchanged', async (t) => {
  const parts = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
  const { chunks, w } = sink();
  // All parts are queued before the first turn of the event loop ends: one burst.
  await pipeline(Readable.from(parts, { objectMode: false }), coalesce(256 * 1024), w);
  t.same(Buffer.concat(chunks), Buffer.concat(parts), 'same bytes in the same order');
  t.equal(chunks.length, 10, '40 chunks of 64 KiB joined into 10 writes of 256 KiB');
  t.ok(
    chunks.every((c) => c.length <= 256 * 1024),
    'no write above the cap',
  );
});

t.test('a slow source is forwarded as it arrives, never held back for more', async (t) => {
  const src = new PassThrough();
  const co = coalesce(1024 * 1024);
  const { chunks, w } = sink();
  const done = pipeline(src, co, w);
  const a = randomBytes(1000);
  const b = randomBytes(2000);
  src.write(a);
  // The first chunk reaches the sink although far below the cap and the source stays open.
  await new Promise<void>((resolve) => {
    const check = () => (chunks.length === 1 ? resolve() : setImmediate(check));
    check();
  });
  t.same(chunks[0], a, 'the first chunk went through alone');
  src.end(b);
  await done;
  t.same(Buffer.concat(chunks), Buffer.concat([a, b]));
});

t.test('a source failing mid-way fails the pipeline and the sink never finishes', async (t) => {
  const src = new PassThrough();
  const { w } = sink();
  const done = pipeline(src, coalesce(1024 * 1024), w);
  src.write(randomBytes(1000));
  src.destroy(new Error('storage read failed'));
  await t.rejects(done, /storage read failed/);
  // serveBlob relies on this: an unfinished response is destroyed, so the client sees a short body.
  t.equal(w.writableFinished, false, 'the sink was not finished');
});
