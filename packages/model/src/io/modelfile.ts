// spinmesh model files (.smm by convention), format version 1. Also described, with an
// example, in packages/model/MODEL_FORMAT.md; keep the two in step.
//
// Layout (all integers little-endian):
//   offset 0   8 bytes   magic: ASCII 'SPINMESH'
//   offset 8   uint32    format version: 1
//   offset 12  uint32    H: length in bytes of the JSON header
//   offset 16  H bytes   header: UTF-8 JSON (below)
//   then zero bytes up to D = the next multiple of 8 (D = 16 + H rounded up to 8)
//   offset D   the array data: array k occupies bytes [D + offset_k, D + offset_k + bytes_k).
//              Offsets are multiples of 8 (zero padding between arrays), arrays do not
//              overlap, and the file ends exactly where the last array ends.
//
// Header:
//   {
//     "format": 1,                        same as the version field
//     "created": "2025-01-01T00:00:00.000Z",
//     "network": NetworkSpec,             layers and connections, as validateNetworkSpec takes
//     "arrays": [{ "name", "role", "dtype": "f4", "shape": [..], "offset", "bytes" }, ...],
//     "training": any JSON,               optional: config and counters (epoch, step, seed, ...)
//     "meta": any JSON                    optional: free-form (dataset name, notes, ...)
//   }
//   role "parameter": one of Network.parameters(), by its name ("v.bias", "v.lateral",
//     "v-h.weights"); every parameter of the network appears exactly once with the shape the
//     spec implies. role "state": training state the trainer chose to keep (persistent chains,
//     momentum velocities, centring offsets), any name and shape.
//   dtype "f4" is IEEE-754 float32, little-endian, C (row-major) order; bytes = 4 * prod(shape).
//
// Compatibility: a reader refuses versions it does not know rather than guessing. Adding
// optional header fields does not change the version; changing the layout or the meaning of
// an existing field does.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import type { Kernels } from '@spinmesh/kernels';
import { FormatError, SpecError, readUserFile } from '../errors.js';
import { Network, validateNetworkSpec, type NetworkSpec } from '../network.js';
import { isRecord } from '../checks.js';

/** The 8 magic bytes at the start of every model file. */
export const MODEL_FILE_MAGIC = 'SPINMESH';
/** The format version this build writes and the only one it reads. */
export const MODEL_FILE_VERSION = 1;

const PREAMBLE = 16;
const ALIGN = 8;

export interface ModelArrayEntry {
  name: string;
  role: 'parameter' | 'state';
  dtype: 'f4';
  shape: number[];
  /** Byte offset from the start of the data section. */
  offset: number;
  bytes: number;
}

export interface ModelFileHeader {
  format: 1;
  created: string;
  network: NetworkSpec;
  arrays: ModelArrayEntry[];
  training?: unknown;
  meta?: unknown;
}

/** A named float32 array that is not a network parameter (training state). */
export interface StateArray {
  data: Float32Array;
  shape: number[];
}

export interface ModelExtras {
  /** Training configuration and counters (epoch, step, seed, ...); any JSON value. */
  training?: unknown;
  /** Training-state arrays to restore when resuming (persistent chains, velocities, ...). */
  state?: Record<string, StateArray>;
  /** Free-form JSON metadata. */
  meta?: unknown;
}

export interface LoadedModel {
  network: Network;
  /** undefined when the file has none. */
  training: unknown;
  /** Training-state arrays by name (empty when the file has none). */
  state: Record<string, StateArray>;
  meta: unknown;
  /** ISO 8601 time the file was written. */
  created: string;
}

