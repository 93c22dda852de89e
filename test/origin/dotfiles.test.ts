// The origin in directory mode never serves hidden names (issue 16.9): any path segment starting
// with '.' (/.hidden, /.git/config, /.env, /sub/.secret, a symlink resolving into one) is 404
// unless allowDotfiles is set; a trailing slash on a file (/FILE/) is 404. The reserved
// /.peerdist/ prefix still answers.
import t from 'tap';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './tmp.js';
import { get, rawGet, startOrigin } from './http.js';

async function tree(t: Parameters<typeof tempDir>[0]) {
  const root = await tempDir(t);
  const state = await tempDir(t, 'pd-origin-state-');
  await writeFile(join(root, 'file.bin'), 'public file\n');
  await writeFile(join(root, '.hidden'), 'hidden\n');
  await writeFile(join(root, '.env'), 'PASSWORD=hunter2\n');
  await mkdir(join(root, '.git'));
  await writeFile(join(root, '.git', 'config'), '[remote "origin"] url = secret\n');
  await mkdir(join(root, 'sub'));
  await writeFile(join(root, 'sub', '.secret'), 'secret\n');
  await writeFile(join(root, 'sub', 'ok.txt'), 'ok\n');
  await symlink(join(root, '.git', 'config'), join(root, 'cfg'));
  return { root, state };
}

const PEERDIST = {
  'accept-encoding': 'peerdist',
  'x-p2p-peerdistex': 'MinContentInformation=1.0, MaxContentInformation=2.0',
};

t.test('hidden names and trailing slashes are not served by default', async (t) => {
  const { root, state } = await tree(t);
  const s = await startOrigin(t, { root, stateDir: state });
  for (const p of ['/file.bin', '/sub/ok.txt']) t.equal((await get(s, p)).status, 200, `${p} is served`);
  t.equal((await get(s, '/.peerdist/public-key')).status, 200, 'the reserved prefix still answers');
  for (const p of [
    '/.hidden',
    '/.env',
    '/.git/config',
    '/sub/.secret',
    '/cfg',
    '/%2egit/config',
    '/sub/%2Esecret',
    '/file.bin/',
    '/sub/ok.txt/',
    '/sub/',
  ]) {
    for (const [what, h] of [
      ['plain', {}],
      ['PeerDist', PEERDIST],
    ] as const) {
      const r = await get(s, p, { ...h });
      t.equal(r.status, 404, `${p} (${what}) → 404`);
      t.notMatch(r.body.toString(), /hunter2|secret|hidden/, `${p}: no content`);
    }
    t.equal((await get(s, p, {}, 'HEAD')).status, 404, `HEAD ${p} → 404`);
    t.equal((await rawGet(s.port, p)).status, 404, `raw ${p} → 404`);
  }
});

t.test('allowDotfiles serves them; the trailing slash rule stays', async (t) => {
  const { root, state } = await tree(t);
  const s = await startOrigin(t, { root, stateDir: state, allowDotfiles: true });
  t.equal((await get(s, '/.hidden')).body.toString(), 'hidden\n');
  t.equal((await get(s, '/.git/config')).status, 200);
  t.equal((await get(s, '/cfg')).status, 200);
  t.equal((await get(s, '/file.bin/')).status, 404);
});
