import { ParseError } from '../../util/errors.js';

/** Malformed content information (MS-PCCRC). `field` names the offending field, e.g. 'segments[3].cbBlockSize'. */
export class ContentInfoError extends ParseError {
  constructor(field: string, message: string) {
    super('BAD_CONTENT_INFO', field, message);
  }
}
