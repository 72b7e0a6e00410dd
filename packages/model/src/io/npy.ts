// NumPy .npy files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   magic "\x93NUMPY", major and minor version bytes, header length (uint16 LE in 1.0, uint32
//   LE in 2.0 and 3.0), then an ASCII (3.0: UTF-8) Python dict literal with keys descr,
//   fortran_order and shape, padded with spaces and ended by '\n' so that the data starts at
//   a multiple of 64 bytes; then the raw array data.
// Written files are version 1.0 whenever the header fits (always, for the shapes used here) so
// that every NumPy release reads them. Readers accept 1.0, 2.0 and 3.0.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernels } from '@spinmesh/kernels';
import { FormatError, SpecError, readUserFile } from '../errors.js';
import { Network, type NetworkSpec } from '../network.js';

export type NpyData = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface NpyArray {
  data: NpyData;
  shape: number[];
  /** The descr of the file, e.g. '<f4'. */
  descr: string;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ALIGN = 64;

interface DtypeInfo {
  kind: 'f4' | 'f8' | 'i4' | 'u1';
  size: number;
  little: boolean;
}

function descrOf(data: NpyData): string {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof Uint8Array) return '|u1';
  throw new TypeError('npy data must be a Float32Array, Float64Array, Int32Array or Uint8Array');
}

function parseDescr(descr: string): DtypeInfo | undefined {
  const m = /^([<>|=]?)([fiu])(\d+)$/.exec(descr);
  if (!m) return undefined;
  const [, order, k, n] = m;
  const kind = `${k}${n}`;
  if (kind !== 'f4' && kind !== 'f8' && kind !== 'i4' && kind !== 'u1') return undefined;
  // '=' is native order; every platform Node supports here is little-endian.
  return { kind, size: Number(n), little: order !== '>' };
}

function shapeText(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
}

/** Encodes an array as a version 1.0 .npy file (2.0 only if the header would not fit). */
export function encodeNpy(data: NpyData, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new SpecError('npy.shape', `must be non-negative integers, got [${shape.join(', ')}]`);
  }
  if (count !== data.length) {
    throw new SpecError(
      'npy.shape',
      `(${shape.join(', ')}) holds ${count} elements, data has ${data.length}`,
    );
  }
  const dict = `{'descr': '${descrOf(data)}', 'fortran_order': False, 'shape': ${shapeText(shape)}, }`;
  let major = 1;
  let pre = 10;
  let total = Math.ceil((pre + dict.length + 1) / ALIGN) * ALIGN;
  if (total - pre > 0xffff) {
    major = 2;
    pre = 12;
    total = Math.ceil((pre + dict.length + 1) / ALIGN) * ALIGN;
  }
  const headerLen = total - pre;
  const header = dict.padEnd(headerLen - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, headerLen, true);
  else view.setUint32(8, headerLen, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

// A reader for the small subset of Python literal syntax that .npy headers use: a dict with
// string keys whose values are strings, True/False, or tuples of non-negative integers.
type PyValue = string | boolean | number[];

function parseHeaderDict(text: string, fail: (msg: string) => never): Map<string, PyValue> {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const expect = (ch: string): void => {
    ws();
    if (text[i] !== ch) fail(`header dict: expected '${ch}' at character ${i}`);
    i++;
  };
  const str = (): string => {
    ws();
    const q = text[i];
    if (q !== "'" && q !== '"') fail(`header dict: expected a string at character ${i}`);
    const end = text.indexOf(q!, i + 1);
    if (end < 0) fail('header dict: unterminated string');
    const s = text.slice(i + 1, end);
    i = end + 1;
    return s;
  };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') return str();
    if (text.startsWith('True', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('False', i)) {
      i += 5;
      return false;
    }
    if (c === '(') {
      i++;
      const dims: number[] = [];
      for (;;) {
        ws();
        if (text[i] === ')') {
          i++;
          return dims;
        }
        const m = /^\d+L?/.exec(text.slice(i));
        if (!m) fail(`header dict: expected an integer in the shape at character ${i}`);
        dims.push(Number(m[0].replace('L', '')));
        i += m[0].length;
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== ')')
          fail(`header dict: expected ',' or ')' in the shape at character ${i}`);
      }
    }
    return fail(`header dict: unsupported value at character ${i}`);
  };
  const out = new Map<string, PyValue>();
  expect('{');
  for (;;) {
    ws();
    if (text[i] === '}') {
      i++;
      break;
    }
    const k = str();
    expect(':');
    out.set(k, value());
    ws();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') fail(`header dict: expected ',' or '}' at character ${i}`);
  }
  ws();
  if (i !== text.length) fail(`header dict: unexpected text after the dict at character ${i}`);
  return out;
}

