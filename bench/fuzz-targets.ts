/**
 * Fuzz targets shared by the bench run (bench/fuzz.ts, 100,000+ cases each) and the bounded CI
 * run (test/hostile/fuzz.test.ts). Each target seeds itself from valid messages (the vectors in
 * fixtures/ and encoder output), generates mutated inputs from a seeded Rng, and runs one input
 * through the code under test. An input is "accepted" (parsed, and the result re-checked) or
 * "rejected" with the module's typed ParseError subclass; anything else throws FuzzFailure or the
 * unexpected error itself, and the runner keeps the input as a crasher.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { encodeContentInfo, parseContentInfo, ContentInfoError } from '../src/contentinfo/codec.js';
import { segmentIdOf } from '../src/contentinfo/keys.js';
import { blockRange, digest, V1_BLOCK_SIZE, type ContentInfo, type SegmentInfo } from '../src/contentinfo/types.js';
import {
  decodeMessage, decodeRequest, decodeResponse, encodeMessage, encodeResponse, PCCRR_PATH,
  type Message, type Decoded,
} from '../src/retrieval/codec.js';
import { RetrievalParseError } from '../src/retrieval/errors.js';
import { decryptBlock, encryptBlock } from '../src/retrieval/crypto.js';
import { respond, type BlockSource } from '../src/retrieval/responder.js';
import { createRetrievalServer, type RetrievalServer } from '../src/retrieval/server.js';
import { PeerError, RetrievalClient } from '../src/retrieval/client.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodeProbe, encodeProbeMatches, parseDiscoveryMessage } from '../src/discovery/codec.js';
import { DiscoveryParseError } from '../src/discovery/errors.js';
import { DampingTable } from '../src/discovery/damping.js';
import { Responder, MAX_REPLY_BYTES } from '../src/discovery/responder.js';
import { Prober, type SegmentWatch } from '../src/discovery/prober.js';
import { parseXAddr } from '../src/discovery/values.js';
import { newStats, type Runtime, type Peer } from '../src/discovery/runtime.js';
import { localAddressFilter } from '../src/discovery/subnet.js';
import { nullLogger } from '../src/util/log.js';
import { mutate, mutateText, Rng } from '../src/util/fuzz.js';

export type Outcome = 'accepted' | 'rejected';

/** A property of the code under test was violated by one input. */
export class FuzzFailure extends Error {}

export interface FuzzTarget {
  name: string;
  /** Start servers etc. (called once before the first case). */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** Builds the input of one case. */
  generate(rng: Rng): Buffer;
  /** Runs one input; resolves with its outcome, throws on a failure. */
  run(input: Buffer): Outcome | Promise<Outcome>;
}

const fixturesDir = (...p: string[]) => join(process.cwd(), 'fixtures', ...p);

