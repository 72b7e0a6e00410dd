// The small networks, layouts and rules the sharding tests run every design on: 13 rows of
// random binary data in batches of 5 (the last batch of each epoch has 3 rows), 4 epochs; and
// the checkpoint and recovery tests' job.
import { type NetworkSpec, type ShardLayout, type TrainOptions, rbmSpec } from '../src/index.js';
import { type Job, randomBinary } from './shard-helpers.js';

export const dbm: NetworkSpec = {
  layers: [
    { name: 'v', size: 6 },
    { name: 'h1', size: 5 },
    { name: 'h2', size: 4 },
  ],
  connections: [
    { from: 'v', to: 'h1' },
    { from: 'h1', to: 'h2' },
  ],
};

export const rbmLayouts: [string, ShardLayout][] = [
  ['K=1', [{ v: [0, 7], h: [0, 5] }]],
  ['K=2 by layer', [{ v: [0, 7] }, { h: [0, 5] }]],
  [
    'K=2 across both layers',
    [
      { v: [0, 3], h: [0, 2] },
      { v: [3, 7], h: [2, 5] },
    ],
  ],
  [
    'K=3, one shard with parts of two layers',
    [{ v: [0, 2], h: [0, 3] }, { v: [2, 7] }, { h: [3, 5] }],
  ],
];

export const dbmLayouts: [string, ShardLayout][] = [
  ['K=1', [{ v: [0, 6], h1: [0, 5], h2: [0, 4] }]],
  [
    'K=2',
    [
      { v: [0, 6], h2: [0, 2] },
      { h1: [0, 5], h2: [2, 4] },
    ],
  ],
  ['K=3', [{ v: [0, 3], h1: [0, 2] }, { v: [3, 6], h2: [0, 4] }, { h1: [2, 5] }]],
];

export const rbmRules: [string, TrainOptions][] = [
  ['CD-1, momentum, decay', { negative: 'cd', momentum: 0.5, weightDecay: 0.01 }],
  [
    'PCD-2, centring, momentum, decay, linear schedule',
    {
      negative: 'pcd',
      chains: 9,
      k: 2,
      centring: true,
      centringRate: 0.1,
      momentum: 0.5,
      weightDecay: 0.01,
      schedule: { type: 'linear', steps: 12, end: 0.05 },
    },
  ],
  ['CD-2 centring', { negative: 'cd', k: 2, centring: true, centringRate: 0.2 }],
];

export const dbmRules: [string, TrainOptions][] = [
  [
    'PCD-1, sampled positive phase (3 sweeps), centring, momentum, decay',
    {
      negative: 'pcd',
      chains: 8,
      positive: 'sample',
      positiveIterations: 3,
      centring: true,
      centringRate: 0.1,
      momentum: 0.5,
      weightDecay: 0.01,
    },
  ],
  [
    'CD-2, sampled positive phase (2 sweeps), momentum, decay',
    {
      negative: 'cd',
      k: 2,
      positive: 'sample',
      positiveIterations: 2,
      momentum: 0.9,
      weightDecay: 0.01,
    },
  ],
];

export function smallJob(spec: NetworkSpec, train: TrainOptions, nv: number): Job {
  // 13 rows in batches of 5: the last batch of each epoch has 3 rows
  return {
    spec,
    train: { batchSize: 5, learningRate: 0.3, seed: 11, ...train },
    data: randomBinary(13, nv, 5, 0.4),
    rows: 13,
    epochs: 4,
  };
}

/** The checkpoint and recovery tests' job: RBM 12-8, 24 rows in batches of 6, 24 updates. */
export function recoveryJob(train: TrainOptions): Job {
  return {
    spec: rbmSpec(12, 8),
    train: { batchSize: 6, learningRate: 0.2, seed: 4, ...train },
    data: randomBinary(24, 12, 2, 0.4),
    rows: 24,
    epochs: 6,
  };
}

/** Centred PCD-2 with momentum and decay, for recoveryJob. */
export const recoveryPcd: TrainOptions = {
  negative: 'pcd',
  chains: 10,
  k: 2,
  centring: true,
  centringRate: 0.1,
  momentum: 0.5,
  weightDecay: 0.01,
};
