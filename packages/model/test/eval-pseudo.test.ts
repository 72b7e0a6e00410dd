import { describe, expect, it } from 'vitest';
import { PortableKernels, loadKernels, type Kernels } from '@spinmesh/kernels';
import { SpecError } from '../src/errors.js';
import { Network, rbmSpec, type NetworkSpec } from '../src/network.js';
import { pseudoLogLikelihood } from '../src/eval/pseudo.js';
import { reconstructionError } from '../src/eval/recon.js';
import { mulberry32 as rng } from '../src/mulberry32.js';
import { randomNet as randomTestNet } from './nets.js';

/** This file's networks: weights ~ N(0, 0.6^2) by default. */
const randomNet = (spec: NetworkSpec, k: Kernels, seed: number, std = 0.6, bs = 0.5): Network =>
  randomTestNet(spec, k, seed, std, bs);

const portable = new PortableKernels();

const lse = (a: number, b: number): number =>
  Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)));

/**
 * Reference: log p*(v) = log sum_h exp(-E(v, h)) for every visible state, by enumerating all
 * joint states with network.energy; then PL(v) = sum_i [log p*(v) - lse(log p*(v), log p*(v~i))].
 */
function brutePL(net: Network, vis: number): { states: Float32Array; pl: Float64Array } {
  const nv = net.layers[vis]!.size;
  const off = net.layers[vis]!.type === 1 ? -1 : 0;
  const others = net.layers.filter((l) => l.index !== vis);
  const nh = others.reduce((s, l) => s + l.size, 0);
  const V = 2 ** nv;
  const H = 2 ** nh;
  const logp = new Float64Array(V);
  const state = net.allocState(H);
  for (let vs = 0; vs < V; vs++) {
    for (let r = 0; r < H; r++) {
      for (let i = 0; i < nv; i++) state[vis]![r * nv + i] = (vs >> i) & 1 ? 1 : off;
      let bit = 0;
      for (const l of others) {
        const o = l.type === 1 ? -1 : 0;
        for (let j = 0; j < l.size; j++, bit++)
          state[l.index]![r * l.size + j] = (r >> bit) & 1 ? 1 : o;
      }
    }
    const e = net.energy(state, H);
    let m = -Infinity;
    for (const x of e) m = Math.max(m, -x);
    let s = 0;
    for (const x of e) s += Math.exp(-x - m);
    logp[vs] = m + Math.log(s);
  }
  const states = new Float32Array(V * nv);
  const pl = new Float64Array(V);
  for (let vs = 0; vs < V; vs++) {
    for (let i = 0; i < nv; i++) states[vs * nv + i] = (vs >> i) & 1 ? 1 : off;
    let s = 0;
    for (let i = 0; i < nv; i++) s += logp[vs]! - lse(logp[vs]!, logp[vs ^ (1 << i)]!);
    pl[vs] = s;
  }
  return { states, pl };
}

function check(net: Network, vis = 0, blockRows?: number): void {
  const { states, pl } = brutePL(net, vis);
  const rows = pl.length;
  const per = new Float64Array(rows);
  const mean = pseudoLogLikelihood(net, states, rows, {
    visible: net.layers[vis]!.name,
    perExample: per,
    blockRows,
  });
  // Tolerance: per-example PL sums n_v conditionals, each the softplus of a difference of two
  // float32 logPartitionRows sums of O(1-10) magnitude (~1e-6 error each): 1e-4 per example.
  let maxErr = 0;
  let ref = 0;
  for (let r = 0; r < rows; r++) {
    maxErr = Math.max(maxErr, Math.abs(per[r]! - pl[r]!));
    ref += pl[r]!;
  }
  expect(maxErr).toBeLessThan(1e-4);
  expect(Math.abs(mean - ref / rows)).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref / rows)));
}

