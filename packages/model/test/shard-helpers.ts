// Shared fixtures of the sharding tests: reference runs of the single-process Trainer and
// sharded runs of the same job in a LoopbackCluster.
import type { Kernels } from '@spinmesh/kernels';
import {
  LoopbackCluster,
  type LoopbackOptions,
  Network,
  type NetworkSpec,
  type ShardLayout,
  Trainer,
  type TrainOptions,
  networkSource,
} from '../src/index.js';
import { lcg } from './nets.js';

export function randomBinary(rows: number, n: number, seed: number, p = 0.5): Float32Array {
  const r = lcg(seed);
  return Float32Array.from({ length: rows * n }, () => (r() < p ? 1 : 0));
}

export interface Job {
  spec: NetworkSpec;
  train: TrainOptions;
  data: Float32Array;
  rows: number;
  epochs: number;
}

/** The single-process Trainer with sampled statistics, epoch by epoch. */
export function reference(job: Job, init: Network): Network {
  const net = init.clone();
  const tr = new Trainer(net, { ...job.train, statistics: 'samples' });
  for (let e = 0; e < job.epochs; e++) tr.trainEpoch(job.data, job.rows);
  return net;
}

export function stepsOf(job: Job): number {
  return job.epochs * Math.ceil(job.rows / (job.train.batchSize ?? 100));
}

export function cluster(
  job: Job,
  init: Network,
  layout: ShardLayout,
  k: Kernels,
  extra: Partial<LoopbackOptions> = {},
): LoopbackCluster {
  return new LoopbackCluster({
    network: job.spec,
    train: job.train,
    layout,
    kernels: k,
    data: { x: job.data, rows: job.rows },
    steps: stepsOf(job),
    params: networkSource(init),
    ...extra,
  });
}

/** Largest |a - b| over all parameters, and whether all are bit-identical. */
export function compare(a: Network, b: Network): { maxDiff: number; identical: boolean } {
  let maxDiff = 0;
  let identical = true;
  const pb = b.parameters();
  a.parameters().forEach((p, i) => {
    const q = pb[i]!.data;
    for (let j = 0; j < p.data.length; j++) {
      if (!Object.is(p.data[j], q[j])) identical = false;
      maxDiff = Math.max(maxDiff, Math.abs(p.data[j]! - q[j]!));
    }
  });
  return { maxDiff, identical };
}
