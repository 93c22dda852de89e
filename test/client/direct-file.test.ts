/**
 * StagedFileWriter (src/client/direct-file.ts): `get`'s file writes around the page cache. The
 * file holds exactly the bytes written, in every split of the writes, whether the direct writes
 * work, are refused at open, or fail at the first or a later write; direct writes are aligned
 * (file offset, length) and the unaligned tail goes through the ordinary descriptor.
 */
import t, { type Test } from 'tap';
import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { DIRECT_ALIGN, type DirectFs, READ_ROOM, StagedFileWriter, VISIBLE_MS } from '../../src/client/direct-file.js';
import { rng } from '../helpers/rng.js';

const STAGE = 4 * DIRECT_ALIGN;
/** A clock that never moves: no time-based flush, whatever the machine's load (write counts are exact). */
const frozen = () => 0;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Pseudo-random bytes (seeded: a failure is reproducible). */
function data(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

interface Call {
  fd: 'direct' | 'plain';
  position: number;
  length: number;
}

/**
 * A file system whose "direct" descriptor is an ordinary one on the same file that refuses what
 * O_DIRECT refuses (offset or length not a multiple of DIRECT_ALIGN) with EINVAL, and fails the
 * direct writes listed in `failDirectWrites` (1-based) with EINVAL; it records every write.
 */
function fakeFs(path: string, opts: { refuseOpen?: boolean; failDirectWrites?: number[] } = {}) {
  const calls: Call[] = [];
  let directFd = -1;
  let directWrites = 0;
  const einval = () => Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
  const fs: DirectFs = {
    openSync: (_p, flags) => {
      if (opts.refuseOpen) throw einval();
      if ((flags & constants.O_DIRECT) === 0) throw new Error('expected O_DIRECT');
      directFd = openSync(path, 'r+');
      return directFd;
    },
    writeSync: (fd, buf, offset, length, position) => {
      const direct = fd === directFd;
      if (direct) {
        directWrites++;
        if (opts.failDirectWrites?.includes(directWrites)) throw einval();
        if (position % DIRECT_ALIGN !== 0 || length % DIRECT_ALIGN !== 0) throw einval();
      }
      calls.push({ fd: direct ? 'direct' : 'plain', position, length });
      return writeSync(fd, buf, offset, length, position);
    },
    closeSync: (fd) => closeSync(fd),
  };
  return { fs, calls };
}

async function withFile(t: Test, fn: (path: string, fd: number) => void): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pd-direct-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'f.part');
  const fd = openSync(path, 'wx');
  try {
    fn(path, fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `content` in pieces of the given sizes (cycled); returns what finish() reported. */
function writeInPieces(w: StagedFileWriter, content: Buffer, pieces: number[]): number {
  let at = 0;
  for (let k = 0; at < content.length; k++) {
    const n = Math.min(pieces[k % pieces.length]!, content.length - at);
    // Each piece from a buffer the caller reuses: the writer must copy it before returning.
    const scratch = Buffer.alloc(n + 7, 0xee);
    content.copy(scratch, 3, at, at + n);
    w.write(scratch, 3, 3 + n);
    scratch.fill(0xdd);
    at += n;
  }
  return w.finish();
}

const SIZES = [0, 1, DIRECT_ALIGN - 1, DIRECT_ALIGN, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 5000, 10 * STAGE];
const PIECES = [[1 << 20], [1], [4095, 4097], [STAGE], [STAGE + 1, 13], [700]];

t.test('the file holds exactly what was written, for every size and split (direct writes on)', async (t) => {
  let seed = 1;
  for (const size of SIZES)
    for (const pieces of PIECES) {
      if (size > 3 * STAGE && pieces[0] === 1) continue; // byte by byte only for the small sizes
      const content = data(size, seed++);
      await withFile(t, (path, fd) => {
        const { fs, calls } = fakeFs(path);
        const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs, procPath: 'unused', now: frozen });
        t.ok(w.direct, 'direct writes on');
        t.equal(writeInPieces(w, content, pieces), size, `${size} in ${pieces.join('/')}: count`);
        t.equal(sha(readFileSync(path)), sha(content), `${size} in ${pieces.join('/')}: bytes`);
        const direct = calls.filter((c) => c.fd === 'direct');
        const plain = calls.filter((c) => c.fd === 'plain');
        const alignedPart = size - (size % DIRECT_ALIGN);
        t.equal(
          direct.reduce((a, c) => a + c.length, 0),
          alignedPart,
          `${size}: every aligned byte went around the page cache`,
        );
        t.ok(
          direct.every((c) => c.length <= STAGE),
          'direct writes at most a stage',
        );
        t.equal(
          plain.reduce((a, c) => a + c.length, 0),
          size % DIRECT_ALIGN,
          `${size}: only the tail through the ordinary descriptor`,
        );
        t.ok(
          plain.every((c) => c.position === alignedPart),
          'the tail at the end',
        );
        t.equal(w.directOff, 'closed', 'direct descriptor closed by finish');
      });
    }
});

