// IDX files (the format of MNIST and Fashion-MNIST, http://yann.lecun.com/exdb/mnist/):
//   bytes 0-1: 0x00 0x00; byte 2: data type code; byte 3: number of dimensions d;
//   then d big-endian uint32 sizes; then the elements, big-endian, last index fastest.
// Files are often distributed gzipped; a gzip stream is recognised by its magic bytes rather
// than the file name, so renamed files still load.
import { writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { FormatError, readUserFile } from '../errors.js';

/** IDX element types by name, with their type codes. */
export const IdxType = {
  ubyte: 0x08,
  sbyte: 0x09,
  short: 0x0b,
  int: 0x0c,
  float: 0x0d,
  double: 0x0e,
} as const;
export type IdxTypeName = keyof typeof IdxType;

const TYPE_BY_CODE = new Map<number, { name: IdxTypeName; size: number }>([
  [0x08, { name: 'ubyte', size: 1 }],
  [0x09, { name: 'sbyte', size: 1 }],
  [0x0b, { name: 'short', size: 2 }],
  [0x0c, { name: 'int', size: 4 }],
  [0x0d, { name: 'float', size: 4 }],
  [0x0e, { name: 'double', size: 8 }],
]);

/**
 * Decoded IDX contents. ubyte data stays a Uint8Array (no copy to float for 47M-pixel image
 * files); every other type is converted to float32 (int32 values beyond 2^24 lose precision).
 */
export interface IdxArray {
  dims: number[];
  type: IdxTypeName;
  data: Float32Array | Uint8Array;
}

/** Refuse element counts that could not be allocated anyway, before trusting header sizes. */
const MAX_ELEMENTS = 2 ** 31 - 1;

function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/**
 * Decodes an IDX file's bytes (gzipped or raw). `file` names the source in error messages, which
 * never quote the file's bytes. `maxBytes` bounds the decompressed size of a gzipped file.
 * @throws FormatError on anything malformed: bad magic, unknown type code, zero dimensions,
 *   truncated data, trailing bytes, corrupt gzip, more than maxBytes decompressed.
 */
export function decodeIdx(bytes: Uint8Array, file = '<buffer>', maxBytes = Infinity): IdxArray {
  // Long by design (exempt in test/shape.test.ts): a decoder, one check per header field.
  let buf = bytes;
  if (isGzip(buf)) {
    // One byte more than the limit tells a stream that is too large from one that just fits.
    const cap = Math.min(maxBytes + 1, 2 ** 32);
    try {
      buf = gunzipSync(buf, Number.isFinite(cap) ? { maxOutputLength: cap } : {});
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ERR_BUFFER_TOO_LARGE')
        throw new FormatError(file, `decompresses to more than ${maxBytes} bytes`);
      throw new FormatError(file, `corrupt gzip data (${code ?? 'zlib error'})`);
    }
    if (buf.length > maxBytes)
      throw new FormatError(file, `decompresses to more than ${maxBytes} bytes`);
  }
  if (buf.length < 4) {
    throw new FormatError(
      file,
      `is ${buf.length} bytes long, too short for an IDX header (4 bytes)`,
    );
  }
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new FormatError(file, 'bad magic: an IDX file starts with bytes 00 00');
  }
  const code = buf[2]!;
  const type = TYPE_BY_CODE.get(code);
  if (!type) {
    throw new FormatError(
      file,
      'unknown IDX data type code in byte 2 (known: 08 ubyte, 09 sbyte, 0B short, 0C int, 0D float, 0E double)',
    );
  }
  const ndims = buf[3]!;
  if (ndims === 0) throw new FormatError(file, 'has zero dimensions');
  const headerBytes = 4 + 4 * ndims;
  if (buf.length < headerBytes) {
    throw new FormatError(
      file,
      `truncated header: ${ndims} dimensions need ${headerBytes} header bytes, found ${buf.length}`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    if (d === 0) throw new FormatError(file, `dimension ${i} has size 0`);
    dims.push(d);
    count *= d;
    if (count > MAX_ELEMENTS) {
      throw new FormatError(
        file,
        `dimensions ${dims.join(' x ')}... exceed ${MAX_ELEMENTS} elements`,
      );
    }
  }
  const expected = count * type.size;
  const found = buf.length - headerBytes;
  if (found < expected) {
    throw new FormatError(
      file,
      `truncated: dimensions ${dims.join(' x ')} of ${type.name} expected ${expected} bytes of data, found ${found}`,
    );
  }
  if (found > expected) {
    throw new FormatError(
      file,
      `${found - expected} trailing bytes after the data (dimensions ${dims.join(' x ')} of ${type.name} take ${expected} bytes)`,
    );
  }
  if (type.name === 'ubyte') {
    // A copy, not a view: a view would pin the whole (possibly pooled) file buffer.
    const data = new Uint8Array(expected);
    data.set(buf.subarray(headerBytes));
    return { dims, type: type.name, data };
  }
  const data = new Float32Array(count);
  const o = headerBytes;
  switch (type.name) {
    case 'sbyte':
      for (let i = 0; i < count; i++) data[i] = view.getInt8(o + i);
      break;
    case 'short':
      for (let i = 0; i < count; i++) data[i] = view.getInt16(o + 2 * i, false);
      break;
    case 'int':
      for (let i = 0; i < count; i++) data[i] = view.getInt32(o + 4 * i, false);
      break;
    case 'float':
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(o + 4 * i, false);
      break;
    case 'double':
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(o + 8 * i, false);
      break;
  }
  return { dims, type: type.name, data };
}

/** Reads an IDX file (gzipped or raw). @throws FormatError naming the file. */
export function readIdx(path: string): IdxArray {
  const bytes = readUserFile(path);
  return decodeIdx(bytes, path);
}

/**
 * Encodes an IDX file. Values are stored as `type` (default ubyte for a Uint8Array, else
 * float); integer types round and must be in range.
 */
export function encodeIdx(
  dims: readonly number[],
  data: ArrayLike<number>,
  type: IdxTypeName = data instanceof Uint8Array ? 'ubyte' : 'float',
): Uint8Array {
  if (dims.length === 0 || dims.length > 255) {
    throw new RangeError(`an IDX array needs 1 to 255 dimensions, got ${dims.length}`);
  }
  let count = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d <= 0 || d > 0xffffffff) {
      throw new RangeError(
        `IDX dimensions must be positive 32-bit integers, got ${dims.join(', ')}`,
      );
    }
    count *= d;
  }
  if (data.length !== count) {
    throw new RangeError(
      `dimensions ${dims.join(' x ')} need ${count} elements, got ${data.length}`,
    );
  }
  const info = TYPE_BY_CODE.get(IdxType[type])!;
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + count * info.size);
  const view = new DataView(out.buffer);
  out[2] = IdxType[type];
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const range: Partial<Record<IdxTypeName, [number, number]>> = {
    ubyte: [0, 255],
    sbyte: [-128, 127],
    short: [-32768, 32767],
    int: [-(2 ** 31), 2 ** 31 - 1],
  };
  const r = range[type];
  for (let i = 0; i < count; i++) {
    let v = data[i]!;
    if (r) {
      v = Math.round(v);
      if (!(v >= r[0] && v <= r[1])) {
        throw new RangeError(`element ${i} (${data[i]}) does not fit IDX type ${type}`);
      }
    }
    const at = header + i * info.size;
    switch (type) {
      case 'ubyte':
        view.setUint8(at, v);
        break;
      case 'sbyte':
        view.setInt8(at, v);
        break;
      case 'short':
        view.setInt16(at, v, false);
        break;
      case 'int':
        view.setInt32(at, v, false);
        break;
      case 'float':
        view.setFloat32(at, v, false);
        break;
      case 'double':
        view.setFloat64(at, v, false);
        break;
    }
  }
  return out;
}

export interface WriteIdxOptions {
  /** Element type. @defaultValue 'ubyte' for a Uint8Array, else 'float' */
  type?: IdxTypeName;
  /** Gzip the file. @defaultValue true when the path ends in .gz */
  gzip?: boolean;
}

/** Writes an IDX file (for tests and for exporting data to tools that read MNIST-style files). */
export function writeIdx(
  path: string,
  dims: readonly number[],
  data: ArrayLike<number>,
  opts: WriteIdxOptions = {},
): void {
  const raw = encodeIdx(dims, data, opts.type);
  writeFileSync(path, (opts.gzip ?? path.endsWith('.gz')) ? gzipSync(raw) : raw);
}
