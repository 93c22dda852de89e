import t from 'tap';
import {
  acceptsPeerDist,
  clientRequestHeaders,
  compareVersions,
  getHeader,
  makeHashRequestHeaders,
  missingDataRequestHeaders,
  negotiate,
  parseParams,
  parsePeerDistResponse,
  parseVersion,
  peerDistResponseHeaders,
} from '../../../src/protocol/pccrtp/headers.js';

t.test('parseParams', async (t) => {
  const p = parseParams(' Version=1.1 ,  MissingDataRequest = true,garbage,,=x, ContentLength=12');
  t.same(
    [...p.entries()],
    [
      ['version', '1.1'],
      ['missingdatarequest', 'true'],
      ['contentlength', '12'],
    ],
  );
  t.equal(parseParams(undefined).size, 0);
  t.equal(parseParams('').size, 0);
  t.equal(parseParams('A=1, a=2').get('a'), '1', 'first occurrence wins');
  t.equal(parseParams('we ird=1').size, 0, 'names with spaces are garbage');
  t.equal(parseParams('Key=a=b').get('key'), 'a=b');
});

t.test('parseVersion / compareVersions', async (t) => {
  t.same(parseVersion('1.1'), { major: 1, minor: 1 });
  t.same(parseVersion(' 2.0 '), { major: 2, minor: 0 });
  for (const bad of ['1', '1.', '.1', '1 .1', '1.1.1', 'a.b', '-1.0', '', '1.0x', '1234567.0']) {
    t.equal(parseVersion(bad), undefined, `rejects ${JSON.stringify(bad)}`);
  }
  t.equal(parseVersion(undefined), undefined);
  t.ok(compareVersions(parseVersion('1.23')!, parseVersion('1.3')!) > 0, '1.23 > 1.3');
  t.ok(compareVersions(parseVersion('1.9')!, parseVersion('2.0')!) < 0);
  t.equal(compareVersions(parseVersion('1.01')!, parseVersion('1.1')!), 0);
});

t.test('acceptsPeerDist', async (t) => {
  t.ok(acceptsPeerDist('peerdist'));
  t.ok(acceptsPeerDist('gzip, deflate, PeerDist'));
  t.ok(acceptsPeerDist('gzip;q=1.0, peerdist;q=0.5'));
  t.notOk(acceptsPeerDist('peerdist;q=0'));
  t.notOk(acceptsPeerDist('peerdist; q=0.000'));
  t.notOk(acceptsPeerDist('gzip, deflate'));
  t.notOk(acceptsPeerDist('peerdistx, xpeerdist'));
  t.notOk(acceptsPeerDist('*'), 'wildcard does not opt in to PeerDist');
  t.notOk(acceptsPeerDist(undefined));
  t.notOk(acceptsPeerDist(''));
});

t.test('getHeader is case-insensitive and joins repeats', async (t) => {
  t.equal(getHeader({ 'X-P2P-PeerDist': 'Version=1.1' }, 'x-p2p-peerdist'), 'Version=1.1');
  t.equal(getHeader({ a: ['x', 'y'] }, 'A'), 'x, y');
  t.equal(getHeader({ a: undefined }, 'a'), undefined);
});

t.test('client request headers', async (t) => {
  t.same(clientRequestHeaders({ maxContentVersion: 2 }), {
    'Accept-Encoding': 'peerdist',
    'X-P2P-PeerDist': 'Version=1.1',
    'X-P2P-PeerDistEx': 'MinContentInformation=1.0, MaxContentInformation=2.0',
  });
  t.equal(
    clientRequestHeaders({ maxContentVersion: 1, hashRequest: true })['X-P2P-PeerDistEx'],
    'MinContentInformation=1.0, MaxContentInformation=1.0, HashRequest=true',
  );
  const md = missingDataRequestHeaders();
  t.same(md, { 'X-P2P-PeerDist': 'Version=1.1, MissingDataRequest=true' });
  t.notOk(Object.keys(md).some((k) => k.toLowerCase() === 'accept-encoding'));
});

