import { describe, expect, it } from 'vitest';
import { philox4x32, PortableKernels } from '@spinmesh/kernels';
import { SpecError } from '../src/errors.js';
import { Network, rbmSpec } from '../src/network.js';
import { createHopfield, hopfieldSpec, recall, storeHebbian } from '../src/hopfield.js';

const kernels = new PortableKernels();

/** rows x n random ±1 patterns from a fixed seed. */
function randomPatterns(rows: number, n: number, seed: number): Float32Array {
  const w = new Uint32Array(4);
  const p = new Float32Array(rows * n);
  for (let i = 0; i < p.length; i++) {
    philox4x32(i, 0, 0, 0, seed, 0, w);
    p[i] = w[0]! & 1 ? 1 : -1;
  }
  return p;
}

/** The pattern with exactly `flips` distinct units negated (chosen by seed). */
function corrupt(pattern: Float32Array, flips: number, seed: number): Float32Array {
  const n = pattern.length;
  const idx = Array.from({ length: n }, (_, i) => i);
  const w = new Uint32Array(4);
  for (let i = n - 1; i > 0; i--) {
    philox4x32(i, 1, 0, 0, seed, 0, w);
    const j = w[0]! % (i + 1);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  const cue = pattern.slice();
  for (let k = 0; k < flips; k++) cue[idx[k]!] = -cue[idx[k]!]!;
  return cue;
}

describe('Hopfield network', () => {
  it('stores L = (1/n) sum p p^T with a zero diagonal and zero biases', () => {
    const n = 12;
    const rows = 3;
    const P = randomPatterns(rows, n, 1);
    // {0,1} patterns are read as ±1.
    const P01 = P.map((v) => (v > 0 ? 1 : 0));
    const net = createHopfield(n, kernels);
    net.biases[0]!.fill(7);
    storeHebbian(net, P01, rows);
    const L = net.laterals[0]!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += P[r * n + i]! * P[r * n + j]!;
        expect(L[i * n + j]).toBe(i === j ? 0 : Math.fround(s / n));
      }
    }
    expect(Array.from(net.biases[0]!)).toEqual(new Array<number>(n).fill(0));
    expect(net.spec).toEqual(hopfieldSpec(n));
  });

  it('restores >= 99% of bits from cues with 10% flipped (10 patterns, 100 units)', () => {
    const n = 100;
    const rows = 10;
    const P = randomPatterns(rows, n, 2024);
    const net = createHopfield(n, kernels);
    storeHebbian(net, P, rows);
    let correct = 0;
    for (let r = 0; r < rows; r++) {
      const pattern = P.subarray(r * n, (r + 1) * n);
      const cue = corrupt(pattern, 10, 100 + r);
      const res = recall(net, cue, { sweeps: 50 });
      expect(res.converged).toBe(true);
      for (let i = 0; i < n; i++) if (res.state[i] === pattern[i]) correct++;
    }
    expect(correct / (rows * n)).toBeGreaterThanOrEqual(0.99);
  });

  it('stored patterns are fixed points, and recall descends the energy', () => {
    const n = 60;
    const P = randomPatterns(4, n, 9);
    const net = createHopfield(n, kernels);
    storeHebbian(net, P, 4);
    const p0 = P.slice(0, n);
    const res = recall(net, p0, { trajectory: true });
    expect(res.converged).toBe(true);
    expect(res.sweepsRun).toBe(1);
    expect(Array.from(res.state)).toEqual(Array.from(p0));

    const cue = corrupt(p0, 20, 5);
    const traj = recall(net, cue, { trajectory: true, sweeps: 20 });
    expect(traj.trajectory!.length).toBe(traj.sweepsRun);
    const energies = [cue, ...traj.trajectory!].map((s) => net.energy([s], 1)[0]!);
    for (let t = 1; t < energies.length; t++)
      expect(energies[t]!).toBeLessThanOrEqual(energies[t - 1]! + 1e-9);
  });

  it('keeps clamped units fixed', () => {
    const n = 40;
    const P = randomPatterns(2, n, 3);
    const net = createHopfield(n, kernels);
    storeHebbian(net, P, 2);
    const cue = corrupt(P.slice(0, n), 8, 1);
    const clamped = new Uint8Array(n);
    for (let i = 0; i < n; i += 3) clamped[i] = 1;
    const res = recall(net, cue, { clamped });
    for (let i = 0; i < n; i += 3) expect(res.state[i]).toBe(cue[i]);
  });

  it('stochastic and random-order recall are deterministic by seed', () => {
    const n = 50;
    const P = randomPatterns(3, n, 4);
    const net = createHopfield(n, kernels);
    storeHebbian(net, P, 3);
    const cue = corrupt(P.slice(0, n), 10, 2);
    const opts = {
      mode: 'stochastic' as const,
      beta: 0.5,
      sweeps: 5,
      seed: 11,
      order: 'random' as const,
    };
    const a = recall(net, cue, opts);
    const b = recall(net, cue, opts);
    expect(Array.from(a.state)).toEqual(Array.from(b.state));
    expect(a.sweepsRun).toBe(b.sweepsRun);
    const c = recall(net, cue, { ...opts, seed: 12 });
    expect(Array.from(c.state)).not.toEqual(Array.from(a.state));
    for (const v of a.state) expect(v === 1 || v === -1).toBe(true);
    // At high beta, stochastic recall finds the stored pattern too.
    const hot = recall(net, cue, { mode: 'stochastic', beta: 50, sweeps: 30, seed: 1 });
    expect(Array.from(hot.state)).toEqual(Array.from(P.slice(0, n)));
  });

  it('refuses networks that are not Hopfield networks and bad inputs', () => {
    expect(() => storeHebbian(new Network(rbmSpec(4, 2), kernels), new Float32Array(4), 1)).toThrow(
      SpecError,
    );
    const net = createHopfield(4, kernels);
    expect(() => storeHebbian(net, [1, 0.5, 1, 1], 1)).toThrow(SpecError);
    expect(() => storeHebbian(net, [1, 1, 1], 1)).toThrow(SpecError);
    expect(() => recall(net, [1, 1, 1])).toThrow(SpecError);
    expect(() => recall(net, [1, 1, 1, 1], { sweeps: -1 })).toThrow(SpecError);
  });
});
