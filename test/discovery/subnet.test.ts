import t from 'tap';
import {
  ipv6InterfaceNames,
  localAddressFilter,
  refreshingLocalFilter,
  type Subnet,
} from '../../src/discovery/subnet.js';
import { ExpiringSet, KeyedRateLimiter, TokenBucket } from '../../src/discovery/limits.js';

t.test('local subnet filter from address/netmask pairs', async (t) => {
  const isLocal = localAddressFilter([
    { address: '192.168.7.33', netmask: '255.255.255.0' },
    { address: '10.20.0.1', netmask: '255.255.240.0' },
    { address: 'fd00::2', netmask: 'ffff:ffff:ffff:ffff::' },
    { address: 'fe80::fc:ff:fe00:1%eth0', netmask: 'ffff:ffff:ffff:ffff::' },
  ]);
  for (const a of [
    '192.168.7.1',
    '192.168.7.254',
    '10.20.15.200',
    '127.0.0.1',
    '127.9.9.9',
    '::1',
    '::ffff:192.168.7.9',
    'fd00::99',
    'fe80::1',
    'fe80::1%eth0',
  ])
    t.ok(isLocal(a), `${a} local`);
  for (const a of ['192.168.8.1', '10.20.16.1', '8.8.8.8', '::ffff:8.8.8.8', 'fd01::1', '2001:db8::1', 'not-an-ip', ''])
    t.notOk(isLocal(a), `${a} not local`);
  t.notOk(localAddressFilter([])('192.168.7.1'), 'nothing but loopback when no subnets');
});

t.test('token bucket, keyed limiter and expiring set', async (t) => {
  const b = new TokenBucket(10, 2, 0);
  t.same([b.take(0), b.take(0), b.take(0)], [true, true, false]);
  t.equal(b.take(100), true, 'one token after 100 ms at 10/s');
  t.equal(b.take(100), false);
  const k = new KeyedRateLimiter(1, 1, 2);
  t.same([k.take('a', 0), k.take('a', 0), k.take('b', 0), k.take('c', 0)], [true, false, true, true]);
  t.equal(k.take('a', 0), true, 'evicted key starts with a fresh bucket (bounded memory)');
  const s = new ExpiringSet(1000, 3);
  t.equal(s.checkAndAdd('x', 0), false);
  t.equal(s.checkAndAdd('x', 999), true);
  t.equal(s.checkAndAdd('x', 1000), false, 'expired');
  for (const key of ['a', 'b', 'c', 'd']) s.add(key, 1001);
  t.equal(s.size, 3);
  t.notOk(s.has('x', 1001), 'oldest evicted beyond the bound');
  t.ok(s.has('d', 1001));
});

t.test('IPv6 interfaces: names with a non-internal IPv6 address', async (t) => {
  const v6 = (address: string, internal = false) => ({
    address,
    netmask: 'ffff:ffff:ffff:ffff::',
    family: 'IPv6' as const,
    mac: '00:00:00:00:00:00',
    internal,
    cidr: `${address}/64`,
    scopeid: 2,
  });
  const v4 = (address: string, internal = false) => ({
    address,
    netmask: '255.255.255.0',
    family: 'IPv4' as const,
    mac: '00:00:00:00:00:00',
    internal,
    cidr: `${address}/24`,
  });
  t.same(
    ipv6InterfaceNames({
      lo: [v4('127.0.0.1', true), v6('::1', true)],
      eth0: [v4('192.0.2.2'), v6('fe80::1')],
      wlan0: [v4('198.51.100.2')],
      eth1: [v6('fd00::5')],
    }),
    ['eth0', 'eth1'],
  );
  t.same(ipv6InterfaceNames({}), []);
});

t.test('the host subnet list is re-read after its time to live', async (t) => {
  let now = 0,
    reads = 0;
  let subnets: Subnet[] = [{ address: '192.168.7.1', netmask: '255.255.255.0' }];
  const isLocal = refreshingLocalFilter(
    () => now,
    30_000,
    () => {
      reads++;
      return subnets;
    },
  );
  t.ok(isLocal('192.168.7.9'));
  subnets = [{ address: '10.1.0.1', netmask: '255.255.0.0' }];
  now = 29_999;
  t.ok(isLocal('192.168.7.9'), 'cached until the TTL');
  t.notOk(isLocal('10.1.2.3'));
  now = 30_000;
  t.ok(isLocal('10.1.2.3'), 'new address picked up');
  t.notOk(isLocal('192.168.7.9'), 'old one dropped');
  t.equal(reads, 2);
});
