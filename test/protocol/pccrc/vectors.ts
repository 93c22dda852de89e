/** Loads fixtures/contentinfo/vectors.json (hex transcribed from vectors.md sections 1, 2, 3, 6). */
import { readFileSync } from 'node:fs';
import { fixture } from '../../helpers/paths.js';

export interface SegmentVector {
  offset: number;
  length: number;
  blockSize?: number;
  hod: string;
  kp: string;
  segmentId: string;
  blockHashes?: string[];
}
export interface BlobVector {
  blob: string;
  ks?: string;
  rangeStart?: number;
  rangeEnd?: number;
  chunking?: 'cdc' | 'fixed';
  segments: SegmentVector[];
}
export interface Vectors {
  constantC: string;
  iis85: {
    secret: string;
    contentLength: number;
    v1: BlobVector & { ks: string };
    v2: BlobVector & { ks: string; segment0Sha512: string };
  };
  synthetic: {
    secretAscii: string;
    secret: string;
    ksV1: string;
    ksV2: string;
    T: { length: number; v1: BlobVector; v2: BlobVector };
    M: { length: number; sha256: string; v1: BlobVector; v2: BlobVector };
  };
}

export const vectors: Vectors = JSON.parse(readFileSync(fixture('contentinfo', 'vectors.json'), 'utf8'));
export const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** Synthetic content T (100 bytes, T[i] = i) and M (150000 bytes, M[i] = i mod 251). */
export function contentT(): Buffer {
  return Buffer.from(Array.from({ length: 100 }, (_, i) => i));
}
export function contentM(): Buffer {
  const b = Buffer.alloc(150000);
  for (let i = 0; i < b.length; i++) b[i] = i % 251;
  return b;
}
