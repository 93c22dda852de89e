/**
 * `cache add`: load a local copy of a file whose content information we have. Every block is read
 * from the file at its absolute offset, verified by putBlock, and stored; mismatches are reported.
 * Up to WRITE_CONCURRENCY blocks are in flight; each segment is pinned while its blocks are written.
 */
import { open } from 'node:fs/promises';
import { blockCount, blockRange, type ContentInfo } from '../protocol/pccrc/types.js';
import { BadBlockError } from './errors.js';
import { segmentMetaFrom } from './meta.js';
import type { BlockStore } from './store.js';
import { Window } from './window.js';

/** Block writes kept in flight (they share fdatasync calls per segment). */
const WRITE_CONCURRENCY = 16;

export interface AddReport {
  segments: number;
  blocks: number;
  /** Blocks verified and now present (including ones that already were). */
  stored: number;
  bytes: number;
  /** Blocks whose bytes in the file do not match the content information (or lie past its end). */
  mismatches: { segment: number; segmentId: string; block: number; reason: 'hash' | 'short file' }[];
}

export async function addFile(store: BlockStore, ci: ContentInfo, path: string): Promise<AddReport> {
  const fh = await open(path, 'r');
  const report: AddReport = { segments: 0, blocks: 0, stored: 0, bytes: 0, mismatches: [] };
  const window = new Window(WRITE_CONCURRENCY);
  try {
    const { size } = await fh.stat();
    for (const seg of ci.segments) {
      const meta = segmentMetaFrom(ci.version, ci.hashAlgorithm, seg);
      await store.addSegment(meta);
      report.segments++;
      const release = store.pin(seg.segmentId);
      try {
        const n = blockCount(ci.version, seg);
        for (let i = 0; i < n; i++) {
          report.blocks++;
          const [s, e] = blockRange(ci.version, seg, i);
          const at = seg.offset + s;
          const miss = (reason: 'hash' | 'short file') =>
            report.mismatches.push({ segment: seg.index, segmentId: seg.segmentId.toString('hex'), block: i, reason });
          if (at + (e - s) > size) {
            miss('short file');
            continue;
          }
          const buf = Buffer.alloc(e - s);
          let got = 0;
          while (got < buf.length) {
            const { bytesRead } = await fh.read(buf, got, buf.length - got, at + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          if (got < buf.length) {
            miss('short file');
            continue;
          }
          await window.run(async () => {
            try {
              await store.putBlock(seg.segmentId, i, buf);
              report.stored++;
              report.bytes += buf.length;
            } catch (err) {
              if (!(err instanceof BadBlockError)) throw err;
              miss('hash');
            }
          });
        }
        await window.drain();
      } finally {
        release();
      }
    }
  } finally {
    await window.drain().catch(() => undefined);
    await fh.close();
  }
  report.mismatches.sort((a, b) => a.segment - b.segment || a.block - b.block);
  return report;
}
