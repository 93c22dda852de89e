/** Signature check of content information (our MS-PCCRTP extension, src/origin/signature.ts). */
import { verifyContentInfoSignature } from '../origin/signature.js';
import type { HeaderMap } from './origin.js';

/** undefined when the signature is valid for this URL's request-target, else the reason. */
export function checkSignature(publicKeyPem: string, url: string, headers: HeaderMap, body: Buffer): string | undefined {
  const u = new URL(url);
  const r = verifyContentInfoSignature({ publicKeyPem, path: u.pathname + u.search, headers, body });
  return r.ok ? undefined : `signature ${r.reason}`;
}
