import t from 'tap';
import { Window } from '../../src/cache/window.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('Window keeps at most `size` tasks in flight and drains', async (t) => {
  const w = new Window(3);
  let running = 0,
    peak = 0,
    done = 0;
  for (let i = 0; i < 10; i++) {
    await w.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await tick(2);
      running--;
      done++;
    });
    t.ok(running < 3, 'run returns with room for another task');
  }
  await w.drain();
  t.equal(done, 10);
  t.equal(peak, 3);
});

t.test('Window rethrows the first failure', async (t) => {
  const w = new Window(2);
  await w.run(async () => {
    await tick(1);
    throw new Error('first');
  });
  await w
    .run(async () => {
      await tick(5);
      throw new Error('second');
    })
    .catch(() => undefined);
  await t.rejects(w.drain(), { message: 'first' });
});
