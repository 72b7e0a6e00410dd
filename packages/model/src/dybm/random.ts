// Draws of the DyBM from the Philox counter generator: one word per (counter, stream, seed), so
// every draw is reproducible and independent of the order in which units or shards make it.
import { philoxW0, wordToUniform } from '@spinmesh/kernels';

// Counter stream words of the DyBM's draws; arbitrary, fixed.
export const STREAM_DELAYS = 0x4459444c; // 'DYDL'
export const STREAM_INIT = 0x4459494e; // 'DYIN'
export const STREAM_SAMPLE = 0x44595341; // 'DYSA'

/** The uniform in [0, 1) at a counter. */
export function uniformAt(
  c0: number,
  c1: number,
  c2: number,
  stream: number,
  seedLo: number,
  seedHi: number,
): number {
  return wordToUniform(philoxW0(c0, c1, c2, stream, seedLo, seedHi));
}

/** A standard normal at a counter (Box-Muller on the words at c2 = 2m and 2m + 1). */
export function normalAt(
  c0: number,
  c1: number,
  m: number,
  stream: number,
  seedLo: number,
  seedHi: number,
): number {
  const u1 = 1 - uniformAt(c0, c1, 2 * m, stream, seedLo, seedHi); // (0, 1]
  const u2 = uniformAt(c0, c1, 2 * m + 1, stream, seedLo, seedHi);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
