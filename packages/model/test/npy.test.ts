import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '../src/errors.js';
import { Network, rbmSpec } from '../src/network.js';
import {
  decodeNpy,
  encodeNpy,
  exportNpyDir,
  importNpyDir,
  readNpy,
  writeNpy,
  type NpyData,
} from '../src/io/npy.js';

const dir = mkdtempSync(join(tmpdir(), 'spinmesh-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kernels = new PortableKernels();

/**
 * The published spec, read byte by byte without the library's reader: returns the header text
 * and checks every rule the spec states for version 1.0 files.
 */
function parseBySpec(b: Uint8Array): { header: string; dataOffset: number } {
  expect(Array.from(b.subarray(0, 6))).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
  expect(b[6]).toBe(1); // major
  expect(b[7]).toBe(0); // minor
  const headerLen = b[8]! | (b[9]! << 8); // little-endian unsigned short
  const dataOffset = 10 + headerLen;
  expect(dataOffset % 64).toBe(0);
  let header = '';
  for (let i = 10; i < dataOffset; i++) {
    expect(b[i]).toBeLessThan(128); // ASCII
    header += String.fromCharCode(b[i]!);
  }
  expect(header.endsWith('\n')).toBe(true);
  expect(header.slice(0, -1)).toMatch(/^\{.*\} *$/);
  return { header, dataOffset };
}

const PYTHON = '/usr/bin/python3';

/** Runs Python with numpy; fails (does not skip) when either is missing. */
function python(code: string): string {
  try {
    return execFileSync(PYTHON, ['-c', code], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT' || /No module named .?numpy/.test(err.stderr ?? '')) {
      throw new Error(
        `the .npy interoperability test needs ${PYTHON} with NumPy: install Debian's python3-numpy (apt-get install python3-numpy)`,
      );
    }
    throw new Error(`python failed: ${err.stderr ?? err.message}`);
  }
}

describe('.npy encoding', () => {
  const cases: [string, NpyData, number[]][] = [
    ['<f4', Float32Array.from([1.5, -2, 3.25, 0, 1e-8, 7]), [2, 3]],
    ['<f8', Float64Array.from([Math.PI, -1e300, 2 ** -1074]), [3]],
    ['<i4', Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1, 5]), [2, 1, 2]],
    ['|u1', Uint8Array.from([0, 1, 254, 255]), [4]],
    ['<f4', Float32Array.from([42]), []],
    ['<f4', new Float32Array(0), [0, 3]],
  ];
  for (const [descr, data, shape] of cases) {
    it(`${descr} shape (${shape.join(',')}) follows the spec and round-trips`, () => {
      const bytes = encodeNpy(data, shape);
      const { header, dataOffset } = parseBySpec(bytes);
      const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
      expect(header).toContain(`'descr': '${descr}'`);
      expect(header).toContain("'fortran_order': False");
      expect(header).toContain(`'shape': ${shapeText}`);
      expect(bytes.length - dataOffset).toBe(data.byteLength);
      expect(Array.from(bytes.subarray(dataOffset))).toEqual(
        Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
      );
      const back = decodeNpy(bytes);
      expect(back.descr).toBe(descr);
      expect(back.shape).toEqual(shape);
      expect(back.data.constructor).toBe(data.constructor);
      expect(Array.from(back.data)).toEqual(Array.from(data));
    });
  }

  it('reads <f8 as float32 on request', () => {
    const back = decodeNpy(encodeNpy(Float64Array.from([0.1, 2]), [2]), 'x', {
      float64As: 'float32',
    });
    expect(back.data).toBeInstanceOf(Float32Array);
    expect(Array.from(back.data)).toEqual([Math.fround(0.1), 2]);
  });

  it('reads versions 2.0 and 3.0 and big-endian data', () => {
    const make = (major: number, dict: string, data: number[]): Uint8Array => {
      const pre = 12;
      const len = Math.ceil((pre + dict.length + 1) / 64) * 64 - pre;
      const header = new TextEncoder().encode(dict.padEnd(len - 1, ' ') + '\n');
      const out = new Uint8Array(pre + header.length + data.length);
      out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0], 0);
      new DataView(out.buffer).setUint32(8, header.length, true);
      out.set(header, pre);
      out.set(data, pre + header.length);
      return out;
    };
    const v2 = decodeNpy(
      make(
        2,
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
        [1, 0, 0, 0, 2, 0, 0, 0],
      ),
    );
    expect(Array.from(v2.data)).toEqual([1, 2]);
    const v3 = decodeNpy(
      make(3, '{"descr": ">f4", "fortran_order": False, "shape": (1, 1)}', [0x3f, 0xc0, 0, 0]),
    );
    expect(v3.shape).toEqual([1, 1]);
    expect(Array.from(v3.data)).toEqual([1.5]);
  });

  it('gives clear errors for unsupported or malformed files', () => {
    const good = encodeNpy(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    const withHeader = (h: string): Uint8Array => {
      const b = good.slice();
      const text = h.padEnd(good.indexOf(10, 10) - 10, ' ');
      for (let i = 0; i < text.length; i++) b[10 + i] = text.charCodeAt(i);
      return b;
    };
    const err = (b: Uint8Array): string => {
      try {
        decodeNpy(b, 'a.npy');
      } catch (e) {
        expect(e).toBeInstanceOf(FormatError);
        return (e as Error).message;
      }
      throw new Error('expected a FormatError');
    };
    expect(err(withHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }"))).toContain(
      'a.npy: fortran_order is True: only C-order arrays are supported',
    );
    expect(
      err(withHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }")),
    ).toContain('its dtype is not supported');
    expect(
      err(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")),
    ).toContain('truncated: shape (2, 3) of <f4 expected 24 bytes of data, found 16');
    expect(err(withHeader("{'descr': '<f4', 'shape': (2, 2), }"))).toContain(
      "no boolean 'fortran_order'",
    );
    expect(
      err(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2], }")),
    ).toContain('header dict');
    expect(err(good.subarray(0, good.length - 1))).toContain('expected 16 bytes of data, found 15');
    expect(err(Uint8Array.from([...good, 0]))).toContain('1 trailing bytes');
    expect(err(good.subarray(0, 30))).toContain('truncated: the header is');
    expect(err(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]))).toContain('not a .npy file');
    const v9 = good.slice();
    v9[6] = 9;
    expect(err(v9)).toContain('.npy format version 9.0 is not supported');
  });

  it('rejects a shape that does not match the data', () => {
    expect(() => encodeNpy(new Float32Array(5), [2, 3])).toThrow(SpecError);
  });
});

