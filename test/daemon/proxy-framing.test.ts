// Proxy framing for origins that send no Content-Length (issue 16.3): chunked or close-delimited
// plain bodies through the real download engine. The proxy must never send `content-length: -1`;
// the body is framed chunked, and a Range request on such a URL gets the whole body (200).
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxyServer } from '../../src/daemon/proxy.js';
import { JobBook } from '../../src/daemon/jobs.js';
import { TargetGuard } from '../../src/daemon/proxy-guard.js';
import { DownloadEngine } from '../../src/engine/engine.js';
import type { DiscoveryLike, RetrievalLike, StoreLike } from '../../src/engine/types.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const DATA = randomBytes(300_000);

/** One raw HTTP/1.1 exchange through the proxy; returns the head lines and the raw body bytes. */
function rawGet(
  port: number,
  url: string,
  extra = '',
): Promise<{ status: number; headers: Map<string, string>; raw: Buffer }> {
  return new Promise((resolveP, reject) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, split).toString('latin1').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      resolveP({ status: Number(head[0]!.split(' ')[1]), headers, raw: all.subarray(split + 4) });
    });
    s.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\n${extra}Connection: close\r\n\r\n`);
  });
}

/** Runs curl without blocking this process (the proxy under test runs here). */
function curl(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolveP) => {
    const c = spawn('curl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.once('close', (status) => {
      clearTimeout(timer);
      resolveP({ status, stderr });
    });
  });
}

/** Decodes a chunked body strictly; throws on anything malformed or a missing last chunk. */
function dechunk(raw: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', pos);
    if (eol < 0) throw new Error('chunk size line missing (truncated)');
    const size = parseInt(raw.subarray(pos, eol).toString('latin1').split(';')[0]!, 16);
    if (!Number.isInteger(size) || size < 0) throw new Error('bad chunk size');
    pos = eol + 2;
    if (size === 0) {
      if (raw.indexOf('\r\n', pos) < 0) throw new Error('last chunk not terminated');
      return Buffer.concat(out);
    }
    if (pos + size + 2 > raw.length) throw new Error('chunk truncated');
    out.push(raw.subarray(pos, pos + size));
    pos += size + 2;
  }
}

t.test('bodies of unknown length are framed chunked; ranges on them get the whole body', async (t) => {
  // /chunked: Transfer-Encoding: chunked (node's default without Content-Length).
  const origin = createServer((req, res) => {
    if (req.url !== '/chunked.bin') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-test' });
    let off = 0;
    const next = () => {
      if (off >= DATA.length) {
        res.end();
        return;
      }
      res.write(DATA.subarray(off, off + 50_000));
      off += 50_000;
      setImmediate(next);
    };
    next();
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  // /close.bin: neither Content-Length nor chunked; the body ends when the connection closes.
  const closeOrigin = createNetServer((s) => {
    s.once('data', () => {
      s.end(
        Buffer.concat([
          Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/x-test\r\nConnection: close\r\n\r\n'),
          DATA,
        ]),
      );
    });
    s.on('error', () => {
      /* client went away */
    });
  });
  await new Promise<void>((r) => closeOrigin.listen(0, '127.0.0.1', r));
  const tmp = await mkdtemp(join(tmpdir(), 'pd-proxy-framing-'));
  const none = {} as unknown;
  const engine = new DownloadEngine({
    store: none as StoreLike,
    discovery: none as DiscoveryLike,
    retrieval: none as RetrievalLike,
    tmpDir: tmp,
  });
  // The origins run on loopback, which the proxy refuses (issue 27.2): this test lets their ports through.
  const guard = new TargetGuard({
    exempt: [origin, closeOrigin].map((s) => `127.0.0.1:${(s.address() as { port: number }).port}`),
  });
  const proxy = await startProxyServer({ host: '127.0.0.1', port: 0 }, { jobs: new JobBook(engine), guard });
  t.teardown(async () => {
    await proxy.close();
    await engine.close();
    origin.closeAllConnections();
    await new Promise((r) => origin.close(r));
    await new Promise((r) => closeOrigin.close(r));
    await rm(tmp, { recursive: true, force: true });
  });
  const port = Number(proxy.address.split(':')[1]);
  const urls = [
    `http://127.0.0.1:${(origin.address() as AddressInfo).port}/chunked.bin`,
    `http://127.0.0.1:${(closeOrigin.address() as AddressInfo).port}/close.bin`,
  ];
  for (const url of urls) {
    const whole = await rawGet(port, url);
    t.equal(whole.status, 200, url);
    t.notOk(whole.headers.has('content-length'), `${url}: no Content-Length (was -1)`);
    t.equal(whole.headers.get('transfer-encoding'), 'chunked');
    t.equal(sha(dechunk(whole.raw)), sha(DATA), `${url}: chunked body decodes to the content`);

    const ranged = await rawGet(port, url, 'Range: bytes=1000-1999\r\n');
    t.equal(ranged.status, 200, `${url}: a range on an unknown length gets the whole body (was 416)`);
    t.notOk(ranged.headers.has('content-length'));
    t.equal(sha(dechunk(ranged.raw)), sha(DATA));

    if (spawnSync('curl', ['--version']).status === 0) {
      const out = join(tmp, 'curl.out');
      const c = await curl(['-sS', '--fail', '-x', `http://127.0.0.1:${port}`, '-o', out, url]);
      t.equal(c.status, 0, `curl: ${c.stderr}`);
      t.equal(sha(await readFile(out)), sha(DATA), `${url}: curl gets the exact content`);
      const cr = await curl(['-sS', '--fail', '-r', '1000-1999', '-x', `http://127.0.0.1:${port}`, '-o', out, url]);
      t.equal(cr.status, 0, `curl -r: ${cr.stderr}`);
      t.equal(sha(await readFile(out)), sha(DATA), `${url}: curl -r gets the whole body`);
    } else t.comment('curl not installed: curl checks not run');
  }
});
