/** OriginSet (src/engine/origins.ts): which node origin ranges go to, and when a mirror may be used. */
import t from 'tap';
import { contentInfoDiffers, nodeFault, OriginSet } from '../../src/engine/origins.js';
import { DownloadError } from '../../src/engine/errors.js';
import type { ContentInfo } from '../../src/protocol/pccrc/types.js';
import { nullLogger } from '../../src/util/log.js';

function ci(fill: number, length = 100): ContentInfo {
  const b = (n: number) => Buffer.alloc(32, n);
  return {
    version: 2,
    hashAlgorithm: 'SHA-512/256t',
    rangeStart: 0,
    rangeEnd: length,
    contentLength: length,
    segments: [
      {
        index: 0,
        offset: 0,
        length,
        blockSize: length,
        hod: b(1),
        kp: b(fill),
        segmentId: b(fill + 1),
        blockHashes: [],
      },
    ],
  };
}

t.test('contentInfoDiffers: same content passes; another secret, length or hash is named', async (t) => {
  t.equal(contentInfoDiffers(ci(5), ci(5)), undefined);
  t.match(contentInfoDiffers(ci(5), ci(6)), /segment ID/);
  t.match(contentInfoDiffers(ci(5), ci(5, 101)), /length/);
  const other = ci(5);
  other.segments[0]!.hod = Buffer.alloc(32, 9);
  t.match(contentInfoDiffers(ci(5), other), /hash of data/);
});

t.test(
  'nodeFault: transport, 5xx and short bodies are the node; 404 and bad content information are not',
  async (t) => {
    t.ok(nodeFault(new Error('socket hang up')));
    t.ok(nodeFault(new DownloadError('ORIGIN_UNREACHABLE', 'x')));
    t.ok(nodeFault(new DownloadError('ORIGIN_STATUS', 'x', { status: 503 })));
    t.notOk(nodeFault(new DownloadError('ORIGIN_STATUS', 'x', { status: 404 })));
    t.notOk(nodeFault(new DownloadError('BAD_SIGNATURE', 'x')));
  },
);

t.test('fail over only to a mirror whose content information matches; back off failing nodes', async (t) => {
  let now = 1000;
  const asked: string[] = [];
  const answers: Record<string, ContentInfo | undefined | Error> = {
    'http://b/f': ci(6), // another secret
    'http://c/f': undefined, // not hashed yet, then the same content
    'http://d/f': ci(5),
  };
  const set = new OriginSet(['http://a/f', 'http://b/f', 'http://c/f', 'http://d/f'], {
    now: () => now,
    log: nullLogger,
    fetchContentInfo: async (u) => {
      asked.push(u);
      const a = answers[u];
      if (a instanceof Error) throw a;
      return a;
    },
  });
  set.setReference('http://a/f', ci(5));
  t.equal(await set.pick(), 'http://a/f', 'the first node while it works');
  t.same(asked, [], 'no mirror asked while the origin works');
  set.failed('http://a/f');
  set.failed('http://a/f'); // a second request in flight failing: the same backoff period
  t.equal(set.view()[0]!.failures, 1);
  t.equal(await set.pick(), 'http://d/f', 'b refused (other segment IDs), c not ready: d');
  t.same(asked, ['http://b/f', 'http://c/f', 'http://d/f']);
  t.equal(set.view()[1]!.state, 'refused');
  t.equal(set.view()[2]!.state, 'unchecked');
  t.equal(await set.pick(), 'http://d/f', 'stays on d');
  answers['http://c/f'] = ci(5);
  now += 300; // c's backoff over (1250), a's too
  set.failed('http://d/f'); // d until 1550
  t.equal(await set.pick(), 'http://a/f', 'the next node after d in order that is usable: a again');
  t.same(asked, ['http://b/f', 'http://c/f', 'http://d/f'], 'b is never asked again');
  set.failed('http://a/f'); // a until 1800 (second failure)
  t.equal(await set.pick(), 'http://c/f', 'c now matches');
  set.failed('http://c/f'); // c until 1800
  // Every usable node is in backoff: the one out of it first (d, 1550).
  t.equal(await set.pick(), 'http://d/f');
});
