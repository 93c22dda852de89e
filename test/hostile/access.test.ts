/**
 * Access control of a real `peerdist daemon` child process:
 * - the admin API refuses to bind a non-loopback address, is not reachable on other addresses, and
 *   refuses requests with a foreign Host header or made by web pages (metrics included);
 * - the retrieval port serves only encrypted blocks: no file bytes, path traversal, GET or other
 *   paths answer 404/405 with an empty body;
 * - asking for a segment the daemon does not hold reveals nothing: the reply is byte-identical to
 *   the reply for a random ID, apart from the echoed ID.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminHandler } from '../../src/daemon/admin.js';
import { fetchContentInfo } from '../../testkit/sim/evilpeer.js';
import { decodeResponse, encodeMessage, PCCRR_PATH, type Message } from '../../src/protocol/pccrr/codec.js';
import { decryptBlock } from '../../src/protocol/pccrr/crypto.js';
import { runCli } from '../helpers/cli.js';
import { freeUdpPort, loopbackDaemonArgs, startDaemonChild } from '../daemon/daemon-child.js';
import { publishedOrigin, rawExchange, sha, splitResponse, tmpDir } from './rig.js';

const MARKER = Buffer.from('PEERDIST-HOSTILE-MARKER-0123456789');

function adminGet(hostPort: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

t.test('admin API refuses to listen on a non-loopback address', async (t) => {
  const root = await tmpDir(t, 'admin-bind');
  for (const admin of ['0.0.0.0:0', '10.1.2.3:7171']) {
    const r = await runCli(
      [
        'daemon',
        '--state-dir',
        join(root, 's'),
        '--listen',
        '127.0.0.2:0',
        '--interface',
        '127.0.0.1',
        '--admin',
        admin,
        '--no-presence',
      ],
      { timeoutMs: 15_000 },
    );
    t.not(r.code, 0, `--admin ${admin} refused`);
    t.match(r.stderr, /loopback/i, 'the error says why');
  }
});

t.test('a running daemon: admin checks, retrieval port serves nothing but encrypted blocks', async (t) => {
  const root = await tmpDir(t, 'access');
  const data = Buffer.concat([MARKER, randomBytes(300_000)]);
  const other = randomBytes(200_000);
  const { base } = await publishedOrigin(t, root, { 'f.bin': data, 'other.bin': other });
  const d = await startDaemonChild([...(await loopbackDaemonArgs(join(root, 'd'))), '--max-content-version', '1']);
  t.teardown(() => d.stop(3000));
  const got = await runCli(['get', `${base}/f.bin`, '-o', join(root, 'out.bin'), '--daemon', d.ready.admin], {
    timeoutMs: 30_000,
  });
  t.equal(got.code, 0, got.stderr);
  t.equal(sha(await readFile(join(root, 'out.bin'))), sha(data), 'the daemon holds f.bin now');

  // Admin API and metrics.
  const admin = d.ready.admin;
  t.equal(await adminGet(admin, '/v1/status'), 200, 'local client answered');
  t.equal(await adminGet(admin, '/metrics'), 200);
  for (const path of ['/v1/status', '/metrics']) {
    t.equal(
      await adminGet(admin, path, { host: 'attacker.example' }),
      403,
      `${path}: foreign Host header (DNS rebinding) refused`,
    );
    t.equal(
      await adminGet(admin, path, { origin: 'http://attacker.example' }),
      403,
      `${path}: request made by a web page refused`,
    );
    t.equal(await adminGet(admin, path, { 'sec-fetch-site': 'cross-site' }), 403, `${path}: cross-site fetch refused`);
  }
  const adminPort = Number(admin.split(':')[1]);
  await t.rejects(
    rawExchange('127.0.0.2', adminPort, 'GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
    { code: 'ECONNREFUSED' },
    'admin is not listening on another address',
  );

  // Retrieval port: nothing but POST to the PCCRR path.
  const [rhost, rportS] = d.ready.retrieval.split(':');
  const rport = Number(rportS);
  const attempts = [
    'GET / HTTP/1.1',
    'GET /etc/passwd HTTP/1.1',
    'GET /../../../../etc/passwd HTTP/1.1',
    'GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1',
    'GET /cache/index/CURRENT HTTP/1.1',
    'GET /blocks HTTP/1.1',
    'GET /f.bin HTTP/1.1',
    `GET ${PCCRR_PATH} HTTP/1.1`,
    `HEAD ${PCCRR_PATH} HTTP/1.1`,
    `PUT ${PCCRR_PATH} HTTP/1.1`,
    `DELETE ${PCCRR_PATH} HTTP/1.1`,
    `POST ${PCCRR_PATH}../../etc/passwd HTTP/1.1`,
    `POST ${PCCRR_PATH}..%2f..%2fcache HTTP/1.1`,
    'POST / HTTP/1.1',
    'POST /cache HTTP/1.1',
    `GET ${PCCRR_PATH}?file=../../cache HTTP/1.1`,
    'OPTIONS * HTTP/1.1',
    `CONNECT 127.0.0.1:${adminPort} HTTP/1.1`,
  ];
  for (const line of attempts) {
    const raw = await rawExchange(rhost!, rport, `${line}\r\nHost: ${d.ready.retrieval}\r\nContent-Length: 0\r\n\r\n`);
    const res = splitResponse(raw);
    // 0: the connection was closed without an answer (node drops CONNECT when nobody handles it).
    t.ok(
      [400, 404, 405].includes(res.status) || (res.status === 0 && raw.length === 0),
      `${line} → ${res.status || 'closed'}`,
    );
    t.equal(res.body.length, 0, `${line}: empty body`);
    t.notOk(
      raw.includes(MARKER) || raw.includes(data.subarray(1000, 1032)) || raw.includes('root:'),
      `${line}: no file bytes`,
    );
  }

  // A held block comes only as ciphertext (that decrypts to the block).
  const ci = (await fetchContentInfo(`${base}/f.bin`, 1))!;
  const seg = ci.segments[0]!;
  const post = async (m: Message) => {
    const body = encodeMessage(m);
    const raw = await rawExchange(
      rhost!,
      rport,
      Buffer.concat([
        Buffer.from(
          `POST ${PCCRR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        ),
        body,
      ]),
    );
    return splitResponse(raw);
  };
  const held = await post({ type: 'GETBLKS', segmentId: seg.segmentId, ranges: [[0, 1]] });
  t.equal(held.status, 200);
  const blk = decodeResponse(held.body);
  t.ok(blk.type === 'BLK' && blk.block.length > 0 && blk.cryptoAlgo !== 0, 'block served encrypted');
  if (blk.type === 'BLK') {
    t.notOk(held.body.includes(MARKER) || held.body.includes(data.subarray(100, 132)), 'no plaintext on the wire');
    t.same(
      decryptBlock(blk.cryptoAlgo, seg.kp, blk.block, blk.iv, 65536),
      data.subarray(0, 65536),
      'ciphertext is the block under Kp',
    );
  }

  // Not held (a real segment of other.bin the daemon never fetched) vs a random ID: identical replies.
  const notHeld = (await fetchContentInfo(`${base}/other.bin`, 1))!.segments[0]!.segmentId;
  const random = randomBytes(32);
  const requestId = randomBytes(16);
  const kinds: Array<(id: Buffer) => Message> = [
    (id) => ({ type: 'GETBLKS', segmentId: id, ranges: [[0, 1]] }),
    (id) => ({ type: 'GETBLKS', segmentId: id, ranges: [[3, 1]] }),
    (id) => ({ type: 'GETBLKLIST', segmentId: id, ranges: [[0, 512]] }),
    (id) => ({ type: 'GETSEGLIST', requestId, segmentIds: [id] }),
  ];
  for (const make of kinds) {
    const a = await post(make(notHeld));
    const b = await post(make(random));
    const type = make(random).type;
    t.equal(a.status, b.status, `${type}: same status`);
    const { date: _da, ...ha } = a.headers;
    const { date: _db, ...hb } = b.headers;
    t.same(ha, hb, `${type}: same headers apart from Date`);
    t.same(
      a.body.toString('hex').split(notHeld.toString('hex')).join('ID'),
      b.body.toString('hex').split(random.toString('hex')).join('ID'),
      `${type}: same body apart from the echoed ID`,
    );
  }
});

t.test('admin API on a unix socket: not accessible to other users, answers its owner', async (t) => {
  const root = await tmpDir(t, 'admin-sock');
  const sock = join(root, 'admin.sock');
  const d = await startDaemonChild([
    '--state-dir',
    join(root, 'd'),
    '--listen',
    '127.0.0.2:0',
    '--interface',
    '127.0.0.1',
    '--admin-socket',
    sock,
    '--discovery-port',
    String(await freeUdpPort()),
    '--mdns-port',
    String(await freeUdpPort()),
    '--no-presence',
  ]);
  t.teardown(() => d.stop(3000));
  t.equal(d.ready.admin, sock, 'the ready line names the socket');
  const st = await lstat(sock);
  t.ok(st.isSocket(), 'a unix socket');
  t.equal(st.mode & 0o007, 0, `no access for other users (mode ${(st.mode & 0o777).toString(8)})`);
  const s = await runCli(['status', '--daemon', sock, '--json']);
  t.equal(s.code, 0, s.stderr);
  t.match(JSON.parse(s.stdout), { downloads: [] }, 'status answers over the socket');
});

t.test('admin handler: a request arriving from a non-loopback peer is refused before anything runs', async (t) => {
  let touched = 0;
  const deps = {
    jobs: new Proxy(
      {},
      {
        get: () => {
          touched++;
          return () => [];
        },
      },
    ) as never,
    status: () => {
      touched++;
      return {};
    },
    metrics: () => {
      touched++;
      return 'peerdist_x 1\n';
    },
    cache: {
      stats: () => {
        touched++;
        return {};
      },
      list: () => {
        touched++;
        return [];
      },
      verifyAll: async () => {
        touched++;
        return {};
      },
    },
  };
  const handler = createAdminHandler(deps, 'tcp');
  let fakeRemote = '10.0.0.5';
  // A real HTTP exchange on loopback; only the peer address the handler sees is replaced.
  const server = createServer((req, res) => {
    Object.defineProperty(req.socket, 'remoteAddress', { value: fakeRemote, configurable: true });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const remote of ['10.0.0.5', '192.168.1.20', '::ffff:10.0.0.5', 'fe80::1', '2001:db8::7']) {
    fakeRemote = remote;
    for (const path of [
      '/v1/status',
      '/metrics',
      '/v1/cache/verify',
      `/v1/fetch?url=${encodeURIComponent('http://127.0.0.1:1/x')}`,
    ]) {
      t.equal(await adminGet(addr, path, { connection: 'close' }), 403, `${remote} ${path}: 403`);
    }
  }
  t.equal(touched, 0, 'no handler dependency was called for a refused request');
  fakeRemote = '127.0.0.1';
  t.equal(await adminGet(addr, '/metrics', { connection: 'close' }), 200, 'the same request from loopback is answered');
  t.ok(touched > 0);
});
