/**
 * `peerdist hash FILE` (generate content information) and `peerdist info BLOB` (decode it).
 * Output forms: binary blob (-o), JSON (--json, see src/protocol/pccrc/json.ts), or a short summary.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { encodeContentInfo, parseContentInfo } from '../protocol/pccrc/codec.js';
import { hashFile } from '../origin/hash-file.js';
import { contentInfoToJson } from '../protocol/pccrc/json.js';
import type { ContentInfo } from '../protocol/pccrc/types.js';
import { readSecretFile, secretPath } from '../origin/secret.js';
import { PeerdistError } from '../util/errors.js';
import { defaultStateDir } from '../util/paths.js';

interface HashCliOptions {
  secretHex?: Buffer;
  secretFile?: string;
  contentVersion: 1 | 2;
  chunking: 'cdc' | 'fixed';
  output?: string;
  json?: boolean;
  stateDir?: string;
}

function parseHexSecret(value: string): Buffer {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(value))
    throw new InvalidArgumentError('expected a non-empty, even-length hex string');
  return Buffer.from(value, 'hex');
}

function parseVersion(value: string): 1 | 2 {
  if (value === '1' || value === '2') return Number(value) as 1 | 2;
  throw new InvalidArgumentError('expected 1 or 2');
}

/** --secret-hex, else --secret-file, else the origin's stored secret, else an error. */
async function resolveSecret(opts: HashCliOptions): Promise<Buffer> {
  if (opts.secretHex) return opts.secretHex;
  if (opts.secretFile) return readSecretFile(opts.secretFile);
  const stored = secretPath(opts.stateDir ?? defaultStateDir());
  try {
    return await readSecretFile(stored);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  throw new PeerdistError(
    'NO_SECRET',
    'no secret: pass --secret-hex/--secret-file or run peerdist serve once to create one',
  );
}

function summary(ci: ContentInfo): string {
  const first = ci.segments[0];
  return (
    [
      `content information version ${ci.version}.0 (${ci.hashAlgorithm})`,
      `content length ${ci.contentLength} bytes, range [${ci.rangeStart}, ${ci.rangeEnd})`,
      `${ci.segments.length} segment${ci.segments.length === 1 ? '' : 's'}` +
        (ci.version === 1 ? `, ${ci.segments.reduce((n, s) => n + s.blockHashes.length, 0)} block hashes` : ''),
      `first segment ID ${first ? first.segmentId.toString('hex') : '(none: empty content)'}`,
    ].join('\n') + '\n'
  );
}

export function register(program: Command): void {
  program
    .command('hash')
    .description('generate PeerDist content information for a file')
    .argument('<file>', 'file to hash')
    .option('--secret-hex <hex>', 'server secret key material as hex', parseHexSecret)
    .option('--secret-file <file>', 'file holding the raw server secret key material')
    .addOption(
      new Option('--content-version <n>', 'content information version (1 or 2)').argParser(parseVersion).default(1),
    )
    .addOption(
      new Option('--chunking <mode>', 'v2 segment boundaries: content-defined or fixed 64 KiB')
        .choices(['cdc', 'fixed'])
        .default('cdc'),
    )
    .option('-o, --output <file>', 'write the binary content information here')
    .option('--json', 'print the content information as JSON')
    .option('--state-dir <dir>', 'state directory holding origin/secret')
    .action(async (file: string, opts: HashCliOptions) => {
      const secret = await resolveSecret(opts);
      const ci = await hashFile(file, { secret, version: opts.contentVersion, chunking: opts.chunking });
      if (opts.output) await writeFile(opts.output, encodeContentInfo(ci));
      if (opts.json) process.stdout.write(JSON.stringify(contentInfoToJson(ci), null, 2) + '\n');
      else if (!opts.output) process.stdout.write(summary(ci));
    });

  program
    .command('info')
    .description('decode a content information file')
    .argument('<blob>', 'binary content information file')
    .option('--json', 'print as JSON')
    .action(async (blob: string, opts: { json?: boolean }) => {
      const ci = parseContentInfo(await readFile(blob));
      process.stdout.write(opts.json ? JSON.stringify(contentInfoToJson(ci), null, 2) + '\n' : summary(ci));
    });
}
