/**
 * The origin's object store: where `peerdist serve --store URL` reads the published blobs and
 * keeps what every node shares (content-information records under `.peerdist/`, hash locks).
 * One interface, one file per backend (store-azblob.ts for `azblob://`); see README,
 * "Publishing over Azure Blob Storage", and protocol/pccrtp.md, "Shared content information".
 *
 * Object names given to a store are relative to its prefix (the store adds it). Records and
 * locks are named from the container's root (`.peerdist/...`, prefix not added), keyed by the
 * full object name, so nodes publishing different prefixes of one container share them.
 * Names with a segment starting with '.' are never served.
 */
import type { Readable } from 'node:stream';
import { UsageError } from '../util/errors.js';

/** One stored object as the backend describes it. */
export interface ObjectInfo {
  /** Name relative to the store's prefix. */
  name: string;
  size: number;
  /** The backend's strong validator, quoted as in HTTP (`"0x8DC..."`). */
  etag: string;
  lastModified: Date;
  contentType?: string;
}

/** A held lock (a blob lease on Azure); renew it well before `ttlMs`, release when done. */
export interface StoreLock {
  readonly ttlMs: number;
  /** Extends the lock; rejects when the lock was lost (expired and taken by another node). */
  renew(): Promise<void>;
  release(): Promise<void>;
}

/** The store could not be reached or answered with a server error: answer 503, retry later. */
export class StoreUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'StoreUnavailableError';
  }
}

/** The object changed (another ETag) or disappeared while it was being read. */
export class ObjectChangedError extends Error {
  constructor(readonly objectName: string) {
    super(`${objectName} changed or was deleted while it was being read`);
    this.name = 'ObjectChangedError';
  }
}

export interface ObjectStore {
  /** `azblob://ACCOUNT/CONTAINER/PREFIX`, for logs (never carries credentials). */
  readonly url: string;
  /** Properties of an object, undefined when there is none. */
  stat(name: string): Promise<ObjectInfo | undefined>;
  /**
   * Bytes [start, end] (inclusive) of the object, only while its ETag is still `etag`: a stream
   * that fails with ObjectChangedError if the object is replaced or deleted (never a mix).
   */
  read(name: string, etag: string, start: number, end: number): Promise<Readable>;
  /** Every object under `prefix` (relative), `.peerdist/` records included. */
  list(prefix?: string): AsyncIterable<ObjectInfo>;
  /** An object's name in the whole container (prefix included): what records are keyed by. */
  fullName(name: string): string;
  /** A small record (whole body; name from the container root), undefined when absent. */
  getRecord(name: string): Promise<Buffer | undefined>;
  putRecord(name: string, body: Buffer): Promise<void>;
  /** Takes the lock named `name` (from the container root), or undefined when another node has it. */
  tryLock(name: string): Promise<StoreLock | undefined>;
}

export interface StoreUrl {
  scheme: 'azblob';
  account: string;
  container: string;
  /** '' or ending with '/'. */
  prefix: string;
}

/** Parses `azblob://ACCOUNT/CONTAINER[/PREFIX]`; credentials never belong in it. */
export function parseStoreUrl(s: string): StoreUrl {
  const m = /^([a-z0-9]+):\/\/([^/?#@]+)\/([^/?#]+)(?:\/([^?#]*))?$/.exec(s);
  if (!m) throw new UsageError(`bad store URL ${s} (expected azblob://ACCOUNT/CONTAINER[/PREFIX])`);
  if (m[1] !== 'azblob') throw new UsageError(`unsupported store ${m[1]}:// (supported: azblob://)`);
  const account = m[2]!;
  const container = m[3]!;
  if (!/^[a-z0-9]{3,24}$/.test(account)) throw new UsageError(`bad storage account name ${account}`);
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(container))
    throw new UsageError(`bad container name ${container}`);
  const rawPrefix = (m[4] ?? '').replace(/\/+$/, '');
  const segs = rawPrefix === '' ? [] : rawPrefix.split('/');
  if (segs.some((x) => x === '' || x === '.' || x === '..' || x.startsWith('.')))
    throw new UsageError(`bad prefix ${rawPrefix} in ${s}`);
  return { scheme: 'azblob', account, container, prefix: segs.length ? `${segs.join('/')}/` : '' };
}

/** Where the shared records live, relative to the store prefix. */
export const RECORD_PREFIX = '.peerdist/';