describe('pseudo-log-likelihood against brute-force conditionals of the enumerated marginal', () => {
  it('Bernoulli RBM, both connection directions, blocked', () => {
    check(randomNet(rbmSpec(8, 5), portable, 1));
    check(
      randomNet(
        {
          layers: [
            { name: 'v', size: 7 },
            { name: 'h', size: 6 },
          ],
          connections: [{ from: 'h', to: 'v' }],
        },
        portable,
        2,
      ),
      0,
      13,
    );
  });

  it('Ising visible RBM and Ising hidden', () => {
    check(randomNet(rbmSpec(7, 5, 'ising'), portable, 3));
    check(
      randomNet(
        {
          layers: [
            { name: 'v', size: 6, units: 'ising' },
            { name: 'h', size: 5, units: 'ising' },
          ],
          connections: [{ from: 'v', to: 'h' }],
        },
        portable,
        4,
      ),
    );
  });

  it('semi-restricted BM (visible laterals), two hidden layers on the visible, visible not first', () => {
    check(
      randomNet(
        {
          layers: [
            { name: 'v', size: 7, lateral: true },
            { name: 'h', size: 4 },
          ],
          connections: [{ from: 'v', to: 'h' }],
        },
        portable,
        5,
      ),
    );
    check(
      randomNet(
        {
          layers: [
            { name: 'h1', size: 3 },
            { name: 'v', size: 6 },
            { name: 'h2', size: 4, units: 'ising' },
          ],
          connections: [
            { from: 'h1', to: 'v' },
            { from: 'v', to: 'h2' },
          ],
        },
        portable,
        6,
      ),
      1,
    );
  });

  it('fully visible networks (closed-form conditionals)', () => {
    check(
      randomNet(
        { layers: [{ name: 'v', size: 9, units: 'ising', lateral: true }], connections: [] },
        portable,
        7,
        0.4,
      ),
    );
    check(
      randomNet(
        { layers: [{ name: 'v', size: 8, lateral: true }], connections: [] },
        portable,
        8,
        0.8,
      ),
    );
  });

  it('rejects Gaussian visible units, non-binary data and deep networks', () => {
    const g = new Network(rbmSpec(4, 3, 'gaussian'), portable);
    expect(() => pseudoLogLikelihood(g, new Float32Array(4), 1)).toThrow(SpecError);
    const b = new Network(rbmSpec(4, 3), portable);
    expect(() => pseudoLogLikelihood(b, new Float32Array([0, 1, 0.5, 1]), 1)).toThrow(/binary/);
    const dbm = new Network(
      {
        layers: [
          { name: 'v', size: 4 },
          { name: 'h1', size: 3 },
          { name: 'h2', size: 2 },
        ],
        connections: [
          { from: 'v', to: 'h1' },
          { from: 'h1', to: 'h2' },
        ],
      },
      portable,
    );
    expect(() => pseudoLogLikelihood(dbm, new Float32Array(4), 1)).toThrow(SpecError);
  });

  it('native kernels agree with portable on a 784-100 RBM', () => {
    const k = loadKernels('auto');
    const spec = rbmSpec(784, 100);
    const a = randomNet(spec, k, 9, 0.05, 0.5);
    const b = new Network(spec, portable);
    b.copyFrom(a);
    const r = rng(10);
    const rows = 64;
    const v = new Float32Array(rows * 784);
    for (let i = 0; i < v.length; i++) v[i] = r() < 0.3 ? 1 : 0;
    const t0 = performance.now();
    const pa = pseudoLogLikelihood(a, v, rows);
    console.log(
      `PL 784-100, ${rows} examples, ${k.name}: ${(performance.now() - t0).toFixed(0)} ms, PL = ${pa}`,
    );
    // 784 conditionals, each from a difference of two float32 sums of ~100 softplus terms
    // (~1e-5 each): agreement to 0.01 nats of a ~-500 total.
    expect(Math.abs(pa - pseudoLogLikelihood(b, v, rows))).toBeLessThan(0.01);
  });
});

describe('reconstruction error (mean-field both ways)', () => {
  it('matches a direct computation', () => {
    const net = randomNet(rbmSpec(6, 4), portable, 11);
    const W = net.connections[0]!.weights;
    const [b, c] = [net.biases[0]!, net.biases[1]!];
    const r = rng(12);
    const rows = 10;
    const v = new Float32Array(rows * 6);
    for (let i = 0; i < v.length; i++) v[i] = r() < 0.5 ? 1 : 0;
    const sig = (x: number): number => 1 / (1 + Math.exp(-x));
    let ref = 0;
    for (let n = 0; n < rows; n++) {
      const h = [0, 1, 2, 3].map((j) =>
        sig(c[j]! + [0, 1, 2, 3, 4, 5].reduce((s, i) => s + v[n * 6 + i]! * W[i * 4 + j]!, 0)),
      );
      for (let i = 0; i < 6; i++) {
        const rec = sig(b[i]! + h.reduce((s, hj, j) => s + hj * W[i * 4 + j]!, 0));
        ref += (v[n * 6 + i]! - rec) ** 2;
      }
    }
    // float32 sigmoid arguments: 1e-5 relative
    expect(reconstructionError(net, v, rows, { blockRows: 3 })).toBeCloseTo(ref / rows, 5);
    // Gaussian visible: reconstruction is the mean W h + b itself
    const g = randomNet(rbmSpec(3, 2, 'gaussian'), portable, 13);
    const gx = new Float32Array([0.5, -1, 2]);
    const Wg = g.connections[0]!.weights;
    const hg = [0, 1].map((j) =>
      sig(g.biases[1]![j]! + [0, 1, 2].reduce((s, i) => s + gx[i]! * Wg[i * 2 + j]!, 0)),
    );
    let eg = 0;
    for (let i = 0; i < 3; i++)
      eg += (gx[i]! - (g.biases[0]![i]! + hg[0]! * Wg[i * 2]! + hg[1]! * Wg[i * 2 + 1]!)) ** 2;
    expect(reconstructionError(g, gx, 1)).toBeCloseTo(eg, 5);
  });
});
