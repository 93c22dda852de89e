/** Daemon settings for hosted caches: HOST[:PORT] lists from flags, env and file; version defaults. */
import t from 'tap';
import { configFromEnv, configFromJson, resolveConfig, ConfigError } from '../../src/daemon/config.js';

const resolve = (flags: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  resolveConfig({ flags, defaultStateDir: '/tmp/x', ...extra });

t.test('hosted cache settings', async (t) => {
  t.same(resolve({}).hostedCaches, [], 'none by default');
  t.same(resolve({ hostedCache: ['hc.example', '10.0.0.5:8080', '[fd00::1]:81', 'fd00::2'] }).hostedCaches, [
    { host: 'hc.example', port: 80, version: 2, retrievalPort: 80 },
    { host: '10.0.0.5', port: 8080, version: 2, retrievalPort: 8080 },
    { host: 'fd00::1', port: 81, version: 2, retrievalPort: 81 },
    { host: 'fd00::2', port: 80, version: 2, retrievalPort: 80 },
  ]);
  t.same(resolve({ hostedCache: ['hc'], hostedCacheVersion: '1', hostedCacheCa: '/etc/hc.pem' }).hostedCaches, [
    { host: 'hc', port: 443, version: 1, retrievalPort: 80, caFile: '/etc/hc.pem' },
  ]);
  t.same(
    resolve({ hostedCache: ['hc:8443'], hostedCacheVersion: '1', hostedCacheRetrievalPort: '8080' }).hostedCaches,
    [{ host: 'hc', port: 8443, version: 1, retrievalPort: 8080 }],
  );
  t.same(
    resolve({}, { env: configFromEnv({ PEERDIST_HOSTED_CACHE: 'a:1, b:2' }) }).hostedCaches.map(
      (h) => `${h.host}:${h.port}`,
    ),
    ['a:1', 'b:2'],
  );
  t.same(
    resolve({}, { file: configFromJson({ hostedCache: ['c:3'], hostedCacheVersion: 2 }) }).hostedCaches.map(
      (h) => `${h.host}:${h.port}`,
    ),
    ['c:3'],
  );
  t.throws(() => resolve({ hostedCache: ['hc'], hostedCacheVersion: '3' }), ConfigError);
  t.throws(() => resolve({ hostedCache: ['hc:0'] }), ConfigError);
  t.throws(() => resolve({ hostedCache: ['hc:99999'] }), ConfigError);
  t.throws(() => configFromJson({ hostedCache: [1] }), ConfigError);
});
