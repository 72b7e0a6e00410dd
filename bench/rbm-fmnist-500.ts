// `npm run bench -- rbm-fmnist-500 [--epochs=5] [--ais-runs=100] [--ais-steps=14500] [--no-peer]
//  [--no-ais] [--binarize]`: RBM 784-500 on Fashion-MNIST, PCD-1, batch 100.
// Speed: median seconds per epoch, the GFLOP/s of matrix products over an epoch, and the same
// machine's native sgemm rate measured in this run (so `fraction_of_sgemm` is one run's ratio);
// scikit-learn's BernoulliRBM epoch on the same data and threads, run here too, when the peer
// scripts and python3-sklearn are present. Quality: linear-probe accuracy on the 10,000 test
// images (softmax regression on hidden probabilities) and the AIS test log-likelihood (on the
// test images binarized at 0.5) with its interval.
import { loadKernels } from '@spinmesh/kernels';
import {
  Network,
  Trainer,
  aisLogLikelihood,
  binarize,
  columnMeans,
  hiddenFeatures,
  initVisibleBias,
  loadFashionMnist,
  probeAccuracy,
  rbmSpec,
  trainProbe,
  type TrainOptions,
} from '@spinmesh/model';
import { environment, log, median, numArg, parseArgs, runPeer } from './_common.js';
import { gemmGflops } from './kernels.js';

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('rbm-fmnist-500', argv, [
    'epochs',
    'ais-runs',
    'ais-steps',
    'no-peer',
    'no-ais',
    'binarize',
    'seed',
  ]);
  const epochs = numArg(args, 'epochs', 5);
  const seed = numArg(args, 'seed', 1);
  const k = loadKernels();
  log(`kernels: ${k.describe()}`);
  const raw = loadFashionMnist({ split: 'train' });
  const rawTest = loadFashionMnist({ split: 'test' });
  const bin = args.has('binarize');
  const train = bin ? binarize(raw, 'threshold', 0.5) : raw;
  const test = bin ? binarize(rawTest, 'threshold', 0.5) : rawTest;
  const nv = 784;
  const nh = 500;
  const opts: TrainOptions = {
    batchSize: 100,
    negative: 'pcd',
    k: 1,
    learningRate: 0.1,
    momentum: 0.5,
    weightDecay: 1e-4,
    centring: true,
    seed,
  };
  const net = Network.create(rbmSpec(nv, nh), k, { seed });
  initVisibleBias(net, columnMeans(train));
  const trainer = new Trainer(net, opts);
  const B = 100;
  const C = 100;
  // Matrix products of one PCD-1 batch: data-phase hidden (B), chain visible and hidden (2C),
  // and one stacked correlation product over B + C rows.
  const flopsPerBatch = 2 * nv * nh * (B + 2 * C + (B + C));
  const batches = Math.ceil(train.rows / B);
  const seconds: number[] = [];
  for (let e = 0; e < epochs; e++) {
    const s = trainer.trainEpoch(train.x, train.rows, { monitorEvery: 50 });
    seconds.push(s.seconds);
    log(`epoch ${e + 1}: ${s.seconds.toFixed(3)} s  recon ${s.reconstructionError.toFixed(3)}`);
  }
  const epochSeconds = median(seconds);
  const gflops = (flopsPerBatch * batches) / epochSeconds / 1e9;
  const sgemmSmall = gemmGflops(k, 256, 500, 784, 1, 1e9);
  const sgemmLarge = gemmGflops(k, 2048, 2048, 2048, 1, 50);
  log(
    `epoch ${epochSeconds.toFixed(3)} s, ${gflops.toFixed(1)} GFLOP/s; sgemm ${sgemmSmall.toFixed(1)} (256x784x500), ${sgemmLarge.toFixed(1)} (2048^3)`,
  );

  const { accuracy, probeSeconds } = probeFigures(net, train, test, seed);

  const result: Record<string, unknown> = {
    ...environment(k),
    network: '784-500 RBM',
    data: bin ? 'Fashion-MNIST binarized at 0.5' : 'Fashion-MNIST, inputs in [0,1]',
    train: opts,
    epochs,
    epoch_seconds: epochSeconds,
    epoch_seconds_all: seconds,
    gflops,
    sgemm_gflops_256x784x500: sgemmSmall,
    sgemm_gflops_2048: sgemmLarge,
    fraction_of_sgemm: gflops / sgemmSmall,
    fraction_of_sgemm_peak: gflops / sgemmLarge,
    probe_accuracy: accuracy,
    probe_seconds: probeSeconds,
  };
  if (!args.has('no-ais')) {
    const ais = { runs: numArg(args, 'ais-runs', 100), steps: numArg(args, 'ais-steps', 14500) };
    Object.assign(result, aisFigures(net, train, bin ? test : rawTest, bin, { ...ais, seed }));
  }
  if (!args.has('no-peer')) Object.assign(result, sklearnPeer(k.threads, epochSeconds));
  return result;
}

