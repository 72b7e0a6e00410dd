// Test networks with random parameters, from small deterministic PRNGs (not the model's
// generator), shared by the tests.
import type { Kernels } from '@spinmesh/kernels';
import { Network, type NetworkSpec } from '../src/network.js';

/** Small deterministic PRNG for test parameters: uniform in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A linear congruential generator for test data: uniform in [0, 1). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** A network with N(0, std^2) weights and uniform biases in [-std, std] (from lcg(seed + 1)). */
export function initial(spec: NetworkSpec, k: Kernels, seed: number, std: number): Network {
  const net = Network.create(spec, k, { seed, weightStd: std });
  const r = lcg(seed + 1);
  for (const b of net.biases) {
    for (let j = 0; j < b.length; j++) b[j] = (r() - 0.5) * 2 * std;
    k.upload(b);
  }
  return net;
}

/** A network with weights ~ N(0, std^2), biases ~ U(-bs, bs), laterals symmetric. */
export function randomNet(
  spec: NetworkSpec,
  k: Kernels,
  seed: number,
  std = 0.5,
  bs = 0.5,
): Network {
  const net = Network.create(spec, k, { seed, weightStd: std });
  const r = rng(seed + 1);
  for (const b of net.biases) for (let j = 0; j < b.length; j++) b[j] = (2 * r() - 1) * bs;
  return net;
}
