/** `peerdist hash` and `peerdist info`, spawned as a real process. */
import t from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { contentM, contentT, vectors } from '../protocol/pccrc/vectors.js';

const secretHex = vectors.synthetic.secret;

t.test('hash and info', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerdist-ci-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fileM = join(dir, 'M.bin');
  const fileT = join(dir, 'T.bin');
  await writeFile(fileM, contentM());
  await writeFile(fileT, contentT());
  const env = { PEERDIST_STATE_DIR: join(dir, 'no-state') };

  await t.test('--json prints the documented fields', async (t) => {
    const r = await runCli(['hash', fileM, '--secret-hex', secretHex, '--json'], { env });
    t.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    t.same(Object.keys(j), ['version', 'hashAlgorithm', 'contentLength', 'segments']);
    t.equal(j.version, 1);
    t.equal(j.hashAlgorithm, 'SHA-256');
    t.equal(j.contentLength, 150000);
    const want = vectors.synthetic.M.v1.segments[0]!;
    t.same(j.segments, [
      {
        offset: 0,
        length: 150000,
        hod: want.hod,
        kp: want.kp,
        segmentId: want.segmentId,
        blockHashes: want.blockHashes,
      },
    ]);
    const r2 = await runCli(
      [
        'hash',
        fileM,
        '--secret-hex',
        secretHex.toUpperCase(),
        '--json',
        '--content-version',
        '2',
        '--chunking',
        'fixed',
      ],
      { env },
    );
    t.equal(r2.code, 0, r2.stderr);
    const j2 = JSON.parse(r2.stdout);
    t.equal(j2.hashAlgorithm, 'SHA-512/256t');
    t.same(
      j2.segments,
      vectors.synthetic.M.v2.segments.map(({ offset, length, hod, kp, segmentId }) => ({
        offset,
        length,
        hod,
        kp,
        segmentId,
      })),
      'v2 segments, no blockHashes key',
    );
  });

  await t.test('-o writes the vector bytes', async (t) => {
    const cases = [
      ['M v1', fileM, '1', vectors.synthetic.M.v1.blob],
      ['M v2 fixed', fileM, '2', vectors.synthetic.M.v2.blob],
      ['T v1', fileT, '1', vectors.synthetic.T.v1.blob],
      ['T v2', fileT, '2', vectors.synthetic.T.v2.blob],
    ] as const;
    // Independent processes: run them concurrently.
    await Promise.all(
      cases.map(async ([name, file, version, blob]) => {
        const out = join(dir, `${name.replace(/ /g, '_')}.pd`);
        const r = await runCli(
          ['hash', file, '--secret-hex', secretHex, '--content-version', version, '--chunking', 'fixed', '-o', out],
          { env },
        );
        t.equal(r.code, 0, r.stderr);
        t.equal(r.stdout, '', `${name}: nothing on stdout with -o`);
        t.equal((await readFile(out)).toString('hex'), blob, name);
      }),
    );
  });

  await t.test('secret from --secret-file and from the state directory', async (t) => {
    const secretFile = join(dir, 'secret.raw');
    await writeFile(secretFile, Buffer.from(secretHex, 'hex'));
    const stateDir = join(dir, 'state');
    await mkdir(join(stateDir, 'origin'), { recursive: true });
    await writeFile(join(stateDir, 'origin', 'secret'), Buffer.from(secretHex, 'hex'));
    const [viaFile, viaState, viaEnv, hexWins] = await Promise.all([
      runCli(['hash', fileM, '--secret-file', secretFile, '--json'], { env }),
      runCli(['hash', fileM, '--state-dir', stateDir, '--json'], { env }),
      runCli(['hash', fileM, '--json'], { env: { PEERDIST_STATE_DIR: stateDir } }),
      runCli(['hash', fileM, '--state-dir', stateDir, '--secret-hex', '00', '--json'], { env }),
    ]);
    const want = vectors.synthetic.M.v1.segments[0]!.segmentId;
    for (const [r, how] of [
      [viaFile, '--secret-file'],
      [viaState, '--state-dir'],
      [viaEnv, 'default state dir'],
    ] as const) {
      t.equal(r.code, 0, r.stderr);
      t.equal(JSON.parse(r.stdout).segments[0].segmentId, want, how);
    }
    t.equal(hexWins.code, 0, hexWins.stderr);
    t.not(JSON.parse(hexWins.stdout).segments[0].segmentId, want, '--secret-hex takes precedence');
  });

  await t.test('human summary', async (t) => {
    const r = await runCli(['hash', fileM, '--secret-hex', secretHex], { env });
    t.equal(r.code, 0);
    t.match(r.stdout, /version 1/);
    t.match(r.stdout, /150000 bytes/);
    t.match(r.stdout, /1 segment/);
    t.match(r.stdout, vectors.synthetic.M.v1.segments[0]!.segmentId);
  });

  await t.test('info decodes the Windows blobs', async (t) => {
    await Promise.all(
      ([1, 2] as const).map(async (version) => {
        const v = version === 1 ? vectors.iis85.v1 : vectors.iis85.v2;
        const blobFile = join(dir, `iis85-v${version}.pd`);
        await writeFile(blobFile, Buffer.from(v.blob, 'hex'));
        const r = await runCli(['info', blobFile, '--json'], { env });
        t.equal(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout);
        t.equal(j.version, version);
        t.equal(j.contentLength, 99710);
        t.same(
          j.segments.map((s: { segmentId: string }) => s.segmentId),
          v.segments.map((s) => s.segmentId),
        );
        t.same(
          j.segments.map((s: { offset: number; length: number }) => [s.offset, s.length]),
          v.segments.map((s) => [s.offset, s.length]),
        );
        if (version === 1) t.same(j.segments[0].blockHashes, v.segments[0]!.blockHashes);
        const human = await runCli(['info', blobFile], { env });
        t.equal(human.code, 0);
        t.match(human.stdout, v.segments[0]!.segmentId);
      }),
    );
  });

  await t.test('errors and exit codes', async (t) => {
    const [noSecret, badHex, nonHex, badVersion, badChunking, missing] = await Promise.all(
      [
        ['hash', fileM, '--state-dir', join(dir, 'empty-state')],
        ['hash', fileM, '--secret-hex', 'abc'],
        ['hash', fileM, '--secret-hex', 'zz'],
        ['hash', fileM, '--secret-hex', '00', '--content-version', '3'],
        ['hash', fileM, '--secret-hex', '00', '--chunking', 'rabin'],
        ['hash', join(dir, 'nope'), '--secret-hex', '00'],
      ].map((args) => runCli(args, { env })),
    );
    t.equal(noSecret!.code, 1);
    t.match(noSecret!.stderr, 'no secret: pass --secret-hex/--secret-file or run peerdist serve once to create one');
    t.equal(badHex!.code, 2, 'odd-length hex is a usage error');
    t.equal(nonHex!.code, 2, 'non-hex is a usage error');
    t.equal(badVersion!.code, 2, 'bad version');
    t.equal(badChunking!.code, 2, 'bad chunking');
    t.equal(missing!.code, 1, 'missing file');
    t.match(missing!.stderr, 'nope');
    const bad = join(dir, 'bad.pd');
    const blob = Buffer.from(vectors.iis85.v1.blob, 'hex');
    blob.writeUInt32LE(4096, 30);
    await writeFile(bad, blob);
    const info = await runCli(['info', bad], { env });
    t.equal(info.code, 1);
    t.match(info.stderr, 'segments[0].cbBlockSize');
    await writeFile(bad, Buffer.from(vectors.iis85.v2.blob, 'hex').subarray(0, 100));
    const trunc = await runCli(['info', bad, '--json'], { env });
    t.equal(trunc.code, 1);
    t.equal(trunc.stdout, '');
    t.match(trunc.stderr, 'chunks[0].dwChunkDataLength: truncated');
  });
});
