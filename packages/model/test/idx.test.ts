import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { FormatError } from '../src/errors.js';
import { decodeIdx, encodeIdx, readIdx, writeIdx, type IdxTypeName } from '../src/data/idx.js';
import { loadFashionMnist, loadIdxDataset } from '../src/data/fashion.js';

const dir = mkdtempSync(join(tmpdir(), 'spinmesh-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Header bytes for a hand-built file. */
function header(code: number, dims: number[]): number[] {
  const out = [0, 0, code, dims.length];
  for (const d of dims) out.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return out;
}

function expectFormatError(fn: () => unknown, file: string, message: string | RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FormatError);
  expect((err as FormatError).file).toBe(file);
  expect((err as FormatError).message).toContain(`${file}: `);
  if (typeof message === 'string') expect((err as FormatError).message).toContain(message);
  else expect((err as FormatError).message).toMatch(message);
}

describe('IDX round trip', () => {
  const cases: [IdxTypeName, number[]][] = [
    ['ubyte', [0, 1, 127, 128, 255, 42]],
    ['sbyte', [-128, -1, 0, 1, 127, 5]],
    ['short', [-32768, -300, 0, 300, 32767, 7]],
    ['int', [-(2 ** 31), -70000, 0, 70000, 2 ** 24, 9]],
    ['float', [-1.5, 0, 0.25, 3.75, 1e-3, 1e6]],
    ['double', [-2.5, 0, 0.125, 1e30, -1e-30, 7]],
  ];
  for (const [type, values] of cases) {
    for (const gz of [false, true]) {
      it(`${type} ${gz ? 'gzipped' : 'raw'}`, () => {
        const path = join(dir, `${type}.idx${gz ? '.gz' : ''}`);
        writeIdx(path, [2, 3], values, { type });
        const got = readIdx(path);
        expect(got.dims).toEqual([2, 3]);
        expect(got.type).toBe(type);
        expect(got.data).toBeInstanceOf(type === 'ubyte' ? Uint8Array : Float32Array);
        expect(Array.from(got.data)).toEqual(values.map((v) => Math.fround(v)));
      });
    }
  }

  it('detects gzip by magic bytes, not by name', () => {
    const path = join(dir, 'noext');
    writeFileSync(path, gzipSync(encodeIdx([3], new Uint8Array([1, 2, 3]))));
    expect(Array.from(readIdx(path).data)).toEqual([1, 2, 3]);
  });

  it('writes the big-endian layout of the published format', () => {
    const bytes = encodeIdx([1, 2], [1, -2], 'short');
    expect(Array.from(bytes)).toEqual([0, 0, 0x0b, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0xff, 0xfe]);
  });
});

describe('IDX malformed files', () => {
  const write = (name: string, bytes: number[] | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, Uint8Array.from(bytes));
    return p;
  };

  it('bad magic', () => {
    const p = write('badmagic', [1, 0, 8, 1, 0, 0, 0, 1, 9]);
    expectFormatError(() => readIdx(p), p, 'bad magic');
  });
  it('unknown type code', () => {
    const p = write('badtype', [...header(0x0a, [1]), 0]);
    expectFormatError(() => readIdx(p), p, 'unknown IDX data type code in byte 2');
  });
  it('zero dimensions', () => {
    const p = write('nodims', [0, 0, 8, 0]);
    expectFormatError(() => readIdx(p), p, 'zero dimensions');
  });
  it('a dimension of size 0', () => {
    const p = write('zerodim', header(8, [2, 0]));
    expectFormatError(() => readIdx(p), p, 'dimension 1 has size 0');
  });
  it('too short for a header', () => {
    const p = write('short', [0, 0]);
    expectFormatError(() => readIdx(p), p, 'too short for an IDX header');
  });
  it('truncated header', () => {
    const p = write('trunchead', [0, 0, 8, 3, 0, 0, 0, 1]);
    expectFormatError(
      () => readIdx(p),
      p,
      'truncated header: 3 dimensions need 16 header bytes, found 8',
    );
  });
  it('truncated data', () => {
    const p = write('truncdata', [...header(0x0c, [2, 3]), ...new Array<number>(20).fill(0)]);
    expectFormatError(() => readIdx(p), p, 'expected 24 bytes of data, found 20');
  });
  it('truncated gzipped data', () => {
    const p = write('truncdata.gz', gzipSync(Uint8Array.from([...header(8, [10]), 1, 2, 3])));
    expectFormatError(() => readIdx(p), p, 'expected 10 bytes of data, found 3');
  });
  it('trailing bytes', () => {
    const p = write('trailing', [...header(8, [2]), 1, 2, 3, 4]);
    expectFormatError(() => readIdx(p), p, '2 trailing bytes after the data');
  });
  it('corrupt gzip', () => {
    const gz = gzipSync(Uint8Array.from([...header(8, [100]), ...new Array<number>(100).fill(7)]));
    const bad = gz.slice(0, gz.length - 10);
    const p = write('corrupt.gz', bad);
    expectFormatError(() => readIdx(p), p, 'corrupt gzip data');
    const flipped = gz.slice();
    flipped[15] = flipped[15]! ^ 0xff;
    const q = write('corrupt2.gz', flipped);
    expectFormatError(() => readIdx(q), q, 'corrupt gzip data');
  });
  it('missing file', () => {
    const p = join(dir, 'does-not-exist');
    expectFormatError(() => readIdx(p), p, 'cannot be read (ENOENT)');
  });
  it('buffers are named <buffer> by default', () => {
    expect(() => decodeIdx(Uint8Array.from([9, 9, 9, 9]))).toThrow('<buffer>: bad magic');
  });
});

