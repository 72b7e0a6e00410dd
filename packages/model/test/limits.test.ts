import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LIMITS,
  LimitError,
  NO_LIMITS,
  SpecError,
  checkJobLimits,
  checkQueueLimits,
  checkSequenceLimits,
  knownDataShape,
  quote,
  validateJobSpec,
  validateSequenceJob,
  type Limits,
} from '../src/index.js';
import { DYBM_MAX_SYNAPSES } from '../src/dybm/spec.js';

const rbm = (visible: number, hidden: number, extra: Record<string, unknown> = {}) =>
  validateJobSpec({
    network: { rbm: { visible, hidden } },
    data: { kind: 'random', rows: 100, dims: visible },
    epochs: 2,
    train: { batchSize: 10 },
    ...extra,
  });

/** The LimitError `fn` throws (fails the test when it throws something else or nothing). */
function limitError(fn: () => unknown): LimitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LimitError) return e;
    throw e;
  }
  throw new Error('no LimitError');
}

describe('quote', () => {
  it('keeps short input as it is', () => {
    expect(quote('abc')).toBe('abc');
    expect(quote(12)).toBe('12');
    expect(quote('x'.repeat(60))).toBe('x'.repeat(60));
  });

  it('cuts long input to its first characters and says how long it was', () => {
    expect(quote('x'.repeat(100_000))).toBe(`${'x'.repeat(60)}…(100000 chars)`);
    expect(quote('abcdef', 3)).toBe('abc…(6 chars)');
  });

  it('keeps a message on one line', () => {
    expect(quote('a\nb\u0000c')).toBe('a?b?c');
  });
});

describe('checkJobLimits', () => {
  it('estimates parameters, sampler state, data and work', () => {
    const e = checkJobLimits(rbm(4, 4), DEFAULT_LIMITS);
    // 4 x 4 weights + 8 biases; CD: batch + chains = 2 x 10 chains of 8 units; 100 x 4 data.
    expect(e.weightBytes).toBe(24 * 4);
    expect(e.stateBytes).toBe(20 * 8 * 4);
    expect(e.dataBytes).toBe(100 * 4 * 4);
    expect(e.bytes).toBe(e.weightBytes + e.stateBytes + e.dataBytes);
    expect(e.work).toBeGreaterThan(2 * 10 * 24); // at least every step's pass over the weights
  });

  it('refuses a chains bomb, naming train.chains and the limit', () => {
    const spec = rbm(4, 4, { train: { batchSize: 10, negative: 'pcd', chains: 50_000_000 } });
    const e = limitError(() => checkJobLimits(spec, DEFAULT_LIMITS));
    expect(e.field).toBe('spec.train.chains');
    expect(e.limit).toBe('maxStateBytes');
    expect(e.message).toMatch(
      /^spec\.train\.chains needs 1\.49 GiB of sampler state .* more than the limit/,
    );
  });

  it('refuses data larger than maxDataBytes before they exist', () => {
    const spec = validateJobSpec({
      network: { rbm: { visible: 16384, hidden: 1 } },
      data: { kind: 'random', rows: 16384, dims: 16384 },
    });
    const e = limitError(() => checkJobLimits(spec, DEFAULT_LIMITS));
    expect([e.field, e.limit]).toEqual(['spec.data', 'maxDataBytes']);
    // Files count once their rows are known.
    const csv = validateJobSpec({
      network: { rbm: { visible: 1000, hidden: 1 } },
      data: { kind: 'csv', path: 'x.csv' },
    });
    expect(checkJobLimits(csv, DEFAULT_LIMITS).dataBytes).toBe(0);
    const loaded = limitError(() =>
      checkJobLimits(csv, DEFAULT_LIMITS, { train: 100_000, test: 100_000 }),
    );
    expect(loaded.limit).toBe('maxDataBytes');
  });

  it('refuses too many units, too many parameters, too much work', () => {
    const small: Limits = { ...DEFAULT_LIMITS, maxUnits: 100 };
    expect(limitError(() => checkJobLimits(rbm(64, 64), small)).limit).toBe('maxUnits');
    const hop = validateJobSpec({
      rule: 'hebbian',
      network: { hopfield: 1000 },
      data: { kind: 'random', rows: 10, dims: 1000 },
    });
    const w = limitError(() => checkJobLimits(hop, { ...DEFAULT_LIMITS, maxWeightBytes: 1e6 }));
    expect([w.field, w.limit]).toEqual(['spec.network', 'maxWeightBytes']);
    const long = rbm(16, 16, {
      epochs: 1_000_000,
      train: { batchSize: 1 },
      evaluate: { every: 1_000_000, exact: false },
    });
    const work = limitError(() => checkJobLimits(long, { ...DEFAULT_LIMITS, maxWork: 1e9 }));
    expect([work.field, work.limit]).toEqual(['spec.epochs', 'maxWork']);
    const ais = rbm(64, 64, { evaluate: { ais: { runs: 100_000, steps: 10_000_000 } } });
    const aisWork = limitError(() => checkJobLimits(ais, DEFAULT_LIMITS));
    expect([aisWork.field, aisWork.limit]).toEqual(['spec.evaluate', 'maxWork']);
  });

  it('with NO_LIMITS only estimates', () => {
    const spec = rbm(4, 4, { train: { batchSize: 10, negative: 'pcd', chains: 50_000_000 } });
    expect(checkJobLimits(spec, NO_LIMITS).stateBytes).toBe((10 + 50_000_000) * 8 * 4);
  });

  it('knows the size of the data kinds that state it', () => {
    expect(knownDataShape({ kind: 'bas', size: 4 })).toEqual({ rows: 32, dims: 16 });
    expect(knownDataShape({ kind: 'random', rows: 3, dims: 5 })).toEqual({ rows: 3, dims: 5 });
    expect(knownDataShape({ kind: 'fashion-mnist', limit: 7 })).toEqual({ rows: 7, dims: 784 });
    expect(knownDataShape({ kind: 'csv', path: 'a.csv' })).toBeNull();
  });
});