const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;
const product = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Encodes a network and optional training state as model file bytes. */
export function encodeModel(network: Network, extra: ModelExtras = {}): Uint8Array {
  const blocks: { entry: ModelArrayEntry; data: Float32Array }[] = [];
  let offset = 0;
  const add = (
    name: string,
    role: ModelArrayEntry['role'],
    data: Float32Array,
    shape: number[],
  ): void => {
    const bytes = data.length * 4;
    blocks.push({ entry: { name, role, dtype: 'f4', shape: [...shape], offset, bytes }, data });
    offset = alignUp(offset + bytes);
  };
  for (const p of network.parameters()) {
    network.kernels.download(p.data);
    add(p.name, 'parameter', p.data, p.shape);
  }
  for (const [name, s] of Object.entries(extra.state ?? {})) {
    const field = `state['${name}']`;
    if (name === '') throw new SpecError('state', 'array names must be non-empty');
    if (!(s.data instanceof Float32Array))
      throw new SpecError(`${field}.data`, 'must be a Float32Array');
    if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SpecError(`${field}.shape`, 'must be an array of non-negative integers');
    }
    if (product(s.shape) !== s.data.length) {
      throw new SpecError(
        `${field}.shape`,
        `[${s.shape.join(', ')}] holds ${product(s.shape)} values, data has ${s.data.length}`,
      );
    }
    add(name, 'state', s.data, s.shape);
  }
  const header: ModelFileHeader = {
    format: MODEL_FILE_VERSION,
    created: new Date().toISOString(),
    network: network.spec,
    arrays: blocks.map((b) => b.entry),
  };
  for (const key of ['training', 'meta'] as const) {
    if (extra[key] === undefined) continue;
    try {
      // Round-trip now so an unserialisable value fails here, naming the field, not later.
      header[key] = JSON.parse(JSON.stringify(extra[key])) as unknown;
    } catch (e) {
      throw new SpecError(key, `must be JSON-serialisable (${(e as Error).message})`);
    }
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = alignUp(PREAMBLE + json.length);
  const last = blocks[blocks.length - 1]!.entry;
  const out = new Uint8Array(dataStart + last.offset + last.bytes);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = MODEL_FILE_MAGIC.charCodeAt(i);
  view.setUint32(8, MODEL_FILE_VERSION, true);
  view.setUint32(12, json.length, true);
  out.set(json, PREAMBLE);
  for (const { entry, data } of blocks) {
    const at = dataStart + entry.offset;
    // Explicit little-endian writes keep the file portable whatever the host byte order.
    for (let i = 0; i < data.length; i++) view.setFloat32(at + 4 * i, data[i]!, true);
  }
  return out;
}

function parseEntry(e: unknown, i: number, fail: (m: string) => never): ModelArrayEntry {
  const at = `header.arrays[${i}]`;
  if (!isRecord(e)) return fail(`${at} is not an object`);
  const { name, role, dtype, shape, offset, bytes } = e;
  if (typeof name !== 'string' || name === '') fail(`${at}.name must be a non-empty string`);
  const label = at;
  if (role !== 'parameter' && role !== 'state')
    fail(`${label}.role must be 'parameter' or 'state'`);
  if (dtype !== 'f4') fail(`${label}.dtype is not 'f4', the only one supported`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    fail(`${label}.shape must be an array of non-negative integers`);
  }
  const sh = shape as number[];
  if (!Number.isSafeInteger(offset) || (offset as number) < 0 || (offset as number) % ALIGN !== 0) {
    fail(`${label}.offset must be a non-negative multiple of ${ALIGN}`);
  }
  if (bytes !== 4 * product(sh)) {
    fail(
      `${label}.bytes does not match its shape (shape [${sh.join(', ')}] of f4 needs ${4 * product(sh)})`,
    );
  }
  return {
    name: name as string,
    role: role as ModelArrayEntry['role'],
    dtype: 'f4',
    shape: sh,
    offset: offset as number,
    bytes: bytes as number,
  };
}

/**
 * Decodes model file bytes into a network (parameters uploaded through `kernels`) and its
 * training state. `file` names the source in errors.
 * @throws FormatError for anything wrong with the bytes, naming the file.
 */
