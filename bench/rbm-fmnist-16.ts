// `npm run bench -- rbm-fmnist-16 [--epochs=50] [--no-peer]`: Fashion-MNIST binarized at 0.5,
// RBM 784-16, PCD-1, batch 100, 50 epochs; the exact test log-likelihood (log Z summed over the
// 2^16 hidden states). Reference: scikit-learn's BernoulliRBM on the same protocol reaches -259.7
// (../shared/anchors.md); its peer script runs here too when python3-sklearn is present.
import { loadKernels } from '@spinmesh/kernels';
import {
  Network,
  Trainer,
  binarize,
  columnMeans,
  exactLogLikelihood,
  exactLogZ,
  initVisibleBias,
  loadFashionMnist,
  rbmSpec,
  type TrainOptions,
} from '@spinmesh/model';
import { environment, log, numArg, parseArgs, runPeer } from './_common.js';

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('rbm-fmnist-16', argv, ['epochs', 'no-peer', 'seed']);
  const epochs = numArg(args, 'epochs', 50);
  const seed = numArg(args, 'seed', 1);
  const k = loadKernels();
  log(`kernels: ${k.describe()}`);
  const train = binarize(loadFashionMnist({ split: 'train' }), 'threshold', 0.5);
  const test = binarize(loadFashionMnist({ split: 'test' }), 'threshold', 0.5);
  const batches = Math.ceil(train.rows / 100);
  const opts: TrainOptions = {
    batchSize: 100,
    negative: 'pcd',
    k: 1,
    learningRate: 0.05,
    momentum: 0.5,
    centring: true,
    schedule: { type: 'linear', steps: epochs * batches, end: 0 },
    seed,
  };
  const net = Network.create(rbmSpec(784, 16), k, { seed });
  initVisibleBias(net, columnMeans(train));
  const trainer = new Trainer(net, opts);
  const curve: [number, number][] = [];
  const t0 = performance.now();
  for (let e = 1; e <= epochs; e++) {
    trainer.trainEpoch(train.x, train.rows);
    if (e % 10 === 0 || e === epochs || e === 1) {
      const ll = exactLogLikelihood(net, test.x, test.rows, exactLogZ(net));
      curve.push([e, ll]);
      log(`epoch ${e}: exact test LL ${ll.toFixed(3)}`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const logZ = exactLogZ(net);
  const result: Record<string, unknown> = {
    ...environment(k),
    network: '784-16 RBM',
    data: 'Fashion-MNIST binarized at 0.5',
    train: opts,
    epochs,
    exact_test_ll: exactLogLikelihood(net, test.x, test.rows, logZ),
    exact_train_ll_10k: exactLogLikelihood(net, train.x, 10000, logZ),
    log_z: logZ,
    curve,
    seconds,
    goal: { exact_test_ll: -254.7, sklearn_reference: -259.7 },
  };
  if (!args.has('no-peer')) {
    log(`scikit-learn BernoulliRBM peer: ${epochs} epochs, lr 0.01 ...`);
    const peer = runPeer('fmnist16_exact.py', [String(epochs), '0.01'], k.threads);
    result['sk_peer'] = peer;
    const fin = (peer['final'] ?? {}) as Record<string, unknown>;
    if (typeof fin['test_ll'] === 'number') result['sk_exact_test_ll'] = fin['test_ll'];
  }
  return result;
}
