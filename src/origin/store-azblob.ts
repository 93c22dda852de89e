/**
 * `azblob://ACCOUNT/CONTAINER[/PREFIX]`: the object store over Azure Blob Storage, with the official
 * SDK (@azure/storage-blob). Locks are blob leases on empty blobs under `.peerdist/locks/`.
 *
 * Credentials never come from the command line: a config file entry for the account, then
 * AZURE_STORAGE_CONNECTION_STRING, then AZURE_STORAGE_SAS_URL (a container SAS URL). See README,
 * "Publishing over Azure Blob Storage".
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import {
  type BlobLeaseClient,
  BlobServiceClient,
  ContainerClient,
  RestError,
  StorageSharedKeyCredential,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { PeerdistError, UsageError } from '../util/errors.js';
import {
  ObjectChangedError,
  RECORD_PREFIX,
  StoreUnavailableError,
  type ObjectInfo,
  type ObjectStore,
  type StoreLock,
  type StoreUrl,
} from './store.js';

/** One account's entry in the store config file. */
export interface AzureAccountConfig {
  connectionString?: string;
  /** A container (or account) SAS URL. */
  sasUrl?: string;
  accountKey?: string;
  /** Blob endpoint, default https://ACCOUNT.blob.core.windows.net */
  endpoint?: string;
}

/**
 * The store config file (JSON): `{ "azblob": { "ACCOUNT": { "connectionString": "..." } } }`;
 * an entry may instead give `sasUrl`, or `accountKey` (and optionally `endpoint`).
 */
export interface StoreConfigFile {
  azblob?: Record<string, AzureAccountConfig>;
}

export interface AzblobOptions {
  /** Path of the store config file (optional). */
  configFile?: string;
  /** Environment to read credentials from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Lease duration for hash locks, seconds (Azure allows 15-60; default 15). */
  leaseSeconds?: number;
}

const PIPELINE: StoragePipelineOptions = {
  // A storage outage must answer 503 quickly rather than hang in retries; reads retry per range.
  retryOptions: { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1_000 },
  userAgentOptions: { userAgentPrefix: 'peerdist' },
};

function connectionStringAccount(cs: string): string | undefined {
  return /(?:^|;)\s*AccountName=([^;]+)/i.exec(cs)?.[1]?.trim();
}

async function containerFor(u: StoreUrl, opts: AzblobOptions): Promise<ContainerClient> {
  const env = opts.env ?? process.env;
  if (opts.configFile !== undefined) {
    let cfg: StoreConfigFile;
    try {
      cfg = JSON.parse(await readFile(opts.configFile, 'utf8')) as StoreConfigFile;
    } catch (err) {
      throw new PeerdistError('BAD_STORE_CONFIG', `store config ${opts.configFile}: ${(err as Error).message}`);
    }
    const e = cfg.azblob?.[u.account];
    if (e) {
      if (e.connectionString)
        return BlobServiceClient.fromConnectionString(e.connectionString, PIPELINE).getContainerClient(u.container);
      if (e.sasUrl) return sasContainer(e.sasUrl, u);
      if (e.accountKey) {
        const endpoint = e.endpoint ?? `https://${u.account}.blob.core.windows.net`;
        const cred = new StorageSharedKeyCredential(u.account, e.accountKey);
        return new BlobServiceClient(endpoint, cred, PIPELINE).getContainerClient(u.container);
      }
      throw new PeerdistError(
        'BAD_STORE_CONFIG',
        `store config ${opts.configFile}: account ${u.account} has none of connectionString, sasUrl, accountKey`,
      );
    }
  }
  const cs = env['AZURE_STORAGE_CONNECTION_STRING'];
  if (cs) {
    const acct = connectionStringAccount(cs);
    if (acct !== undefined && acct !== u.account)
      throw new UsageError(`AZURE_STORAGE_CONNECTION_STRING is for account ${acct}, not ${u.account}`);
    return BlobServiceClient.fromConnectionString(cs, PIPELINE).getContainerClient(u.container);
  }
  const sas = env['AZURE_STORAGE_SAS_URL'];
  if (sas) return sasContainer(sas, u);
  throw new UsageError(
    `no credentials for storage account ${u.account}: set AZURE_STORAGE_CONNECTION_STRING or ` +
      'AZURE_STORAGE_SAS_URL, or give --store-config FILE with an entry for the account',
  );
}

/** A SAS URL for the account (path /) or for exactly this container. */
function sasContainer(sasUrl: string, u: StoreUrl): ContainerClient {
  let url: URL;
  try {
    url = new URL(sasUrl);
  } catch {
    throw new UsageError('the SAS URL is not a URL');
  }
  const segs = url.pathname.split('/').filter((s) => s !== '');
  // Azurite and other emulators put the account in the path: http://127.0.0.1:10000/ACCOUNT/CONTAINER?sv=...
  if (segs[0] === u.account && !url.hostname.startsWith(`${u.account}.`)) segs.shift();
  if (segs.length === 0) {
    return new BlobServiceClient(url.toString(), undefined, PIPELINE).getContainerClient(u.container);
  }
  if (segs.length !== 1 || segs[0] !== u.container)
    throw new UsageError(`the SAS URL is for another container than ${u.container}`);
  return new ContainerClient(url.toString(), undefined, PIPELINE);
}