export function decodeModel(bytes: Uint8Array, kernels: Kernels, file = '<buffer>'): LoadedModel {
  // Long by design (exempt in test/shape.test.ts): a decoder, one check per section.
  const fail = (msg: string): never => {
    throw new FormatError(file, msg);
  };
  const magicOk =
    bytes.length >= 8 && [...MODEL_FILE_MAGIC].every((c, i) => bytes[i] === c.charCodeAt(0));
  if (!magicOk) fail("not a spinmesh model file (it does not start with 'SPINMESH')");
  if (bytes.length < PREAMBLE)
    fail(`truncated: ${bytes.length} bytes is shorter than the ${PREAMBLE}-byte preamble`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== MODEL_FILE_VERSION) {
    fail(
      `model file format version ${version} is not supported by this build (supports ${MODEL_FILE_VERSION})`,
    );
  }
  const headerLen = view.getUint32(12, true);
  if (PREAMBLE + headerLen > bytes.length) {
    fail(
      `truncated: the header is ${headerLen} bytes but only ${bytes.length - PREAMBLE} follow the preamble`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(
        bytes.subarray(PREAMBLE, PREAMBLE + headerLen),
      ),
    );
  } catch {
    // (The parser's message would quote the bytes.)
    fail('header is not valid UTF-8 JSON');
  }
  if (!isRecord(header)) return fail('header is not a JSON object');
  if (header['format'] !== version) fail(`header.format is not ${version}`);
  let spec: NetworkSpec;
  try {
    spec = validateNetworkSpec(header['network'], 'header.network');
  } catch (e) {
    if (e instanceof SpecError) return fail(e.message);
    throw e;
  }
  if (!Array.isArray(header['arrays'])) return fail('header.arrays is not an array');
  const entries = (header['arrays'] as unknown[]).map((e, i) => parseEntry(e, i, fail));
  const dataStart = alignUp(PREAMBLE + headerLen);
  const dataLen = bytes.length - dataStart;
  let end = 0;
  for (const e of [...entries].sort((a, b) => a.offset - b.offset)) {
    if (e.offset < end) fail(`array '${e.name}' overlaps the array before it`);
    end = e.offset + e.bytes;
    if (end > dataLen) {
      fail(
        `truncated: array '${e.name}' ends at byte ${dataStart + end} but the file has ${bytes.length} bytes`,
      );
    }
  }
  if (dataLen > end) fail(`${dataLen - end} trailing bytes after the last array`);

  const network = new Network(spec, kernels);
  const params = new Map(network.parameters().map((p) => [p.name, p]));
  const seen = new Set<string>();
  const state: Record<string, StateArray> = {};
  const read = (e: ModelArrayEntry, out: Float32Array): void => {
    const at = dataStart + e.offset;
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(at + 4 * i, true);
  };
  for (const e of entries) {
    const key = `${e.role}:${e.name}`;
    if (seen.has(key)) fail(`${e.role} array '${e.name}' appears twice`);
    seen.add(key);
    if (e.role === 'state') {
      const data = new Float32Array(e.bytes / 4);
      read(e, data);
      state[e.name] = { data, shape: e.shape };
      continue;
    }
    const p = params.get(e.name);
    if (!p)
      fail(
        `array '${e.name}' is not a parameter of the network in the header (${[...params.keys()].join(', ')})`,
      );
    if (p!.shape.length !== e.shape.length || p!.shape.some((d, i) => d !== e.shape[i])) {
      fail(
        `array '${e.name}' has shape [${e.shape.join(', ')}], the network spec needs [${p!.shape.join(', ')}]`,
      );
    }
    read(e, p!.data);
    for (let i = 0; i < p!.data.length; i++) {
      if (!Number.isFinite(p!.data[i]!))
        fail(`array '${e.name}' has a non-finite value at flat index ${i}`);
    }
    kernels.upload(p!.data);
  }
  for (const name of params.keys()) {
    if (!seen.has(`parameter:${name}`)) fail(`parameter array '${name}' of the network is missing`);
  }
  const created = typeof header['created'] === 'string' ? header['created'] : '';
  return { network, training: header['training'], state, meta: header['meta'], created };
}

/**
 * Writes a model file atomically: the bytes go to a temporary file in the same directory,
 * are flushed to disk, and the file is renamed over `path`, so a crash leaves either the old
 * file or the new one, never a half-written one.
 */
export function saveModel(path: string, network: Network, extra: ModelExtras = {}): void {
  const bytes = encodeModel(network, extra);
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o644);
  let renamed = false;
  try {
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone: nothing to clean up
      }
    }
  }
  // Make the rename itself durable. Some platforms cannot open or fsync a directory; the file
  // is complete either way, so that is not an error.
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // best effort, see above
  }
}

/** Reads a model file. @throws FormatError naming the file. */
export function loadModel(path: string, kernels: Kernels): LoadedModel {
  const bytes = readUserFile(path);
  return decodeModel(bytes, kernels, path);
}