t.test('client headers negotiate as intended on our server side', async (t) => {
  t.match(negotiate(clientRequestHeaders({ maxContentVersion: 2 })), {
    peerdist: true,
    contentVersion: 2,
    responseVersion: '1.1',
    hashRequest: false,
  });
  t.match(negotiate(clientRequestHeaders({ maxContentVersion: 1, hashRequest: true })), {
    peerdist: true,
    contentVersion: 1,
    hashRequest: true,
  });
  t.match(negotiate(missingDataRequestHeaders()), { peerdist: false, missingData: true });
});

t.test('parsePeerDistResponse', async (t) => {
  t.same(
    parsePeerDistResponse({ 'content-encoding': 'PeerDist', 'x-p2p-peerdist': 'Version=1.1, ContentLength=12345' }),
    { peerdist: true, makeHashRequest: false, version: { major: 1, minor: 1 }, contentLength: 12345 },
  );
  t.same(parsePeerDistResponse({ 'x-p2p-peerdistex': 'MakeHashRequest=true' }), {
    peerdist: false,
    makeHashRequest: true,
  });
  t.same(parsePeerDistResponse({ ...peerDistResponseHeaders('1.0', 7), ...makeHashRequestHeaders() }), {
    peerdist: true,
    makeHashRequest: true,
    version: { major: 1, minor: 0 },
    contentLength: 7,
  });
  t.equal(
    parsePeerDistResponse({ 'content-encoding': 'peerdist', 'x-p2p-peerdist': 'ContentLength=-1' }).contentLength,
    undefined,
  );
  t.equal(parsePeerDistResponse({ 'x-p2p-peerdist': 'ContentLength=99999999999999999' }).contentLength, undefined);
  t.equal(parsePeerDistResponse({ 'content-encoding': 'gzip' }).peerdist, false);
});

