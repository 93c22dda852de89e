/**
 * `--hosted-cache-ca` adds a CA for the v1.0 (HTTPS) hosted cache; it does not replace the system
 * trust store (protocol/admin-api.md, `hostedCacheCa`). Before the fix the offerer's TLS options
 * carried only the named PEM, so a hosted cache whose certificate chains to a system CA was refused
 * as soon as an extra CA was configured.
 */
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { generateSelfSigned } from '../../src/hostedcache/cert.js';
import { Offerer } from '../../src/hostedcache/offerer.js';
import { SYSTEM_CA_BUNDLES } from '../../src/util/origin-trust.js';
import { nullLogger } from '../../src/util/log.js';
import { v1Segment } from '../cache/make.js';

t.test('v1 offers reach a hosted cache trusted by the system store while an extra CA is configured', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pd-hc-trust-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The hosted cache's certificate stands in for one issued by a CA in the system bundle: this
  // process reads its "system bundle" from a file we put first in the search list.
  const system = generateSelfSigned(['127.0.0.1']);
  const extra = generateSelfSigned(['127.0.0.1']);
  const bundle = join(dir, 'system-bundle.pem');
  await writeFile(bundle, system.certPem);
  SYSTEM_CA_BUNDLES.unshift(bundle);

  const bodies: number[] = [];
  const server = createServer({ cert: system.certPem, key: system.keyPem }, (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
    });
    req.on('end', () => {
      bodies.push(n);
      res.statusCode = 500; // any answer: the test is about the TLS handshake
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;

  const offerer = new Offerer({
    target: { host: '127.0.0.1', port, version: 1, ca: extra.certPem },
    localPort: 1,
    batchDelayMs: 0,
    logger: nullLogger,
  });
  t.teardown(() => offerer.close());
  offerer.offer(v1Segment(Buffer.alloc(1000, 7)).meta);
  await offerer.flush();
  t.equal(bodies.length, 1, 'the INITIAL_OFFER got through TLS to the hosted cache');
  t.ok(bodies[0]! > 0, 'with its body');
});
