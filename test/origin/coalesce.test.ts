import t from 'tap';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { relayCoalesced } from '../../src/origin/coalesce.js';

/** Collects what reaches the sink, write by write (a writev of several chunks is one write). */
function sink(): { writes: Buffer[][]; w: Writable } {
  const writes: Buffer[][] = [];
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      writes.push([c]);
      cb();
    },
    writev(cs, cb) {
      writes.push(cs.map((x) => x.chunk as Buffer));
      cb();
    },
  });
  return { writes, w };
}

const flat = (writes: Buffer[][]) => Buffer.concat(writes.flat());

t.test('a burst of 64 KiB chunks reaches the sink as few large writes, uncopied, bytes unchanged', async (t) => {
  const parts = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
  const { writes, w } = sink();
  // All parts are queued before the first turn of the event loop ends: one burst.
  await relayCoalesced(Readable.from(parts, { objectMode: false }), w, 256 * 1024);
  t.same(flat(writes), Buffer.concat(parts), 'same bytes in the same order');
  t.equal(writes.length, 10, '40 chunks of 64 KiB gathered into 10 writes of 256 KiB');
  t.ok(
    writes.every((ws) => ws.reduce((n, c) => n + c.length, 0) <= 256 * 1024),
    'no write above the cap',
  );
  t.ok(
    writes.flat().every((c, i) => c === parts[i]),
    'the sink got the very buffers the source sent (no copy)',
  );
  t.ok(w.writableFinished, 'the sink was finished');
});

t.test('a slow source is forwarded as it arrives, never held back for more', async (t) => {
  const src = new PassThrough();
  const { writes, w } = sink();
  const done = relayCoalesced(src, w, 1024 * 1024);
  const a = randomBytes(1000);
  const b = randomBytes(2000);
  src.write(a);
  // The first chunk reaches the sink although far below the cap and the source stays open.
  await new Promise<void>((resolve) => {
    const check = () => (writes.length === 1 ? resolve() : setImmediate(check));
    check();
  });
  t.same(writes[0], [a], 'the first chunk went through alone');
  src.end(b);
  await done;
  t.same(flat(writes), Buffer.concat([a, b]));
});

t.test('backpressure: a slow sink pauses the source, every byte still arrives in order', async (t) => {
  const parts = Array.from({ length: 64 }, () => randomBytes(64 * 1024));
  const got: Buffer[] = [];
  let pending = 0;
  let maxPending = 0;
  const w = new Writable({
    highWaterMark: 64 * 1024,
    writev(cs, cb) {
      for (const c of cs) got.push(c.chunk as Buffer);
      pending += cs.length;
      maxPending = Math.max(maxPending, pending);
      setTimeout(() => {
        pending -= cs.length;
        cb();
      }, 2);
    },
  });
  const src = Readable.from(parts, { objectMode: false });
  await relayCoalesced(src, w, 256 * 1024);
  t.same(Buffer.concat(got), Buffer.concat(parts), 'same bytes in the same order');
  t.ok(maxPending <= 8, `at most a few chunks outstanding at the sink (${maxPending})`);
});

t.test('a source failing mid-way rejects and the sink never finishes', async (t) => {
  const src = new PassThrough();
  const { w } = sink();
  const done = relayCoalesced(src, w, 1024 * 1024);
  src.write(randomBytes(1000));
  src.destroy(new Error('storage read failed'));
  await t.rejects(done, /storage read failed/);
  // serveBlob relies on this: an unfinished response is destroyed, so the client sees a short body.
  t.equal(w.writableFinished, false, 'the sink was not finished');
});

t.test('the sink closing first rejects and destroys the source', async (t) => {
  const src = new PassThrough();
  const { w } = sink();
  const done = relayCoalesced(src, w, 1024 * 1024);
  src.write(randomBytes(1000));
  w.destroy();
  await t.rejects(done, /closed before the body was complete/);
  t.ok(src.destroyed, 'the source was destroyed');
});
