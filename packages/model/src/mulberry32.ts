// mulberry32: a small, fast seeded generator of uniforms in [0, 1) for things that are not the
// model's draws (those come from the counter-based Philox of @spinmesh/kernels): which units a
// cue flips, a test scheduler's delays, test data.

/** A generator of uniforms in [0, 1), its sequence fixed by the seed (taken modulo 2^32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
