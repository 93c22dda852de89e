/** Typed errors of the download engine. `code` says why a download could not be completed. */
import { PeerdistError } from '../util/errors.js';

export type DownloadErrorCode =
  | 'ORIGIN_UNREACHABLE' // connection refused / reset / timed out before an answer
  | 'ORIGIN_STATUS' // the origin answered with a non-200 status
  | 'BAD_CONTENT_INFO' // content information malformed, wrong length or inconsistent
  | 'BAD_SIGNATURE' // signature required and missing or invalid
  | 'ORIGIN_MISMATCH' // the origin's bytes do not match its own content information
  | 'ORIGIN_CHANGED' // the content changed at the origin during the download (new ETag); nothing of it was used
  | 'BLOCK_FAILED' // a block could not be obtained from any source
  | 'CANCELLED'
  | 'ENGINE_CLOSED'
  | 'TOO_LARGE' // the download's block state would not fit in the memory the daemon may use
  | 'LOCAL'; // local failure (cache, temp file)

export class DownloadError extends PeerdistError {
  declare readonly code: DownloadErrorCode;
  /** The origin's HTTP status, for ORIGIN_STATUS (a proxy can pass it on). */
  readonly status?: number;
  constructor(code: DownloadErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    if (options?.status !== undefined) this.status = options.status;
  }
}
