/** Reader edge cases: block lookup, empty content, ranges, readers started before the job has content. */
import t from 'tap';
import { firstBlockAt } from '../../src/engine/reader.js';
import { payload, readAll, startNode, startOrigin, testPort } from './harness.js';

t.test('firstBlockAt finds the block containing a position', async (t) => {
  const offs = [0, 65536, 131072, 196608];
  t.equal(firstBlockAt(offs, 0), 0);
  t.equal(firstBlockAt(offs, 65535), 0);
  t.equal(firstBlockAt(offs, 65536), 1);
  t.equal(firstBlockAt(offs, 200000), 3);
  t.equal(firstBlockAt([0], 5), 0);
});

t.test('empty file, ranges at the edges, bad arguments', async (t) => {
  const data = payload(200_000);
  const origin = await startOrigin(t, { 'empty.bin': Buffer.alloc(0), 'f.bin': data });
  await origin.warm('f.bin', 1);
  const n = await startNode(t, 50, testPort(), { engine: { maxContentVersion: 1 } });
  const e = n.engine.download(origin.url('empty.bin'));
  await e.done;
  t.equal((await readAll(e.createReadStream())).length, 0, 'empty file streams nothing');
  const j = n.engine.download(origin.url('f.bin'));
  await j.done;
  t.ok((await readAll(j.createReadStream(199_990))).equals(data.subarray(199_990)), 'tail');
  t.equal((await readAll(j.createReadStream(500_000))).length, 0, 'start beyond the end: empty');
  t.ok(
    (await readAll(j.createReadStream(65530, 65541))).equals(data.subarray(65530, 65542)),
    'across a block boundary',
  );
  t.equal((await readAll(j.createReadStream(7, 6))).length, 0, 'end = start - 1: empty');
  t.throws(() => j.createReadStream(-1), RangeError);
  t.throws(() => j.createReadStream(10, 5), RangeError);
});

t.test('a cancelled job ends its readers with the error', async (t) => {
  const origin = await startOrigin(t, { 'f.bin': payload(2_000_000) });
  await origin.warm('f.bin', 1);
  const n = await startNode(t, 51, testPort(), { engine: { maxContentVersion: 1 } });
  const j = n.engine.download(origin.url('f.bin'));
  const r = readAll(j.createReadStream());
  j.cancel();
  await t.rejects(r, { code: 'CANCELLED' });
  await t.rejects(j.done, { code: 'CANCELLED' });
  t.throws(() => n.engine.download('ftp://example.invalid/x'), { code: 'ORIGIN_STATUS' });
  await n.engine.close();
  t.throws(() => n.engine.download(origin.url('f.bin')), { code: 'ENGINE_CLOSED' });
});