/** Every hex string value in a JSON document (recursively). */
function hexValues(v: unknown, out: Buffer[] = []): Buffer[] {
  if (typeof v === 'string' && v.length >= 8 && v.length % 2 === 0 && /^[0-9a-f]+$/i.test(v)) out.push(Buffer.from(v, 'hex'));
  else if (Array.isArray(v)) for (const x of v) hexValues(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) hexValues(x, out);
  return out;
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

/** Rejections must be the module's own typed error; anything else is a finding. */
function typed(err: unknown, cls: abstract new (...a: never[]) => Error): Outcome {
  if (err instanceof cls) return 'rejected';
  throw err;
}

/** Pick a seed, then mostly mutate it; sometimes emit raw random bytes behind a valid prefix. */
function fromSeeds(rng: Rng, seeds: Buffer[], prefix = 0): Buffer {
  const seed = rng.pick(seeds);
  if (rng.bool(0.05)) return Buffer.concat([seed.subarray(0, prefix), rng.bytes(rng.int(seed.length + 32))]);
  return mutate(rng, seed, { corpus: seeds, maxLength: Math.max(4096, seed.length * 2) });
}

// ---------------------------------------------------------------------------------------------
// Content information (MS-PCCRC)

/** A well-formed content information model of `length` bytes with seeded hashes (no I/O). */
export function syntheticContentInfo(rng: Rng, version: 1 | 2, length: number): ContentInfo {
  const segments: SegmentInfo[] = [];
  const segSize = version === 1 ? 32 * 1024 * 1024 : 128 * 1024;
  for (let offset = 0, index = 0; offset < length; offset += segSize, index++) {
    const segLen = Math.min(segSize, length - offset);
    const blockHashes = version === 1 ? Array.from({ length: Math.ceil(segLen / V1_BLOCK_SIZE) }, () => rng.bytes(32)) : [];
    const hod = version === 1 ? digest('SHA-256', Buffer.concat(blockHashes)) : rng.bytes(32);
    const kp = rng.bytes(32);
    segments.push({ index, offset, length: segLen, blockSize: version === 1 ? V1_BLOCK_SIZE : segLen, hod, kp, segmentId: segmentIdOf(version, kp, hod), blockHashes });
  }
  return { version, hashAlgorithm: version === 1 ? 'SHA-256' : 'SHA-512/256t', rangeStart: 0, rangeEnd: length, contentLength: length, segments };
}

function contentInfoSeeds(): Buffer[] {
  const seeds = hexValues(readJson(fixturesDir('contentinfo', 'vectors.json'))).filter((b) => b.length >= 18 && (b[1] === 1 || b[1] === 2) && b[0] <= 1);
  const rng = new Rng(0xc1);
  for (const len of [1, 65_536, 100_000, 1_000_000]) seeds.push(encodeContentInfo(syntheticContentInfo(rng, 1, len)));
  for (const len of [1, 131_072, 400_000]) seeds.push(encodeContentInfo(syntheticContentInfo(rng, 2, len)));
  return seeds;
}

export function contentInfoTarget(): FuzzTarget {
  const seeds = contentInfoSeeds();
  return {
    name: 'contentinfo',
    generate: (rng) => fromSeeds(rng, seeds, 2),
    run(input) {
      let ci: ContentInfo;
      try { ci = parseContentInfo(input); } catch (e) { return typed(e, ContentInfoError); }
      // Accepted input must describe itself consistently and survive a re-encode unchanged.
      const again = parseContentInfo(encodeContentInfo(ci));
      if (!isDeepStrictEqual(again, ci)) throw new FuzzFailure('re-encoded content information parses differently');
      if (!(ci.rangeStart <= ci.rangeEnd && ci.rangeEnd <= ci.contentLength)) throw new FuzzFailure('range outside the content');
      return 'accepted';
    },
  };
}

// ---------------------------------------------------------------------------------------------
// MS-PCCRR codec

function pccrrSeeds(): Buffer[] {
  const seeds: Buffer[] = [];
  for (const b of hexValues(readJson(fixturesDir('retrieval', 'vectors.json')))) {
    if (b.length < 16) continue;
    // vectors of responses carry the 4-byte transport header
    seeds.push(b.length >= 20 && b.readUInt32BE(0) === b.length - 4 ? b.subarray(4) : b);
  }
  const rng = new Rng(0x77);
  const id = rng.bytes(32);
  const msgs: Message[] = [
    { type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } },
    { type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } },
    { type: 'GETBLKLIST', segmentId: id, ranges: [[0, 3], [7, 1]] },
    { type: 'BLKLIST', segmentId: rng.bytes(48), ranges: [[0, 512]], nextBlockIndex: 0 },
    { type: 'GETBLKS', segmentId: id, ranges: [[5, 1]], vrfData: rng.bytes(5) },
    { type: 'BLK', cryptoAlgo: 1, segmentId: id, blockIndex: 2, nextBlockIndex: 3, block: rng.bytes(64), vrfBlock: rng.bytes(3), iv: rng.bytes(16) },
    { type: 'BLK', segmentId: rng.bytes(64), blockIndex: 9, nextBlockIndex: 0, block: Buffer.alloc(0), iv: Buffer.alloc(0) },
    { type: 'GETSEGLIST', requestId: rng.bytes(16), segmentIds: [id, rng.bytes(32), rng.bytes(48)], extensibleBlob: rng.bytes(7) },
    { type: 'SEGLIST', requestId: rng.bytes(16), ranges: [[0, 2], [5, 1]] },
  ];
  for (const m of msgs) seeds.push(encodeMessage(m));
  return seeds;
}

/** Structural equality of two decoded messages, ignoring the size (padding may differ). */
function sameMessage(a: Decoded<Message>, b: Decoded<Message>): boolean {
  return isDeepStrictEqual({ ...a, size: 0 }, { ...b, size: 0 });
}

