import { describe, expect, it } from 'vitest';
import { PortableKernels, loadKernels } from '@spinmesh/kernels';
import { SpecError } from '../src/errors.js';
import { Network, rbmSpec, type NetworkSpec } from '../src/network.js';
import { enumerationPlan, exactLogLikelihood, exactLogZ, freeEnergy } from '../src/eval/exact.js';
import { randomNet } from './nets.js';

const portable = new PortableKernels();

/**
 * log Z by enumerating every joint state of all (non-Gaussian) units and calling
 * network.energy: the independent reference.
 */
function bruteLogZ(net: Network): number {
  const n = net.numUnits;
  const rows = 2 ** n;
  const state = net.allocState(rows);
  for (let r = 0; r < rows; r++) {
    for (const l of net.layers) {
      const off = l.type === 1 ? -1 : 0;
      for (let j = 0; j < l.size; j++)
        state[l.index]![r * l.size + j] = Math.floor(r / 2 ** (l.offset + j)) % 2 ? 1 : off;
    }
  }
  const e = net.energy(state, rows);
  let m = -Infinity;
  for (const x of e) m = Math.max(m, -x);
  let s = 0;
  for (const x of e) s += Math.exp(-x - m);
  return m + Math.log(s);
}

describe('exactLogZ against brute-force enumeration with network.energy', () => {
  // Tolerance: logPartitionRows returns float32 per-row sums of O(10) magnitude, and weights are
  // float32 in both computations, so agreement to ~1e-5 relative is expected; 1e-4 absolute on
  // log Z values of 5-20 leaves margin without hiding a wrong term (a wrong bias or a missing
  // unit shifts log Z by >= 0.01 here).
  const tol = 1e-4;

  it('Bernoulli RBM, hidden side smaller (enumerates hidden)', () => {
    const net = randomNet(rbmSpec(9, 5), portable, 1);
    expect(enumerationPlan(net).enumerated).toEqual([1]);
    expect(exactLogZ(net)).toBeCloseTo(bruteLogZ(net), 4);
    expect(Math.abs(exactLogZ(net) - bruteLogZ(net))).toBeLessThan(tol);
  });

  it('Bernoulli RBM, visible side smaller (enumerates visible), reversed connection direction', () => {
    const spec: NetworkSpec = {
      layers: [
        { name: 'v', size: 5 },
        { name: 'h', size: 10 },
      ],
      connections: [{ from: 'h', to: 'v' }],
    };
    const net = randomNet(spec, portable, 2, 0.7);
    expect(enumerationPlan(net).enumerated).toEqual([0]);
    expect(Math.abs(exactLogZ(net) - bruteLogZ(net))).toBeLessThan(tol);
    // block size smaller than the enumeration: several blocks with high bits
    expect(Math.abs(exactLogZ(net, { blockSize: 4 }) - bruteLogZ(net))).toBeLessThan(tol);
  });

  it('Ising visible RBM and Ising both sides', () => {
    const a = randomNet(rbmSpec(8, 6, 'ising'), portable, 3);
    expect(Math.abs(exactLogZ(a) - bruteLogZ(a))).toBeLessThan(tol);
    const spec: NetworkSpec = {
      layers: [
        { name: 'v', size: 6, units: 'ising' },
        { name: 'h', size: 9, units: 'ising' },
      ],
      connections: [{ from: 'v', to: 'h' }],
    };
    const b = randomNet(spec, portable, 4);
    expect(Math.abs(exactLogZ(b, { blockSize: 8 }) - bruteLogZ(b))).toBeLessThan(tol);
  });

  it('lateral networks: semi-restricted BM and fully visible Ising model', () => {
    const srbm: NetworkSpec = {
      layers: [
        { name: 'v', size: 8, lateral: true },
        { name: 'h', size: 6 },
      ],
      connections: [{ from: 'v', to: 'h' }],
    };
    const a = randomNet(srbm, portable, 5);
    expect(enumerationPlan(a)).toEqual({ summed: [1], enumerated: [0], bits: 8 });
    expect(Math.abs(exactLogZ(a, { blockSize: 16 }) - bruteLogZ(a))).toBeLessThan(tol);
    const fv: NetworkSpec = {
      layers: [{ name: 'v', size: 12, units: 'ising', lateral: true }],
      connections: [],
    };
    const b = randomNet(fv, portable, 6, 0.3);
    expect(Math.abs(exactLogZ(b, { blockSize: 32 }) - bruteLogZ(b))).toBeLessThan(tol);
    // both layers lateral: everything is enumerated, weights between enumerated layers in J
    const both: NetworkSpec = {
      layers: [
        { name: 'v', size: 6, lateral: true },
        { name: 'h', size: 5, lateral: true },
      ],
      connections: [{ from: 'h', to: 'v' }],
    };
    const c = randomNet(both, portable, 7);
    expect(enumerationPlan(c).bits).toBe(11);
    expect(Math.abs(exactLogZ(c, { blockSize: 64 }) - bruteLogZ(c))).toBeLessThan(tol);
  });

  it('deep BM v-h1-h2 (sums out v and h2, enumerates h1) and a 4-layer chain', () => {
    const dbm: NetworkSpec = {
      layers: [
        { name: 'v', size: 7 },
        { name: 'h1', size: 5 },
        { name: 'h2', size: 4 },
      ],
      connections: [
        { from: 'v', to: 'h1' },
        { from: 'h1', to: 'h2' },
      ],
    };
    const a = randomNet(dbm, portable, 8, 0.8);
    expect(enumerationPlan(a)).toEqual({ summed: [0, 2], enumerated: [1], bits: 5 });
    expect(Math.abs(exactLogZ(a) - bruteLogZ(a))).toBeLessThan(tol);
    const chain: NetworkSpec = {
      layers: [
        { name: 'a', size: 4 },
        { name: 'b', size: 4, units: 'ising' },
        { name: 'c', size: 3 },
        { name: 'd', size: 4 },
      ],
      connections: [
        { from: 'a', to: 'b' },
        { from: 'b', to: 'c' },
        { from: 'c', to: 'd' },
        { from: 'a', to: 'd' },
      ],
    };
    const b = randomNet(chain, portable, 9, 0.8);
    expect(Math.abs(exactLogZ(b, { blockSize: 4 }) - bruteLogZ(b))).toBeLessThan(tol);
  });

  it('Gaussian-Bernoulli RBM against 2-D numerical integration', () => {
    const net = randomNet(rbmSpec(2, 3, 'gaussian'), portable, 10, 0.8, 1);
    // Z = sum_h int exp(-E(v,h)) dv on a grid: the integrand is a mixture of unit-variance
    // Gaussians whose means lie within |b| + |W|_1 < 5 of 0, so [-14, 14]^2 loses < e^-40, and
    // the trapezoid rule on a smooth rapidly decaying function with step 0.05 is exact to
    // double rounding (its error decays like exp(-2 pi^2 / h^2)).
    const h = 0.05;
    const G = Math.round(28 / h) + 1;
    const rows = G * G;
    let acc = 0;
    let m = -Infinity;
    const vals: number[] = [];
    for (let hs = 0; hs < 8; hs++) {
      const st = net.allocState(rows);
      for (let i = 0; i < G; i++) {
        for (let j = 0; j < G; j++) {
          const r = i * G + j;
          st[0]![2 * r] = -14 + i * h;
          st[0]![2 * r + 1] = -14 + j * h;
          for (let u = 0; u < 3; u++) st[1]![3 * r + u] = (hs >> u) & 1;
        }
      }
      const e = net.energy(st, rows);
      for (const x of e) {
        vals.push(-x);
        m = Math.max(m, -x);
      }
    }
    for (const x of vals) acc += Math.exp(x - m);
    const numeric = m + Math.log(acc * h * h);
    expect(Math.abs(exactLogZ(net) - numeric)).toBeLessThan(1e-4);
  });

  it('Gaussian-Bernoulli with many hidden units: the Gaussian side is summed out, constants exact', () => {
    // Closed form with the hidden side enumerated by hand in float64:
    // log Z = LSE_h [c.h + sum_i ((b_i + (W h)_i)^2 - b_i^2)/2 + n/2 log 2pi].
    const net = randomNet(rbmSpec(30, 6, 'gaussian'), portable, 11, 0.3, 1);
    const W = net.connections[0]!.weights;
    const b = net.biases[0]!;
    const c = net.biases[1]!;
    const terms: number[] = [];
    for (let hs = 0; hs < 64; hs++) {
      let t = 15 * Math.log(2 * Math.PI);
      for (let j = 0; j < 6; j++) if ((hs >> j) & 1) t += c[j]!;
      for (let i = 0; i < 30; i++) {
        let a = 0;
        for (let j = 0; j < 6; j++) if ((hs >> j) & 1) a += W[i * 6 + j]!;
        t += ((a + b[i]!) ** 2 - b[i]! ** 2) / 2;
      }
      terms.push(t);
    }
    const m = Math.max(...terms);
    const ref = m + Math.log(terms.reduce((s, x) => s + Math.exp(x - m), 0));
    expect(Math.abs(exactLogZ(net) - ref)).toBeLessThan(1e-4);
  });

  it('throws SpecError when the enumeration is too large', () => {
    const net = new Network(rbmSpec(30, 25), portable);
    expect(() => exactLogZ(net)).toThrow(SpecError);
    expect(() => exactLogZ(net)).toThrow(
      /2\^25 states to enumerate; exact evaluation supports up to 2\^24: use AIS/,
    );
    expect(() => exactLogZ(net, { maxTerms: 2 ** 10 })).toThrow(/up to 2\^10/);
  });

  it('free energy and exact log-likelihood: probabilities sum to one', () => {
    const net = randomNet(rbmSpec(8, 5), portable, 12);
    const logZ = exactLogZ(net);
    const rows = 256;
    const v = new Float32Array(rows * 8);
    for (let r = 0; r < rows; r++) for (let i = 0; i < 8; i++) v[r * 8 + i] = (r >> i) & 1;
    const F = freeEnergy(net, 'v', v, rows, undefined, { blockRows: 37 });
    let s = 0;
    for (let r = 0; r < rows; r++) s += Math.exp(-F[r]! - logZ);
    expect(s).toBeCloseTo(1, 5);
    // one example: log p(v) = -F(v) - log Z
    const ll = exactLogLikelihood(net, v.subarray(8 * 5, 8 * 6), 1, logZ);
    expect(ll).toBeCloseTo(-F[5]! - logZ, 6);
    // semi-restricted (visible laterals) also factorises given v
    const srbm = randomNet(
      {
        layers: [
          { name: 'v', size: 8, lateral: true },
          { name: 'h', size: 4 },
        ],
        connections: [{ from: 'h', to: 'v' }],
      },
      portable,
      13,
    );
    const Fs = freeEnergy(srbm, 'v', v, rows);
    const lz = exactLogZ(srbm);
    let s2 = 0;
    for (let r = 0; r < rows; r++) s2 += Math.exp(-Fs[r]! - lz);
    expect(s2).toBeCloseTo(1, 5);
  });

  it('native kernels agree with portable (784-16 RBM, 2^16 hidden states)', () => {
    const k = loadKernels('auto');
    const spec = rbmSpec(784, 16);
    const a = randomNet(spec, k, 14, 0.05, 0.5);
    const b = new Network(spec, portable);
    b.copyFrom(a);
    const t0 = performance.now();
    const za = exactLogZ(a);
    const ms = performance.now() - t0;
    console.log(`exactLogZ 784-16 with ${k.name} kernels: ${ms.toFixed(0)} ms, log Z = ${za}`);
    // float32 per-row sums of 784 softplus terms (~550): 1e-3 absolute is ~2e-6 relative.
    expect(Math.abs(za - exactLogZ(b))).toBeLessThan(1e-3);
  });
});
