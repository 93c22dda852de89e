/** `--ipv6` / `ipv6` config: parsing, which interfaces IPv6 discovery uses, local subnets and advertised addresses. */
import t from 'tap';
import type { NetworkInterfaceInfo } from 'node:os';
import { configFromJson, parseIPv6Setting, resolveConfig } from '../../src/daemon/config.js';
import { advertisedAddresses, chooseInterface, ipv6Interfaces, localSubnets } from '../../src/daemon/netif.js';

const v4 = (address: string, internal = false): NetworkInterfaceInfo => ({
  address,
  netmask: internal ? '255.0.0.0' : '255.255.255.0',
  family: 'IPv4',
  mac: '00:00:00:00:00:00',
  internal,
  cidr: null,
});
const v6 = (address: string, internal = false): NetworkInterfaceInfo => ({
  address,
  netmask: internal ? 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' : 'ffff:ffff:ffff:ffff::',
  family: 'IPv6',
  mac: '00:00:00:00:00:00',
  internal,
  cidr: null,
  scopeid: 0,
});
const ifaces = {
  lo: [v4('127.0.0.1', true), v6('::1', true)],
  eth0: [v4('192.0.2.5'), v6('fe80::5'), v6('fd00:1::5')],
  eth1: [v4('198.51.100.5')],
};

t.test('parsing: booleans, interface lists, JSON arrays; off by default', async (t) => {
  t.equal(resolveConfig({ defaultStateDir: '/s' }).ipv6, false, 'off by default');
  t.equal(parseIPv6Setting(true), true);
  t.equal(parseIPv6Setting('on'), true);
  t.equal(parseIPv6Setting('false'), false);
  t.same(parseIPv6Setting('eth0, eth1'), ['eth0', 'eth1']);
  t.same(
    resolveConfig({ defaultStateDir: '/s', file: configFromJson({ ipv6: ['eth0'] }) }).ipv6,
    ['eth0'],
    'config file array',
  );
  t.same(
    resolveConfig({ defaultStateDir: '/s', env: { ipv6: 'eth1' }, file: { ipv6: true } }).ipv6,
    ['eth1'],
    'env over file',
  );
  t.throws(() => parseIPv6Setting('eth0;rm -rf'), { code: 'BAD_CONFIG' });
});

t.test('interfaces: the chosen one, all with IPv6, or the named ones', async (t) => {
  t.same(ipv6Interfaces(false, undefined, ifaces), []);
  t.same(ipv6Interfaces(true, undefined, ifaces), ['eth0'], 'every interface with a non-internal IPv6 address');
  t.same(ipv6Interfaces(true, chooseInterface('eth0', ifaces), ifaces), ['eth0']);
  t.same(
    ipv6Interfaces(true, chooseInterface('127.0.0.1', ifaces), ifaces),
    ['eth0'],
    'loopback discovery interface: all',
  );
  t.same(ipv6Interfaces(['eth1'], undefined, ifaces), ['eth1']);
  t.throws(() => ipv6Interfaces(['wlan9'], undefined, ifaces), { code: 'BAD_INTERFACE' });
});

t.test(
  'local subnets include the IPv6 prefixes; XAddrs include non-link-local IPv6 addresses when bound to [::]',
  async (t) => {
    const lo = chooseInterface('127.0.0.1', ifaces);
    t.same(
      localSubnets(lo, ifaces, ['eth0']).map((s) => s.address),
      ['127.0.0.1', 'fe80::5', 'fd00:1::5'],
    );
    t.same(
      localSubnets(lo, ifaces).map((s) => s.address),
      ['127.0.0.1'],
      'no IPv6 without --ipv6',
    );
    t.same(advertisedAddresses({ host: '::', port: 7170 }, lo, ifaces, ['eth0']), [
      '127.0.0.1:7170',
      '[fd00:1::5]:7170',
    ]);
    t.same(
      advertisedAddresses({ host: '0.0.0.0', port: 7170 }, undefined, ifaces, ['eth0']),
      ['192.0.2.5:7170', '198.51.100.5:7170'],
      'an IPv4 wildcard bind: IPv4 only',
    );
    t.same(advertisedAddresses({ host: '192.0.2.5', port: 7170 }, undefined, ifaces, ['eth0']), ['192.0.2.5:7170']);
  },
);
