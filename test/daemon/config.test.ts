import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError,
  configFromEnv,
  configFromJson,
  parseSize,
  readConfigFile,
  resolveConfig,
} from '../../src/daemon/config.js';
import { parseAdminAddress, parseHostPort, isLoopbackHost, AddressError } from '../../src/util/address.js';
import { runCli } from '../helpers/cli.js';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

t.test('defaults', async (t) => {
  const c = resolveConfig({ defaultStateDir: '/var/lib/x' });
  t.same(c.listen, { host: '0.0.0.0', port: 7170 });
  t.same(c.admin, { kind: 'tcp', host: '127.0.0.1', port: 7171 });
  t.equal(c.discoveryPort, 3702);
  t.equal(c.stateDir, '/var/lib/x');
  t.equal(c.proxy, undefined);
  t.equal(c.cacheLimitBytes, undefined);
  t.equal(c.maxContentVersion, 2);
  t.equal(c.presence, true);
});

t.test('precedence: flags > env > file > defaults, per setting', async (t) => {
  const file = configFromJson({
    listen: '10.0.0.1:1',
    discoveryPort: 4000,
    cacheLimit: '1G',
    stateDir: '/file',
    proxyPort: 3128,
  });
  const env = configFromEnv({
    PEERDIST_LISTEN: '127.0.0.2:2',
    PEERDIST_DISCOVERY_PORT: '5000',
    PEERDIST_UNRELATED: 'x',
    PEERDIST_INTERFACE: '',
  });
  const flags = { listen: '127.0.0.3:3', interface: undefined };
  const c = resolveConfig({ flags, env, file, defaultStateDir: '/default' });
  t.same(c.listen, { host: '127.0.0.3', port: 3 }, 'flag wins over env and file');
  t.equal(c.discoveryPort, 5000, 'env wins over file');
  t.equal(c.cacheLimitBytes, 2 ** 30, 'file wins over default');
  t.equal(c.stateDir, '/file');
  t.same(c.proxy, { host: '127.0.0.1', port: 3128 }, 'proxy binds loopback by default');
  t.equal(c.interface, undefined, 'empty env value ignored');
});

t.test('admin / adminSocket are one setting', async (t) => {
  const c1 = resolveConfig({
    flags: { adminSocket: '/run/p.sock' },
    env: { admin: '127.0.0.1:9' },
    defaultStateDir: '/d',
  });
  t.same(c1.admin, { kind: 'socket', path: '/run/p.sock' });
  const c2 = resolveConfig({ flags: { admin: '127.0.0.5:0' }, file: { adminSocket: '/x' }, defaultStateDir: '/d' });
  t.same(c2.admin, { kind: 'tcp', host: '127.0.0.5', port: 0 });
  t.throws(
    () => resolveConfig({ flags: { admin: '127.0.0.1:1', adminSocket: '/x' }, defaultStateDir: '/d' }),
    ConfigError,
  );
});

t.test('non-loopback admin address is refused with a clear error', async (t) => {
  for (const a of ['0.0.0.0:7171', '192.168.1.5:7171', '10.0.0.1:1', '[::]:7171', 'example.com:80']) {
    t.throws(
      () => resolveConfig({ flags: { admin: a }, defaultStateDir: '/d' }),
      { name: 'ConfigError', message: /loopback/ },
      a,
    );
  }
  t.throws(() => parseAdminAddress('0.0.0.0:1'), AddressError);
  t.same(parseAdminAddress('localhost:7'), { kind: 'tcp', host: '127.0.0.1', port: 7 });
  t.same(parseAdminAddress('[::1]:7'), { kind: 'tcp', host: '::1', port: 7 });
  t.same(parseAdminAddress('./a.sock'), { kind: 'socket', path: './a.sock' });
  t.same(parseAdminAddress('unix:/run/x'), { kind: 'socket', path: '/run/x' });
});

