// The log rate limiter (issue 16.10): repeats of one message are capped per window, the number
// suppressed is reported, other messages and levels are unaffected.
import t from 'tap';
import { createLogger, rateLimited } from '../../src/util/log.js';

t.test('repeats of a message are capped per window and the suppressed count is reported', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  let now = 0;
  const base = createLogger({ component: 'x' }, 'debug', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const log = rateLimited(base, { burst: 3, windowMs: 10_000, now: () => now });
  for (let i = 0; i < 1000; i++) log.warn('origin block does not match', { block: i });
  log.info('other message');
  t.equal(lines.filter((l) => l.msg === 'origin block does not match').length, 3, '3 of 1000 in one window');
  t.equal(lines.filter((l) => l.msg === 'other message').length, 1, 'other messages pass');
  now = 10_001;
  log.warn('origin block does not match', { block: 1000 });
  const next = lines.filter((l) => l.msg === 'origin block does not match').at(-1)!;
  t.match(next, { block: 1000, suppressed: 997, level: 'warn' }, 'the next window reports how many were dropped');
  for (let i = 0; i < 10; i++) log.warn('origin block does not match');
  log.flush();
  const last = lines.at(-1)!;
  t.match(last, { msg: 'origin block does not match', suppressed: 8, level: 'warn' }, 'flush reports the rest');
  log.flush();
  t.equal(lines.at(-1), last, 'nothing left to flush');
  const child = log.child({ job: 'j' });
  for (let i = 0; i < 10; i++) child.warn('child message');
  t.equal(lines.filter((l) => l.msg === 'child message').length, 3, 'children share the limit');
});