t.test(
  'reads straight into the stage (readBuffer) are staged in place; other views of the stage are copied',
  async (t) => {
    for (const refuseOpen of [false, true]) {
      const content = data(7 * STAGE + 3333, 77);
      await withFile(t, (path, fd) => {
        const { fs, calls } = fakeFs(path, { refuseOpen });
        const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs, procPath: 'unused', now: frozen });
        const sizes = [READ_ROOM, 1, 4095, 5000, 100, READ_ROOM - 1, 9000];
        let at = 0;
        for (let k = 0; at < content.length; k++) {
          const region = w.readBuffer();
          t.ok(region.length >= READ_ROOM, 'room for a whole read');
          const n = Math.min(sizes[k % sizes.length]!, content.length - at);
          if (k % 5 === 3 && n > 10) {
            // As chunked framing does: a few bytes of framing first, the data after them, in the same region.
            region.fill(0x2a, 0, 7);
            content.copy(region, 7, at, at + n - 7);
            w.write(region, 7, n);
            at += n - 7;
          } else {
            content.copy(region, 0, at, at + n);
            w.write(region, 0, n);
            at += n;
          }
        }
        t.equal(w.finish(), content.length, `direct ${!refuseOpen}: count`);
        t.equal(sha(readFileSync(path)), sha(content), `direct ${!refuseOpen}: bytes`);
        t.ok(
          calls
            .filter((c) => c.fd === 'direct')
            .every((c) => c.position % DIRECT_ALIGN === 0 && c.length % DIRECT_ALIGN === 0),
          'direct writes aligned',
        );
      });
    }
  },
);

t.test('a slow stream reaches the file every VISIBLE_MS, and the direct writes stay aligned', async (t) => {
  for (const refuseOpen of [false, true]) {
    const content = data(3 * STAGE + 999, 55);
    await withFile(t, (path, fd) => {
      const { fs, calls } = fakeFs(path, { refuseOpen });
      let clock = 0;
      const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs, procPath: 'unused', now: () => clock });
      let at = 0;
      for (const n of [100, 5000, 3000, 9000, STAGE, 1]) {
        w.write(content, at, at + n);
        at += n;
        if (n < STAGE)
          t.ok(fstatSync(fd).size < at, `direct ${!refuseOpen}: ${at} bytes not all on file before ${VISIBLE_MS} ms`);
        clock += VISIBLE_MS;
        w.write(content, at, at + 10);
        at += 10;
        t.equal(fstatSync(fd).size, at, `direct ${!refuseOpen}: all ${at} bytes on file ${VISIBLE_MS} ms later`);
        t.same(readFileSync(path), content.subarray(0, at), 'and they are the right bytes');
      }
      t.equal(writeInPieces(w, content.subarray(at), [777]), content.length, 'count');
      t.equal(sha(readFileSync(path)), sha(content));
      if (!refuseOpen)
        t.ok(
          calls.some((c) => c.fd === 'direct'),
          'direct writes used',
        );
    });
  }
});

t.test('O_DIRECT refused at open: everything through the ordinary descriptor', async (t) => {
  const content = data(3 * STAGE + 123, 99);
  await withFile(t, (path, fd) => {
    const { fs, calls } = fakeFs(path, { refuseOpen: true });
    const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs, procPath: 'unused', now: frozen });
    t.notOk(w.direct);
    t.match(w.directOff, /^open: EINVAL/);
    t.equal(writeInPieces(w, content, [5000]), content.length);
    t.equal(sha(readFileSync(path)), sha(content));
    t.ok(
      calls.every((c) => c.fd === 'plain'),
      'no direct write',
    );
  });
});

t.test('a direct write refused (first, or a later one): the rest through the ordinary descriptor', async (t) => {
  for (const fail of [1, 3]) {
    const content = data(5 * STAGE + 777, 200 + fail);
    await withFile(t, (path, fd) => {
      const { fs, calls } = fakeFs(path, { failDirectWrites: [fail] });
      const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs, procPath: 'unused', now: frozen });
      t.equal(writeInPieces(w, content, [STAGE - 100]), content.length, `direct write ${fail} refused`);
      t.equal(sha(readFileSync(path)), sha(content), `direct write ${fail} refused: bytes`);
      t.match(w.directOff, /^write: EINVAL/);
      t.equal(calls.filter((c) => c.fd === 'direct').length, fail - 1, 'no direct write after the refusal');
    });
  }
});

t.test('a write error that is not about O_DIRECT reaches the caller', async (t) => {
  await withFile(t, (path, fd) => {
    const { fs } = fakeFs(path);
    const enospc = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    const failing: DirectFs = {
      ...fs,
      writeSync: () => {
        throw enospc;
      },
    };
    const w = new StagedFileWriter(fd, { stageBytes: STAGE, fs: failing, procPath: 'unused', now: frozen });
    t.throws(() => w.write(Buffer.alloc(STAGE), 0, STAGE), /ENOSPC/);
  });
});

t.test('the real thing: O_DIRECT where this file system has it, the bytes exact either way', async (t) => {
  const content = data(2 * 1024 * 1024 + 4321, 7);
  await withFile(t, (path, fd) => {
    const w = new StagedFileWriter(fd);
    t.equal(writeInPieces(w, content, [1 << 20, 65536, 17]), content.length);
    t.equal(sha(readFileSync(path)), sha(content));
    t.comment(`direct writes: ${w.directOff === 'closed' ? 'used' : `not used (${w.directOff})`}`);
  });
});