function statusOf(err: unknown): number | undefined {
  return err instanceof RestError ? err.statusCode : undefined;
}

function quoted(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

/** Maps SDK failures: network errors, 5xx, auth failures -> StoreUnavailableError; the rest rethrown. */
function unavailable(err: unknown, what: string): never {
  const s = statusOf(err);
  if (s === undefined || s >= 500 || s === 401 || s === 403 || s === 408 || s === 429) {
    throw new StoreUnavailableError(
      `storage ${what}: ${s === undefined ? (err as Error).message : `HTTP ${s} ${(err as RestError).code ?? ''}`}`.trim(),
      err,
    );
  }
  throw err;
}

class AzureLock implements StoreLock {
  constructor(
    private readonly lease: BlobLeaseClient,
    readonly ttlMs: number,
  ) {}

  async renew(): Promise<void> {
    await this.lease.renewLease();
  }

  async release(): Promise<void> {
    await this.lease.releaseLease().catch(() => undefined);
  }
}

export class AzblobStore implements ObjectStore {
  readonly url: string;
  private readonly leaseSeconds: number;

  private constructor(
    private readonly u: StoreUrl,
    private readonly container: ContainerClient,
    opts: AzblobOptions,
  ) {
    this.url = `azblob://${u.account}/${u.container}${u.prefix ? `/${u.prefix.slice(0, -1)}` : ''}`;
    this.leaseSeconds = Math.min(60, Math.max(15, opts.leaseSeconds ?? 15));
  }

  static async open(u: StoreUrl, opts: AzblobOptions = {}): Promise<AzblobStore> {
    return new AzblobStore(u, await containerFor(u, opts), opts);
  }

  fullName(name: string): string {
    return this.u.prefix + name;
  }

  private full(name: string): string {
    return this.u.prefix + name;
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    try {
      const p = await this.container.getBlobClient(this.full(name)).getProperties();
      if (p.etag === undefined || p.lastModified === undefined || p.contentLength === undefined)
        throw new StoreUnavailableError(`storage answered ${name} without ETag, Last-Modified or length`);
      return {
        name,
        size: p.contentLength,
        etag: quoted(p.etag),
        lastModified: p.lastModified,
        contentType: p.contentType,
      };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      unavailable(err, `properties of ${name}`);
    }
  }

  async read(name: string, etag: string, start: number, end: number): Promise<Readable> {
    try {
      const r = await this.container
        .getBlobClient(this.full(name))
        .download(start, end - start + 1, { conditions: { ifMatch: etag }, maxRetryRequests: 3 });
      const body = r.readableStreamBody;
      if (!body) throw new StoreUnavailableError(`storage sent no body for ${name}`);
      return body as Readable;
    } catch (err) {
      const s = statusOf(err);
      if (s === 404 || s === 412) throw new ObjectChangedError(name);
      unavailable(err, `read of ${name}`);
    }
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    const iter = this.container.listBlobsFlat({ prefix: this.full(prefix) })[Symbol.asyncIterator]();
    for (;;) {
      let next: Awaited<ReturnType<typeof iter.next>>;
      try {
        next = await iter.next();
      } catch (err) {
        unavailable(err, 'listing');
      }
      if (next.done) return;
      const b = next.value;
      yield {
        name: b.name.slice(this.u.prefix.length),
        size: b.properties.contentLength ?? 0,
        etag: quoted(b.properties.etag),
        lastModified: b.properties.lastModified,
        contentType: b.properties.contentType,
      };
    }
  }

  async getRecord(name: string): Promise<Buffer | undefined> {
    try {
      return await this.container.getBlobClient(name).downloadToBuffer();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      unavailable(err, `read of record ${name}`);
    }
  }

  async putRecord(name: string, body: Buffer): Promise<void> {
    try {
      await this.container.getBlockBlobClient(name).uploadData(body, {
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
      });
    } catch (err) {
      unavailable(err, `write of record ${name}`);
    }
  }

  async tryLock(name: string): Promise<StoreLock | undefined> {
    const blobName = `${RECORD_PREFIX}locks/${createHash('sha256').update(name).digest('hex')}`;
    const blob = this.container.getBlockBlobClient(blobName);
    try {
      await blob.uploadData(Buffer.alloc(0), { conditions: { ifNoneMatch: '*' } });
    } catch (err) {
      const s = statusOf(err);
      // 409: exists (and leased); 412: exists.
      if (s !== 409 && s !== 412) unavailable(err, `lock ${name}`);
    }
    const lease = blob.getBlobLeaseClient();
    try {
      await lease.acquireLease(this.leaseSeconds);
    } catch (err) {
      if (statusOf(err) === 409) return undefined;
      unavailable(err, `lease on ${name}`);
    }
    return new AzureLock(lease, this.leaseSeconds * 1000);
  }
}
