/**
 * Extensible BLOB v1 carrying segment ages (MS-PCCRR extensible blob; protocol/pccrd.md, "v2 SegmentAges"): u16 BE version (1), u8 units, u8 count,
 * then count x { u8 segment index, 24-bit little-endian age }. Used base64-encoded in the v2
 * ProbeMatch `PeerDist:SegmentAges` element.
 */
import { DiscoveryParseError } from './errors.js';

/** 1 = seconds, 2 = 1/10 s, 3 = 1/100 s (what senders should use), 4 = milliseconds. */
export type SegmentAgeUnits = 1 | 2 | 3 | 4;

export interface SegmentAges {
  units: SegmentAgeUnits;
  entries: Array<{ index: number; age: number }>;
}

const MS_PER_UNIT: Record<SegmentAgeUnits, number> = { 1: 1000, 2: 100, 3: 10, 4: 1 };
export const MAX_AGE = 0xffffff;

export function encodeSegmentAges(ages: SegmentAges): Buffer {
  if (ages.entries.length > 255) throw new RangeError('at most 255 segment ages');
  const out = Buffer.alloc(4 + 4 * ages.entries.length);
  out.writeUInt16BE(1, 0);
  out.writeUInt8(ages.units, 2);
  out.writeUInt8(ages.entries.length, 3);
  ages.entries.forEach((e, k) => {
    if (!Number.isInteger(e.index) || e.index < 0 || e.index > 255) throw new RangeError(`segment index ${e.index}`);
    const age = Math.min(MAX_AGE, Math.max(0, Math.floor(e.age)));
    out.writeUInt8(e.index, 4 + 4 * k);
    out.writeUIntLE(age, 5 + 4 * k, 3);
  });
  return out;
}

/** Validates in the order size, units, size vs count (protocol/pccrd.md); throws DiscoveryParseError. */
export function decodeSegmentAges(buf: Buffer): SegmentAges {
  if (buf.length < 4) throw new DiscoveryParseError('PCCRD_INVALID', 'SegmentAges', 'blob shorter than 4 bytes');
  const version = buf.readUInt16BE(0);
  if (version !== 1) throw new DiscoveryParseError('PCCRD_INVALID', 'SegmentAges', `unknown blob version ${version}`);
  const units = buf.readUInt8(2);
  if (units < 1 || units > 4) throw new DiscoveryParseError('PCCRD_INVALID', 'SegmentAges', `units ${units}`);
  const count = buf.readUInt8(3);
  if (buf.length < 4 * (count + 1))
    throw new DiscoveryParseError('PCCRD_INVALID', 'SegmentAges', `blob too short for ${count} entries`);
  const entries: SegmentAges['entries'] = [];
  for (let k = 0; k < count; k++) entries.push({ index: buf.readUInt8(4 + 4 * k), age: buf.readUIntLE(5 + 4 * k, 3) });
  return { units: units as SegmentAgeUnits, entries };
}

export function ageToMs(age: number, units: SegmentAgeUnits): number {
  return age * MS_PER_UNIT[units];
}

export function msToAge(ms: number, units: SegmentAgeUnits): number {
  return Math.min(MAX_AGE, Math.max(0, Math.floor(ms / MS_PER_UNIT[units])));
}
