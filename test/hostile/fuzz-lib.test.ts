/** The seeded fuzz library: reproducible, seeds give different cases, mutations bounded and copy-on-write. */
import t from 'tap';
import { caseSeed, mutate, mutateText, Rng } from '../../testkit/fuzz/lib.js';

t.test('Rng and caseSeed are deterministic', async (t) => {
  const a = new Rng(42);
  const b = new Rng(42);
  t.same(
    Array.from({ length: 8 }, () => a.u32()),
    Array.from({ length: 8 }, () => b.u32()),
  );
  t.equal(caseSeed(7, 100), caseSeed(7, 100));
  const r = new Rng(1);
  for (let k = 0; k < 1000; k++) {
    const v = r.int(10);
    if (v < 0 || v >= 10 || !Number.isInteger(v)) t.fail(`int(10) gave ${v}`);
  }
});

t.test('different seeds give different case sets (not permutations of one set)', async (t) => {
  const set = (seed: number) => new Set(Array.from({ length: 1000 }, (_, n) => caseSeed(seed, n)));
  const s1 = set(1);
  const s2 = set(2);
  const common = [...s1].filter((x) => s2.has(x)).length;
  t.ok(common < 5, `seeds 1 and 2 share ${common} of 1000 case seeds`);
  t.equal(s1.size, 1000, 'no collisions within a run');
});

t.test('mutate: never modifies its input, bounded length, reproducible', async (t) => {
  const input = Buffer.from('0123456789abcdef0123456789abcdef');
  const copy = Buffer.from(input);
  let changed = 0;
  for (let n = 0; n < 2000; n++) {
    const out = mutate(new Rng(caseSeed(3, n)), input, { maxLength: 48 });
    if (out.length > 48) t.fail(`length ${out.length}`);
    if (!out.equals(input)) changed++;
    if (!out.equals(mutate(new Rng(caseSeed(3, n)), input, { maxLength: 48 }))) t.fail('not reproducible');
  }
  t.ok(input.equals(copy), 'input untouched');
  t.ok(changed > 1800, `${changed} of 2000 mutants differ from the input`);
  const text = '<a x="1">b</a>';
  const outs = new Set(Array.from({ length: 200 }, (_, n) => mutateText(new Rng(n), text, { maxLength: 100 })));
  t.ok(outs.size > 150, `${outs.size} distinct text mutants`);
  for (const o of outs) if (o.length > 100) t.fail('text mutant too long');
});