export function pccrrCodecTarget(): FuzzTarget {
  const seeds = pccrrSeeds();
  return {
    name: 'pccrr-codec',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run(input) {
      let accepted = false;
      try {
        const m = decodeMessage(input);
        if (!sameMessage(decodeMessage(encodeMessage(m)), m)) throw new FuzzFailure(`${m.type} re-encodes differently`);
        accepted = true;
      } catch (e) { typed(e, RetrievalParseError); }
      // The request/response entry points must agree with decodeMessage and stay typed.
      try { decodeRequest(input); } catch (e) { typed(e, RetrievalParseError); }
      const framed = Buffer.alloc(4 + input.length);
      framed.writeUInt32BE(input.length);
      input.copy(framed, 4);
      try { decodeResponse(framed); } catch (e) { typed(e, RetrievalParseError); }
      return accepted ? 'accepted' : 'rejected';
    },
  };
}

// ---------------------------------------------------------------------------------------------
// MS-PCCRR responder (respond()) and HTTP server

/** An in-memory BlockSource holding one v1 segment (3 blocks of 5, blocks 0, 1 and 4 present). */
export function memorySource(rng: Rng): { source: BlockSource; segmentId: Buffer; kp: Buffer; blocks: Map<number, Buffer> } {
  const length = 4 * V1_BLOCK_SIZE + 1000;
  const kp = rng.bytes(32);
  const segmentId = segmentIdOf(1, kp, rng.bytes(32));
  const seg = { version: 1 as const, kp, length, blockSize: V1_BLOCK_SIZE };
  const blocks = new Map<number, Buffer>();
  for (const i of [0, 1, 4]) {
    const [s, e] = blockRange(1, seg, i);
    blocks.set(i, rng.bytes(e - s));
  }
  const mine = (id: Buffer) => id.equals(segmentId);
  const source: BlockSource = {
    getSegment: (id) => (mine(id) ? seg : undefined),
    hasBlock: (id, i) => mine(id) && blocks.has(i),
    presentBlocks: (id) => (mine(id) ? [...blocks.keys()].sort((a, b) => a - b) : []),
    readBlock: async (id, i) => (mine(id) ? blocks.get(i) : undefined),
  };
  return { source, segmentId, kp, blocks };
}

function responderSeeds(segmentId: Buffer): Buffer[] {
  const base = pccrrSeeds();
  const rng = new Rng(0x99);
  const reqs: Message[] = [
    { type: 'GETBLKS', segmentId, ranges: [[0, 1]] },
    { type: 'GETBLKS', segmentId, ranges: [[4, 1]] },
    { type: 'GETBLKS', segmentId, ranges: [[2, 1]] },
    { type: 'GETBLKS', segmentId, ranges: [[1, 2], [4, 1]], version: { major: 2, minor: 0 } },
    { type: 'GETBLKLIST', segmentId, ranges: [[0, 5]] },
    { type: 'GETBLKLIST', segmentId, ranges: [[3, 2], [0, 1]], cryptoAlgo: 3 },
    { type: 'GETSEGLIST', requestId: rng.bytes(16), segmentIds: [rng.bytes(32), segmentId] },
    { type: 'NEGO_REQ', min: { major: 1, minor: 0 }, max: { major: 3, minor: 0 } },
  ];
  return [...base, ...reqs.map(encodeMessage)];
}

/** Checks a responder reply against the request: typed rejection, or a decodable, encrypted answer. */
async function checkRespond(input: Buffer, mem: ReturnType<typeof memorySource>, busy: boolean): Promise<Outcome> {
  const r = await respond(input, { source: mem.source, cryptoAlgo: 3, busy });
  if (!r.ok) {
    if (!(r.error instanceof RetrievalParseError)) throw new FuzzFailure('rejection is not a RetrievalParseError');
    return 'rejected';
  }
  const m = decodeResponse(r.body); // must be a valid response
  if (m.type !== r.type) throw new FuzzFailure(`reply type ${m.type} != ${r.type}`);
  if (m.type === 'BLK' && m.block.length > 0) {
    if (m.cryptoAlgo === 0) throw new FuzzFailure('plaintext block served');
    const plain = mem.blocks.get(m.blockIndex);
    if (!plain || !m.segmentId.equals(mem.segmentId)) throw new FuzzFailure('served a block the source does not hold');
    if (m.block.includes(plain.subarray(0, 64))) throw new FuzzFailure('plaintext visible in the served block');
    if (!decryptBlock(m.cryptoAlgo, mem.kp, m.block, m.iv, plain.length).equals(plain)) throw new FuzzFailure('served block does not decrypt to the held block');
  }
  return 'accepted';
}

