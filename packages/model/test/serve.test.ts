import { describe, expect, it } from 'vitest';
import { loadKernels } from '@spinmesh/kernels';
import {
  completePattern,
  createHopfield,
  imageShape,
  Network,
  randomPatterns,
  rbmSpec,
  receptiveFields,
  runJob,
  sampleNetwork,
  SpecError,
  storeHebbian,
  validateJobSpec,
} from '../src/index.js';

const kernels = loadKernels('portable');

describe('completePattern on a Hopfield memory', () => {
  it('restores 10 random 100-unit patterns stored in one look from cues with 10% flipped', () => {
    const data = randomPatterns(10, 100, 0.5, 7);
    const net = createHopfield(100, kernels);
    storeHebbian(net, data.x, data.rows);
    const cues = Float32Array.from(data.x, (v) => (v > 0 ? 1 : -1));
    // Flip 10 distinct units of each row (every 10th unit, offset by the row).
    for (let r = 0; r < 10; r++) for (let t = 0; t < 10; t++) cues[r * 100 + t * 10 + r]! *= -1;
    const res = completePattern(net, {
      values: cues,
      known: new Uint8Array(100),
      rows: 10,
      trajectory: true,
    });
    let right = 0;
    for (let i = 0; i < 1000; i++) if (res.values[i] === (data.x[i]! > 0 ? 1 : -1)) right++;
    expect(right / 1000).toBeGreaterThanOrEqual(0.99);
    expect(res.converged).toBe(true);
    expect(res.trajectory!.length).toBe(res.sweepsRun);
    // The last frame of the trajectory is the answer.
    expect([...res.trajectory![res.sweepsRun - 1]!]).toEqual([...res.values]);
  });

  it('keeps known units clamped', () => {
    const net = createHopfield(20, kernels);
    const data = randomPatterns(2, 20, 0.5, 3);
    storeHebbian(net, data.x, 2);
    const cue = new Float32Array(20).fill(-1);
    const known = new Uint8Array(20);
    known[0] = known[5] = 1;
    cue[5] = 1;
    const res = completePattern(net, { values: cue, known });
    expect(res.values[0]).toBe(-1);
    expect(res.values[5]).toBe(1);
  });
});

describe('the hebbian job rule', () => {
  it('stores and evaluates recall in one look', async () => {
    const spec = {
      name: 'hop',
      seed: 7,
      rule: 'hebbian',
      network: { hopfield: 100 },
      data: { kind: 'random', rows: 10, dims: 100 },
    };
    const res = await runJob(spec, kernels);
    expect(res.trainer).toBeNull();
    expect(res.evaluations[0]!.recallAccuracy).toBeGreaterThanOrEqual(0.99);
    expect(() => validateJobSpec({ ...spec, epochs: 3 })).toThrow(/spec.epochs must be 1/);
    expect(() => validateJobSpec({ ...spec, train: { learningRate: 1 } })).toThrow(/spec.train/);
    expect(() => validateJobSpec({ ...spec, network: { rbm: { visible: 4, hidden: 2 } } })).toThrow(
      /spec.network must be a Hopfield network/,
    );
    expect(() => validateJobSpec({ ...spec, data: { kind: 'random', rows: 0, dims: 3 } })).toThrow(
      /spec.data.rows/,
    );
  });
});

describe('sampleNetwork and completePattern on an RBM', () => {
  const net = Network.create(rbmSpec(16, 8), kernels, { seed: 1, weightStd: 0.5 });

  it('is a pure function of the seed and returns valid states', () => {
    const a = sampleNetwork(net, { count: 5, sweeps: 20, seed: 3 });
    const b = sampleNetwork(net, { count: 5, sweeps: 20, seed: 3 });
    const c = sampleNetwork(net, { count: 5, sweeps: 20, seed: 4 });
    expect([...a.states]).toEqual([...b.states]);
    expect([...a.states]).not.toEqual([...c.states]);
    expect(a.states.every((v) => v === 0 || v === 1)).toBe(true);
    expect(a.means.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect([a.rows, a.dims, a.layer]).toEqual([5, 16, 'v']);
  });

  it('clamps the known units and reports a trajectory', () => {
    const values = new Float32Array(2 * 16);
    const known = new Uint8Array(16);
    for (let j = 0; j < 8; j++) {
      known[j] = 1;
      values[j] = 1;
      values[16 + j] = j % 2;
    }
    const res = completePattern(net, { values, known, rows: 2, sweeps: 7, trajectory: true });
    expect(res.trajectory!.length).toBe(7);
    for (let j = 0; j < 8; j++) {
      expect(res.values[j]).toBe(1);
      expect(res.values[16 + j]).toBe(j % 2);
      expect(res.means[j]).toBe(1);
    }
    expect(() => completePattern(net, { values: new Float32Array(3), known })).toThrow(
      /complete.values has 3 values/,
    );
    expect(() => completePattern(net, { values: new Float32Array(16).fill(0.5), known })).toThrow(
      SpecError,
    );
  });

  it('shows receptive fields as rows of the transposed weights', () => {
    const f = receptiveFields(net);
    expect([f.count, f.dims, f.hiddenLayer]).toEqual([8, 16, 'h']);
    const W = net.connections[0]!.weights;
    expect(f.values[3 * 16 + 5]).toBe(W[5 * 8 + 3]);
    expect(imageShape(784)).toEqual([28, 28]);
    expect(imageShape(10)).toEqual([1, 10]);
    expect(() => receptiveFields(createHopfield(4, kernels))).toThrow(/no connection/);
  });
});
