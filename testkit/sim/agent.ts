#!/usr/bin/env node
/**
 * Small helper programs the simulation runs inside a host (a network namespace or a loopback
 * address). Each prints exactly one JSON line on stdout when ready or done:
 *   delay-proxy --listen H:P --target H:P --delay-ms D     {"event":"ready","address":"H:P"} then runs until SIGTERM
 *   evil-peer --url URL [--file F] --listen HOST --interface ADDR --discovery-port P [--random]
 *                                                          {"event":"ready","address"} ... on SIGTERM {"event":"stats","blocksServed",...}
 *   tarpit-peer --listen HOST --interface ADDR --discovery-port P [--sockets N] [--xaddr H:P ...]
 *                                                          {"event":"ready","xaddrs"} ... on SIGTERM {"event":"stats","connections",...}
 *   serve-file --listen H:P --dir DIR                      {"event":"ready","address":"H:P"} plain HTTP file server
 *   fetch URL [-o FILE] [--timeout-ms N] [--body] [-H K:V ...]   {"status","bytes","seconds","sha256","encoding"[,"body"]} HTTP GET (no PeerDist headers unless given)
 *   balancer --listen H:P --backend H:P ...                {"event":"ready","address":"H:P"} testkit/balancer.ts until SIGTERM
 *   relay --listen H:P --target H:P [--cut-after N]        {"event":"ready","address"}; SIGUSR2 arms it ({"event":"armed"}): N
 *                                                          bytes to clients later it cuts every connection, stops listening
 *                                                          and says {"event":"cut","bytes"} (bytes since armed)
 *   az-upload --container C --name N --file F              {"event":"done"} uploads F as blob N (AZURE_STORAGE_CONNECTION_STRING)
 *   mcast-recv --group G --port P --iface ADDR [--timeout-ms N]   {"event":"ready"} then {"from","message"} or {"timeout":true}
 *   mcast-send --group G --port P --iface ADDR --message M         {"sent":true}
 */
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { join, normalize } from 'node:path';
import http from 'node:http';
import dgram from 'node:dgram';
import { startDelayProxy } from './delayproxy.js';
import { startEvilPeer, startTarpitPeer } from './evilpeer.js';
import { splitHostPort } from './entrypoints.js';
import { startBalancer, startRelay, type Relay } from '../balancer.js';

function say(v: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(v) + '\n');
}

function onTerm(fn: () => void): void {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, fn);
}

async function delayProxy(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { listen: { type: 'string' }, target: { type: 'string' }, 'delay-ms': { type: 'string' } },
  });
  const l = splitHostPort(values.listen ?? '');
  const t = splitHostPort(values.target ?? '');
  const p = await startDelayProxy({
    listenHost: l.host,
    listenPort: l.port,
    targetHost: t.host,
    targetPort: t.port,
    delayMs: Number(values['delay-ms'] ?? 0),
  });
  say({ event: 'ready', address: `${p.host}:${p.port}` });
  onTerm(() => {
    void p.close().then(() => process.exit(0));
  });
}

async function evilPeer(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      file: { type: 'string' },
      listen: { type: 'string' },
      interface: { type: 'string' },
      'discovery-port': { type: 'string' },
      random: { type: 'boolean' },
    },
  });
  const p = await startEvilPeer({
    url: values.url ?? '',
    file: values.file,
    listenHost: values.listen ?? '127.0.0.1',
    interfaceAddress: values.interface ?? '127.0.0.1',
    discoveryPort: Number(values['discovery-port'] ?? 3702),
    corruption: values.random ? 'random' : 'flip',
  });
  say({ event: 'ready', address: p.address, segments: p.segments });
  onTerm(() => {
    const st = p.stats();
    say({ event: 'stats', blocksServed: st.blocksServed, bytesServed: st.bytesServed, requests: st.requests });
    void p.close().then(() => process.exit(0));
  });
}

async function tarpitPeer(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      listen: { type: 'string' },
      interface: { type: 'string' },
      'discovery-port': { type: 'string' },
      sockets: { type: 'string' },
      xaddr: { type: 'string', multiple: true },
    },
  });
  const p = await startTarpitPeer({
    listenHost: values.listen ?? '127.0.0.1',
    interfaceAddress: values.interface ?? '127.0.0.1',
    discoveryPort: Number(values['discovery-port'] ?? 3702),
    sockets: values.sockets ? Number(values.sockets) : undefined,
    extraXAddrs: values.xaddr ?? [],
  });
  say({ event: 'ready', xaddrs: p.xaddrs });
  onTerm(() => {
    say({ event: 'stats', ...p.stats() });
    void p.close().then(() => process.exit(0));
  });
}

