import t from 'tap';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../../src/util/version.js';
import { DAEMON_VERSION } from '../../src/daemon/daemon.js';
import { runCli } from '../helpers/cli.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

t.test('the version comes from package.json, everywhere', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  t.equal(VERSION, pkg.version);
  t.equal(DAEMON_VERSION, pkg.version, 'the daemon reports it (status, DNS-SD TXT)');
  const r = await runCli(['--version']);
  t.equal(r.code, 0);
  t.equal(r.stdout.trim(), pkg.version, 'peerdist --version');
});