t.test('negotiate matrix', async (t) => {
  const AE = { 'accept-encoding': 'gzip, peerdist' };
  const cases: Array<
    [string, Record<string, string>, { peerdist: boolean; contentVersion?: 1 | 2; responseVersion: '1.0' | '1.1' }]
  > = [
    ['no headers', {}, { peerdist: false, responseVersion: '1.1' }],
    [
      'no peerdist coding',
      {
        'accept-encoding': 'gzip',
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      'peerdist;q=0',
      { 'accept-encoding': 'peerdist;q=0', 'x-p2p-peerdist': 'Version=1.0' },
      { peerdist: false, responseVersion: '1.0' },
    ],
    ['coding without X-P2P-PeerDist', { ...AE }, { peerdist: false, responseVersion: '1.1' }],
    [
      '1.0 (Windows 7)',
      { ...AE, 'x-p2p-peerdist': 'Version=1.0' },
      { peerdist: true, contentVersion: 1, responseVersion: '1.0' },
    ],
    [
      '1.0 with Ex still v1',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.0',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: true, contentVersion: 1, responseVersion: '1.0' },
    ],
    [
      '1.1 min1 max2',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: true, contentVersion: 2, responseVersion: '1.1' },
    ],
    [
      '1.1 2.0 only',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=2.0, MaxContentInformation=2.0',
      },
      { peerdist: true, contentVersion: 2, responseVersion: '1.1' },
    ],
    [
      '1.1 max 1.0',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=1.0',
      },
      { peerdist: true, contentVersion: 1, responseVersion: '1.1' },
    ],
    [
      '1.1 max 3.0 picks 2.0',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=3.0',
      },
      { peerdist: true, contentVersion: 2, responseVersion: '1.1' },
    ],
    [
      '1.1 max 1.5 picks 1.0',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=1.5',
      },
      { peerdist: true, contentVersion: 1, responseVersion: '1.1' },
    ],
    [
      '1.1 min 3.0 unsatisfiable',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=3.0, MaxContentInformation=3.0',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      '1.1 min > max',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=2.0, MaxContentInformation=1.0',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    ['1.1 without Ex', { ...AE, 'x-p2p-peerdist': 'Version=1.1' }, { peerdist: false, responseVersion: '1.1' }],
    [
      '1.1 without Max',
      { ...AE, 'x-p2p-peerdist': 'Version=1.1', 'x-p2p-peerdistex': 'MinContentInformation=1.0' },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      '1.1 Max only (Min defaults to 1.0)',
      { ...AE, 'x-p2p-peerdist': 'Version=1.1', 'x-p2p-peerdistex': 'MaxContentInformation=1.0' },
      { peerdist: true, contentVersion: 1, responseVersion: '1.1' },
    ],
    [
      'future 2.5 client',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=2.5',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: true, contentVersion: 2, responseVersion: '1.1' },
    ],
    [
      'malformed version',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=one',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    ['version 0.9', { ...AE, 'x-p2p-peerdist': 'Version=0.9' }, { peerdist: false, responseVersion: '1.0' }],
    [
      'malformed Ex',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1',
        'x-p2p-peerdistex': 'MinContentInformation=x, MaxContentInformation=2',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      'garbage headers',
      { ...AE, 'x-p2p-peerdist': ';;;,,,===', 'x-p2p-peerdistex': '\u0000\u00ff' },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      'missing data + peerdist coding',
      {
        ...AE,
        'x-p2p-peerdist': 'Version=1.1, MissingDataRequest=true',
        'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
      },
      { peerdist: false, responseVersion: '1.1' },
    ],
    [
      'mixed-case names and values',
      {
        'Accept-Encoding': 'PEERDIST',
        'X-P2P-PEERDIST': 'version=1.1',
        'x-p2p-peerdistEX': 'mincontentinformation=1.0,maxcontentinformation=2.0',
      },
      { peerdist: true, contentVersion: 2, responseVersion: '1.1' },
    ],
  ];
  for (const [name, headers, want] of cases) {
    const got = negotiate(headers);
    t.equal(got.peerdist, want.peerdist, `${name}: peerdist`);
    t.equal(got.contentVersion, want.contentVersion, `${name}: contentVersion`);
    t.equal(got.responseVersion, want.responseVersion, `${name}: responseVersion`);
  }
  const hr = negotiate({
    ...AE,
    'x-p2p-peerdist': 'Version=1.1',
    'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0, HashRequest=TRUE',
  });
  t.ok(hr.hashRequest);
  t.notOk(
    negotiate({
      ...AE,
      'x-p2p-peerdist': 'Version=1.1',
      'x-p2p-peerdistex': 'HashRequest=false, MaxContentInformation=2.0',
    }).hashRequest,
  );
  const md = negotiate({ 'x-p2p-peerdist': 'Version=1.1, MissingDataRequest=true', range: 'bytes=0-9' });
  t.same(md, { peerdist: false, responseVersion: '1.1', hashRequest: false, missingData: true });
  t.same(
    negotiate({ 'x-p2p-peerdist': ['Version=1.1', 'MissingDataRequest=true'] }).missingData,
    true,
    'repeated header lines are joined',
  );
});

t.test('negotiate preferVersion', async (t) => {
  const both = {
    'accept-encoding': 'peerdist',
    'x-p2p-peerdist': 'Version=1.1',
    'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
  };
  t.equal(negotiate(both, { preferVersion: 1 }).contentVersion, 1, 'prefers 1.0 when allowed');
  t.equal(negotiate(both, { preferVersion: 2 }).contentVersion, 2);
  t.equal(
    negotiate(
      { ...both, 'x-p2p-peerdistex': 'MinContentInformation=2.0, MaxContentInformation=2.0' },
      { preferVersion: 1 },
    ).contentVersion,
    2,
    'falls back to 2.0 when 1.0 is outside the range',
  );
});
