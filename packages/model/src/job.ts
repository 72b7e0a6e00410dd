// The single-process runner of a training job spec, and its evaluation. The cluster runs the
// same spec shard by shard; this runner is its reference. The spec and its data are in
// job-spec.ts and job-data.ts, re-exported here.
import { philoxW0, seedHalves, wordToUniform, type Kernels } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { Network } from './network.js';
import { Trainer, type EpochStats } from './train.js';
import { basLogLikelihoodOptimum } from './data/bas.js';
import { columnMeans, type Dataset } from './data/dataset.js';
import { unconfinedAccess, type DataAccess } from './data/source.js';
import type { StateArray } from './io/modelfile.js';
import { enumerationPlan, exactLogLikelihood, exactLogZ } from './eval/exact.js';
import { aisLogLikelihood } from './eval/ais.js';
import { pseudoLogLikelihood } from './eval/pseudo.js';
import { reconstructionError } from './eval/recon.js';
import { hiddenFeatures, probeAccuracy, trainProbe } from './eval/probe.js';
import { isHopfield, recall, storeHebbian } from './hopfield.js';
import { GibbsSampler } from './sampler.js';
import { type DataSpec, type EvaluateSpec, validateJobSpec } from './job-spec.js';
import { loadData } from './job-data.js';

export {
  type DataSpec,
  type EvaluateSpec,
  type JobRule,
  type JobSpec,
  type JobSpecJson,
  MAX_NAME_CHARS,
  MAX_PATH_CHARS,
  jobSpecFromJson,
  jobSpecToJson,
  stalenessText,
  validateData,
  validateJobSpec,
} from './job-spec.js';
export { loadData, randomPatterns } from './job-data.js';

// Stream word of the recall cues' flips; arbitrary, fixed.
const STREAM_FLIPS = 0x464c4950; // 'FLIP'

/**
 * Fraction of units restored when each row, with round(flip x dims) of its units flipped (a
 * seeded choice per row), cues greedy completion with nothing clamped.
 */
export function recallAccuracy(
  net: Network,
  data: Dataset,
  rows: number,
  opts: { flip?: number; sweeps?: number; seed?: number } = {},
): number {
  const n = data.dims;
  const flips = Math.round((opts.flip ?? 0.1) * n);
  const { seedLo, seedHi } = seedHalves(opts.seed ?? 0);
  const hop = isHopfield(net);
  let right = 0;
  for (let r = 0; r < rows; r++) {
    const target = data.x.subarray(r * n, (r + 1) * n);
    const cue = Float32Array.from(target, (v) => (hop ? (v > 0 ? 1 : -1) : v));
    // A seeded partial Fisher-Yates shuffle picks the units to flip.
    const idx = Uint32Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < flips; i++) {
      const j =
        i + Math.floor(wordToUniform(philoxW0(i, r, 0, STREAM_FLIPS, seedLo, seedHi)) * (n - i));
      const t = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = t;
      const u = idx[i]!;
      cue[u] = hop ? -cue[u]! : 1 - cue[u]!;
    }
    const state = hop
      ? recall(net, cue, { sweeps: opts.sweeps ?? 100 }).state
      : greedyBinary(net, cue, opts.sweeps ?? 100);
    for (let j = 0; j < n; j++) {
      const want = hop ? (target[j]! > 0 ? 1 : -1) : target[j]!;
      if (state[j] === want) right++;
    }
  }
  return right / (rows * n);
}

/** Greedy settling of a general binary network from `cue` with nothing clamped (visible layer 0). */
function greedyBinary(net: Network, cue: Float32Array, sweeps: number): Float32Array {
  const state = net.allocState(1);
  state[0]!.set(cue);
  net.kernels.upload(state[0]!);
  const sampler = new GibbsSampler(net, { beta: 1e6 });
  sampler.run(state, 1, sweeps);
  net.kernels.download(state[0]!);
  return state[0]!;
}

