// Unbounded staleness still learns: bars-and-stripes 4x4 with the training setup of
// bench/rbm-bas.ts (RBM 16-16, centred PCD-5, 1000 chains, momentum, decay, linear decay over
// 10,000 epochs), two shards that each own half of both layers, messages delayed by a random
// 0..30 scheduler ticks (about 0..3 steps), no staleness bound. The exact log-likelihood of the
// assembled model must be within 0.1 nats of the lockstep run's. The lockstep run is Trainer
// with statistics 'samples', which a sharded run at staleness 0 reproduces (shard-exact).
// Tolerance: lockstep runs of seeds 1, 2, 3 end at -3.558, -3.543, -3.565 (optimum -3.401),
// and asynchronous runs of the same seeds under various delays ended 0.00 to 0.06 nats from
// theirs in 9 of 10 trials (0.12 worse once), so 0.1 nats separates a working asynchronous run
// from a broken one (which ends below -4.5, or at about -9 if a shard trains on spins
// thousands of steps old). Native kernels only: the portable ones would take minutes.
import { describe, expect, it } from 'vitest';
import { NativeKernels, nativeAvailable } from '@spinmesh/kernels';
import {
  LoopbackCluster,
  Network,
  Trainer,
  type TrainOptions,
  barsAndStripes,
  basLogLikelihoodOptimum,
  columnMeans,
  exactLogLikelihood,
  exactLogZ,
  initVisibleBias,
  networkSource,
  rbmSpec,
} from '../src/index.js';

const run = nativeAvailable().ok ? it : it.skip;

describe('unbounded staleness on bars and stripes', () => {
  run('reaches the lockstep log-likelihood within 0.1 nats', () => {
    const k = new NativeKernels({ threads: 1 });
    const data = barsAndStripes(4);
    const epochs = 10_000;
    const seed = 1;
    const train: TrainOptions = {
      batchSize: data.rows,
      negative: 'pcd',
      chains: 1000,
      k: 5,
      learningRate: 0.03,
      schedule: { type: 'linear', steps: epochs, end: 0 },
      momentum: 0.5,
      weightDecay: 2e-4,
      centring: true,
      seed,
    };
    const spec = rbmSpec(16, 16);
    const init = Network.create(spec, k, { seed });
    initVisibleBias(init, columnMeans(data));
    const ll = (net: Network): number => exactLogLikelihood(net, data.x, data.rows, exactLogZ(net));

    const lockstep = init.clone();
    const tr = new Trainer(lockstep, { ...train, statistics: 'samples' });
    for (let e = 0; e < epochs; e++) tr.trainEpoch(data.x, data.rows);
    const want = ll(lockstep);

    const c = new LoopbackCluster({
      network: spec,
      train,
      layout: [
        { v: [0, 8], h: [0, 8] },
        { v: [8, 16], h: [8, 16] },
      ],
      kernels: k,
      data,
      steps: epochs,
      params: networkSource(init),
      staleness: Infinity,
      delivery: { kind: 'random', maxDelay: 30, seed: 5 },
    });
    c.run();
    const got = ll(c.assemble());
    const st = c.stats();
    // it was asynchronous: stale spins and lagging weights were used
    expect(st.spinStaleness.length - 1).toBeGreaterThanOrEqual(2);
    expect(st.weightLag.length - 1).toBeGreaterThanOrEqual(2);
    expect(want).toBeGreaterThan(basLogLikelihoodOptimum(4) - 0.3);
    expect(Math.abs(got - want)).toBeLessThan(0.1);
  });
});
