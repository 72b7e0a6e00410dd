import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '../src/errors.js';
import { Network, rbmSpec, type NetworkSpec } from '../src/network.js';
import {
  decodeModel,
  encodeModel,
  loadModel,
  MODEL_FILE_VERSION,
  saveModel,
  type ModelFileHeader,
} from '../src/io/modelfile.js';

const dir = mkdtempSync(join(tmpdir(), 'spinmesh-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kernels = new PortableKernels();

const spec: NetworkSpec = {
  layers: [
    { name: 'v', size: 7, units: 'bernoulli', lateral: true },
    { name: 'h1', size: 5, units: 'bernoulli' },
    { name: 'h2', size: 3, units: 'ising' },
  ],
  connections: [
    { from: 'v', to: 'h1' },
    { from: 'h1', to: 'h2' },
  ],
};

function network(seed = 1): Network {
  const net = Network.create(spec, kernels, { seed, weightStd: 0.3 });
  net.biases[1]!.set([0.5, -1, 1e-30, -0, 3.4e38]);
  return net;
}

function catchFormat(fn: () => unknown): FormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return e as FormatError;
  }
  throw new Error('expected a FormatError');
}

/** Rebuilds a file with an edited header (the data section is kept as it is). */
function withHeader(bytes: Uint8Array, edit: (h: ModelFileHeader) => unknown): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint32(12, true);
  const header = JSON.parse(
    new TextDecoder().decode(bytes.subarray(16, 16 + len)),
  ) as ModelFileHeader;
  const data = bytes.subarray(Math.ceil((16 + len) / 8) * 8);
  const json = new TextEncoder().encode(JSON.stringify(edit(header) ?? header));
  const start = Math.ceil((16 + json.length) / 8) * 8;
  const out = new Uint8Array(start + data.length);
  out.set(bytes.subarray(0, 12));
  new DataView(out.buffer).setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(data, start);
  return out;
}