describe('checkQueueLimits', () => {
  const limits: Limits = { ...DEFAULT_LIMITS, maxQueuedJobs: 3, maxQueuedBytes: 1000 };

  it('admits within both limits', () => {
    expect(() => checkQueueLimits(limits, { jobs: 2, bytes: 500 }, 500)).not.toThrow();
  });

  it('refuses one job too many and one byte too many, naming the limit', () => {
    expect(limitError(() => checkQueueLimits(limits, { jobs: 3, bytes: 0 }, 1)).limit).toBe(
      'maxQueuedJobs',
    );
    expect(limitError(() => checkQueueLimits(limits, { jobs: 0, bytes: 500 }, 501)).limit).toBe(
      'maxQueuedBytes',
    );
  });
});

describe('sequence jobs', () => {
  it('refuse a DyBM whose synapses would pass the structural cap before building it', () => {
    const n = Math.ceil(Math.sqrt(DYBM_MAX_SYNAPSES)) + 1;
    expect(() =>
      validateSequenceJob({
        rule: 'stdp',
        network: { dybm: { units: n, delays: 1 } },
        data: { kind: 'words', words: ['SCIENCE'] },
      }),
    ).toThrow(/^spec\.network\.dybm\.units give/);
    expect(() =>
      validateSequenceJob({
        rule: 'stdp',
        network: { dybm: { units: 4096, delaysPerPair: [1, 2] } },
        data: { kind: 'words', words: ['SCIENCE'] },
      }),
    ).toThrow(SpecError);
  });

  it('are checked against the limits', () => {
    const spec = validateSequenceJob({
      rule: 'stdp',
      network: { dybm: { units: 7, delays: 2 } },
      data: { kind: 'words', words: ['SCIENCE'] },
      epochs: 10,
    });
    const e = checkSequenceLimits(spec, DEFAULT_LIMITS, 14);
    expect(e.dataBytes).toBe(14 * 7 * 8);
    const small: Limits = { ...DEFAULT_LIMITS, maxWork: 100 };
    expect(limitError(() => checkSequenceLimits(spec, small, 14)).field).toBe('spec.epochs');
  });
});
