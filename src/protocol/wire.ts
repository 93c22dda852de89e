/**
 * The one bounds-checked byte reader and writer every binary codec in src/protocol/ builds on.
 * Pure: no I/O. Every read and write names the wire field it handles, and every failure is raised
 * through the codec's own error factory, so a malformed message is rejected with an error that
 * says which field of which protocol was wrong (e.g. a ContentInfoError for
 * 'segments[3].cbBlockSize', a RetrievalParseError for 'SizeOfBlock').
 */

/** Builds the codec's typed error for a field (a ParseError subclass when parsing). */
export type FieldError = (field: string, message: string) => Error;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Cursor over untrusted bytes. Integers are read in the byte order fixed at construction. */
export class WireReader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    readonly littleEndian: boolean,
    protected readonly fail: FieldError,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Throws unless `n` more bytes are there. */
  need(n: number, field: string): void {
    if (n > this.remaining)
      throw this.fail(field, `truncated: need ${n} bytes at offset ${this.pos}, ${this.remaining} left`);
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.littleEndian ? this.buf.readUInt16LE(this.pos) : this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.littleEndian ? this.buf.readUInt32LE(this.pos) : this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A u64 that must fit a JavaScript number exactly (at most 2^53 - 1). */
  u64(field: string): number {
    this.need(8, field);
    const v = this.littleEndian ? this.buf.readBigUInt64LE(this.pos) : this.buf.readBigUInt64BE(this.pos);
    if (v > MAX_SAFE) throw this.fail(field, `value ${v} exceeds 2^53-1`);
    this.pos += 8;
    return Number(v);
  }

  /** `n` bytes as a view into the input (no copy: the caller must not keep it past the input's life). */
  view(n: number, field: string): Buffer {
    this.need(n, field);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** `n` bytes copied out, so a parsed model neither pins nor aliases the caller's buffer. */
  bytes(n: number, field: string): Buffer {
    return Buffer.from(this.view(n, field));
  }

  skip(n: number, field: string): void {
    this.need(n, field);
    this.pos += n;
  }

  /** Throws unless the input is fully consumed. */
  end(field = 'trailer'): void {
    if (this.remaining !== 0)
      throw this.fail(field, `${this.remaining} unexpected trailing bytes at offset ${this.pos}`);
  }
}

/** Appends fields to a growing message; integers are range-checked against their wire size. */
export class WireWriter {
  private parts: Buffer[] = [];
  private len = 0;
  constructor(
    readonly littleEndian: boolean,
    protected readonly fail: FieldError,
  ) {}

  get length(): number {
    return this.len;
  }

  private uint(n: number, size: 1 | 2 | 4, field: string): this {
    if (!Number.isInteger(n) || n < 0 || n >= 2 ** (8 * size)) throw this.fail(field, `${n} is not a u${8 * size}`);
    const b = Buffer.allocUnsafe(size);
    if (size === 1) b[0] = n;
    else if (size === 2) {
      if (this.littleEndian) b.writeUInt16LE(n);
      else b.writeUInt16BE(n);
    } else if (this.littleEndian) b.writeUInt32LE(n);
    else b.writeUInt32BE(n);
    return this.push(b);
  }

  u8(n: number, field: string): this {
    return this.uint(n, 1, field);
  }
  u16(n: number, field: string): this {
    return this.uint(n, 2, field);
  }
  u32(n: number, field: string): this {
    return this.uint(n, 4, field);
  }

  u64(n: number, field: string): this {
    if (!Number.isSafeInteger(n) || n < 0) throw this.fail(field, `${n} is not a u64 we can represent`);
    const b = Buffer.allocUnsafe(8);
    if (this.littleEndian) b.writeBigUInt64LE(BigInt(n));
    else b.writeBigUInt64BE(BigInt(n));
    return this.push(b);
  }

  bytes(b: Buffer): this {
    return this.push(b);
  }

  /** Zero bytes up to the next `align`-byte boundary, relative to the start of this writer. */
  pad(align: number): this {
    const p = (align - (this.len % align)) % align;
    return p ? this.push(Buffer.alloc(p)) : this;
  }

  protected push(b: Buffer): this {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.len);
  }
}
