/**
 * Origin commands:
 *   peerdist serve [DIR] [--upstream URL] ...      publish a directory (or proxy an upstream) with PeerDist
 *   peerdist publish DIR ...                       precompute content information into the hash cache
 *   peerdist secret export|import|public-key       manage the server secret and the signing key
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { createOriginServer, DEFAULT_FIRST_WAIT_MS, DEFAULT_UPSTREAM_REVALIDATE_MS } from '../origin/server.js';
import { parseSize } from '../util/size.js';
import { publishDirectory, type PublishProgress } from '../origin/publish.js';
import {
  formatSecretExport,
  loadOrCreateSecret,
  parseSecretImport,
  readSecretFile,
  storeSecret,
} from '../origin/secret.js';
import { publicKeyPem } from '../protocol/pccrtp/signature.js';
import { loadOrCreateSigningKey, readSigningKeyFile } from '../origin/signing-key.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { UsageError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { defaultStateDir } from '../util/paths.js';
import { openStore } from '../origin/open-store.js';
import { loadTlsPair } from '../origin/tls.js';
import { DEFAULT_PREFIX_CLAIM, TokenGate } from '../origin/auth.js';
import { publishStore } from '../origin/publish-store.js';

function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n > 65535) throw new InvalidArgumentError('expected a port number 0-65535');
  return n;
}

/** A wait in seconds (decimal, 0-600), or with an `ms` / `s` suffix; returns milliseconds. */
export function parseWait(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$/.exec(v);
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : 1000) : NaN;
  if (!Number.isFinite(ms) || ms > 600_000) throw new InvalidArgumentError('expected seconds 0-600 (or e.g. 500ms)');
  return Math.round(ms);
}

function parseOneVersion(v: string): ContentVersion {
  if (v === '1' || v === '2') return Number(v) as ContentVersion;
  throw new InvalidArgumentError('expected 1 or 2');
}

function parseVersions(v: string): ContentVersion[] {
  if (v === 'both') return [1, 2];
  return [parseOneVersion(v)];
}

async function secretFor(opts: { secretFile?: string; stateDir: string }): Promise<Buffer> {
  return opts.secretFile ? readSecretFile(opts.secretFile) : loadOrCreateSecret(opts.stateDir);
}

const secretFileOption = (what: string) =>
  new Option(
    '--secret-file <file>',
    `use the server secret in this file (raw bytes) ${what}; the same file on every node of a store`,
  ).env('PEERDIST_SECRET_FILE');

const stateDirOption = () =>
  new Option('--state-dir <dir>', 'state directory (secret, signing key, hash cache)').default(defaultStateDir());

interface ServeOptions {
  host: string;
  port: number;
  stateDir: string;
  secretFile?: string;
  signingKeyFile?: string;
  upstream?: string;
  store?: string;
  storeConfig?: string;
  tlsCert?: string;
  tlsKey?: string;
  requireJwt?: boolean;
  jwks?: string;
  audience?: string;
  issuer?: string;
  prefixClaim: string;
  contentVersionDefault: ContentVersion;
  chunking: 'cdc' | 'fixed';
  hashConcurrency: number;
  firstWait: number;
  upstreamStoreLimit: number;
  upstreamRevalidate: number;
  allowDotfiles?: boolean;
}

async function serve(dir: string | undefined, opts: ServeOptions): Promise<void> {
  const sources = [dir, opts.upstream, opts.store].filter((x) => x !== undefined).length;
  if (sources === 0) throw new UsageError('give a directory to serve, --upstream URL or --store URL');
  if (sources > 1) throw new UsageError('give only one of a directory, --upstream and --store');
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined))
    throw new UsageError('give both --tls-cert and --tls-key, or neither');
  const tls = opts.tlsCert && opts.tlsKey ? await loadTlsPair(opts.tlsCert, opts.tlsKey) : undefined;
  const store = opts.store ? await openStore(opts.store, { configFile: opts.storeConfig }) : undefined;
  const log = createLogger({ component: 'origin' });
  if (opts.requireJwt && (!opts.jwks || !opts.audience))
    throw new UsageError('--require-jwt needs --jwks FILE|URL and --audience');
  if (!opts.requireJwt && (opts.jwks || opts.audience))
    throw new UsageError('--jwks and --audience only apply with --require-jwt');
  const tokenGate = opts.requireJwt
    ? await TokenGate.create({
        jwks: opts.jwks!,
        audience: opts.audience!,
        issuer: opts.issuer,
        prefixClaim: opts.prefixClaim,
      })
    : undefined;
  const server = await createOriginServer({
    root: dir,
    upstream: opts.upstream,
    store,
    host: opts.host,
    port: opts.port,
    stateDir: opts.stateDir,
    secret: opts.secretFile ? await readSecretFile(opts.secretFile) : undefined,
    signingKey: opts.signingKeyFile ? await readSigningKeyFile(opts.signingKeyFile) : undefined,
    logger: log,
    tls,
    tokenGate,
    chunking: opts.chunking,
    preferVersion: opts.contentVersionDefault,
    hashConcurrency: opts.hashConcurrency,
    firstWaitMs: opts.firstWait,
    upstreamStoreLimit: opts.upstreamStoreLimit,
    upstreamRevalidateMs: opts.upstreamRevalidate,
    allowDotfiles: opts.allowDotfiles === true,
  });
  const addr = await server.listen();
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  process.stdout.write(`listening on ${tls ? 'https' : 'http'}://${host}:${addr.port}/\n`);
  // SIGHUP: read the certificate and key again (a renewed certificate); on error keep the old pair.
  const reload = () => {
    if (!opts.tlsCert || !opts.tlsKey) return;
    loadTlsPair(opts.tlsCert, opts.tlsKey).then(
      (pair) => {
        server.setTls(pair);
        log.info('TLS certificate reloaded', { cert: opts.tlsCert });
      },
      (err: unknown) => log.error('TLS certificate reload failed; keeping the previous one', { err: err as Error }),
    );
  };
  process.on('SIGHUP', reload);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.off('SIGHUP', reload);
  await server.close();
}

