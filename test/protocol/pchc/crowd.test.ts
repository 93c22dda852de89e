import t from 'tap';
import {
  CROWD_HEADER,
  MAX_CROWD_ADDRESSES,
  crowdAddress,
  formatCrowd,
  parseCrowd,
} from '../../../src/protocol/pchc/crowd.js';

t.test('format and parse: addresses round-trip, IPv4-mapped IPv6 becomes IPv4, IPv6 lower-cased', async (t) => {
  t.equal(CROWD_HEADER, 'peerdist-crowd');
  const v = formatCrowd(['10.0.2.11', '::ffff:10.0.3.11', 'FD00::1']);
  t.equal(v, '10.0.2.11 10.0.3.11 fd00::1');
  t.same(parseCrowd(v), ['10.0.2.11', '10.0.3.11', 'fd00::1']);
  t.same(parseCrowd('  10.0.2.11\t10.0.2.11 '), ['10.0.2.11'], 'separators and repeats tolerated');
});

t.test('an empty value is an empty crowd (the hosted cache reports crowds; nobody else asked)', async (t) => {
  t.equal(formatCrowd([]), '');
  t.same(parseCrowd(''), []);
});

t.test('format cuts the list at the maximum and refuses what is not an IP address', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`);
  t.equal(formatCrowd(many).split(' ').length, MAX_CROWD_ADDRESSES);
  t.throws(() => formatCrowd(['host.example']), RangeError);
});

t.test(
  'parse refuses anything but a short list of IP addresses (the hosted cache then counts as not reporting)',
  async (t) => {
    t.equal(parseCrowd(undefined), undefined, 'no header');
    t.equal(parseCrowd(['10.0.0.1', '10.0.0.2']), undefined, 'header repeated');
    t.equal(parseCrowd('10.0.0.1,10.0.0.2'), undefined, 'commas');
    t.equal(parseCrowd('10.0.0.1 evil.example'), undefined, 'a host name');
    t.equal(parseCrowd('10.0.0.256'), undefined, 'not an address');
    t.equal(parseCrowd('10.0.0.1:80'), undefined, 'a port');
    const many = Array.from({ length: MAX_CROWD_ADDRESSES + 1 }, (_, i) => `10.0.1.${i + 1}`).join(' ');
    t.equal(parseCrowd(many), undefined, 'too many');
    t.equal(parseCrowd(' '.repeat(5000)), undefined, 'too long');
  },
);

t.test('crowdAddress: socket addresses to crowd identities', async (t) => {
  t.equal(crowdAddress('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(crowdAddress('192.0.2.7'), '192.0.2.7');
  t.equal(crowdAddress('FE80::1'), 'fe80::1');
  t.equal(crowdAddress(''), undefined);
  t.equal(crowdAddress('::ffff:not-ip'), undefined);
});