export interface Evaluation {
  epoch: number;
  exactLogLikelihood?: number;
  logZ?: number;
  aisLogLikelihood?: number;
  aisLow?: number;
  aisHigh?: number;
  pseudoLogLikelihood?: number;
  reconstructionError?: number;
  probeAccuracy?: number;
  /** Fraction of units restored from corrupted cues (evaluate.recall). */
  recallAccuracy?: number;
  /** Sequence jobs (rule 'stdp'): fraction of the sequences recalled exactly from their cue. */
  recallExact?: number;
  /** Sequence jobs: fraction of the generated frames that are right. */
  recallFrames?: number;
  /** Sequence jobs with gaussian units: RMSE of the one-step-ahead predictions. */
  rmse?: number;
  /** Sequence jobs: mean log-likelihood per frame under one-step prediction, in nats. */
  sequenceLogLikelihood?: number;
  /** For bars-and-stripes: the best possible average log-likelihood, -log(#patterns). */
  optimum?: number;
}

export type JobEvent =
  | { type: 'start'; name: string; kernels: string; rows: number; dims: number }
  | { type: 'epoch'; stats: EpochStats }
  | { type: 'evaluation'; evaluation: Evaluation };

export interface JobResult {
  network: Network;
  /** null for rule 'hebbian' (nothing to resume). */
  trainer: Trainer | null;
  epochs: EpochStats[];
  evaluations: Evaluation[];
}

function enumerable(net: Network): boolean {
  try {
    return enumerationPlan(net).bits <= 24;
  } catch {
    return false;
  }
}

/** Evaluates a network on data as an EvaluateSpec asks. */
export function evaluateNetwork(
  net: Network,
  data: Dataset,
  ev: EvaluateSpec,
  opts: { seed?: number; train?: Dataset; epoch?: number; logZ?: number; dataSpec?: DataSpec } = {},
): Evaluation {
  const visible = net.layers[0]!.name;
  const rows = Math.min(data.rows, ev.limit ?? data.rows);
  const out: Evaluation = { epoch: opts.epoch ?? 0 };
  const exact = ev.exact ?? 'auto';
  if (exact === true || (exact === 'auto' && enumerable(net))) {
    out.logZ = opts.logZ ?? exactLogZ(net);
    out.exactLogLikelihood = exactLogLikelihood(net, data.x, rows, out.logZ, { visible });
  }
  if (ev.ais) {
    const r = aisLogLikelihood(net, data.x, rows, {
      runs: ev.ais.runs ?? 100,
      steps: ev.ais.steps ?? 14500,
      seed: opts.seed ?? 0,
      visible,
      ...(opts.train ? { data: opts.train.x, dataRows: opts.train.rows } : {}),
    });
    out.aisLogLikelihood = r.logLikelihood;
    out.aisLow = r.logLikelihoodLow;
    out.aisHigh = r.logLikelihoodHigh;
  }
  if (ev.pseudo) out.pseudoLogLikelihood = pseudoLogLikelihood(net, data.x, rows, { visible });
  // By default only where it is defined: mean-field reconstruction needs a visible layer without
  // lateral weights.
  if (ev.recon ?? !net.layers[0]!.lateral)
    out.reconstructionError = reconstructionError(net, data.x, rows, { visible });
  if (ev.probe) {
    const train = opts.train;
    if (!train?.labels || !data.labels)
      throw new SpecError('spec.evaluate.probe', 'needs labelled training and test data');
    const ftr = hiddenFeatures(net, train.x, train.rows, { visible });
    const hidden = net.layers.length > 1 ? net.layers[1]!.size : 0;
    const classes = Math.max(...train.labels) + 1;
    const probe = trainProbe(ftr, train.rows, hidden, train.labels, classes, {
      seed: opts.seed ?? 0,
    });
    const fte = hiddenFeatures(net, data.x, rows, { visible });
    out.probeAccuracy = probeAccuracy(probe, fte, rows, data.labels.subarray(0, rows));
  }
  if (ev.recall)
    out.recallAccuracy = recallAccuracy(net, data, rows, { ...ev.recall, seed: opts.seed ?? 0 });
  if (opts.dataSpec?.kind === 'bas') out.optimum = basLogLikelihoodOptimum(opts.dataSpec.size);
  return out;
}

