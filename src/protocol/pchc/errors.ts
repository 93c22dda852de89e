/** Error types of the hosted cache (MS-PCHC) codec. */
import { type ErrorCode, ParseError, PeerdistError } from '../../util/errors.js';

type HostedCacheParseCode = Extract<ErrorCode, 'PCHC_MALFORMED' | 'PCHC_VERSION' | 'PCHC_TOO_LARGE'>;

/** Malformed MS-PCHC bytes; `field` names the message field that failed validation. */
export class HostedCacheParseError extends ParseError {
  declare readonly code: HostedCacheParseCode;
  constructor(field: string, message: string, code: HostedCacheParseCode = 'PCHC_MALFORMED') {
    super(code, field, message);
  }
}

/** A message we were asked to build cannot be represented on the wire (a programming error). */
export class HostedCacheEncodeError extends PeerdistError {
  constructor(message: string) {
    super('PCHC_ENCODE', message);
  }
}
