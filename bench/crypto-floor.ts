/**
 * The serving side's floor (issue 25): in ONE process, the CPU seconds per GiB of each stage a
 * peer's block costs the server that no design can avoid, for 128 KiB blocks (v2: SHA-512) and
 * 64 KiB blocks (v1: SHA-256):
 *   - read: the block from a cached file (page cache warm), three ways: readSync into a reused
 *     buffer, fs.read with callbacks (libuv's pool, 8 in flight), FileHandle.read (promises, 8 in flight);
 *   - hash: the verification on read (SHA-512 or SHA-256 of the block);
 *   - AES-256-CBC encrypt with PKCS#7 padding: one createCipheriv per block (what the server does),
 *     one cipher reused for every block (CBC chaining re-keyed by one XOR of the first 16 bytes),
 *     and AES-128-CBC per block for reference (a server may choose the algorithm; MS-PCCRR 2.2.4.1);
 *   - socket: the response (a 22-byte head, the block, a 24-byte tail) written to a loopback TCP
 *     connection whose reader is another process (its CPU is not counted);
 *   - all four together (readSync, hash, AES per block, socket): the floor of a served block.
 * CPU = user + system of this process (all threads: getrusage) over the stage, per GiB of blocks.
 * Every stage runs --rounds times, interleaved; the median and the range are printed.
 *   npm run build && node dist/bench/crypto-floor.js [--size 256] [--rounds 3] [--json]
 */
import { createCipheriv, createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { closeSync, openSync, read, readSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { encryptBlock, paddedLength } from '../src/protocol/pccrr/crypto.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const SIZE = Number(values.size) * 1024 * 1024;
const ROUNDS = Number(values.rounds);
if (!(SIZE > 0) || !(ROUNDS > 0)) throw new Error('--size and --rounds must be positive');
const GIB = SIZE / 2 ** 30;
const KEY = Buffer.alloc(32, 7);
const IVS = Buffer.alloc(16 * 4096);
for (let i = 0; i < IVS.length; i++) IVS[i] = (i * 131 + 7) & 0xff;
const ivAt = (i: number) => IVS.subarray((i % 4096) * 16, (i % 4096) * 16 + 16);

function cpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Seconds of CPU `fn` takes (all threads of this process). */
async function measure(fn: () => Promise<void> | void): Promise<number> {
  const c0 = cpu();
  await fn();
  return cpu() - c0;
}

interface Layout {
  name: string;
  block: number;
  hash: 'sha512' | 'sha256';
  file: string;
  blocks: number;
}

// ---- stages ----

function readSyncAll(l: Layout): void {
  const fd = openSync(l.file, 'r');
  const buf = Buffer.allocUnsafeSlow(paddedLength(l.block));
  try {
    for (let i = 0; i < l.blocks; i++)
      if (readSync(fd, buf, 0, l.block, i * l.block) !== l.block) throw new Error('short');
  } finally {
    closeSync(fd);
  }
}

function readCallbacks(l: Layout, inFlight = 8): Promise<void> {
  const fd = openSync(l.file, 'r');
  return new Promise<void>((resolve, reject) => {
    let next = 0;
    let done = 0;
    const one = (buf: Buffer) => {
      if (next >= l.blocks) return;
      const i = next++;
      read(fd, buf, 0, l.block, i * l.block, (err, n) => {
        if (err || n !== l.block) return reject(err ?? new Error('short'));
        if (++done === l.blocks) {
          closeSync(fd);
          return resolve();
        }
        one(buf);
      });
    };
    for (let k = 0; k < inFlight; k++) one(Buffer.allocUnsafeSlow(paddedLength(l.block)));
  });
}

async function readFileHandle(l: Layout, inFlight = 8): Promise<void> {
  const fh = await open(l.file, 'r');
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        const buf = Buffer.allocUnsafeSlow(paddedLength(l.block));
        while (next < l.blocks) {
          const i = next++;
          const { bytesRead } = await fh.read(buf, 0, l.block, i * l.block);
          if (bytesRead !== l.block) throw new Error('short');
        }
      }),
    );
  } finally {
    await fh.close();
  }
}