export function pccrrResponderTarget(): FuzzTarget {
  const mem = memorySource(new Rng(0x5e));
  const seeds = responderSeeds(mem.segmentId);
  let n = 0;
  return {
    name: 'pccrr-responder',
    generate: (rng) => fromSeeds(rng, seeds, 16),
    run: (input) => checkRespond(input, mem, ++n % 16 === 0),
  };
}

/** Minimal HTTP/1.1 response reader for raw-socket cases: status and body. */
function readHttpResponse(sock: Socket, timeoutMs: number): Promise<{ status: number; body: Buffer } | 'closed'> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new FuzzFailure(`no response within ${timeoutMs} ms`)); }, timeoutMs);
    const done = (v: { status: number; body: Buffer } | 'closed') => { clearTimeout(timer); sock.removeAllListeners('data'); resolve(v); };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length >= end + 4 + len) done({ status, body: buf.subarray(end + 4, end + 4 + len) });
    });
    sock.on('close', () => done('closed'));
    sock.on('error', () => undefined);
  });
}

const HTTP_METHODS = ['POST', 'GET', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'TRACE', 'post', 'P0ST'];
const HTTP_PATHS = [
  PCCRR_PATH, PCCRR_PATH.toLowerCase(), PCCRR_PATH.slice(0, -1), `${PCCRR_PATH}?x=1`, `${PCCRR_PATH}../../etc/passwd`, '/',
  '/../../../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/cache/blocks', '/index', '//etc/passwd', '/116B50EB-ECE2-41ac-8429-9F9E963361B7/..%2f..%2f',
  'http://127.0.0.1/116B50EB-ECE2-41ac-8429-9F9E963361B7/', '*',
];