export interface RunJobOptions {
  onEvent?: (e: JobEvent) => void;
  /** Continue from a saved model (its parameters and training state); same network spec. */
  resume?: { network: Network; state: Record<string, StateArray> };
  /** Called after each epoch (checkpointing); trainer is null for rule 'hebbian'. */
  afterEpoch?: (epoch: number, network: Network, trainer: Trainer | null) => void;
  /** How the data files are read. @defaultValue unconfinedAccess(): any path, relative to the current directory */
  access?: DataAccess;
}

/** Runs a job in this process: load data, build the network, train, evaluate on schedule. */
export async function runJob(
  input: unknown,
  kernels: Kernels,
  opts: RunJobOptions = {},
): Promise<JobResult> {
  const onEvent = opts.onEvent ?? (() => {});
  const spec = validateJobSpec(input);
  const access = opts.access ?? unconfinedAccess();
  const data = await loadData(spec.data, spec.seed, access);
  let net: Network;
  if (opts.resume) {
    net = opts.resume.network;
    if (JSON.stringify(net.spec) !== JSON.stringify(spec.network))
      throw new SpecError('spec.network', 'differs from the network of the model being resumed');
  } else {
    net = Network.create(spec.network, kernels, {
      seed: spec.seed,
      weightStd: spec.init.weightStd ?? 0.01,
    });
  }
  const vis = net.layers[0]!;
  if (data.dims !== vis.size)
    throw new SpecError(
      'spec.network',
      `visible layer '${vis.name}' has ${vis.size} units but the data has ${data.dims} columns`,
    );
  const test = spec.evaluate.test
    ? await loadData(spec.evaluate.test, spec.seed, access, 'spec.evaluate.test')
    : data;
  if (test.dims !== data.dims)
    throw new SpecError(
      'spec.evaluate.test',
      `has ${test.dims} columns but the training data has ${data.dims}`,
    );
  onEvent({
    type: 'start',
    name: spec.name,
    kernels: kernels.describe(),
    rows: data.rows,
    dims: data.dims,
  });
  if (spec.rule === 'hebbian') {
    if (opts.resume)
      throw new SpecError('spec.rule', "'hebbian' stores in one look: nothing to resume");
    storeHebbian(net, data.x, data.rows);
    const ev = evaluateNetwork(net, test, spec.evaluate, {
      seed: spec.seed,
      train: data,
      epoch: 1,
      dataSpec: spec.data,
    });
    onEvent({ type: 'evaluation', evaluation: ev });
    opts.afterEpoch?.(1, net, null);
    return { network: net, trainer: null, epochs: [], evaluations: [ev] };
  }
  const trainer = new Trainer(net, spec.train);
  if (opts.resume) trainer.restoreState(opts.resume.state);
  else if (spec.init.visibleBiasFromData ?? true) initVisibleBias(net, columnMeans(data));
  const epochs: EpochStats[] = [];
  const evaluations: Evaluation[] = [];
  const every = spec.evaluate.every ?? 1;
  for (let e = trainer.epochCount + 1; e <= spec.epochs; e++) {
    const stats = trainer.trainEpoch(data.x, data.rows);
    epochs.push(stats);
    onEvent({ type: 'epoch', stats });
    if (e % every === 0 || e === spec.epochs) {
      const ev = evaluateNetwork(net, test, spec.evaluate, {
        seed: spec.seed,
        train: data,
        epoch: e,
        dataSpec: spec.data,
      });
      evaluations.push(ev);
      onEvent({ type: 'evaluation', evaluation: ev });
    }
    opts.afterEpoch?.(e, net, trainer);
  }
  return { network: net, trainer, epochs, evaluations };
}

/**
 * Visible biases b_i = log(p_i / (1 - p_i)) of the data means p (Hinton's practical guide), so
 * the untrained model already has the data's marginals. Bernoulli visible layers only.
 */
export function initVisibleBias(net: Network, means: ArrayLike<number>): void {
  const vis = net.layers[0]!;
  if (vis.type !== 0) return;
  const b = net.biases[0]!;
  for (let j = 0; j < vis.size; j++) {
    const p = Math.min(Math.max(means[j]!, 1e-3), 1 - 1e-3);
    b[j] = Math.log(p / (1 - p));
  }
  net.kernels.upload(b);
}
