/** Typed rejection of discovery input (XML syntax, limits, or PCCRD message structure). */
import { ParseError } from '../../util/errors.js';

export class DiscoveryParseError extends ParseError {}
