import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlockStore } from '../../src/cache/store.js';
import { type TestSegment, v1Segment, v2Segment, tempDir } from './make.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'crash-child.js');

t.test('killed mid-write: after reopen only complete, indexed blocks are served', async (t) => {
  const dir = await tempDir(t);
  const data = randomBytes(64 * 65536);
  const dataPath = join(dir, 'data');
  await writeFile(dataPath, data);
  const seg = v1Segment(data);
  const store = join(dir, 'cache');
  for (let round = 0; round < 3; round++) {
    const p = spawn(process.execPath, [child, store, dataPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    const closed = new Promise((r) => p.once('close', r));
    t.teardown(() => {
      p.kill('SIGKILL');
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child did not make progress')), 20_000);
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        // kill at a varying point after some blocks are stored
        if ((out.match(/stored/g) ?? []).length >= 5 + round * 7) {
          clearTimeout(timer);
          p.kill('SIGKILL');
          resolve();
        }
      });
      p.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await closed;
    const s = await BlockStore.open({ dir: store, limitBytes: 1 << 30 });
    const present = s.presentBlocks(seg.meta.segmentId);
    t.ok(present.length >= 5, `round ${round}: ${present.length} blocks present`);
    for (const i of present) t.same(await s.readBlock(seg.meta.segmentId, i), seg.blocks[i], `block ${i} intact`);
    t.equal(s.stats().corruptBlocks, 0, 'no present block was torn');
    t.same((await s.verifyAll()).bad, []);
    t.equal(s.stats().bytes, present.length * 65536);
    await s.close();
  }
});

t.test('killed mid-write of v2 blocks (packs, group commit): after reopen only intact blocks are served', async (t) => {
  const dir = await tempDir(t);
  const data = randomBytes(48 * 65536);
  const dataPath = join(dir, 'data');
  await writeFile(dataPath, data);
  const segs: TestSegment[] = [];
  for (let o = 0; o < data.length; o += 65536) segs.push(v2Segment(data.subarray(o, o + 65536)));
  const store = join(dir, 'cache');
  for (let round = 0; round < 3; round++) {
    // small packs: kills land in commits, in pack changes and in removals of emptied packs too
    const p = spawn(process.execPath, [child, store, dataPath, 'v2', String(4 * 65536)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const closed = new Promise((r) => p.once('close', r));
    t.teardown(() => {
      p.kill('SIGKILL');
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child did not make progress')), 20_000);
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if ((out.match(/stored/g) ?? []).length >= 30 + round * 23) {
          clearTimeout(timer);
          p.kill('SIGKILL');
          resolve();
        }
      });
      p.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await closed;
    const s = await BlockStore.open({ dir: store, limitBytes: 1 << 30, packBytes: 4 * 65536 });
    const present = segs.filter((g) => s.hasBlock(g.meta.segmentId, 0));
    t.ok(present.length > 0, `round ${round}: ${present.length} blocks present`);
    for (const g of present) t.same(await s.readBlock(g.meta.segmentId, 0), g.data, 'block intact');
    t.equal(s.stats().corruptBlocks, 0, 'no present block was torn');
    t.same((await s.verifyAll()).bad, []);
    t.equal(s.stats().bytes, present.length * 65536);
    await s.close();
  }
});
