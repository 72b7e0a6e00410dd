// `npm run bench -- rbm-bas [--seeds=N] [--epochs=N]`: bars-and-stripes 4x4, RBM 16-16, trained
// with the Boltzmann rule (centred PCD-5, 1000 persistent chains, momentum, weight decay, linear
// learning-rate decay). The exact average log-likelihood (2^16 hidden states enumerated) is taken
// every 1% of training. Optimum: -log 30 = -3.401; scikit-learn's best is -4.09, then it
// collapses (../shared/anchors.md). Prints the worst seed's figures and every seed's.
import { loadKernels } from '@spinmesh/kernels';
import {
  Network,
  Trainer,
  barsAndStripes,
  basLogLikelihoodOptimum,
  columnMeans,
  exactLogLikelihood,
  exactLogZ,
  initVisibleBias,
  rbmSpec,
  type TrainOptions,
} from '@spinmesh/model';
import { environment, log, numArg, parseArgs } from './_common.js';

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('rbm-bas', argv, ['seeds', 'epochs']);
  const seeds = numArg(args, 'seeds', 3);
  const epochs = numArg(args, 'epochs', 10000);
  const k = loadKernels();
  const data = barsAndStripes(4);
  const batch = data.rows; // all 30 patterns: the data phase is exact
  const train: TrainOptions = {
    batchSize: batch,
    negative: 'pcd',
    chains: 1000,
    k: 5,
    learningRate: 0.03,
    schedule: { type: 'linear', steps: epochs, end: 0 },
    momentum: 0.5,
    weightDecay: 2e-4,
    centring: true,
  };
  const runs = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const t0 = performance.now();
    const net = Network.create(rbmSpec(16, 16), k, { seed });
    initVisibleBias(net, columnMeans(data));
    const trainer = new Trainer(net, { ...train, seed });
    const curve: [number, number][] = [];
    const every = Math.max(1, Math.floor(epochs / 100));
    for (let e = 1; e <= epochs; e++) {
      trainer.trainEpoch(data.x, data.rows);
      if (e % every === 0 || e === epochs)
        curve.push([e, exactLogLikelihood(net, data.x, data.rows, exactLogZ(net))]);
    }
    const lastHalf = curve.filter(([e]) => e > epochs / 2).map(([, ll]) => ll);
    const r = {
      seed,
      exact_ll_final: curve[curve.length - 1]![1],
      exact_ll_min_last_half: Math.min(...lastHalf),
      exact_ll_best: Math.max(...curve.map(([, ll]) => ll)),
      seconds: (performance.now() - t0) / 1000,
      curve: curve.filter((_, i) => i % 10 === 9).map(([e, ll]) => [e, Number(ll.toFixed(4))]),
    };
    log(
      `seed ${seed}: final ${r.exact_ll_final.toFixed(4)}  min over last half ${r.exact_ll_min_last_half.toFixed(4)}  (${r.seconds.toFixed(1)} s)`,
    );
    runs.push(r);
  }
  return {
    ...environment(k),
    network: '16-16 RBM',
    data: 'bars-and-stripes 4x4 (30 patterns)',
    optimum: basLogLikelihoodOptimum(4),
    epochs,
    updates: epochs,
    train,
    seeds,
    exact_ll_final: Math.min(...runs.map((r) => r.exact_ll_final)),
    exact_ll_min_last_half: Math.min(...runs.map((r) => r.exact_ll_min_last_half)),
    goal: { exact_ll_final: -3.6, exact_ll_min_last_half: -3.8 },
    runs,
  };
}
