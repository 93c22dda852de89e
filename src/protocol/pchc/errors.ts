/** Error types of the hosted cache (MS-PCHC) codec. */
import { ParseError, PeerdistError } from '../../util/errors.js';

/** Malformed MS-PCHC bytes; `field` names the message field that failed validation. */
export class HostedCacheParseError extends ParseError {
  constructor(field: string, message: string, code = 'PCHC_MALFORMED') {
    super(code, field, message);
  }
}

/** A message we were asked to build cannot be represented on the wire (a programming error). */
export class HostedCacheEncodeError extends PeerdistError {
  constructor(message: string) {
    super('PCHC_ENCODE', message);
  }
}
