/**
 * `peerdist cache ...`: inspect and manage the local block cache in `<stateDir>/cache`.
 * The index allows one process: while a daemon runs, these commands fail with CACHE_LOCKED.
 * Exit codes: 0 ok; 1 failure, `cache verify` that found bad blocks, or `cache add` with mismatches.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseContentInfo } from '../protocol/pccrc/codec.js';
import { addFile } from '../cache/add.js';
import { CacheError } from '../cache/errors.js';
import { formatBytes as formatSize, parseSize } from '../util/size.js';
import { BlockStore } from '../cache/store.js';
import { createLogger } from '../util/log.js';
import { defaultStateDir } from '../util/paths.js';

interface CommonOpts {
  stateDir?: string;
  json?: boolean;
}

function cacheDir(stateDir: string): string {
  return join(stateDir, 'cache');
}

async function withStore<T>(opts: CommonOpts, fn: (store: BlockStore) => Promise<T>): Promise<T> {
  const store = await BlockStore.open({
    dir: cacheDir(opts.stateDir ?? defaultStateDir()),
    logger: createLogger({ area: 'cache' }),
  });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function print(opts: CommonOpts, value: unknown, text: () => string): void {
  process.stdout.write(opts.json ? JSON.stringify(value, null, 2) + '\n' : text());
}

function parseSegmentId(v: string): Buffer {
  if (!/^(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$/.test(v))
    throw new InvalidArgumentError('expected a segment ID in hex (64, 96 or 128 digits)');
  return Buffer.from(v, 'hex');
}

function sizeArg(v: string): number {
  try {
    return parseSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** "0-3,7,9-10" */
function ranges(list: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < list.length; ) {
    let j = i;
    while (j + 1 < list.length && list[j + 1] === list[j]! + 1) j++;
    out.push(i === j ? `${list[i]}` : `${list[i]}-${list[j]}`);
    i = j + 1;
  }
  return out.join(',') || '(none)';
}