/** The retrieval server over real HTTP: mutated bodies, methods, paths and framing on raw sockets. */
export function pccrrServerTarget(): FuzzTarget & { stats(): ReturnType<RetrievalServer['stats']> | undefined } {
  const mem = memorySource(new Rng(0x5f));
  const seeds = responderSeeds(mem.segmentId);
  let server: RetrievalServer | undefined;
  let port = 0;
  return {
    name: 'pccrr-server',
    stats: () => server?.stats(),
    async setup() {
      server = createRetrievalServer({ source: mem.source, host: '127.0.0.1', port: 0, uploadTimeoutMs: 2000, logger: nullLogger });
      port = (await server.listen()).port;
    },
    async teardown() { await server?.close(); },
    generate(rng) {
      const body = fromSeeds(rng, seeds, 16);
      const wellFormed = rng.bool(0.6);
      const method = wellFormed ? 'POST' : rng.pick(HTTP_METHODS);
      const path = wellFormed ? PCCRR_PATH : rng.pick(HTTP_PATHS);
      const len = wellFormed || rng.bool(0.7) ? String(body.length) : rng.pick(['', '-1', '99999999', '0x10', String(body.length + 3), '1e3']);
      const head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${len === '' ? '' : `Content-Length: ${len}\r\n`}\r\n`;
      const raw = Buffer.concat([Buffer.from(head, 'latin1'), body]);
      // Occasionally corrupt the framing itself.
      return wellFormed || rng.bool(0.7) ? raw : mutate(rng, raw, { rounds: 1 });
    },
    async run(input) {
      const sock = connect({ host: '127.0.0.1', port });
      await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      const reply = readHttpResponse(sock, 5000);
      sock.end(input);
      const r = await reply;
      sock.destroy();
      if (r === 'closed') return 'rejected'; // HTTP-level refusal (the parser closed the connection)
      if (r.status >= 500) throw new FuzzFailure(`HTTP ${r.status}`);
      if (r.status !== 200) {
        if (r.body.length !== 0) throw new FuzzFailure(`HTTP ${r.status} with a body`);
        return 'rejected';
      }
      const head = input.subarray(0, input.indexOf('\r\n\r\n') + 4).toString('latin1');
      if (!head.startsWith(`POST ${PCCRR_PATH.split('?')[0]}`) && !/^POST \/116b50eb-ece2-41ac-8429-9f9e963361b7\/(\?|\s)/i.test(head)) {
        throw new FuzzFailure(`200 for a request that is not a POST to the PCCRR path: ${head.slice(0, 60)}`);
      }
      const m = decodeResponse(r.body);
      if (m.type === 'BLK' && m.block.length > 0 && m.cryptoAlgo === 0) throw new FuzzFailure('plaintext block over HTTP');
      return 'accepted';
    },
  };
}

/**
 * The client side: a RetrievalClient asks a peer for a block (or a block list) and the peer answers
 * with a mutated response body (sometimes another HTTP status). The client must return a block that
 * passes verification, or fail with a PeerError, never anything else and never hang.
 */
export function pccrrClientTarget(): FuzzTarget {
  const mem = memorySource(new Rng(0x61));
  const seg = mem.source.getSegment(mem.segmentId)!;
  const seeds: Buffer[] = [];
  const rng = new Rng(0x62);
  for (const index of [0, 1, 4]) {
    const plain = mem.blocks.get(index)!;
    for (const algo of [1, 2, 3] as const) {
      const { cipher, iv } = encryptBlock(algo, mem.kp, plain);
      seeds.push(encodeResponse({ type: 'BLK', cryptoAlgo: algo, segmentId: mem.segmentId, blockIndex: index, nextBlockIndex: index + 1, block: cipher, iv }));
    }
  }
  seeds.push(encodeResponse({ type: 'BLK', segmentId: mem.segmentId, blockIndex: 0, nextBlockIndex: 0, block: Buffer.alloc(0), iv: Buffer.alloc(0) }));
  seeds.push(encodeResponse({ type: 'BLKLIST', segmentId: mem.segmentId, ranges: [[0, 2], [4, 1]], nextBlockIndex: 0 }));
  seeds.push(encodeResponse({ type: 'NEGO_RESP', min: { major: 1, minor: 0 }, max: { major: 2, minor: 0 } }));
  seeds.push(encodeResponse({ type: 'SEGLIST', requestId: rng.bytes(16), ranges: [[0, 1]] }));
  let next: { status: number; body: Buffer } = { status: 200, body: Buffer.alloc(0) };
  let server: Server | undefined;
  let client: RetrievalClient | undefined;
  let peer = '';
  const sockets = new Set<import('node:net').Socket>();
  return {
    name: 'pccrr-client',
    async setup() {
      server = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(next.status, { 'Content-Length': next.body.length }).end(next.body));
      });
      server.on('connection', (c) => { sockets.add(c); c.on('close', () => sockets.delete(c)); });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
      peer = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      client = new RetrievalClient({ requestTimeoutMs: 3000, logger: nullLogger });
    },
    async teardown() {
      await client?.close();
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    },
    generate(r) {
      const status = r.bool(0.95) ? 200 : r.pick([204, 400, 404, 500, 503]);
      const k = r.int(seeds.length);
      const body = r.bool(0.05) ? Buffer.from(seeds[k]!) : mutate(r, seeds[k]!, { corpus: seeds, rounds: r.range(1, 2) });
      const out = Buffer.alloc(5 + body.length);
      out.writeUInt32BE(status);
      // Which request the client makes: mostly the one this seed answers (BLK seeds are 3 per block index).
      out[4] = r.bool(0.8) ? (k < 9 ? Math.floor(k / 3) : 7) : r.int(8);
      body.copy(out, 5);
      return out;
    },
    async run(input) {
      if (input.length < 5) return 'rejected';
      next = { status: Math.max(200, Math.min(599, input.readUInt32BE(0))), body: input.subarray(5) };
      const which = input[4]! % 8;
      try {
        if (which === 7) {
          await client!.getBlockList({ peer, segmentId: mem.segmentId, ranges: [[0, 5]] });
        } else {
          const index = [0, 1, 4][which % 3]!;
          const plain = mem.blocks.get(index)!;
          const [s, e] = blockRange(1, seg, index);
          const r = await client!.getBlock({ peer, segmentId: mem.segmentId, index, kp: mem.kp, expectedLength: e - s, verify: (b) => b.equals(plain) });
          if (!r.data.equals(plain)) throw new FuzzFailure('client returned a block that is not the held block');
        }
        return 'accepted';
      } catch (e) {
        if (e instanceof PeerError) return 'rejected';
        throw e;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// MS-PCCRD codec and responder

function discoverySeeds(): string[] {
  const dir = fixturesDir('discovery');
  const seeds = readdirSync(dir).filter((f) => f.endsWith('.xml')).map((f) => readFileSync(join(dir, f), 'utf8'));
  const rng = new Rng(0xd1);
  const ids = [rng.bytes(32), rng.bytes(32), rng.bytes(48)];
  seeds.push(encodeProbe({ version: 1, messageId: 'urn:uuid:11111111-2222-4333-8444-555555555555', segmentIds: ids }));
  seeds.push(encodeProbe({ version: 2, messageId: 'urn:uuid:11111111-2222-4333-8444-666666666666', segmentIds: ids.slice(0, 2) }));
  const base = { messageId: 'urn:uuid:a', relatesTo: 'urn:uuid:b', instanceId: 7, messageNumber: 9, endpoint: 'urn:uuid:c', xaddrs: ['127.0.0.2:7170', '[::1]:80'] };
  seeds.push(encodeProbeMatches({ ...base, version: 1, matches: [{ segmentId: ids[0]!, blockCount: 3 }, { segmentId: ids[2]!, blockCount: 512 }] }));
  seeds.push(encodeProbeMatches({ ...base, version: 2, matches: [{ segmentId: ids[1]!, partial: true, complete: true }], segmentAges: { units: 3, entries: [{ index: 0, age: 5 }] } }, ids.slice(0, 2)));
  return seeds;
}

function xmlInput(rng: Rng, seeds: string[]): Buffer {
  const seed = rng.pick(seeds);
  if (rng.bool(0.3)) return mutate(rng, Buffer.from(seed, 'utf8'), { corpus: seeds.map((s) => Buffer.from(s)), maxLength: 40_000 });
  return Buffer.from(mutateText(rng, seed, { maxLength: 40_000 }), 'utf8');
}

export function pccrdCodecTarget(): FuzzTarget {
  const seeds = discoverySeeds();
  const probed = [new Rng(1).bytes(32), new Rng(2).bytes(32)];
  return {
    name: 'pccrd-codec',
    generate: (rng) => xmlInput(rng, seeds),
    run(input) {
      try {
        parseDiscoveryMessage(input);
        // v2 ProbeMatches are also decoded against a probe's segment list.
        parseDiscoveryMessage(input, { probeSegments: () => probed });
        return 'accepted';
      } catch (e) { return typed(e, DiscoveryParseError); }
    },
  };
}

/** Runtime with a manual clock; timers run when `flush()` is called. */
function manualRuntime(): Runtime & { advance(ms: number): void; flush(): void } {
  let now = 1_000_000;
  let seq = 0;
  const timers = new Map<number, () => void>();
  return {
    now: () => now,
    random: () => 0.5,
    timers: { set: (fn) => { timers.set(++seq, fn); return seq; }, clear: (h) => { timers.delete(h as number); } },
    newMessageId: () => `urn:uuid:00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
    logger: nullLogger,
    stats: newStats(),
    advance: (ms) => { now += ms; },
    flush: () => { for (const [k, fn] of [...timers]) { timers.delete(k); fn(); } },
  };
}

export function pccrdResponderTarget(): FuzzTarget & { runtime: Runtime } {
  const seeds = discoverySeeds();
  // Hold every segment ID that appears in a seed probe, so mutated probes reach the reply path.
  const held = new Set<string>();
  for (const s of seeds) {
    try {
      const m = parseDiscoveryMessage(s);
      if (m.kind === 'Probe') for (const id of m.segmentIds) held.add(id.toString('hex'));
    } catch { /* a fixture that is not a probe */ }
  }
  const rt = manualRuntime();
  const isLocal = localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]);
  const sent: Array<{ d: Buffer; to: Peer }> = [];
  const responder = new Responder({
    lookup: (ids) => ids.map((id) => (held.has(id.toString('hex')) ? { blockCount: 4, complete: true, ageMs: 1000 } : undefined)),
    xaddrs: () => ['127.0.0.9:7170'],
    endpoint: 'urn:uuid:fuzz',
    instanceId: 1,
    nextMessageNumber: (() => { let n = 0; return () => ++n; })(),
    isLocal,
    isOwnProbe: () => false,
    damping: new DampingTable(),
    send: (d, to) => sent.push({ d, to }),
  }, rt);
  const sources = ['127.0.0.1', '10.1.2.3', '10.1.200.7', '10.2.0.1', '192.168.1.5', '::1', 'fe80::1', '::ffff:10.1.0.9'];
  let n = 0;
  return {
    name: 'pccrd-responder',
    runtime: rt,
    generate: (rng) => xmlInput(rng, seeds),
    run(input) {
      const from = { address: sources[n++ % sources.length]!, port: 3702 };
      rt.advance(50); // keep under the per-source limit so most datagrams reach the parser
      const before = rt.stats.dropped.malformed ?? 0;
      responder.handle(input, from);
      rt.flush();
      for (const { d, to } of sent.splice(0)) {
        if (!isLocal(to.address)) throw new FuzzFailure(`ProbeMatch sent to non-local ${to.address}`);
        if (d.length > MAX_REPLY_BYTES) throw new FuzzFailure(`ProbeMatch of ${d.length} bytes`);
        const m = parseDiscoveryMessage(d);
        if (m.kind !== 'ProbeMatches') throw new FuzzFailure('reply is not a ProbeMatches');
      }
      return (rt.stats.dropped.malformed ?? 0) > before ? 'rejected' : 'accepted';
    },
  };
}

