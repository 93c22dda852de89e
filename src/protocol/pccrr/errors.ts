/** Error types of the retrieval (MS-PCCRR) area. */
import { ParseError, PeerdistError } from '../../util/errors.js';

/** Malformed MS-PCCRR bytes; `field` names the message field that failed validation. */
export class RetrievalParseError extends ParseError {
  constructor(field: string, message: string, code = 'pccrr-malformed') {
    super(code, field, message);
  }
}

/** A message we were asked to build cannot be represented on the wire (a programming error). */
export class RetrievalEncodeError extends PeerdistError {
  constructor(message: string) {
    super('pccrr-encode', message);
  }
}

/** Why an exchange with a peer failed (see protocol/pccrr.md, "Failure signalling"). */
export type PeerErrorCode = 'not-available' | 'bad-block' | 'timeout' | 'protocol' | 'http' | 'busy' | 'connect' | 'aborted'
  /** Not sent: the address failed on probation (never gave a valid answer) and is in quarantine. */
  | 'quarantined';

/** A failed block-retrieval attempt against one peer; `code` tells the caller what happened. */
export class PeerError extends PeerdistError {
  declare readonly code: PeerErrorCode;
  readonly peer: string;
  constructor(code: PeerErrorCode, peer: string, message: string, options?: { cause?: unknown }) {
    super(code, `${peer}: ${message}`, options);
    this.peer = peer;
  }
}
