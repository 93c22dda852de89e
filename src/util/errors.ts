/**
 * Typed errors shared by every module. Parsers throw a subclass naming the offending field so a
 * caller (or a test) can tell *why* input was rejected without string matching. `code` is one of
 * the codes listed in ./error-codes.ts (documented for users in protocol/errors.md).
 */
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export class PeerdistError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Malformed wire input: `field` names the structure field that failed validation. */
export class ParseError extends PeerdistError {
  readonly field: string;
  constructor(code: ErrorCode, field: string, message: string) {
    super(code, `${field}: ${message}`);
    this.field = field;
  }
}

/** The command or options make no sense together (the CLI exits 2, as for a bad option value). */
export class UsageError extends PeerdistError {
  constructor(message: string) {
    super('USAGE', message);
  }
}