describe('IDX datasets', () => {
  it('loadIdxDataset scales ubyte images and reads labels', () => {
    const imgs = join(dir, 'imgs-idx3-ubyte.gz');
    const labs = join(dir, 'labs-idx1-ubyte');
    writeIdx(imgs, [3, 2, 2], new Uint8Array([0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8]));
    writeIdx(labs, [3], new Uint8Array([7, 0, 9]));
    const ds = loadIdxDataset(imgs, labs);
    expect(ds.rows).toBe(3);
    expect(ds.dims).toBe(4);
    expect(ds.shape).toEqual([2, 2]);
    expect(ds.name).toBe('imgs-idx3-ubyte');
    expect(Array.from(ds.x.subarray(0, 4))).toEqual([0, 1, 0.2, 0.4].map(Math.fround));
    expect(Array.from(ds.labels!)).toEqual([7, 0, 9]);
  });

  it('loadIdxDataset refuses a label count that does not match', () => {
    const imgs = join(dir, 'imgs2');
    const labs = join(dir, 'labs2');
    writeIdx(imgs, [3, 2], new Uint8Array(6));
    writeIdx(labs, [2], new Uint8Array(2));
    expectFormatError(() => loadIdxDataset(imgs, labs), labs, 'expected 3 labels');
  });

  it('Fashion-MNIST: a missing directory or file says which and which package provides it', () => {
    const missing = join(dir, 'no-such-dir');
    expectFormatError(
      () => loadFashionMnist({ dir: missing, split: 'test' }),
      join(missing, 't10k-images-idx3-ubyte.gz'),
      /not found.*dataset-fashion-mnist/,
    );
    expectFormatError(
      () => loadFashionMnist({ dir, split: 'train' }),
      join(dir, 'train-images-idx3-ubyte.gz'),
      /not found.*dataset-fashion-mnist/,
    );
  });

  it('Fashion-MNIST test split from the Debian package (dataset-fashion-mnist)', () => {
    const ds = loadFashionMnist({ split: 'test' });
    expect(ds.rows).toBe(10000);
    expect(ds.dims).toBe(784);
    expect(ds.x.length).toBe(10000 * 784);
    expect(ds.shape).toEqual([28, 28]);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of ds.x) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    expect(lo).toBe(0);
    expect(hi).toBe(1);
    const counts = new Array<number>(10).fill(0);
    for (const l of ds.labels!) {
      expect(l >= 0 && l <= 9).toBe(true);
      counts[l]!++;
    }
    // The test split is balanced: 1000 images per class.
    expect(counts).toEqual(new Array<number>(10).fill(1000));

    const few = loadFashionMnist({ split: 'test', limit: 5 });
    expect(few.rows).toBe(5);
    expect(Array.from(few.x)).toEqual(Array.from(ds.x.subarray(0, 5 * 784)));
    expect(Array.from(few.labels!)).toEqual(Array.from(ds.labels!.subarray(0, 5)));
  });
});
