/** Single byte-range parsing (RFC 9110 14.1.2) for the origin. Pure. */
import { ifRangeMatches } from './conditional.js';

export type RangeRequest =
  /** No usable Range: serve the whole entity with 200 (absent, not bytes=, syntactically invalid, or several ranges). */
  | { kind: 'none' }
  /** Serve [start, end] inclusive with 206. */
  | { kind: 'single'; start: number; end: number }
  /** 416 with Content-Range: bytes *\/size. */
  | { kind: 'unsatisfiable' };

const SPEC = /^(\d{0,16})-(\d{0,16})$/;

export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return { kind: 'none' };
  const specs = m[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length !== 1) return { kind: 'none' }; // multiple ranges: we answer 200 with the whole entity
  const s = SPEC.exec(specs[0]!);
  if (!s) return { kind: 'none' };
  const [a, b] = [s[1]!, s[2]!];
  if (a === '' && b === '') return { kind: 'none' };
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'single', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  if (b !== '' && Number(b) < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  return { kind: 'single', start, end };
}

/** What an identity response sends: status and inclusive byte span, or undefined for 416 (already answered). */
export interface BodyPlan {
  status: 200 | 206;
  start: number;
  end: number;
  length: number;
}

/**
 * Applies Range / If-Range to an entity of `size` bytes whose validators are in `headers` (ETag,
 * Last-Modified): sets Accept-Ranges, Content-Range and Content-Length in `headers` and returns the
 * span to send; answers 416 itself and returns undefined when the range is unsatisfiable.
 */
export function planBody(
  reqHeaders: { range?: string; 'if-range'?: string },
  headers: Record<string, string>,
  size: number,
  res: { writeHead(status: number, headers: Record<string, string>): { end(): void } },
): BodyPlan | undefined {
  headers['Accept-Ranges'] = 'bytes';
  const range = ifRangeMatches(reqHeaders['if-range'], headers['ETag'], headers['Last-Modified'])
    ? parseRange(reqHeaders.range, size)
    : { kind: 'none' as const };
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': '0' }).end();
    return undefined;
  }
  let plan: BodyPlan = { status: 200, start: 0, end: size - 1, length: size };
  if (range.kind === 'single') {
    plan = { status: 206, start: range.start, end: range.end, length: range.end - range.start + 1 };
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  }
  headers['Content-Length'] = String(plan.length);
  return plan;
}