/**
 * The probing side: ProbeMatches from the network (answers to our own probes, mutated) into the
 * Prober. It must not throw, and may only record peers for segments it probed, at local host:port
 * addresses.
 */
export function pccrdProberTarget(): FuzzTarget & { runtime: Runtime } {
  const rt = manualRuntime();
  const isLocal = localAddressFilter([{ address: '10.1.0.1', netmask: '255.255.0.0' }]);
  const probes: Buffer[] = [];
  const prober = new Prober({ send: (d) => probes.push(d), isLocal, ownEndpoint: 'urn:uuid:me', damping: new DampingTable() }, rt);
  const rng = new Rng(0xab);
  const ids = { 1: [rng.bytes(32), rng.bytes(32)], 2: [rng.bytes(32), rng.bytes(32), rng.bytes(32)] };
  const watches: SegmentWatch[] = [prober.watch(ids[1], 1), prober.watch(ids[2], 2)];
  rt.flush();
  const watched = new Set([...ids[1], ...ids[2]].map((b) => b.toString('hex')));
  const seeds: string[] = [];
  for (const p of probes) {
    const m = parseDiscoveryMessage(p);
    if (m.kind !== 'Probe') continue;
    const base = { messageId: `urn:uuid:reply-${seeds.length}`, relatesTo: m.messageId, instanceId: 3, messageNumber: 4, endpoint: 'urn:uuid:peer', xaddrs: ['127.0.0.5:7170', '10.1.3.4:80', '[::1]:7170'] };
    seeds.push(m.version === 1
      ? encodeProbeMatches({ ...base, version: 1, matches: m.segmentIds.map((segmentId, k) => ({ segmentId, blockCount: k + 1 })) })
      : encodeProbeMatches({ ...base, version: 2, matches: m.segmentIds.map((segmentId, k) => ({ segmentId, partial: true, complete: k % 2 === 0 })) }, m.segmentIds));
  }
  if (seeds.length === 0) throw new Error('prober sent no probes');
  const sources = ['127.0.0.1', '10.1.2.3', '10.9.9.9', '::1'];
  let n = 0;
  return {
    name: 'pccrd-prober',
    runtime: rt,
    generate: (r) => (r.bool(0.1) ? Buffer.from(r.pick(seeds)) : xmlInput(r, seeds)),
    run(input) {
      rt.advance(20);
      const before = rt.stats.dropped.malformed ?? 0;
      prober.handle(input, { address: sources[n++ % sources.length]!, port: 3702 });
      for (const w of watches) {
        for (const hex of watched) {
          for (const p of w.peers(Buffer.from(hex, 'hex'))) {
            const a = parseXAddr(p.address);
            if (!a || !isLocal(a.host)) throw new FuzzFailure(`peer recorded at non-local address ${p.address}`);
            if (p.blockCount <= 0) throw new FuzzFailure('peer recorded with no blocks');
          }
        }
      }
      return (rt.stats.dropped.malformed ?? 0) > before ? 'rejected' : 'accepted';
    },
  };
}

/** All targets, in report order. */
export function allTargets(): FuzzTarget[] {
  return [
    contentInfoTarget(), pccrrCodecTarget(), pccrrResponderTarget(), pccrrServerTarget(), pccrrClientTarget(),
    pccrdCodecTarget(), pccrdResponderTarget(), pccrdProberTarget(),
  ];
}