export interface ReadNpyOptions {
  /** What '<f8' data becomes. @defaultValue 'float64' */
  float64As?: 'float64' | 'float32';
}

/** Decodes a .npy file's bytes. `file` names the source in errors. @throws FormatError */
export function decodeNpy(
  bytes: Uint8Array,
  file = '<buffer>',
  opts: ReadNpyOptions = {},
): NpyArray {
  // Long by design (exempt in test/shape.test.ts): a decoder, one check per header field.
  const fail = (msg: string): never => {
    throw new FormatError(file, msg);
  };
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) {
    fail('not a .npy file (it does not start with \\x93NUMPY)');
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (major < 1 || major > 3 || minor !== 0) {
    fail(`.npy format version ${major}.${minor} is not supported (supported: 1.0, 2.0, 3.0)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pre = major === 1 ? 10 : 12;
  if (bytes.length < pre)
    fail(`truncated: ${bytes.length} bytes is too short for a version ${major}.0 preamble`);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = pre + headerLen;
  if (bytes.length < dataStart) {
    fail(
      `truncated: the header is ${headerLen} bytes but the file has ${bytes.length - pre} after the preamble`,
    );
  }
  const headerBytes = bytes.subarray(pre, dataStart);
  const header = major === 3 ? new TextDecoder('utf-8').decode(headerBytes) : latin1(headerBytes);
  const dict = parseHeaderDict(header.trimEnd(), fail);
  const descr = dict.get('descr');
  const fortran = dict.get('fortran_order');
  const shape = dict.get('shape');
  if (typeof descr !== 'string') return fail("header has no string 'descr'");
  if (typeof fortran !== 'boolean') return fail("header has no boolean 'fortran_order'");
  if (!Array.isArray(shape)) return fail("header has no tuple 'shape'");
  if (fortran) {
    fail(
      'fortran_order is True: only C-order arrays are supported (save with numpy.ascontiguousarray)',
    );
  }
  const dt = parseDescr(descr);
  if (!dt) return fail('its dtype is not supported (supported: <f4, <f8, <i4, |u1)');
  const count = shape.reduce((a, b) => a * b, 1);
  const expected = count * dt.size;
  const found = bytes.length - dataStart;
  if (found < expected) {
    fail(
      `truncated: shape ${shapeText(shape)} of ${descr} expected ${expected} bytes of data, found ${found}`,
    );
  }
  if (found > expected)
    fail(`${found - expected} trailing bytes after the data of shape ${shapeText(shape)}`);
  // A fresh, aligned copy (readFileSync's Buffer may be a view into a shared pool at any
  // offset), so typed-array views on it are safe.
  const raw = new Uint8Array(expected);
  raw.set(bytes.subarray(dataStart, dataStart + expected));
  let data: NpyData;
  if (dt.little) {
    switch (dt.kind) {
      case 'f4':
        data = new Float32Array(raw.buffer, 0, count);
        break;
      case 'f8':
        data = new Float64Array(raw.buffer, 0, count);
        break;
      case 'i4':
        data = new Int32Array(raw.buffer, 0, count);
        break;
      case 'u1':
        data = raw;
        break;
    }
  } else {
    const dv = new DataView(raw.buffer);
    switch (dt.kind) {
      case 'f4':
        data = Float32Array.from({ length: count }, (_, i) => dv.getFloat32(4 * i, false));
        break;
      case 'f8':
        data = Float64Array.from({ length: count }, (_, i) => dv.getFloat64(8 * i, false));
        break;
      case 'i4':
        data = Int32Array.from({ length: count }, (_, i) => dv.getInt32(4 * i, false));
        break;
      case 'u1':
        data = raw;
        break;
    }
  }
  if (data instanceof Float64Array && opts.float64As === 'float32') data = Float32Array.from(data);
  return { data, shape: [...shape], descr };
}

/** Writes an array as a .npy file. */
export function writeNpy(path: string, data: NpyData, shape: readonly number[]): void {
  writeFileSync(path, encodeNpy(data, shape));
}

/** Reads a .npy file. @throws FormatError naming the file. */
export function readNpy(path: string, opts: ReadNpyOptions = {}): NpyArray {
  const bytes = readUserFile(path);
  return decodeNpy(bytes, path, opts);
}

/** The manifest.json written next to the arrays by exportNpyDir. */
export interface NpyManifest {
  format: 'spinmesh-npy';
  version: 1;
  network: NetworkSpec;
  arrays: { name: string; file: string; shape: number[]; dtype: '<f4' }[];
}

/**
 * Writes each of `network.parameters()` to `<dir>/<name>.npy` (float32) plus a manifest.json
 * holding the network spec, creating dir if needed. For inspection in NumPy:
 * `numpy.load('<dir>/v-h.weights.npy')` is the visible x hidden weight matrix.
 */
export function exportNpyDir(network: Network, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const f of npyFiles(network)) writeFileSync(join(dir, f.file), f.bytes);
}

/** The files exportNpyDir writes, in memory: one .npy per parameter, then manifest.json. */
export function npyFiles(network: Network): { file: string; bytes: Uint8Array }[] {
  const manifest: NpyManifest = {
    format: 'spinmesh-npy',
    version: 1,
    network: network.spec,
    arrays: [],
  };
  const out: { file: string; bytes: Uint8Array }[] = [];
  for (const p of network.parameters()) {
    network.kernels.download(p.data);
    const file = `${p.name}.npy`;
    out.push({ file, bytes: encodeNpy(p.data, p.shape) });
    manifest.arrays.push({ name: p.name, file, shape: p.shape, dtype: '<f4' });
  }
  out.push({
    file: 'manifest.json',
    bytes: Buffer.from(JSON.stringify(manifest, null, 2) + '\n'),
  });
  return out;
}

/**
 * Reads a directory written by exportNpyDir (arrays may have been edited or replaced in NumPy:
 * float32 or float64 are accepted). @throws FormatError for a missing or malformed file or an
 * array whose shape differs from the spec; SpecError for an invalid spec.
 */
export function importNpyDir(dir: string, kernels: Kernels): Network {
  const manifestPath = join(dir, 'manifest.json');
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code) {
      const hint =
        err.code === 'ENOENT' && safeList(dir).some((f) => f.endsWith('.npy'))
          ? ' (a directory from exportNpyDir has one)'
          : '';
      throw new FormatError(manifestPath, `cannot be read (${err.code})${hint}`);
    }
    throw new FormatError(manifestPath, 'is not valid JSON');
  }
  if (typeof manifest !== 'object' || manifest === null || !('network' in manifest)) {
    throw new FormatError(manifestPath, 'has no network spec');
  }
  const network = new Network((manifest as { network: NetworkSpec }).network, kernels);
  for (const p of network.parameters()) {
    const path = join(dir, `${p.name}.npy`);
    const arr = readNpy(path, { float64As: 'float32' });
    if (!(arr.data instanceof Float32Array)) {
      throw new FormatError(
        path,
        `array '${p.name}' has dtype ${arr.descr}, expected float32 (<f4) or float64 (<f8)`,
      );
    }
    if (arr.shape.length !== p.shape.length || arr.shape.some((d, i) => d !== p.shape[i])) {
      throw new FormatError(
        path,
        `array '${p.name}' has shape ${shapeText(arr.shape)}, the network spec needs ${shapeText(p.shape)}`,
      );
    }
    checkValues(path, p.name, arr.data, p.name.endsWith('.lateral') ? p.shape[0]! : 0);
    p.data.set(arr.data);
    kernels.upload(p.data);
  }
  return network;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// Energies assume finite parameters and lateral matrices that are symmetric with a zero
// diagonal; an array edited outside spinmesh could break either silently.
function checkValues(file: string, name: string, a: Float32Array, lateralN: number): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!))
      throw new FormatError(file, `array '${name}' has a non-finite value at flat index ${i}`);
  }
  const n = lateralN;
  for (let i = 0; i < n; i++) {
    if (a[i * n + i] !== 0)
      throw new FormatError(
        file,
        `array '${name}' must have a zero diagonal (element [${i}, ${i}] is ${a[i * n + i]})`,
      );
    for (let j = i + 1; j < n; j++) {
      if (a[i * n + j] !== a[j * n + i]) {
        throw new FormatError(
          file,
          `array '${name}' must be symmetric (elements [${i}, ${j}] and [${j}, ${i}] differ)`,
        );
      }
    }
  }
}
