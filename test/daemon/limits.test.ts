// Limits on what this machine serves: maximum cache entry age, the power rule, config keys.
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockStore } from '../../src/cache/store.js';
import { readPowerSource, PowerMonitor } from '../../src/daemon/power.js';
import { ServePolicy } from '../../src/daemon/serve-policy.js';
import { ConfigError, parseDuration, parseRate, resolveConfig } from '../../src/daemon/config.js';
import { randomV1, tempDir } from '../cache/make.js';

async function supply(root: string, name: string, files: Record<string, string>): Promise<void> {
  await mkdir(join(root, name), { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(join(root, name, k), v + '\n');
}

t.test('power source from a /sys/class/power_supply tree', async (t) => {
  const dir = await tempDir(t, 'pd-power-');
  t.equal(await readPowerSource(join(dir, 'absent')), 'unknown', 'no tree: unknown (serves)');
  t.equal(await readPowerSource(dir), 'unknown', 'empty tree: unknown');
  await supply(dir, 'BAT0', { type: 'Battery', status: 'Discharging', capacity: '80' });
  t.equal(await readPowerSource(dir), 'battery');
  await supply(dir, 'AC', { type: 'Mains', online: '0' });
  t.equal(await readPowerSource(dir), 'battery', 'mains present but offline');
  const m = new PowerMonitor(dir, 60_000);
  await m.start();
  t.teardown(() => m.stop());
  t.equal(m.current(), 'battery');
  await supply(dir, 'AC', { type: 'Mains', online: '1' });
  await supply(dir, 'BAT0', { type: 'Battery', status: 'Charging' });
  t.equal(await m.refresh(), 'ac');
  t.equal(m.current(), 'ac');
  await supply(dir, 'hidpp_battery_0', { type: 'Battery', status: 'Discharging', scope: 'Device' });
  t.equal(await readPowerSource(dir), 'ac', 'a discharging mouse battery does not matter while on mains');
});

t.test('store: evictOlderThan drops unpinned segments stored before the cutoff', async (t) => {
  const dir = await tempDir(t);
  let now = 1_000_000;
  const store = await BlockStore.open({ dir, limitBytes: 1 << 30, now: () => now });
  t.teardown(() => store.close());
  const old = randomV1(2),
    pinned = randomV1(1),
    fresh = randomV1(1);
  for (const s of [old, pinned]) {
    await store.addSegment(s.meta);
    for (let i = 0; i < s.blocks.length; i++) await store.putBlock(s.meta.segmentId, i, s.blocks[i]!);
  }
  now += 10_000;
  await store.addSegment(fresh.meta);
  await store.putBlock(fresh.meta.segmentId, 0, fresh.blocks[0]!);
  t.equal(store.addedAt(old.meta.segmentId), 1_000_000);
  const unpin = store.pin(pinned.meta.segmentId);
  t.equal(await store.evictOlderThan(5_000), 1, 'one segment evicted');
  t.notOk(store.getSegment(old.meta.segmentId), 'the old segment is gone');
  t.ok(store.getSegment(pinned.meta.segmentId), 'a pinned (in use) old segment stays');
  t.ok(store.getSegment(fresh.meta.segmentId), 'the fresh segment stays');
  unpin();
  t.equal(await store.evictOlderThan(5_000), 1);
  t.equal(store.stats().segments, 1);
});

t.test(
  'serve policy: entries past the maximum age are neither announced nor served; battery stops serving',
  async (t) => {
    const dir = await tempDir(t);
    let now = 5_000_000;
    const store = await BlockStore.open({ dir, limitBytes: 1 << 30, now: () => now });
    t.teardown(() => store.close());
    const s = randomV1(2);
    await store.addSegment(s.meta);
    for (let i = 0; i < 2; i++) await store.putBlock(s.meta.segmentId, i, s.blocks[i]!);
    let power: 'ac' | 'battery' | 'unknown' = 'battery';
    const p = new ServePolicy({ maxAgeMs: 60_000, serveOnBattery: false, power: () => power, now: () => now });
    const src = p.source(store);
    t.equal(p.notServing(), 'on battery');
    power = 'unknown';
    t.equal(p.notServing(), undefined, 'unknown power: serve');
    t.ok(src.getSegment(s.meta.segmentId));
    t.ok((await src.readBlock(s.meta.segmentId, 1, 'peer'))?.equals(s.blocks[1]!), 'young entry served');
    const dest = Buffer.alloc(65536 + 16);
    t.equal(await src.readBlockInto?.(s.meta.segmentId, 1, dest, 'peer'), 65536, 'young entry served into a buffer');
    t.ok(dest.subarray(0, 65536).equals(s.blocks[1]!));
    now += 60_001;
    t.ok(p.tooOld(store, s.meta.segmentId));
    t.equal(src.getSegment(s.meta.segmentId), undefined, 'old entry: not there for peers');
    t.equal(src.hasBlock(s.meta.segmentId, 0), false);
    t.same(src.presentBlocks(s.meta.segmentId), []);
    t.equal(await src.readBlock(s.meta.segmentId, 0, 'peer'), undefined);
    t.equal(await src.readBlockInto?.(s.meta.segmentId, 0, dest, 'peer'), undefined, 'nor into a buffer');
    t.ok(store.hasBlock(s.meta.segmentId, 0), 'still in the store until the sweep (local downloads may use it)');
    const onBattery = new ServePolicy({ maxAgeMs: 0, serveOnBattery: true, power: () => 'battery', now: () => now });
    t.equal(onBattery.notServing(), undefined, 'serveOnBattery keeps serving');
    t.equal(onBattery.tooOld(store, s.meta.segmentId), false, 'maxAge 0: no limit');
  },
);

t.test('config: limit keys, units, defaults, precedence', async (t) => {
  const d = resolveConfig({ defaultStateDir: '/d' });
  t.equal(d.uploadRateLimit, undefined, 'no upload cap by default');
  t.equal(d.maxPeerConnections, 256);
  t.equal(d.maxPeerRequests, 64);
  t.equal(d.cacheMaxAgeMs, 28 * 86_400_000, 'BranchCache default: 28 days');
  t.equal(d.serveOnBattery, false);
  const c = resolveConfig({
    flags: { uploadRateLimit: '2M' },
    env: { uploadRateLimit: '1M', maxPeerConnections: '10', serveOnBattery: '1' },
    file: { maxPeerRequests: 8, cacheMaxAge: '12h' },
    defaultStateDir: '/d',
  });
  t.equal(c.uploadRateLimit, 2 * 2 ** 20, 'flag wins');
  t.equal(c.maxPeerConnections, 10);
  t.equal(c.maxPeerRequests, 8);
  t.equal(c.cacheMaxAgeMs, 12 * 3_600_000);
  t.equal(c.serveOnBattery, true);
  t.equal(
    resolveConfig({ flags: { uploadRateLimit: '0' }, defaultStateDir: '/d' }).uploadRateLimit,
    undefined,
    '0 = unlimited',
  );
  t.equal(resolveConfig({ flags: { cacheMaxAge: '0' }, defaultStateDir: '/d' }).cacheMaxAgeMs, 0);
  t.equal(parseRate('500K/s'), 500 * 1024);
  t.equal(parseDuration(90), 90_000, 'a number is seconds');
  t.equal(parseDuration('30m'), 1_800_000);
  t.equal(parseDuration('1.5d'), 1.5 * 86_400_000);
  t.throws(() => parseDuration('soon'), ConfigError);
  t.throws(() => resolveConfig({ flags: { maxPeerConnections: '0' }, defaultStateDir: '/d' }), {
    message: /maxPeerConnections/,
  });
  t.throws(() => resolveConfig({ flags: { uploadRateLimit: 'fast' }, defaultStateDir: '/d' }), {
    message: /uploadRateLimit/,
  });
  t.throws(() => resolveConfig({ flags: { serveOnBattery: 'maybe' }, defaultStateDir: '/d' }), {
    message: /serveOnBattery/,
  });
});

t.test('config: sealWorker (off by default; env, file, a flag either way)', async (t) => {
  t.equal(resolveConfig({ defaultStateDir: '/d' }).sealWorker, false);
  t.equal(resolveConfig({ env: { sealWorker: '1' }, defaultStateDir: '/d' }).sealWorker, true);
  t.equal(resolveConfig({ file: { sealWorker: true }, defaultStateDir: '/d' }).sealWorker, true);
  t.equal(
    resolveConfig({ flags: { sealWorker: false }, env: { sealWorker: '1' }, defaultStateDir: '/d' }).sealWorker,
    false,
    '--no-seal-worker wins over the environment',
  );
  t.throws(() => resolveConfig({ env: { sealWorker: 'perhaps' }, defaultStateDir: '/d' }), { message: /sealWorker/ });
});
