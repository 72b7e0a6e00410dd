// The cluster benchmark's workloads: the dense 2048+2048 RBM on synthetic data and the 784-500
// RBM on Fashion-MNIST, as job specs for K workers.
import { writeIdx } from '@spinmesh/model';

export interface Workload {
  key: string;
  /** Gibbs sweeps per step (PCD-k). */
  k: number;
  title: string;
  spec: (workers: number) => Record<string, unknown>;
  visible: number;
  hidden: number;
  batch: number;
  chains: number;
  totalSteps: number;
}

/** Synthetic binary data: noisy copies (10 % flips) of 16 random prototypes, seeded. */
export function writeSyntheticIdx(path: string, rows: number, dims: number, seed: number): void {
  let s = seed >>> 0 || 1;
  const rand = (): number => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  const P = 16;
  const protos = new Uint8Array(P * dims);
  for (let i = 0; i < protos.length; i++) protos[i] = rand() < 0.5 ? 1 : 0;
  const x = new Uint8Array(rows * dims);
  for (let r = 0; r < rows; r++) {
    const p = Math.floor(rand() * P);
    for (let j = 0; j < dims; j++) {
      const bit = protos[p * dims + j]! ^ (rand() < 0.1 ? 1 : 0);
      x[r * dims + j] = bit * 255;
    }
  }
  writeIdx(path, [rows, dims], x);
}

/** The spec fields every workload shares: seed, staleness, no periodic checkpoints. */
export type CommonFields = {
  seed: number;
  staleness: number | 'unbounded';
  checkpointEverySteps: number;
  /** The spec's tiles; absent: the spec's default (replicated). */
  tiles?: 'owned' | 'replicated';
};

/** The dense bipartite RBM 2048-2048 on the synthetic data at `data` (`rows` rows). */
export function denseWorkload(
  denseData: string,
  denseRows: number,
  denseSteps: number,
  common: CommonFields,
): Workload {
  return {
    key: 'dense',
    k: 1,
    title: 'RBM 2048-2048 (4,096 units), batch 64, 64 chains, PCD-1, synthetic binary data',
    visible: 2048,
    hidden: 2048,
    batch: 64,
    chains: 64,
    totalSteps: Math.ceil(denseSteps / (denseRows / 64)) * (denseRows / 64),
    spec: (workers) => ({
      name: 'bench-cluster-dense',
      network: { rbm: { visible: 2048, hidden: 2048 } },
      data: { kind: 'idx', images: denseData },
      epochs: Math.ceil(denseSteps / (denseRows / 64)),
      train: {
        batchSize: 64,
        negative: 'pcd',
        chains: 64,
        k: 1,
        learningRate: 0.01,
        momentum: 0.5,
        centring: true,
        statistics: 'samples',
      },
      evaluate: { every: 1_000_000, exact: false, recon: false },
      workers,
      ...common,
    }),
  };
}

/** RBM 784-500 on the first `limit` rows of Fashion-MNIST, PCD-k. */
export function fmnistWorkload(
  k: number,
  limit: number,
  epochs: number,
  common: CommonFields,
): Workload {
  return {
    key: k === 1 ? 'fmnist' : `fmnist_pcd${k}`,
    k,
    title: `Fashion-MNIST binarized (first ${limit} rows), RBM 784-500, batch 100, 100 chains, PCD-${k}`,
    visible: 784,
    hidden: 500,
    batch: 100,
    chains: 100,
    totalSteps: epochs * Math.ceil(limit / 100),
    spec: (workers) => ({
      name: 'bench-cluster-fmnist',
      network: { rbm: { visible: 784, hidden: 500 } },
      data: { kind: 'fashion-mnist', split: 'train', limit, binarize: 'threshold' },
      epochs,
      train: {
        batchSize: 100,
        negative: 'pcd',
        chains: 100,
        k,
        learningRate: 0.05,
        momentum: 0.5,
        weightDecay: 1e-4,
        centring: true,
        statistics: 'samples',
      },
      evaluate: { every: 1_000_000, exact: false, recon: false },
      workers,
      ...common,
    }),
  };
}
