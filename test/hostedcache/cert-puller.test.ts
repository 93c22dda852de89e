/** Generated certificates (DER by hand, checked by node:crypto) and the puller's rate and concurrency caps. */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  generateSelfSigned,
  checkPair,
  loadOrCreateCertificate,
  CertificateError,
} from '../../src/hostedcache/cert.js';
import { Puller, RateLimiter, type PullClient, type PullStore } from '../../src/hostedcache/puller.js';
import type { SegmentMeta } from '../../src/cache/meta.js';
import { tempDir, randomV2 } from '../cache/make.js';

t.test('self-signed certificate: parses, self-verifies, names and key match', async (t) => {
  const g = generateSelfSigned(['hc.example', '10.1.2.3', '::1', 'fe80::1:2'], { days: 30 });
  const c = checkPair(g.certPem, g.keyPem);
  t.ok(c.verify(c.publicKey), 'signature verifies with its own key');
  t.equal(c.subject, 'CN=hc.example');
  t.equal(c.issuer, 'CN=hc.example');
  t.equal(
    c.subjectAltName,
    'DNS:hc.example, IP Address:10.1.2.3, IP Address:0:0:0:0:0:0:0:1, IP Address:FE80:0:0:0:0:0:1:2',
  );
  t.ok(c.ca, 'usable as a trust anchor');
  t.ok(c.checkHost('hc.example'));
  t.ok(c.checkIP('10.1.2.3'));
  const other = generateSelfSigned(['x']);
  t.throws(() => checkPair(g.certPem, other.keyPem), CertificateError);
  t.throws(() => checkPair('nonsense', g.keyPem), CertificateError);
});

t.test('loadOrCreateCertificate: generates once, then reuses; admin pair is checked', async (t) => {
  const dir = await tempDir(t, 'peerdist-cert-');
  const a = await loadOrCreateCertificate(dir, { names: ['a'] });
  t.ok(a.generated);
  const b = await loadOrCreateCertificate(dir, { names: ['b'] });
  t.notOk(b.generated);
  t.equal(b.fingerprint256, a.fingerprint256);
  const g = generateSelfSigned(['admin.example']);
  await writeFile(join(dir, 'c.pem'), g.certPem);
  await writeFile(join(dir, 'k.pem'), g.keyPem);
  const c = await loadOrCreateCertificate(dir, {
    names: [],
    certFile: join(dir, 'c.pem'),
    keyFile: join(dir, 'k.pem'),
  });
  t.equal(c.fingerprint256, new X509Certificate(g.certPem).fingerprint256);
  await t.rejects(loadOrCreateCertificate(dir, { names: [], certFile: join(dir, 'c.pem') }), CertificateError);
  await writeFile(join(dir, 'k2.pem'), generateSelfSigned(['z']).keyPem);
  await t.rejects(
    loadOrCreateCertificate(dir, { names: [], certFile: join(dir, 'c.pem'), keyFile: join(dir, 'k2.pem') }),
    CertificateError,
  );
});

t.test('RateLimiter: bytes are booked on a timeline', async (t) => {
  let now = 1000;
  const r = new RateLimiter(1000, () => now, 0); // 1000 B/s, no burst
  t.equal(r.book(500), 0);
  t.equal(r.book(500), 500);
  t.equal(r.book(1000), 1000);
  now = 5000;
  t.equal(r.book(100), 0, 'idle time is not saved up beyond the burst');
  t.equal(new RateLimiter(0, () => now).book(1e9), 0, 'rate 0 = no cap');
});

t.test('Puller: concurrency caps overall and per client, dedup, bounded queue', async (t) => {
  const metas = new Map<string, SegmentMeta>();
  const store: PullStore = {
    addSegment: async (m) => {
      metas.set(m.segmentId.toString('hex'), m);
    },
    getSegment: (id) => metas.get(id.toString('hex')),
    hasBlock: () => false,
    putBlock: async () => undefined,
    pin: () => () => undefined,
  };
  let active = 0,
    peak = 0;
  const perPeer = new Map<string, number>();
  let peakPerPeer = 0;
  const gates: (() => void)[] = [];
  const client: PullClient = {
    getBlock: async () => {
      throw new Error('unused');
    },
    getRawBlock: async (req) => {
      active++;
      peak = Math.max(peak, active);
      perPeer.set(req.peer, (perPeer.get(req.peer) ?? 0) + 1);
      peakPerPeer = Math.max(peakPerPeer, perPeer.get(req.peer)!);
      await new Promise<void>((r) => gates.push(r));
      active--;
      perPeer.set(req.peer, perPeer.get(req.peer)! - 1);
      return { cryptoAlgo: 0, block: Buffer.alloc(100), iv: Buffer.alloc(0) };
    },
  };
  const p = new Puller({ store, client, concurrency: 3, perPeer: 2, maxQueued: 5, rateBytesPerSec: 0 });
  const segs = Array.from({ length: 9 }, () => randomV2(100));
  const results = segs.map((s, k) =>
    p.offer({ kind: 'v2', peer: `10.0.0.${k % 2}:80`, segmentId: s.meta.segmentId, segmentSize: 100 }),
  );
  t.same(
    results,
    ['queued', 'queued', 'queued', 'queued', 'queued', 'queued', 'queued', 'queued', 'refused'],
    'queue holds 5 waiting beyond the 3 running',
  );
  t.equal(
    p.offer({ kind: 'v2', peer: '10.0.0.9:80', segmentId: segs[0]!.meta.segmentId, segmentSize: 100 }),
    'pending',
    'already pending',
  );
  t.equal(p.snapshot().refused, 1);
  while (p.snapshot().inProgress + p.snapshot().waiting > 0) {
    await new Promise((r) => setImmediate(r));
    gates.shift()?.();
  }
  await p.idle();
  t.equal(peak, 3);
  t.equal(peakPerPeer, 2);
  t.equal(p.snapshot().segmentsPulled, 8);
  await p.close();
});
