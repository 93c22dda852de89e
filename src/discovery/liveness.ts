/**
 * Our extension for `peerdist doctor`: every peerdist daemon answers an MS-PCCRD v1 probe for this
 * one segment ID (SHA-256 of "peerdist liveness probe") with a ProbeMatch (BlockCount 1), whatever
 * its cache holds, so a machine can check that its probes reach other daemons and their answers
 * come back. No content has this segment ID (it is not an HMAC of any HoD), and no block of it is
 * ever served. Windows peers do not answer it. See protocol/pccrd.md.
 */
import { createHash } from 'node:crypto';

export const LIVENESS_SEGMENT_ID: Buffer = createHash('sha256').update('peerdist liveness probe').digest();

export function isLivenessProbe(id: Buffer): boolean {
  return id.equals(LIVENESS_SEGMENT_ID);
}