describe('.npy with NumPy (python3-numpy)', () => {
  it('NumPy loads files written here and files NumPy writes load here', () => {
    const f4 = join(dir, 'f4.npy');
    const i4 = join(dir, 'i4.npy');
    const u1 = join(dir, 'u1.npy');
    const f8 = join(dir, 'f8.npy');
    writeNpy(f4, Float32Array.from([0.5, -1.25, 3, 4, 5, 6]), [2, 3]);
    writeNpy(i4, Int32Array.from([-7, 8]), [2]);
    writeNpy(u1, Uint8Array.from([255, 0, 1]), [3, 1]);
    writeNpy(f8, Float64Array.from([0.1]), [1, 1, 1]);
    const out = python(`
import json, numpy as np
r = {}
for name in ['f4', 'i4', 'u1', 'f8']:
    a = np.load('${dir}/' + name + '.npy')
    r[name] = {'dtype': a.dtype.str, 'shape': list(a.shape), 'values': a.ravel().tolist(), 'c': bool(a.flags['C_CONTIGUOUS'])}
np.save('${dir}/py_f4.npy', np.arange(12, dtype='<f4').reshape(3, 4) / 8)
np.save('${dir}/py_f8.npy', np.array([[1.0 / 3, -2.0]]))
np.save('${dir}/py_i4.npy', np.array([1, -2, 3], dtype=np.int32))
np.save('${dir}/py_u1.npy', np.array([[9, 8], [7, 6]], dtype=np.uint8))
np.save('${dir}/py_fortran.npy', np.asfortranarray(np.ones((2, 3), dtype='<f4')))
print(json.dumps(r))
`);
    const r = JSON.parse(out) as Record<
      string,
      { dtype: string; shape: number[]; values: number[]; c: boolean }
    >;
    expect(r['f4']).toEqual({
      dtype: '<f4',
      shape: [2, 3],
      values: [0.5, -1.25, 3, 4, 5, 6],
      c: true,
    });
    expect(r['i4']).toEqual({ dtype: '<i4', shape: [2], values: [-7, 8], c: true });
    expect(r['u1']).toEqual({ dtype: '|u1', shape: [3, 1], values: [255, 0, 1], c: true });
    expect(r['f8']).toEqual({ dtype: '<f8', shape: [1, 1, 1], values: [0.1], c: true });

    const a = readNpy(join(dir, 'py_f4.npy'));
    expect(a.shape).toEqual([3, 4]);
    expect(a.data).toBeInstanceOf(Float32Array);
    expect(Array.from(a.data)).toEqual(Array.from({ length: 12 }, (_, i) => i / 8));
    const b = readNpy(join(dir, 'py_f8.npy'));
    expect(b.data).toBeInstanceOf(Float64Array);
    expect(Array.from(b.data)).toEqual([1 / 3, -2]);
    expect(Array.from(readNpy(join(dir, 'py_i4.npy')).data)).toEqual([1, -2, 3]);
    const u = readNpy(join(dir, 'py_u1.npy'));
    expect(u.shape).toEqual([2, 2]);
    expect(Array.from(u.data)).toEqual([9, 8, 7, 6]);
    const fortran = join(dir, 'py_fortran.npy');
    expect(() => readNpy(fortran)).toThrow(`${fortran}: fortran_order is True`);
  });
});

