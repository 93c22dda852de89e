import { PACKED_IDS } from '../protocol/pccrd/values.js';

/**
 * Hex keys of a datagram's segment IDs, made once per datagram (issue 24 item 3): in a flash
 * crowd a daemon handles about 1,200 datagrams of up to 255 IDs each per download, and turning
 * every ID into hex (and upper case) again for each table it is looked up in (the store, damping,
 * follow-ups, the watch's peer table) was a large part of discovery's CPU. Here the IDs are
 * hexed in one call and each ID's key is a substring of that.
 *
 * Such a substring shares the datagram's whole hex string (V8 sliced strings), so keys kept in a
 * long-lived table are copied first (ownKey).
 */
export class SegmentKeys {
  private lowerAll?: string;
  private upperAll?: string;
  /** Hex characters per ID when every ID has the same length, else 0 (then `offsets`). */
  private readonly width: number;
  private offsets?: number[];

  constructor(private readonly ids: readonly Buffer[]) {
    const len = ids[0]?.length ?? 0;
    let same = true;
    for (let k = 1; k < ids.length && same; k++) same = ids[k]!.length === len;
    this.width = same ? 2 * len : 0;
  }

  get length(): number {
    return this.ids.length;
  }

  /** Lower-case hex of ID `i` (the store's key). */
  lower(i: number): string {
    return this.slice(this.lowerAll ?? this.hexAll(), i);
  }

  /** Upper-case hex of ID `i` (segmentIdHex; discovery's tables). */
  upper(i: number): string {
    this.upperAll ??= (this.lowerAll ?? this.hexAll()).toUpperCase();
    return this.slice(this.upperAll, i);
  }

  private slice(all: string, i: number): string {
    if (this.width > 0) return all.substring(i * this.width, (i + 1) * this.width);
    const o = this.offsets!;
    return all.substring(o[i]!, o[i + 1]!);
  }

  private hexAll(): string {
    const ids = this.ids;
    if (this.width === 0) {
      const o = [0];
      for (const id of ids) o.push(o[o.length - 1]! + 2 * id.length);
      this.offsets = o;
    }
    const all = packedSpan(ids) ?? Buffer.concat(ids as Buffer[]);
    this.lowerAll = all.toString('hex');
    return this.lowerAll;
  }
}

/**
 * The IDs' bytes as one Buffer when they are consecutive views of one buffer (the IDs parsed from
 * one v2 probe are, and say so: withPackedIds), else undefined.
 */
export function packedSpan(ids: readonly Buffer[]): Buffer | undefined {
  const marked = (ids as { [PACKED_IDS]?: Buffer })[PACKED_IDS];
  if (marked) return marked;
  const first = ids[0];
  if (!first) return undefined;
  for (let k = 1; k < ids.length; k++) {
    const a = ids[k - 1]!;
    const b = ids[k]!;
    if (b.buffer !== a.buffer || b.byteOffset !== a.byteOffset + a.length) return undefined;
  }
  const last = ids[ids.length - 1]!;
  return Buffer.from(first.buffer, first.byteOffset, last.byteOffset + last.length - first.byteOffset);
}

/** A copy of `key` that does not keep a datagram's whole hex string alive (for keys stored in tables). */
export function ownKey(key: string): string {
  return Buffer.from(key, 'latin1').toString('latin1');
}
