/**
 * Strings from the network (URLs, mDNS names and TXT values, peer addresses, origins' error
 * text) must not drive the user's terminal (issue 27.8): an ESC, BEL or C1 control can set the
 * window title, clear the screen, make hyperlinks or hide text, and bidi overrides reorder what
 * is shown. Every human-readable output and every derived file name goes through these. Pure.
 */

/**
 * Characters never shown raw: C0 controls, DEL, C1 controls, and the Unicode bidi controls and
 * separators that change how the rest of a line is displayed (ALM, LRM, RLM, LRE..RLO, LS, PS,
 * LRI..PDI) plus BOM / zero-width no-break space.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;
const UNSAFE_BUT_NEWLINE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

function escapeChar(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
}

/** One value for a terminal: every unsafe character (newlines included) as `\xNN` / `\u{NNNN}`. */
export function forTerminal(s: string): string {
  return String(s).replace(UNSAFE, escapeChar);
}

/** A whole text for a terminal: as `forTerminal`, but its own line breaks are kept. */
export function textForTerminal(s: string): string {
  return String(s).replace(UNSAFE_BUT_NEWLINE, escapeChar);
}

/**
 * JSON text that is safe to print: JSON.stringify already escapes C0; DEL, C1 and the bidi
 * controls are written as \uNNNN too. The parsed value is unchanged.
 */
export function jsonForTerminal(value: unknown, space?: number): string {
  // Raw C0 can only be the indentation's line breaks here (stringify escapes them in strings).
  return JSON.stringify(value, null, space).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A file name derived from remote data: unsafe characters (and `/`, `\`) become `_`. */
export function safeFileName(s: string): string {
  return String(s).replace(UNSAFE, '_').replace(/[/\\]/g, '_');
}

/** True when a string has a character that must not reach a terminal raw. */
export function hasUnsafeChars(s: string): boolean {
  return new RegExp(UNSAFE.source).test(s);
}