describe('exportNpyDir / importNpyDir', () => {
  const spec = {
    layers: [
      { name: 'v', size: 6, units: 'bernoulli' as const, lateral: true },
      { name: 'h', size: 4, units: 'bernoulli' as const },
    ],
    connections: [{ from: 'v', to: 'h' }],
  };

  it('round-trips every parameter and the spec', () => {
    const net = Network.create(spec, kernels, { seed: 3, weightStd: 0.5 });
    net.biases[0]!.set([1, 2, 3, 4, 5, 6]);
    const out = join(dir, 'export');
    exportNpyDir(net, out);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as {
      network: unknown;
      arrays: { name: string }[];
    };
    expect(manifest.network).toEqual(net.spec);
    expect(manifest.arrays.map((a) => a.name)).toEqual(net.parameters().map((p) => p.name));
    const w = readNpy(join(out, 'v-h.weights.npy'));
    expect(w.shape).toEqual([6, 4]);
    const back = importNpyDir(out, kernels);
    expect(back.spec).toEqual(net.spec);
    const p1 = net.parameters();
    back.parameters().forEach((p, i) => {
      expect(p.name).toBe(p1[i]!.name);
      expect(Array.from(p.data)).toEqual(Array.from(p1[i]!.data));
    });
  });

  it('NumPy sees the exported weights', () => {
    const net = Network.create(rbmSpec(3, 2), kernels, { seed: 1, weightStd: 1 });
    const out = join(dir, 'export-np');
    exportNpyDir(net, out);
    const vals = JSON.parse(
      python(
        `import numpy as np, json; print(json.dumps(np.load('${out}/v-h.weights.npy').tolist()))`,
      ),
    ) as number[][];
    const W = net.connections[0]!.weights;
    expect(vals).toEqual([0, 1, 2].map((i) => [W[2 * i]!, W[2 * i + 1]!]));
  });

  it('names the array whose shape does not match the spec, and reports a bad spec', () => {
    const net = Network.create(rbmSpec(3, 2), kernels, { seed: 1 });
    const out = join(dir, 'export-bad');
    exportNpyDir(net, out);
    writeNpy(join(out, 'v-h.weights.npy'), new Float32Array(6), [2, 3]);
    expect(() => importNpyDir(out, kernels)).toThrow(
      /v-h\.weights\.npy: array 'v-h\.weights' has shape \(2, 3\), the network spec needs \(3, 2\)/,
    );
    writeNpy(join(out, 'v-h.weights.npy'), new Int32Array(6), [3, 2]);
    expect(() => importNpyDir(out, kernels)).toThrow(/dtype <i4/);
    // float64 edits from NumPy are accepted.
    writeNpy(join(out, 'v-h.weights.npy'), Float64Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
    expect(Array.from(importNpyDir(out, kernels).connections[0]!.weights)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    writeFileSync(join(out, 'manifest.json'), JSON.stringify({ network: { layers: [] } }));
    expect(() => importNpyDir(out, kernels)).toThrow(SpecError);
    writeFileSync(join(out, 'manifest.json'), '{');
    expect(() => importNpyDir(out, kernels)).toThrow(/manifest\.json: is not valid JSON/);
    rmSync(join(out, 'manifest.json'));
    expect(() => importNpyDir(out, kernels)).toThrow(/manifest\.json: cannot be read \(ENOENT\)/);
  });

  it('refuses lateral matrices that are not symmetric with a zero diagonal', () => {
    const net = Network.create(spec, kernels, { seed: 2 });
    const out = join(dir, 'export-lat');
    exportNpyDir(net, out);
    const L = readNpy(join(out, 'v.lateral.npy')).data as Float32Array;
    L[1] = 5;
    writeNpy(join(out, 'v.lateral.npy'), L, [6, 6]);
    expect(() => importNpyDir(out, kernels)).toThrow(/must be symmetric/);
  });
});