type Data = ReturnType<typeof loadFashionMnist>;

/** Linear-probe accuracy on the test images, of a probe trained on the hidden features. */
function probeFigures(
  net: Network,
  train: Data,
  test: Data,
  seed: number,
): { accuracy: number; probeSeconds: number } {
  const nh = net.layers[1]!.size;
  const t0 = performance.now();
  const ftr = hiddenFeatures(net, train.x, train.rows);
  const fte = hiddenFeatures(net, test.x, test.rows);
  const probe = trainProbe(ftr, train.rows, nh, train.labels!, 10, { seed, epochs: 60 });
  const accuracy = probeAccuracy(probe, fte, test.rows, test.labels!);
  const probeSeconds = (performance.now() - t0) / 1000;
  log(`probe accuracy ${accuracy.toFixed(4)} (${probeSeconds.toFixed(1)} s)`);
  return { accuracy, probeSeconds };
}

/**
 * The AIS test log-likelihood (on the test images, binarized at 0.5 unless `binary` says they
 * are) and log Z, with their spread.
 */
function aisFigures(
  net: Network,
  train: Data,
  test: Data,
  binary: boolean,
  o: { runs: number; steps: number; seed: number },
): Record<string, unknown> {
  const t1 = performance.now();
  const testBin = binary ? test : binarize(test, 'threshold', 0.5);
  const r = aisLogLikelihood(net, testBin.x, testBin.rows, {
    runs: o.runs,
    steps: o.steps,
    seed: o.seed,
    data: train.x,
    dataRows: train.rows,
  });
  const result: Record<string, unknown> = {};
  result['ais_test_ll'] = r.logLikelihood;
  result['ais_test_ll_low'] = r.logLikelihoodLow;
  result['ais_test_ll_high'] = r.logLikelihoodHigh;
  result['ais_logz'] = r.ais.logZ;
  result['ais_logz_std'] = r.ais.logZStd;
  result['ais_seconds'] = (performance.now() - t1) / 1000;
  log(
    `AIS test LL ${r.logLikelihood.toFixed(2)} [${r.logLikelihoodLow.toFixed(2)}, ${r.logLikelihoodHigh.toFixed(2)}]`,
  );
  return result;
}

/** scikit-learn's BernoulliRBM epoch on the same data and threads, when the peer can run. */
function sklearnPeer(threads: number, epochSeconds: number): Record<string, unknown> {
  log('scikit-learn BernoulliRBM peer: 3 epochs ...');
  const peer = runPeer('sk_epoch_time.py', ['3'], threads);
  const result: Record<string, unknown> = { sk_peer: peer };
  if (typeof peer['sk_epoch_s'] === 'number') {
    result['sk_epoch_seconds'] = peer['sk_epoch_s'];
    result['epoch_time_vs_sklearn'] = epochSeconds / peer['sk_epoch_s'];
  }
  return result;
}
