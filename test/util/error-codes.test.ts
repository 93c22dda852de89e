import t from 'tap';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, isErrorCode } from '../../src/util/error-codes.js';
import { PeerdistError, UsageError } from '../../src/util/errors.js';

// dist/test/util -> repository root
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

t.test('every code is UPPER_SNAKE_CASE with a one-line meaning', async (t) => {
  const codes = Object.keys(ERROR_CODES);
  t.ok(codes.length >= 60, `${codes.length} codes listed`);
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    t.match(code, /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/, `${code} is UPPER_SNAKE_CASE`);
    t.ok(meaning.length > 10 && !meaning.includes('\n'), `${code} has a one-line meaning`);
  }
});

t.test('protocol/errors.md documents exactly the listed codes', async (t) => {
  const doc = await readFile(join(root, 'protocol', 'errors.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1]!));
  for (const code of Object.keys(ERROR_CODES)) t.ok(documented.has(code), `${code} is documented`);
  for (const code of documented) t.ok(isErrorCode(code), `documented ${code} is listed in src/util/error-codes.ts`);
});

t.test('errors carry their code', async (t) => {
  const e = new UsageError('give a directory');
  t.ok(e instanceof PeerdistError);
  t.equal(e.code, 'USAGE');
  t.equal(e.name, 'UsageError');
  t.notOk(isErrorCode('not-available'), 'old spellings are not codes');
  t.notOk(isErrorCode('toString'), 'inherited properties are not codes');
});