function progressBar(): { update(p: PublishProgress): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  return {
    update(p) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && p.done < p.total) return;
      last = now;
      const frac = p.total > 0 ? p.done / p.total : 1;
      const width = 30;
      const fill = Math.round(frac * width);
      const mib = (n: number) => (n / 1048576).toFixed(1);
      process.stderr.write(
        `\r[${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${(frac * 100).toFixed(1).padStart(5)}% ${mib(p.done)}/${mib(p.total)} MiB\x1b[K`,
      );
    },
    done() {
      if (tty) process.stderr.write('\n');
    },
  };
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a directory (or reverse-proxy an upstream) over HTTP with the PeerDist extension')
    .argument('[dir]', 'directory to publish')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 = any free port)', parsePort, 8080)
    .addOption(stateDirOption())
    .addOption(secretFileOption('instead of <state-dir>/origin/secret'))
    .addOption(
      new Option(
        '--signing-key-file <file>',
        'sign content information with this PEM private key instead of <state-dir>/origin/signing-key.pem ' +
          '(the same file on every node of a store)',
      ).env('PEERDIST_SIGNING_KEY_FILE'),
    )
    .option('--upstream <url>', 'reverse-proxy this upstream base URL instead of serving a directory')
    .option('--require-jwt', 'require Authorization: Bearer <JWT> for content and content information')
    .option('--jwks <file|url>', 'with --require-jwt: the JSON Web Key Set that signs tokens')
    .option('--audience <aud>', 'with --require-jwt: the audience tokens must name')
    .option('--issuer <iss>', 'with --require-jwt: the issuer tokens must name (optional)')
    .option(
      '--prefix-claim <name>',
      'with --require-jwt: claim holding the path prefix (or prefixes) a token may read',
      DEFAULT_PREFIX_CLAIM,
    )
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain); reloaded on SIGHUP')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option(
      '--store <url>',
      'publish an object store instead of a directory: azblob://ACCOUNT/CONTAINER[/PREFIX] ' +
        '(credentials from AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_SAS_URL or --store-config)',
    )
    .addOption(
      new Option('--store-config <file>', 'JSON file with store credentials per account (see README)').env(
        'PEERDIST_STORE_CONFIG',
      ),
    )
    .addOption(
      new Option('--content-version-default <n>', 'content information version to send when a client accepts both')
        .argParser(parseOneVersion)
        .default(2),
    )
    .addOption(new Option('--chunking <mode>', 'v2 segment boundaries').choices(['cdc', 'fixed']).default('cdc'))
    .option(
      '--hash-concurrency <n>',
      'concurrent background hash jobs',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('expected 1-64');
        return n;
      },
      2,
    )
    .addOption(
      new Option(
        '--first-wait <seconds>',
        'how long the first PeerDist request for a file not hashed yet waits for its hashes ' +
          'before the plain body is sent (0 = never wait)',
      )
        .argParser(parseWait)
        .env('PEERDIST_ORIGIN_FIRST_WAIT')
        .default(DEFAULT_FIRST_WAIT_MS, `${DEFAULT_FIRST_WAIT_MS / 1000}`),
    )
    .addOption(
      new Option(
        '--upstream-store-limit <size>',
        'with --upstream: size of the on-disk store of fetched entities (LRU; 0 = relay only)',
      )
        .argParser((v) => {
          try {
            return parseSize(v);
          } catch (e) {
            throw new InvalidArgumentError((e as Error).message);
          }
        })
        .env('PEERDIST_UPSTREAM_STORE_LIMIT')
        .default(10 * 2 ** 30, '10G'),
    )
    .addOption(
      new Option(
        '--upstream-revalidate <seconds>',
        'with --upstream: revalidate a stored entity with the upstream once it is older than this',
      )
        .argParser(parseWait)
        .env('PEERDIST_UPSTREAM_REVALIDATE')
        .default(DEFAULT_UPSTREAM_REVALIDATE_MS, `${DEFAULT_UPSTREAM_REVALIDATE_MS / 1000}`),
    )
    .option('--allow-dotfiles', 'serve names starting with "." (.git/, .env, ...); by default they answer 404')
    .action((dir: string | undefined, opts: ServeOptions) => serve(dir, opts));

  program
    .command('publish')
    .description(
      'precompute content information for every file in a directory (into the origin hash cache), ' +
        'or for every blob of a store (into the store, shared by every node)',
    )
    .argument('[dir]', 'directory to publish')
    .option('--store <url>', 'publish an object store instead: azblob://ACCOUNT/CONTAINER[/PREFIX]')
    .addOption(
      new Option('--store-config <file>', 'JSON file with store credentials per account (see README)').env(
        'PEERDIST_STORE_CONFIG',
      ),
    )
    .addOption(stateDirOption())
    .addOption(secretFileOption('instead of <state-dir>/origin/secret'))
    .addOption(new Option('--content-version <v>', '1, 2 or both').argParser(parseVersions).default([1, 2], 'both'))
    .addOption(new Option('--chunking <mode>', 'v2 segment boundaries').choices(['cdc', 'fixed']).default('cdc'))
    .option('--json', 'print the summary as JSON')
    .action(
      async (
        dir: string | undefined,
        opts: {
          store?: string;
          storeConfig?: string;
          stateDir: string;
          secretFile?: string;
          contentVersion: ContentVersion[];
          chunking: 'cdc' | 'fixed';
          json?: boolean;
        },
      ) => {
        if ((dir === undefined) === (opts.store === undefined))
          throw new UsageError('give either a directory or --store URL');
        const started = Date.now();
        const bar = progressBar();
        const s = opts.store
          ? await publishStore({
              store: await openStore(opts.store, { configFile: opts.storeConfig }),
              secret: await secretFor(opts),
              versions: opts.contentVersion,
              chunking: opts.chunking,
              onProgress: (p) => bar.update(p),
            })
          : await publishDirectory({
              root: dir!,
              stateDir: opts.stateDir,
              secret: await secretFor(opts),
              versions: opts.contentVersion,
              chunking: opts.chunking,
              onProgress: (p) => bar.update(p),
            });
        bar.done();
        const seconds = (Date.now() - started) / 1000;
        if (opts.json) {
          process.stdout.write(JSON.stringify({ ...s, seconds }) + '\n');
        } else {
          for (const f of s.failed) process.stderr.write(`peerdist: ${f.path}: ${f.error}\n`);
          process.stdout.write(
            `published ${s.files} files (${s.bytes} bytes), content versions ${s.versions.join(',')}: ` +
              `${s.hashed} hashed, ${s.cached} already cached, ${s.failed.length} failed in ${seconds.toFixed(1)} s\n`,
          );
        }
        if (s.failed.length > 0) process.exitCode = 1;
      },
    );

  const secret = program.command('secret').description('manage the origin server secret and signing key');
  secret
    .command('export')
    .description('print the server secret as hex (or write it to a file, mode 0600)')
    .addOption(stateDirOption())
    .option('-o, --output <file>', 'write here instead of stdout')
    .action(async (opts: { stateDir: string; output?: string }) => {
      const text = formatSecretExport(await loadOrCreateSecret(opts.stateDir));
      if (opts.output) await writeFile(opts.output, text, { mode: 0o600 });
      else process.stdout.write(text);
    });
  secret
    .command('import')
    .description('replace the server secret with one exported by another origin (hex text or raw bytes)')
    .argument('<file>', 'exported secret file')
    .addOption(stateDirOption())
    .action(async (file: string, opts: { stateDir: string }) => {
      const value = parseSecretImport(await readFile(file));
      await storeSecret(opts.stateDir, value);
      process.stdout.write(`imported a ${value.length}-byte secret\n`);
    });
  secret
    .command('public-key')
    .description("print the PEM public key that verifies this origin's content-information signatures")
    .addOption(stateDirOption())
    .option('-o, --output <file>', 'write here instead of stdout')
    .action(async (opts: { stateDir: string; output?: string }) => {
      const pem = publicKeyPem(await loadOrCreateSigningKey(opts.stateDir));
      if (opts.output) await writeFile(opts.output, pem);
      else process.stdout.write(pem);
    });
}
