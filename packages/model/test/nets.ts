// Test networks with random parameters, from small deterministic PRNGs (not the model's
// generator), shared by the tests; mulberry32 comes from the model package.
import type { Kernels } from '@spinmesh/kernels';
import { mulberry32 } from '../src/mulberry32.js';
import { Network, type NetworkSpec } from '../src/network.js';

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
  const r = mulberry32(seed + 1);
  for (const b of net.biases) for (let j = 0; j < b.length; j++) b[j] = (2 * r() - 1) * bs;
  return net;
}
