/** Typed errors of the block cache. */
import { PeerdistError } from '../util/errors.js';

/** Block data does not match the segment's hash for that block (or has the wrong length). */
export class BadBlockError extends PeerdistError {
  constructor(message: string) {
    super('BAD_BLOCK', message);
  }
}

/** The index is held by another process (level allows one opener). */
export class CacheLockedError extends PeerdistError {
  constructor(dir: string, options?: { cause?: unknown }) {
    super('CACHE_LOCKED', `cache is in use by a running daemon; use its admin API or stop it (${dir})`, options);
  }
}

/** Invalid segment metadata or an unknown segment. */
export class CacheError extends PeerdistError {}

/** A cache package that is truncated, malformed or of an unknown version. */
export class PackageError extends PeerdistError {
  constructor(message: string) {
    super('BAD_PACKAGE', message);
  }
}