t.test('bad values name the setting', async (t) => {
  t.throws(() => resolveConfig({ flags: { discoveryPort: '70000' }, defaultStateDir: '/d' }), {
    message: /discoveryPort/,
  });
  t.throws(() => resolveConfig({ flags: { proxyPort: 'abc' }, defaultStateDir: '/d' }), { message: /proxyPort/ });
  t.throws(() => resolveConfig({ flags: { listen: 'nohostport' }, defaultStateDir: '/d' }), { message: /listen/ });
  t.throws(() => resolveConfig({ flags: { cacheLimit: '12 parsecs' }, defaultStateDir: '/d' }), {
    message: /cacheLimit/,
  });
  t.throws(() => resolveConfig({ flags: { maxContentVersion: '3' }, defaultStateDir: '/d' }), {
    message: /maxContentVersion/,
  });
  t.throws(() => configFromJson({ lsiten: 'typo' }), { message: /unknown setting "lsiten"/ });
  t.throws(() => configFromJson([1]), ConfigError);
  t.throws(() => configFromJson({ listen: { nested: 1 } }), ConfigError);
});

t.test('sizes, host:port, loopback', async (t) => {
  t.equal(parseSize('500M'), 500 * 2 ** 20);
  t.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
  t.equal(parseSize(1234), 1234);
  t.equal(parseSize('10k'), 10240);
  t.throws(() => parseSize(-1));
  t.same(parseHostPort('8080'), { host: '0.0.0.0', port: 8080 });
  t.same(parseHostPort('127.0.0.2:0'), { host: '127.0.0.2', port: 0 });
  t.throws(() => parseHostPort('a:b:c'));
  t.throws(() => parseHostPort('h:99999'));
  t.ok(isLoopbackHost('127.9.9.9'));
  t.ok(isLoopbackHost('::ffff:127.0.0.1'));
  t.notOk(isLoopbackHost('128.0.0.1'));
  t.notOk(isLoopbackHost('::ffff:10.0.0.1'));
});

t.test('config file is read and validated', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.json');
  await writeFile(good, JSON.stringify({ admin: '127.0.0.1:9999', presence: false }));
  const raw = await readConfigFile(good);
  const c = resolveConfig({ file: raw, defaultStateDir: '/d' });
  t.same(c.admin, { kind: 'tcp', host: '127.0.0.1', port: 9999 });
  t.equal(c.presence, false);
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{ not json');
  await t.rejects(readConfigFile(bad), { name: 'ConfigError', message: /not valid JSON/ });
  await t.rejects(readConfigFile(join(dir, 'missing.json')), { name: 'ConfigError', message: /cannot read/ });
});

t.test('peerdist daemon refuses a non-loopback admin address', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = await runCli(['daemon', '--state-dir', dir, '--admin', '0.0.0.0:0', '--listen', '127.0.0.1:0'], {
    timeoutMs: 20_000,
  });
  t.equal(r.code, 1);
  t.equal(r.stdout, '', 'no ready line');
  t.match(r.stderr, /peerdist: error: BAD_CONFIG: admin API must listen on loopback or a unix socket, not 0\.0\.0\.0/);
  const env = await runCli(['daemon', '--state-dir', dir], {
    env: { PEERDIST_ADMIN: '192.168.1.1:7171' },
    timeoutMs: 20_000,
  });
  t.equal(env.code, 1);
  t.match(env.stderr, /loopback/);
  const cfg = join(dir, 'peerdist.json');
  await writeFile(cfg, JSON.stringify({ admin: '10.0.0.1:7171' }));
  const file = await runCli(['daemon', '--config', cfg, '--state-dir', dir], { timeoutMs: 20_000 });
  t.equal(file.code, 1, 'the config file is read');
  t.match(file.stderr, /not 10\.0\.0\.1/);
  const typo = await runCli(['daemon', '--state-dir', dir], {
    env: { PEERDIST_CONFIG: join(dir, 'missing.json') },
    timeoutMs: 20_000,
  });
  t.equal(typo.code, 1);
  t.match(typo.stderr, /BAD_CONFIG: cannot read config file/);
});

