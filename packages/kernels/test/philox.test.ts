import { describe, expect, it } from 'vitest';

import { philox4x32, philoxW0, seedHalves, wordToUniform } from '../src/index.js';

import { PHILOX_KATS, hex } from './helpers.js';

/** Straightforward BigInt Philox, independent of the int32 tricks in src/philox.ts. */
function philoxBig(ctr: number[], key: number[]): number[] {
  const mask = 0xffffffffn;
  let [x0, x1, x2, x3] = ctr.map((v) => BigInt(v >>> 0)) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map((v) => BigInt(v >>> 0)) as [bigint, bigint];
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * x0;
    const p1 = 0xcd9e8d57n * x2;
    [x0, x1, x2, x3] = [(p1 >> 32n) ^ x1 ^ k0, p1 & mask, (p0 >> 32n) ^ x3 ^ k1, p0 & mask];
    k0 = (k0 + 0x9e3779b9n) & mask;
    k1 = (k1 + 0xbb67ae85n) & mask;
  }
  return [x0, x1, x2, x3].map(Number);
}

describe('philox4x32-10', () => {
  it.each(PHILOX_KATS)('matches the Random123 known answer for key $key', ({ ctr, key, out }) => {
    const w = new Uint32Array(4);
    philox4x32(ctr[0]!, ctr[1]!, ctr[2]!, ctr[3]!, key[0]!, key[1]!, w);
    expect(hex(w)).toEqual(out);
    expect(philoxW0(ctr[0]!, ctr[1]!, ctr[2]!, ctr[3]!, key[0]!, key[1]!)).toBe(
      parseInt(out[0]!, 16),
    );
  });

  it('matches a BigInt reference on pseudo-random counters and keys', () => {
    const w = new Uint32Array(4);
    let s = 12345;
    const next = (): number => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s;
    };
    for (let i = 0; i < 300; i++) {
      const ctr = [next(), next(), next(), next()];
      const key = [next(), next()];
      philox4x32(ctr[0]!, ctr[1]!, ctr[2]!, ctr[3]!, key[0]!, key[1]!, w);
      expect(Array.from(w)).toEqual(philoxBig(ctr, key));
    }
  });

  it('takes counters modulo 2^32 (negative and >= 2^32 inputs)', () => {
    expect(philoxW0(-1, -1, -1, -1, -1, -1)).toBe(0x408f276d);
    expect(philoxW0(2 ** 32, 0, 2 ** 32, 0, 0, 0)).toBe(0x6627e8d5);
  });

  it('derives 24-bit uniforms in [0, 1)', () => {
    expect(wordToUniform(0)).toBe(0);
    expect(wordToUniform(0xffffffff)).toBe(1 - 2 ** -24);
    expect(wordToUniform(0x80000000)).toBe(0.5);
  });
});

describe('seedHalves', () => {
  it('splits 64-bit seeds', () => {
    expect(seedHalves(0)).toEqual({ seedLo: 0, seedHi: 0 });
    expect(seedHalves(0x1234_5678_9abc)).toEqual({ seedLo: 0x56789abc, seedHi: 0x1234 });
    expect(seedHalves(0xfedcba9876543210n)).toEqual({ seedLo: 0x76543210, seedHi: 0xfedcba98 });
    expect(seedHalves(-1)).toEqual({ seedLo: 0xffffffff, seedHi: 0xffffffff });
  });

  it('rejects non-integer numbers', () => {
    expect(() => seedHalves(1.5)).toThrow(RangeError);
    expect(() => seedHalves(2 ** 60)).toThrow(RangeError);
  });
});