describe('model file', () => {
  it('has the documented layout', () => {
    const bytes = encodeModel(network());
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('SPINMESH');
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(8, true)).toBe(1);
    const len = view.getUint32(12, true);
    const header = JSON.parse(
      new TextDecoder().decode(bytes.subarray(16, 16 + len)),
    ) as ModelFileHeader;
    expect(header.format).toBe(1);
    expect(Number.isNaN(Date.parse(header.created))).toBe(false);
    const start = Math.ceil((16 + len) / 8) * 8;
    for (let i = 16 + len; i < start; i++) expect(bytes[i]).toBe(0);
    const net = network();
    const params = net.parameters();
    expect(header.arrays.map((a) => a.name)).toEqual(params.map((p) => p.name));
    for (const [i, a] of header.arrays.entries()) {
      expect(a.offset % 8).toBe(0);
      expect(a.dtype).toBe('f4');
      expect(a.bytes).toBe(4 * params[i]!.data.length);
      expect(a.shape).toEqual(params[i]!.shape);
      const vals = Array.from({ length: a.bytes / 4 }, (_, k) =>
        view.getFloat32(start + a.offset + 4 * k, true),
      );
      expect(vals).toEqual(Array.from(params[i]!.data));
    }
    const last = header.arrays[header.arrays.length - 1]!;
    expect(bytes.length).toBe(start + last.offset + last.bytes);
  });

  it('round-trips exactly through a file, with training info, state arrays and meta', () => {
    const net = network(5);
    const chains = Float32Array.from({ length: 4 * 7 }, (_, i) => (i % 3) - 1);
    const velocity = Float32Array.from([Math.PI, -0, Number.MIN_VALUE, -3.4e38, 1]);
    const training = { config: { lr: 0.01, momentum: 0.9 }, epoch: 3, step: 1234, seed: 42 };
    const path = join(dir, 'm.smm');
    saveModel(path, net, {
      training,
      state: {
        'pcd.v': { data: chains, shape: [4, 7] },
        'velocity.h1.bias': { data: velocity, shape: [5] },
        empty: { data: new Float32Array(0), shape: [0, 3] },
      },
      meta: { dataset: 'bars-and-stripes-4x4' },
    });
    const got = loadModel(path, kernels);
    expect(got.network.spec).toEqual(net.spec);
    const a = net.parameters();
    got.network.parameters().forEach((p, i) => {
      expect(p.name).toBe(a[i]!.name);
      expect(p.shape).toEqual(a[i]!.shape);
      expect(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)).toEqual(
        Buffer.from(a[i]!.data.buffer, a[i]!.data.byteOffset, a[i]!.data.byteLength),
      );
    });
    expect(got.training).toEqual(training);
    expect(got.meta).toEqual({ dataset: 'bars-and-stripes-4x4' });
    expect(Object.keys(got.state).sort()).toEqual(['empty', 'pcd.v', 'velocity.h1.bias']);
    expect(got.state['pcd.v']!.shape).toEqual([4, 7]);
    expect(Array.from(got.state['pcd.v']!.data)).toEqual(Array.from(chains));
    expect(Object.is(got.state['velocity.h1.bias']!.data[1], -0)).toBe(true);
    expect(Array.from(got.state['velocity.h1.bias']!.data)).toEqual(Array.from(velocity));
    expect(got.state['empty']!.shape).toEqual([0, 3]);
    // Re-encoding what was loaded gives the same bytes, apart from the creation time.
    const again = encodeModel(got.network, {
      training: got.training,
      state: got.state,
      meta: got.meta,
    });
    const orig = readFileSync(path);
    const strip = (b: Uint8Array): Uint8Array => withHeader(b, (h) => ({ ...h, created: '' }));
    expect(Buffer.from(strip(again))).toEqual(Buffer.from(strip(orig)));
  });

  it('without extras gives undefined training and meta and no state', () => {
    const got = decodeModel(encodeModel(Network.create(rbmSpec(4, 2), kernels)), kernels);
    expect(got.training).toBeUndefined();
    expect(got.meta).toBeUndefined();
    expect(got.state).toEqual({});
  });

  it('writes atomically: no temporary file is left, an existing file is replaced whole', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'model.smm');
    saveModel(path, network(1));
    saveModel(path, network(2), { training: { epoch: 2 } });
    expect(readdirSync(sub)).toEqual(['model.smm']);
    expect(loadModel(path, kernels).training).toEqual({ epoch: 2 });
    // A failed save (unserialisable training info) leaves the old file and nothing else.
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => saveModel(path, network(3), { training: cyclic })).toThrow(SpecError);
    expect(readdirSync(sub)).toEqual(['model.smm']);
    expect(loadModel(path, kernels).training).toEqual({ epoch: 2 });
    expect(() => saveModel(join(sub, 'no-dir', 'x.smm'), network(1))).toThrow(/ENOENT/);
    expect(readdirSync(sub)).toEqual(['model.smm']);
  });

  it('refuses other files and other versions, naming the file', () => {
    const path = join(dir, 'not-a-model');
    writeFileSync(path, 'hello, world: this is text');
    const e = catchFormat(() => loadModel(path, kernels));
    expect(e.file).toBe(path);
    expect(e.message).toBe(
      `${path}: not a spinmesh model file (it does not start with 'SPINMESH')`,
    );
    const v2 = encodeModel(network());
    new DataView(v2.buffer).setUint32(8, 2, true);
    const p2 = join(dir, 'v2.smm');
    writeFileSync(p2, v2);
    expect(catchFormat(() => loadModel(p2, kernels)).message).toBe(
      `${p2}: model file format version 2 is not supported by this build (supports ${MODEL_FILE_VERSION})`,
    );
    expect(catchFormat(() => loadModel(join(dir, 'missing.smm'), kernels)).message).toContain(
      'cannot be read (ENOENT)',
    );
  });

  it('reports truncation at every point', () => {
    const bytes = encodeModel(network(), {
      state: { s: { data: new Float32Array(10), shape: [10] } },
    });
    const len = new DataView(bytes.buffer).getUint32(12, true);
    const cuts = [
      4,
      12,
      15,
      16,
      16 + Math.floor(len / 2),
      16 + len,
      bytes.length - 40,
      bytes.length - 1,
    ];
    for (const cut of cuts) {
      const e = catchFormat(() => decodeModel(bytes.subarray(0, cut), kernels, 'cut.smm'));
      expect(e.file).toBe('cut.smm');
      if (cut < 8) expect(e.message).toContain('not a spinmesh model file');
      else expect(e.message).toContain('truncated');
    }
    expect(
      catchFormat(() => decodeModel(Uint8Array.from([...bytes, 0, 0, 0, 0]), kernels, 'x')).message,
    ).toContain('4 trailing bytes after the last array');
  });

  it('reports an invalid header and arrays that disagree with the spec', () => {
    const bytes = encodeModel(network());
    const broken = bytes.slice();
    broken[16] = 0x7b; // '{'
    broken[17] = 0x7b;
    expect(catchFormat(() => decodeModel(broken, kernels, 'h.smm')).message).toContain(
      'h.smm: header is not valid UTF-8 JSON',
    );
    const msg = (edit: (h: ModelFileHeader) => unknown): string =>
      catchFormat(() => decodeModel(withHeader(bytes, edit), kernels, 'e.smm')).message;
    expect(
      msg((h) => {
        h.network.layers[0]!.size = 8;
      }),
    ).toContain("array 'v.bias' has shape [7], the network spec needs [8]");
    expect(
      msg((h) => {
        h.arrays[0]!.bytes = 24;
      }),
    ).toContain('header.arrays[0].bytes does not match its shape (shape [7] of f4 needs 28)');
    expect(
      msg((h) => {
        h.arrays[0]!.dtype = 'f8' as 'f4';
      }),
    ).toContain('the only one supported');
    expect(
      msg((h) => {
        h.arrays.pop();
      }),
    ).toMatch(/trailing bytes|is missing/);
    expect(
      msg((h) => {
        h.arrays[1]!.name = 'zzz';
      }),
    ).toContain("array 'zzz' is not a parameter of the network");
    expect(
      msg((h) => {
        h.arrays[1]!.offset = h.arrays[0]!.offset;
      }),
    ).toContain('overlaps');
    expect(msg((h) => ({ ...h, network: { layers: 'x' } }))).toContain(
      'header.network.layers must be a non-empty array',
    );
    expect(msg((h) => ({ ...h, format: 2 }))).toContain('header.format is not 1');
    expect(msg(() => [1, 2])).toContain('header is not a JSON object');
  });

  it('rejects state arrays whose shape does not match their data', () => {
    expect(() =>
      encodeModel(network(), { state: { s: { data: new Float32Array(3), shape: [2, 2] } } }),
    ).toThrow(SpecError);
  });
});