t.test('a listener that cannot start: clear error, everything closed, exit 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-cfg-'));
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    await new Promise((r) => busy.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  const port = (busy.address() as AddressInfo).port;
  const r = await runCli(
    [
      'daemon',
      '--state-dir',
      dir,
      '--admin',
      `127.0.0.1:${port}`,
      '--listen',
      '127.0.0.1:0',
      '--interface',
      '127.0.0.1',
      '--discovery-port',
      '0',
      '--no-presence',
    ],
    { timeoutMs: 20_000 },
  );
  t.equal(r.code, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`peerdist: error: START_FAILED: admin API on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
});

t.test('file-valued settings are checked at startup: one-line BAD_CONFIG, no ready line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'notpem'), 'hello, not a key\n');
  await writeFile(join(dir, 'afile'), 'x');
  const { generateKeyPairSync } = await import('node:crypto');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(join(dir, 'private.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const base = [
    'daemon',
    '--listen',
    '127.0.0.1:0',
    '--interface',
    '127.0.0.1',
    '--discovery-port',
    '0',
    '--no-presence',
  ];
  const cases: Array<{ args: string[]; env?: NodeJS.ProcessEnv; err: RegExp }> = [
    {
      args: ['--state-dir', join(dir, 's1'), '--admin', '127.0.0.1:0', '--origin-public-key', join(dir, 'notpem')],
      err: /BAD_CONFIG: originPublicKey: .*notpem is not a PEM public key/,
    },
    {
      args: ['--state-dir', join(dir, 's1'), '--admin', '127.0.0.1:0'],
      env: { PEERDIST_ORIGIN_PUBLIC_KEY: join(dir, 'notpem') },
      err: /BAD_CONFIG: originPublicKey: .*not a PEM public key/,
    },
    {
      args: ['--state-dir', join(dir, 's1'), '--admin', '127.0.0.1:0', '--origin-public-key', join(dir, 'private.pem')],
      err: /BAD_CONFIG: originPublicKey: .*private key/,
    },
    {
      args: ['--state-dir', join(dir, 's1'), '--admin', '127.0.0.1:0', '--origin-public-key', join(dir, 'missing.pem')],
      err: /BAD_CONFIG: originPublicKey: cannot read .*missing\.pem/,
    },
    {
      args: ['--state-dir', join(dir, 's1'), '--admin', '127.0.0.1:0', '--origin-public-key', dir],
      err: /BAD_CONFIG: originPublicKey: cannot read/,
    },
    {
      args: ['--state-dir', join(dir, 'afile'), '--admin', '127.0.0.1:0'],
      err: /BAD_CONFIG: stateDir: .*afile exists and is not a directory/,
    },
    {
      args: ['--state-dir', join(dir, 'afile', 'sub'), '--admin', '127.0.0.1:0'],
      err: /BAD_CONFIG: stateDir: cannot create/,
    },
    {
      args: ['--state-dir', join(dir, 's2'), '--admin-socket', join(dir, 'nodir', 'sock')],
      err: /BAD_CONFIG: adminSocket: directory .*nodir does not exist/,
    },
    {
      args: ['--state-dir', join(dir, 's2'), '--admin-socket', join(dir, 'afile', 'sock')],
      err: /BAD_CONFIG: adminSocket: .*afile is not a directory/,
    },
  ];
  for (const c of cases) {
    const r = await runCli([...base, ...c.args], { env: c.env, timeoutMs: 15_000 }).catch((err: Error) => ({
      code: -1,
      stdout: 'timed out (the daemon started)',
      stderr: err.message,
    }));
    t.equal(r.code, 1, `${c.args.join(' ')}: exit 1`);
    t.equal(r.stdout, '', 'no ready line');
    t.match(r.stderr, c.err);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});
