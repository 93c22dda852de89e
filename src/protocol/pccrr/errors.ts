/** Error types of the retrieval (MS-PCCRR) area. */
import { type ErrorCode, ParseError, PeerdistError } from '../../util/errors.js';

/** Malformed MS-PCCRR bytes; `field` names the message field that failed validation. */
export class RetrievalParseError extends ParseError {
  declare readonly code: 'PCCRR_MALFORMED' | 'PCCRR_VERSION';
  constructor(field: string, message: string, code: 'PCCRR_MALFORMED' | 'PCCRR_VERSION' = 'PCCRR_MALFORMED') {
    super(code, field, message);
  }
}

/** A message we were asked to build cannot be represented on the wire (a programming error). */
export class RetrievalEncodeError extends PeerdistError {
  constructor(message: string) {
    super('PCCRR_ENCODE', message);
  }
}

/** Why an exchange with a peer failed (see protocol/pccrr.md, "Failure signalling"). */
export type PeerErrorCode = Extract<ErrorCode, `PEER_${string}` | 'BAD_BLOCK' | 'ABORTED'>;

/** A failed block-retrieval attempt against one peer; `code` tells the caller what happened. */
export class PeerError extends PeerdistError {
  declare readonly code: PeerErrorCode;
  readonly peer: string;
  constructor(code: PeerErrorCode, peer: string, message: string, options?: { cause?: unknown }) {
    super(code, `${peer}: ${message}`, options);
    this.peer = peer;
  }
}
