// `npm run bench -- dybm-gaussian [--order=8] [--orders=1,2,4,8,16] [--train=3000] [--test=1000]
// [--epochs=20] [--noise=0.3] [--seed=1]`: one-step-ahead prediction of a noisy sum of sines
// (noisySines: periods 17, 29, 53, amplitudes 1, 0.6, 0.4, gaussian noise of std `noise`, which is
// the RMSE floor of any predictor) by a one-unit gaussian DyBM, against a least-squares AR of the
// same order p. The DyBM of order p has self-synapses of delays 1..p (its FIFO read at each lag,
// as the AR reads p lags) and LTP traces (decays 0, 0.5, 0.8, 0.95) for the longer past; it learns
// online (AdaGrad, rate 0.1) for `epochs` passes over the training part, each from a blank past.
// Both are scored on the test part, predicting each value from the true past, without learning.
import { cpus } from 'node:os';
import {
  DyBM,
  type DyBMSpec,
  autoregressionRmse,
  fitAutoregression,
  learnSeries,
  noisySines,
  oneStepRmse,
} from '@spinmesh/model';
import { log, numArg, parseArgs } from './_common.js';

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('dybm-gaussian', argv, [
    'order',
    'orders',
    'train',
    'test',
    'epochs',
    'noise',
    'seed',
  ]);
  const main = numArg(args, 'order', 8);
  const orders = String(args.get('orders') ?? '1,2,4,8,16')
    .split(',')
    .map(Number);
  if (!orders.includes(main)) orders.push(main);
  const train = numArg(args, 'train', 3000);
  const test = numArg(args, 'test', 1000);
  const epochs = numArg(args, 'epochs', 20);
  const noise = numArg(args, 'noise', 0.3);
  const seed = numArg(args, 'seed', 1);
  const x = noisySines(train + test, { noise, seed });
  const byOrder = [];
  for (const p of orders) {
    const spec: DyBMSpec = {
      units: 1,
      kind: 'gaussian',
      delays: [Array.from({ length: p }, (_, i) => i + 1)],
      ltpDecays: [0, 0.5, 0.8, 0.95],
      ltdDecays: [0.5],
    };
    const t0 = performance.now();
    const m = new DyBM(spec, { optimizer: 'adagrad', learningRate: 0.1 });
    const rmseTrain = learnSeries(m, x, 0, train, epochs);
    const rmseDybm = oneStepRmse(m, x, 0, train, train + test);
    const seconds = (performance.now() - t0) / 1000;
    const ar = fitAutoregression(x, p, 0, train);
    const rmseAr = autoregressionRmse(ar, x, train, train + test);
    const params = m.parameters().reduce((a, q) => a + q.data.length, 0);
    log(
      `order ${p}: DyBM ${rmseDybm.toFixed(4)} (${params} parameters, ${seconds.toFixed(2)} s)  AR ${rmseAr.toFixed(4)} (${p + 1})`,
    );
    byOrder.push({
      order: p,
      rmse_dybm: rmseDybm,
      rmse_ar: rmseAr,
      rmse_dybm_last_training_epoch: rmseTrain,
      params_dybm: params,
      params_ar: p + 1,
      seconds_dybm: seconds,
    });
  }
  const m = byOrder.find((r) => r.order === main)!;
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    rmse_dybm: m.rmse_dybm,
    rmse_ar: m.rmse_ar,
    order: main,
    noise_floor: noise,
    dybm_beats_or_matches_ar: byOrder.every((r) => r.rmse_dybm <= r.rmse_ar),
    series: {
      kind: 'noisySines',
      periods: [17, 29, 53],
      amplitudes: [1, 0.6, 0.4],
      noise,
      seed,
      train,
      test,
    },
    dybm: {
      units: 1,
      synapses: 'self, delays 1..order',
      ltpDecays: [0, 0.5, 0.8, 0.95],
      ltdDecays: [0.5],
      optimizer: 'adagrad',
      learningRate: 0.1,
      epochs,
    },
    by_order: byOrder,
  };
}