async function serveFile(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { listen: { type: 'string' }, dir: { type: 'string' } } });
  const l = splitHostPort(values.listen ?? '');
  const root = values.dir ?? '.';
  const server = http.createServer((req, res) => {
    const rel = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]!)).replace(/^(\.\.[/\\])+/, '');
    const path = join(root, rel);
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': String(size), 'content-type': 'application/octet-stream' });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(l.port, l.host, resolve));
  const a = server.address();
  say({ event: 'ready', address: `${l.host}:${typeof a === 'object' && a ? a.port : 0}` });
  onTerm(() => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

async function fetchUrl(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      'timeout-ms': { type: 'string' },
      body: { type: 'boolean' },
      header: { type: 'string', short: 'H', multiple: true },
    },
  });
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const url = positionals[0];
  if (!url) throw new Error('fetch: URL required');
  const started = performance.now();
  const hash = createHash('sha256');
  let bytes = 0;
  const kept: Buffer[] = [];
  let encoding = '';
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.get(url, { timeout: Number(values['timeout-ms'] ?? 120_000), headers }, (res) => {
      encoding = res.headers['content-encoding'] ?? '';
      const out = values.output ? createWriteStream(values.output) : undefined;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        hash.update(d);
        out?.write(d);
        if (values.body && bytes <= 1 << 20) kept.push(d);
      });
      res.on('end', () => {
        if (out) out.end(() => resolve(res.statusCode ?? 0));
        else resolve(res.statusCode ?? 0);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
  say({
    status,
    bytes,
    seconds: (performance.now() - started) / 1000,
    sha256: hash.digest('hex'),
    encoding,
    ...(values.body ? { body: Buffer.concat(kept).toString('utf8') } : {}),
  });
}

async function mcastRecv(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      group: { type: 'string' },
      port: { type: 'string' },
      iface: { type: 'string' },
      'timeout-ms': { type: 'string' },
    },
  });
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve) => sock.bind(Number(values.port), resolve));
  sock.addMembership(values.group!, values.iface);
  const timer = setTimeout(
    () => {
      say({ timeout: true });
      sock.close();
    },
    Number(values['timeout-ms'] ?? 5000),
  );
  sock.once('message', (msg, rinfo) => {
    clearTimeout(timer);
    say({ from: rinfo.address, message: msg.toString('utf8') });
    sock.close();
  });
  say({ event: 'ready' });
}

async function mcastSend(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      group: { type: 'string' },
      port: { type: 'string' },
      iface: { type: 'string' },
      message: { type: 'string' },
    },
  });
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, values.iface, resolve));
  sock.setMulticastInterface(values.iface!);
  sock.setMulticastTTL(1);
  await new Promise<void>((resolve, reject) =>
    sock.send(Buffer.from(values.message ?? ''), Number(values.port), values.group!, (e) =>
      e ? reject(e) : resolve(),
    ),
  );
  sock.close();
  say({ sent: true });
}

async function balancer(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { listen: { type: 'string' }, backend: { type: 'string', multiple: true } },
  });
  const l = splitHostPort(values.listen ?? '');
  const b = await startBalancer({ backends: values.backend ?? [], host: l.host, port: l.port });
  say({ event: 'ready', address: b.address });
  onTerm(() => {
    void b.close().then(() => process.exit(0));
  });
}

async function relay(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { listen: { type: 'string' }, target: { type: 'string' }, 'cut-after': { type: 'string' } },
  });
  const l = splitHostPort(values.listen ?? '');
  const cutAfter = values['cut-after'] === undefined ? Number.POSITIVE_INFINITY : Number(values['cut-after']);
  let cutting = false;
  let base: number | undefined;
  const r: Relay = await startRelay({
    target: values.target ?? '',
    host: l.host,
    port: l.port,
    onBytes: (n) => {
      if (cutting || base === undefined || n - base < cutAfter) return;
      cutting = true;
      const bytes = n - base;
      void r.cut().then(() => say({ event: 'cut', bytes }));
    },
  });
  process.on('SIGUSR2', () => {
    base = r.bytesDown();
    say({ event: 'armed', bytes: base });
  });
  say({ event: 'ready', address: r.address });
  onTerm(() => {
    void r.cut().then(() => process.exit(0));
  });
}

async function azUpload(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { container: { type: 'string' }, name: { type: 'string' }, file: { type: 'string' } },
  });
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const cs = process.env.AZURE_STORAGE_CONNECTION_STRING;
  if (!cs) throw new Error('az-upload: AZURE_STORAGE_CONNECTION_STRING not set');
  const container = BlobServiceClient.fromConnectionString(cs).getContainerClient(values.container ?? '');
  await container.createIfNotExists();
  await container.getBlockBlobClient(values.name ?? '').uploadFile(values.file ?? '');
  say({ event: 'done' });
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  balancer,
  relay,
  'az-upload': azUpload,
  'delay-proxy': delayProxy,
  'evil-peer': evilPeer,
  'tarpit-peer': tarpitPeer,
  'serve-file': serveFile,
  fetch: fetchUrl,
  'mcast-recv': mcastRecv,
  'mcast-send': mcastSend,
};

const [cmd, ...rest] = process.argv.slice(2);
const fn = cmd ? commands[cmd] : undefined;
if (!fn) {
  process.stderr.write(`usage: agent ${Object.keys(commands).join('|')} ...\n`);
  process.exitCode = 2;
} else {
  fn(rest).catch((err: unknown) => {
    process.stderr.write(`agent ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
