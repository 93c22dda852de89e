/** Single byte-range parsing (RFC 9110 14.1.2) for the origin. Pure. */

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
