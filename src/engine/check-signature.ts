/** Signature check of content information (our MS-PCCRTP extension, src/protocol/pccrtp/signature.ts). */
import { verifyContentInfoSignature } from '../protocol/pccrtp/signature.js';
import type { HeaderMap } from './origin-client.js';

/** undefined when the signature is valid for this URL's request-target, else the reason. */
export function checkSignature(
  publicKeyPem: string,
  url: string,
  headers: HeaderMap,
  body: Buffer,
): string | undefined {
  const u = new URL(url);
  const r = verifyContentInfoSignature({ publicKeyPem, path: u.pathname + u.search, headers, body });
  return r.ok ? undefined : `signature ${r.reason}`;
}
