/** Typed rejection of discovery input (XML syntax, limits, or PCCRD message structure). */
import { type ErrorCode, ParseError } from '../../util/errors.js';

/** The codes a discovery parse error can carry (listed in src/util/error-codes.ts). */
export type DiscoveryErrorCode = Extract<ErrorCode, `PCCRD_${string}` | `XML_${string}`>;

export class DiscoveryParseError extends ParseError {
  declare readonly code: DiscoveryErrorCode;
  constructor(code: DiscoveryErrorCode, field: string, message: string) {
    super(code, field, message);
  }
}