export function register(program: Command): void {
  const cache = program.command('cache').description('inspect and manage the local block cache');
  const sub = (name: string, desc: string) =>
    cache
      .command(name)
      .description(desc)
      .option('--state-dir <dir>', 'state directory (the cache lives in <dir>/cache)')
      .option('--json', 'machine-readable output');

  sub('stats', 'totals: segments, blocks, bytes, limit, hits and misses').action(async (opts: CommonOpts) => {
    const st = await withStore(opts, async (s) => s.stats());
    print(
      opts,
      st,
      () =>
        [
          `segments  ${st.segments} (${st.completeSegments} complete, ${st.pinnedSegments} in use; at most ${st.maxSegments})`,
          `blocks    ${st.blocks}`,
          `bytes     ${st.bytes} (${formatSize(st.bytes)}) of blocks, ${st.metaBytes} (${formatSize(st.metaBytes)}) of metadata`,
          `limit     ${st.limitBytes} (${formatSize(st.limitBytes)})${st.overLimitBytes ? `, over by ${st.overLimitBytes}` : ''}`,
          `hits      local ${st.hitsLocal}, peer ${st.hitsPeer}`,
          `misses    ${st.misses}`,
          `evictions ${st.evictions}, corrupt blocks dropped ${st.corruptBlocks}`,
        ].join('\n') + '\n',
    );
  });

  sub('ls', 'one row per cached segment').action(async (opts: CommonOpts) => {
    const rows = await withStore(opts, async (s) => s.list());
    print(
      opts,
      rows,
      () =>
        [
          'SEGMENT ID'.padEnd(66) + 'VER  BLOCKS      BYTES       LAST USE',
          ...rows.map(
            (r) =>
              `${r.segmentId.padEnd(66)}v${r.version}   ${`${r.blocksPresent}/${r.blocksTotal}`.padEnd(11)} ${String(r.bytes).padEnd(11)} ${iso(r.lastUse)}`,
          ),
        ].join('\n') + '\n',
    );
  });

  sub('show', 'details of one segment')
    .argument('<segment-id>', 'segment ID (hex)', parseSegmentId)
    .action(async (id: Buffer, opts: CommonOpts) => {
      const info = await withStore(opts, async (s) => {
        const m = s.getSegment(id);
        const sum = s.list().find((r) => r.segmentId === id.toString('hex'));
        if (!m || !sum) throw new CacheError('UNKNOWN_SEGMENT', `segment ${id.toString('hex')} is not in the cache`);
        return {
          ...sum,
          hashAlgorithm: m.hashAlgorithm,
          blockSize: m.blockSize,
          hod: m.hod.toString('hex'),
          present: s.presentBlocks(id),
          blockHashes: m.blockHashes.map((h) => h.toString('hex')),
        };
      });
      print(
        opts,
        info,
        () =>
          [
            `segment    ${info.segmentId}`,
            `version    ${info.version} (${info.hashAlgorithm})`,
            `length     ${info.length} bytes, block size ${info.blockSize}`,
            `HoD        ${info.hod}`,
            `blocks     ${info.blocksPresent}/${info.blocksTotal} present: ${ranges(info.present)}`,
            `bytes      ${info.bytes}`,
            `last use   ${iso(info.lastUse)}`,
            `hits       local ${info.hitsLocal}, peer ${info.hitsPeer}`,
          ].join('\n') + '\n',
      );
    });

  sub('verify', 're-hash every cached block; drop bad ones (exit 1 if any were bad)').action(
    async (opts: CommonOpts) => {
      const rep = await withStore(opts, (s) => s.verifyAll());
      print(
        opts,
        rep,
        () =>
          `verified ${rep.blocks} blocks (${rep.bytes} bytes) in ${rep.segments} segments; ${rep.bad.length} bad block(s) dropped\n` +
          rep.bad.map((b) => `  bad: ${b.segmentId} block ${b.index}\n`).join(''),
      );
      if (rep.bad.length) process.exitCode = 1;
    },
  );

  sub('clear', 'remove every cached segment').action(async (opts: CommonOpts) => {
    const st = await withStore(opts, async (s) => {
      const before = s.stats();
      await s.clear();
      return { removedSegments: before.segments - s.stats().segments, removedBytes: before.bytes - s.stats().bytes };
    });
    print(opts, st, () => `removed ${st.removedSegments} segments (${st.removedBytes} bytes)\n`);
  });

  sub('resize', 'set the size limit (e.g. 10G, 500M); evicts least recently used segments to fit')
    .argument('<bytes>', 'new limit', sizeArg)
    .action(async (limit: number, opts: CommonOpts) => {
      const st = await withStore(opts, async (s) => {
        await s.resize(limit);
        return s.stats();
      });
      print(
        opts,
        st,
        () =>
          `limit ${st.limitBytes} (${formatSize(st.limitBytes)}); cache holds ${st.bytes} bytes in ${st.segments} segments\n`,
      );
    });

  sub('export', 'write cached segments to a cache package')
    .argument('<out>', 'package file (.pdpkg)')
    .option('--segment <id...>', 'only these segments (hex IDs)')
    .action(async (out: string, opts: CommonOpts & { segment?: string[] }) => {
      const ids = opts.segment?.map(parseSegmentId);
      const r = await withStore(opts, (s) => s.exportPackage(out, ids));
      print(opts, r, () => `exported ${r.segments} segments, ${r.blocks} blocks (${r.bytes} bytes) to ${out}\n`);
    });

  sub('import', 'load a cache package, verifying every block')
    .argument('<file>', 'package file (.pdpkg)')
    .action(async (file: string, opts: CommonOpts) => {
      const r = await withStore(opts, (s) => s.importPackage(file));
      print(
        opts,
        r,
        () =>
          `imported ${r.segments} segments, ${r.blocks} blocks; ${r.rejected} rejected; ${r.skipped} records skipped (already in the cache or repeated)\n`,
      );
    });

  sub('add', 'store a local copy of a file, verified against its content information')
    .argument('<file>', 'the file')
    .requiredOption('--content-info <blob>', 'binary content information (from the origin or `peerdist hash -o`)')
    .action(async (file: string, opts: CommonOpts & { contentInfo: string }) => {
      const ci = parseContentInfo(await readFile(opts.contentInfo));
      const r = await withStore(opts, (s) => addFile(s, ci, file));
      print(
        opts,
        r,
        () =>
          `stored ${r.stored}/${r.blocks} blocks (${r.bytes} bytes) in ${r.segments} segments; ${r.mismatches.length} mismatch(es)\n` +
          r.mismatches
            .map((m) => `  mismatch: segment ${m.segment} (${m.segmentId}) block ${m.block}: ${m.reason}\n`)
            .join(''),
      );
      if (r.mismatches.length) process.exitCode = 1;
    });
}
