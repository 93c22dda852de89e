import t from 'tap';
import { parseRequestPath } from '../../src/origin/urlpath.js';
import { parseRange } from '../../src/origin/range.js';
import { ifRangeMatches, isNotModified } from '../../src/origin/conditional.js';

t.test('parseRequestPath accepts ordinary paths', async (t) => {
  t.same(parseRequestPath('/a/b.txt'), { ok: true, segments: ['a', 'b.txt'], reserved: false });
  t.same(
    parseRequestPath('/a%20b/c%C3%A9?x=../..#frag'),
    { ok: true, segments: ['a b', 'cé'], reserved: false },
    'query and fragment ignored',
  );
  t.same(parseRequestPath('//a///b'), { ok: true, segments: ['a', 'b'], reserved: false }, 'empty segments collapse');
  t.same(
    parseRequestPath('/..foo/bar..'),
    { ok: true, segments: ['..foo', 'bar..'], reserved: false },
    'dots inside names are fine',
  );
  t.same(parseRequestPath('/.peerdist/stats'), { ok: true, segments: ['.peerdist', 'stats'], reserved: true });
  t.same(parseRequestPath('/.peerdist'), { ok: true, segments: ['.peerdist'], reserved: true });
  t.same(parseRequestPath('/.peerdistx'), { ok: true, segments: ['.peerdistx'], reserved: false });
  t.same(parseRequestPath('/'), { ok: true, segments: [], reserved: false });
});

t.test('parseRequestPath refuses escapes', async (t) => {
  const cases: Array<[string | undefined, number]> = [
    [undefined, 400],
    ['', 400],
    ['*', 400],
    ['http://h/a', 400],
    ['a/b', 400],
    ['/../etc/passwd', 403],
    ['/a/../../b', 403],
    ['/./a', 403],
    ['/a/.', 403],
    ['/%2e%2e/x', 403],
    ['/%2E%2E/x', 403],
    ['/.%2e/x', 403],
    ['/a/%2e', 403],
    ['/..%2fx', 403],
    ['/a%2Fb', 403],
    ['/a%5cb', 403],
    ['/a\\b', 403],
    ['/a%00b', 403],
    ['/%252e%252e/x', 403],
    ['/%25252e/x', 403],
    ['/a%252fb', 403],
    ['/%zz', 400],
    ['/%e0%80', 400],
  ];
  for (const [target, status] of cases) {
    const r = parseRequestPath(target);
    t.equal(r.ok, false, `${String(target)} refused`);
    if (!r.ok) t.equal(r.status, status, `${String(target)} → ${status}`);
  }
});

t.test('parseRange', async (t) => {
  t.same(parseRange(undefined, 100), { kind: 'none' });
  t.same(parseRange('bytes=0-9', 100), { kind: 'single', start: 0, end: 9 });
  t.same(parseRange('Bytes = 90-', 100), { kind: 'single', start: 90, end: 99 });
  t.same(parseRange('bytes=90-1000', 100), { kind: 'single', start: 90, end: 99 });
  t.same(parseRange('bytes=-10', 100), { kind: 'single', start: 90, end: 99 });
  t.same(parseRange('bytes=-1000', 100), { kind: 'single', start: 0, end: 99 });
  t.same(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-5', 0), { kind: 'unsatisfiable' });
  for (const ignored of [
    'items=0-1',
    'bytes=5-1',
    'bytes=a-b',
    'bytes=-',
    'bytes=',
    'bytes=0-1,3-4',
    'bytes=1-2-3',
    'bytes=99999999999999999-',
  ]) {
    t.same(parseRange(ignored, 100), { kind: 'none' }, `${ignored} ignored`);
  }
});

t.test('conditionals', async (t) => {
  const etag = '"abc"';
  const lm = Date.UTC(2024, 0, 1, 12, 0, 0, 500);
  t.ok(isNotModified('"abc"', undefined, etag, lm));
  t.ok(isNotModified('"x", W/"abc"', undefined, etag, lm));
  t.ok(isNotModified('*', undefined, etag, lm));
  t.notOk(isNotModified('"x"', 'Mon, 01 Jan 2035 00:00:00 GMT', etag, lm), 'If-None-Match takes precedence');
  t.ok(isNotModified(undefined, 'Mon, 01 Jan 2024 12:00:00 GMT', etag, lm), 'second precision');
  t.notOk(isNotModified(undefined, 'Mon, 01 Jan 2024 11:59:59 GMT', etag, lm));
  t.notOk(isNotModified(undefined, 'garbage', etag, lm));
  t.notOk(isNotModified(undefined, undefined, etag, lm));
  t.ok(ifRangeMatches(undefined, etag, 'x'));
  t.ok(ifRangeMatches('"abc"', etag, 'x'));
  t.notOk(ifRangeMatches('W/"abc"', etag, 'x'), 'weak validators never match If-Range');
  t.notOk(ifRangeMatches('"abd"', etag, 'x'));
  t.ok(ifRangeMatches('Mon, 01 Jan 2024 12:00:00 GMT', etag, 'Mon, 01 Jan 2024 12:00:00 GMT'));
  t.notOk(ifRangeMatches('Mon, 01 Jan 2024 12:00:01 GMT', etag, 'Mon, 01 Jan 2024 12:00:00 GMT'));
});
