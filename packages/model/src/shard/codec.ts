// A small self-describing binary container for shard checkpoints: magic, a JSON header that
// lists the arrays, then the arrays' bytes (each 8-byte aligned, little-endian as the host).
import { FormatError } from '../errors.js';

export type CodecArray = Float32Array | Float64Array | Uint8Array;

const MAGIC = 'SMSHARD1';

interface Entry {
  name: string;
  type: 'f32' | 'f64' | 'u8';
  length: number;
}

/** Byte arrays laid end to end (a checkpoint keeps variable-length messages this way). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((s, b) => s + b.length, 0));
  let off = 0;
  for (const b of parts) {
    all.set(b, off);
    off += b.length;
  }
  return all;
}

const pad8 = (n: number): number => (n + 7) & ~7;

function typeOf(a: CodecArray): Entry['type'] {
  return a instanceof Float32Array ? 'f32' : a instanceof Float64Array ? 'f64' : 'u8';
}

/** Encodes a JSON-able header and named arrays into one buffer. */
export function encodeContainer(
  header: Record<string, unknown>,
  arrays: readonly (readonly [string, CodecArray])[],
): Uint8Array {
  const entries: Entry[] = arrays.map(([name, a]) => ({ name, type: typeOf(a), length: a.length }));
  const json = new TextEncoder().encode(JSON.stringify({ ...header, arrays: entries }));
  let size = pad8(8 + 4 + json.length);
  for (const [, a] of arrays) size += pad8(a.byteLength);
  const out = new Uint8Array(size);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, 12);
  let off = pad8(12 + json.length);
  for (const [, a] of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += pad8(a.byteLength);
  }
  return out;
}

/** Decodes what encodeContainer wrote. @throws FormatError */
export function decodeContainer(
  bytes: Uint8Array,
  file = 'checkpoint',
): { header: Record<string, unknown>; arrays: Map<string, CodecArray> } {
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC)
    throw new FormatError(file, 'is not a spinmesh shard checkpoint');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLen = view.getUint32(8, true);
  if (12 + jsonLen > bytes.length) throw new FormatError(file, 'is truncated (header)');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + jsonLen))) as Record<
      string,
      unknown
    >;
  } catch {
    throw new FormatError(file, 'has an unreadable header');
  }
  const entries = header['arrays'];
  if (!Array.isArray(entries)) throw new FormatError(file, 'has no array list');
  const arrays = new Map<string, CodecArray>();
  let off = pad8(12 + jsonLen);
  for (const e of entries as Entry[]) {
    const width = e.type === 'f32' ? 4 : e.type === 'f64' ? 8 : 1;
    const len = e.length * width;
    if (!Number.isInteger(e.length) || e.length < 0 || off + len > bytes.length)
      throw new FormatError(file, `is truncated (array ${String(e.name)})`);
    // copy into an aligned buffer of its own
    const raw = bytes.slice(off, off + len);
    const a =
      e.type === 'f32'
        ? new Float32Array(raw.buffer, 0, e.length)
        : e.type === 'f64'
          ? new Float64Array(raw.buffer, 0, e.length)
          : raw;
    arrays.set(e.name, a);
    off += pad8(len);
  }
  return { header, arrays };
}
