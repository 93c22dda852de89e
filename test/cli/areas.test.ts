/**
 * The CLI loads only the area of the command it runs (src/cli/main.ts AREAS): the table must name
 * exactly the top-level commands each area registers, or a command would be unknown when run
 * directly while `peerdist --help` still lists it.
 */
import t from 'tap';
import { Command } from 'commander';
import { AREAS, buildProgram } from '../../src/cli/main.js';

t.test('AREAS names exactly the commands each area registers', async (t) => {
  const seen = new Set<string>();
  for (const area of AREAS) {
    const p = new Command();
    (await area.load()).register(p);
    const names = p.commands.map((c) => c.name()).sort();
    t.same(names, [...area.commands].sort(), `area of ${area.commands.join(', ')}`);
    for (const n of names) {
      t.notOk(seen.has(n), `${n} registered by one area only`);
      seen.add(n);
    }
  }
});

t.test('a known command builds only its own area; anything else builds them all', async (t) => {
  const all = (await buildProgram()).commands.map((c) => c.name());
  for (const area of AREAS)
    for (const name of area.commands) {
      const p = await buildProgram(name);
      t.same(p.commands.map((c) => c.name()).sort(), [...area.commands].sort(), `peerdist ${name}: only its area`);
      t.ok(all.includes(name), `peerdist --help lists ${name}`);
    }
  for (const other of [undefined, '--help', '-V', 'help', 'no-such-command'])
    t.equal((await buildProgram(other)).commands.length, all.length, `${other ?? '(none)'}: every area`);
});