/** Blocks of the file held in memory for the stages that do not read (the reads are measured apart). */
function blocksOf(l: Layout): Buffer[] {
  const fd = openSync(l.file, 'r');
  const out: Buffer[] = [];
  try {
    for (let i = 0; i < l.blocks; i++) {
      const b = Buffer.allocUnsafeSlow(paddedLength(l.block));
      readSync(fd, b, 0, l.block, i * l.block);
      out.push(b);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function hashAll(l: Layout, blocks: Buffer[], want: Buffer[]): void {
  for (let i = 0; i < blocks.length; i++)
    if (!createHash(l.hash).update(blocks[i]!.subarray(0, l.block)).digest().equals(want[i]!)) throw new Error('hash');
}

/** AES-CBC per block as the server does it: padding written in place, one createCipheriv, one update(). */
function sealPerBlock(buf: Buffer, n: number, iv: Buffer, algo = 'aes-256-cbc', key = KEY): Buffer {
  const padded = paddedLength(n);
  buf.fill(padded - n, n, padded);
  const c = createCipheriv(algo, key, iv);
  c.setAutoPadding(false);
  const out = c.update(buf.subarray(0, padded));
  c.final();
  return out;
}

/**
 * One AES-256-CBC cipher for every block: CBC encrypts block j as E(P_j xor C_{j-1}); the cipher's
 * chaining value after a block is that block's last 16 ciphertext bytes, so XORing the next
 * block's first 16 plaintext bytes with (its IV xor that value) encrypts it exactly as a fresh
 * cipher with that IV would.
 */
class ReusedCbc {
  private readonly c = createCipheriv('aes-256-cbc', KEY, Buffer.alloc(16));
  private readonly chain = Buffer.alloc(16);
  constructor() {
    this.c.setAutoPadding(false);
  }
  seal(buf: Buffer, n: number, iv: Buffer): Buffer {
    const padded = paddedLength(n);
    buf.fill(padded - n, n, padded);
    for (let k = 0; k < 16; k++) buf[k]! ^= iv[k]! ^ this.chain[k]!;
    const out = this.c.update(buf.subarray(0, padded));
    out.copy(this.chain, 0, out.length - 16);
    return out;
  }
}

function encryptAll(l: Layout, blocks: Buffer[], way: 'per-block' | 'reused' | 'aes-128'): void {
  const reused = way === 'reused' ? new ReusedCbc() : undefined;
  const key128 = KEY.subarray(0, 16);
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    if (reused) reused.seal(b, l.block, ivAt(i));
    else if (way === 'aes-128') sealPerBlock(b, l.block, ivAt(i), 'aes-128-cbc', key128);
    else sealPerBlock(b, l.block, ivAt(i));
  }
}

/** A process that accepts one connection on loopback and reads everything (its CPU is its own). */
async function sink(): Promise<{ socket: Socket; stop: () => Promise<void> }> {
  const code = `const s=require('net').createServer(c=>{c.on('data',()=>{});c.on('end',()=>c.end())});s.listen(0,'127.0.0.1',()=>process.stdout.write(s.address().port+'\\n'));process.stdin.on('end',()=>process.exit(0));process.stdin.resume();`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return {
    socket,
    stop: async () => {
      // The reader answers our FIN with its own; end its process only after that, or an exit
      // racing the close resets the connection (ECONNRESET, an unhandled error, seen once).
      socket.on('error', () => {});
      await new Promise((r) => {
        socket.once('close', r);
        socket.end();
      });
      child.stdin!.end();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

const HEAD = Buffer.alloc(22 + 128, 1); // an HTTP response head and the MS-PCCRR header before the block
const TAIL = Buffer.alloc(24, 2); // IV and its length after the block

/** Writes every block as [head, block, tail], corked, 16 responses at most unacknowledged by the kernel. */
function writeAll(s: Socket, blocks: Buffer[], len: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let i = 0;
    const pump = () => {
      while (i < blocks.length) {
        s.cork();
        s.write(HEAD);
        s.write(blocks[i]!.subarray(0, paddedLength(len)));
        const ok = s.write(TAIL);
        s.uncork();
        i++;
        if (!ok) return void s.once('drain', pump);
      }
      s.write(Buffer.alloc(0), () => resolve());
    };
    pump();
  });
}

/** The whole floor for one block after another: readSync, hash, AES per block, socket write. */
function floorAll(l: Layout, want: Buffer[], s: Socket): Promise<void> {
  const fd = openSync(l.file, 'r');
  const buf = Buffer.allocUnsafeSlow(paddedLength(l.block));
  return new Promise<void>((resolve, reject) => {
    let i = 0;
    const pump = () => {
      while (i < l.blocks) {
        if (readSync(fd, buf, 0, l.block, i * l.block) !== l.block) return reject(new Error('short'));
        if (!createHash(l.hash).update(buf.subarray(0, l.block)).digest().equals(want[i]!))
          return reject(new Error('hash'));
        const cipher = sealPerBlock(buf, l.block, ivAt(i));
        s.cork();
        s.write(HEAD);
        s.write(cipher);
        const ok = s.write(TAIL);
        s.uncork();
        i++;
        if (!ok) return void s.once('drain', pump);
      }
      closeSync(fd);
      s.write(Buffer.alloc(0), () => resolve());
    };
    pump();
  });
}

// ---- run ----

const dir = mkdtempSync(join(tmpdir(), 'peerdist-bench-floor-'));
try {
  const data = Buffer.allocUnsafe(SIZE);
  let x = 0x9e3779b9;
  for (let i = 0; i < SIZE; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data.writeUInt32LE(x >>> 0, i);
  }
  const file = join(dir, 'content.bin');
  writeFileSync(file, data);
  const layouts: Layout[] = [
    { name: 'v2, 128 KiB blocks, SHA-512', block: 128 * 1024, hash: 'sha512', file, blocks: SIZE / (128 * 1024) },
    { name: 'v1, 64 KiB blocks, SHA-256', block: 64 * 1024, hash: 'sha256', file, blocks: SIZE / (64 * 1024) },
  ];
  // The reused cipher must give what a fresh cipher per block gives (checked on a few blocks).
  {
    const r = new ReusedCbc();
    for (let i = 0; i < 4; i++) {
      const plain = data.subarray(i * 1000, i * 1000 + 5000 + i);
      const buf = Buffer.alloc(paddedLength(plain.length));
      plain.copy(buf);
      const got = r.seal(buf, plain.length, ivAt(i));
      if (!got.equals(encryptBlock(3, KEY, plain, ivAt(i)).cipher)) throw new Error('reused CBC differs');
    }
  }
  const stages = [
    'read: readSync, reused buffer',
    'read: fs.read callbacks (libuv pool), 8 in flight',
    'read: FileHandle.read, 8 in flight',
    'hash: verify on read',
    'AES-256-CBC: createCipheriv per block',
    'AES-256-CBC: one cipher reused',
    'AES-128-CBC: createCipheriv per block',
    'socket: write [head, block, tail] to loopback',
    'all together: readSync + hash + AES-256 per block + socket',
  ];
  const results = new Map<string, number[]>();
  const loads: number[] = [];
  for (const l of layouts) {
    const want = blocksOf(l).map((b) => createHash(l.hash).update(b.subarray(0, l.block)).digest());
    for (let r = 0; r < ROUNDS; r++) {
      loads.push(loadavg()[0]!);
      const blocks = blocksOf(l);
      const add = (stage: string, s: number) => {
        const k = `${l.name}|${stage}`;
        results.set(k, [...(results.get(k) ?? []), s / GIB]);
      };
      add(stages[0]!, await measure(() => readSyncAll(l)));
      add(stages[1]!, await measure(() => readCallbacks(l)));
      add(stages[2]!, await measure(() => readFileHandle(l)));
      add(stages[3]!, await measure(() => hashAll(l, blocks, want)));
      add(stages[4]!, await measure(() => encryptAll(l, blocks, 'per-block')));
      add(stages[5]!, await measure(() => encryptAll(l, blocks, 'reused')));
      add(stages[6]!, await measure(() => encryptAll(l, blocks, 'aes-128')));
      const sk = await sink();
      add(stages[7]!, await measure(() => writeAll(sk.socket, blocks, l.block)));
      add(stages[8]!, await measure(() => floorAll(l, want, sk.socket)));
      await sk.stop();
    }
  }
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
  if (values.json) {
    const out: Record<string, Record<string, number[]>> = {};
    for (const [k, v] of results) {
      const [l, s] = k.split('|') as [string, string];
      const row = out[l] ?? {};
      row[s] = v.map((n) => Number(n.toFixed(3)));
      out[l] = row;
    }
    process.stdout.write(`${JSON.stringify({ sizeMiB: SIZE / 2 ** 20, rounds: ROUNDS, load: loads, perGiB: out })}\n`);
  } else {
    process.stdout.write(
      `CPU s per GiB, one process, ${SIZE / 2 ** 20} MiB per stage, median (range) of ${ROUNDS} rounds; load ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}\n`,
    );
    process.stdout.write(
      `| stage | ${layouts.map((l) => l.name).join(' | ')} |\n|---|${layouts.map(() => '---:').join('|')}|\n`,
    );
    for (const s of stages) {
      const cells = layouts.map((l) => {
        const v = results.get(`${l.name}|${s}`)!;
        return `${med(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;
      });
      process.stdout.write(`| ${s} | ${cells.join(' | ')} |\n`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
