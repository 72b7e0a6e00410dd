// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11), bit-exact
// with Random123 and with the C version in native/spinmesh_kernels.c.
//
// JS has no 32x32->64 multiply, so the high word is assembled from four 16x16-bit partial
// products; everything stays in int32 so V8 keeps it in integer registers (about 2x faster
// than the double-precision formulation).

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

const M0_HI = M0 >>> 16;
const M0_LO = M0 & 0xffff;
const M1_HI = M1 >>> 16;
const M1_LO = M1 & 0xffff;

/** 2^-24: scale of a 24-bit uniform. */
export const UNIFORM_SCALE = 1 / 16777216;

/** High 32 bits (as int32) of a * M for a 32-bit a and a constant M given as 16-bit halves. */
function mulhi(a: number, mHi: number, mLo: number): number {
  const ah = a >>> 16;
  const al = a & 0xffff;
  const ll = Math.imul(al, mLo);
  const lh = Math.imul(al, mHi);
  const hl = Math.imul(ah, mLo);
  const hh = Math.imul(ah, mHi);
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
}

/**
 * Philox4x32-10 of counter [c0, c1, c2, c3] and key [k0, k1] (all taken modulo 2^32). Writes
 * the four output words into out[0..3] (out is typically a preallocated Uint32Array(4)).
 */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): void {
  let x0 = c0 | 0;
  let x1 = c1 | 0;
  let x2 = c2 | 0;
  let x3 = c3 | 0;
  let key0 = k0 | 0;
  let key1 = k1 | 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(x0, M0_HI, M0_LO);
    const lo0 = Math.imul(x0, M0);
    const hi1 = mulhi(x2, M1_HI, M1_LO);
    const lo1 = Math.imul(x2, M1);
    x0 = hi1 ^ x1 ^ key0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ key1;
    x3 = lo0;
    key0 = (key0 + W0) | 0;
    key1 = (key1 + W1) | 0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

/**
 * Word 0 of Philox4x32-10 as a uint32: all a Bernoulli/Ising draw or a uniform needs. Same
 * arguments as philox4x32. A separate copy of the rounds so the hot loops avoid a store/load
 * through a typed array.
 */
export function philoxW0(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): number {
  let x0 = c0 | 0;
  let x1 = c1 | 0;
  let x2 = c2 | 0;
  let x3 = c3 | 0;
  let key0 = k0 | 0;
  let key1 = k1 | 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(x0, M0_HI, M0_LO);
    const lo0 = Math.imul(x0, M0);
    const hi1 = mulhi(x2, M1_HI, M1_LO);
    const lo1 = Math.imul(x2, M1);
    x0 = hi1 ^ x1 ^ key0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ key1;
    x3 = lo0;
    key0 = (key0 + W0) | 0;
    key1 = (key1 + W1) | 0;
  }
  return x0 >>> 0;
}

/** The 24-bit uniform in [0, 1) that the contract derives from a word. */
export function wordToUniform(w: number): number {
  return (w >>> 8) * UNIFORM_SCALE;
}

/**
 * Split a 64-bit seed into the two 32-bit key words of RngSite. A number must be an integer in
 * the safe range; negative values (number or bigint) wrap to their 64-bit two's complement.
 */
export function seedHalves(seed: number | bigint): { seedLo: number; seedHi: number } {
  if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
    throw new RangeError(`seed must be a safe integer or a bigint, got ${seed}`);
  }
  const s = BigInt.asUintN(64, BigInt(seed));
  return { seedLo: Number(s & 0xffffffffn), seedHi: Number(s >> 32n) };
}
