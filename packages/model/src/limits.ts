// The limits a service puts on what one request may cost (memory, work) and on what its queue
// may hold, with their defaults, and the estimate of a job that they are checked against. A
// service reads overrides from its configuration; a process running the user's own job on the
// user's own machine (the CLI) does not apply them.
import { LimitError } from './errors.js';
import type { DataSpec, JobSpec } from './job-spec.js';
import type { NetworkSpec } from './network.js';
import { validateTrainOptions } from './train.js';
import { shapeNetwork } from './shard/layout.js';
import { validateDyBMSpec } from './dybm/spec.js';
import type { SequenceJobSpec } from './dybm/job.js';

/** Bytes of one value in a network's parameters, states and data (float32). */
const FLOAT = 4;

/** What one request and the queue may cost. Sizes in bytes are of float32 values. */
export interface Limits {
  /** Units of one network, all layers together (a DyBM's units). @defaultValue 1048576 (2^20) */
  maxUnits: number;
  /**
   * Bytes of one network's parameters (weights, laterals, biases; a DyBM's synapses and their
   * traces). @defaultValue 536870912 (512 MiB)
   */
  maxWeightBytes: number;
  /**
   * Bytes of sampler state: (batch + chains) x units of a training step; AIS runs x units; the
   * chains of a Sample or Complete request. @defaultValue 268435456 (256 MiB)
   */
  maxStateBytes: number;
  /**
   * Bytes of one job's data: rows x columns of its training and test data (a sequence job's
   * frames). @defaultValue 268435456 (256 MiB)
   */
  maxDataBytes: number;
  /**
   * Work of one job, in weight visits (multiply-adds): its training steps x the chains and
   * sweeps of each x its parameters, plus its evaluations. @defaultValue 1e15
   */
  maxWork: number;
  /** Jobs queued at once (submitted, not yet started). @defaultValue 1000 */
  maxQueuedJobs: number;
  /**
   * Bytes of the estimates (parameters, state, data) of all queued jobs together; the
   * coordinator holds the data of every queued job in memory. @defaultValue 4294967296 (4 GiB)
   */
  maxQueuedBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxUnits: 1 << 20,
  maxWeightBytes: 1 << 29,
  maxStateBytes: 1 << 28,
  maxDataBytes: 1 << 28,
  maxWork: 1e15,
  maxQueuedJobs: 1000,
  maxQueuedBytes: 2 ** 32,
});

/** What a job is expected to cost. */
export interface JobEstimate {
  /** Bytes of the network's parameters. */
  weightBytes: number;
  /** Bytes of sampler state (the largest of training and evaluation). */
  stateBytes: number;
  /** Bytes of the training and test data (0 while their size is unknown: files not yet read). */
  dataBytes: number;
  /** weightBytes + stateBytes + dataBytes. */
  bytes: number;
  /** Weight visits (multiply-adds) of training and evaluation. */
  work: number;
}

/** Rows and columns of a data set, when its spec says them without reading a file; else null. */
export function knownDataShape(d: DataSpec): { rows: number; dims: number } | null {
  switch (d.kind) {
    case 'bas':
      return { rows: 2 ** (d.size + 1), dims: d.size * d.size };
    case 'random':
      return { rows: d.rows, dims: d.dims };
    case 'fashion-mnist':
      return { rows: d.limit ?? (d.split === 'test' ? 10_000 : 60_000), dims: 784 };
    default:
      return null;
  }
}

/** Units and parameters of a network spec. */
export function networkSize(net: NetworkSpec): { units: number; parameters: number } {
  let units = 0;
  let parameters = 0;
  const size = new Map<string, number>();
  for (const l of net.layers) {
    units += l.size;
    parameters += l.size + (l.lateral ? l.size * l.size : 0);
    size.set(l.name, l.size);
  }
  for (const c of net.connections) parameters += (size.get(c.from) ?? 0) * (size.get(c.to) ?? 0);
  return { units, parameters };
}

/** Bytes as the limits' messages show them ('1.5 GiB'). */
function bytesText(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${Number(n.toPrecision(3))} ${units[i]}`;
}

/** A count as the limits' messages show it: exact up to a billion, then '1.50e+12'. */
function countText(n: number): string {
  return n < 1e9 ? String(n) : n.toExponential(2);
}

/**
 * Throws a LimitError when `value` > the limit `name` of `limits`: '<field> <what(value)>, more
 * than the limit <name> = <limit>'.
 */
function within(
  limits: Limits,
  name: keyof Limits,
  value: number,
  field: string,
  what: (shown: string) => string,
  bytes: boolean,
): void {
  const max = limits[name];
  if (value <= max) return;
  const show = bytes ? bytesText : countText;
  throw new LimitError(
    field,
    name,
    `${what(show(value))}, more than the limit ${name} = ${show(max)}`,
  );
}

/**
 * The estimate of a validated job, checked against the per-job limits. `rows`: the rows of its
 * training and test data once loaded; before, the sizes its data specs state (files count 0).
 * @throws LimitError naming the field to shrink and the limit
 */
export function checkJobLimits(
  spec: JobSpec,
  limits: Limits,
  rows?: { train: number; test: number },
): JobEstimate {
  // Long by design (exempt in test/shape.test.ts): a validator, one check per limit.
  const p = 'spec';
  const { units, parameters } = networkSize(spec.network);
  const field = spec.network.layers.length === 1 ? `${p}.network` : `${p}.network.layers`;
  within(limits, 'maxUnits', units, field, (v) => `has ${v} units`, false);
  const weightBytes = parameters * FLOAT;
  within(
    limits,
    'maxWeightBytes',
    weightBytes,
    `${p}.network`,
    (v) => `needs ${v} of parameters`,
    true,
  );

  // Data: rows x columns of the training and test sets.
  const dims = spec.network.layers[0]!.size;
  const trainShape = knownDataShape(spec.data);
  const testShape = spec.evaluate.test ? knownDataShape(spec.evaluate.test) : null;
  const trainRows = rows?.train ?? trainShape?.rows ?? 0;
  const testRows = rows?.test ?? (spec.evaluate.test ? (testShape?.rows ?? 0) : trainRows);
  const dataBytes =
    (trainRows * (trainShape?.dims ?? dims) +
      (spec.evaluate.test ? testRows * (testShape?.dims ?? dims) : 0)) *
    FLOAT;
  within(limits, 'maxDataBytes', dataBytes, `${p}.data`, (v) => `holds ${v} of data`, true);

  // Sampler state and work of training.
  const evalRows = Math.min(testRows, spec.evaluate.limit ?? testRows);
  const ais = spec.evaluate.ais ? { runs: 100, steps: 14_500, ...spec.evaluate.ais } : null;
  let stateBytes = 0;
  let trainWork = 0;
  if (spec.rule === 'hebbian') {
    trainWork = trainRows * parameters;
  } else {
    const train = validateTrainOptions(spec.train, shapeNetwork(spec.network));
    const chains = train.negative === 'pcd' ? train.chains : train.batchSize;
    stateBytes = (train.batchSize + chains) * units * FLOAT;
    within(
      limits,
      'maxStateBytes',
      stateBytes,
      train.negative === 'pcd' ? `${p}.train.chains` : `${p}.train.batchSize`,
      (v) => `needs ${v} of sampler state ((batch + chains) x units)`,
      true,
    );
    const positive = train.positive === 'exact' ? 1 : train.positiveIterations;
    const perStep = (train.batchSize * positive + chains * train.k + 1) * parameters;
    const steps = spec.epochs * Math.max(1, Math.ceil(trainRows / train.batchSize));
    trainWork = steps * perStep;
  }
  if (ais) {
    const aisBytes = ais.runs * units * FLOAT;
    within(
      limits,
      'maxStateBytes',
      aisBytes,
      `${p}.evaluate.ais.runs`,
      (v) => `needs ${v} of AIS state (runs x units)`,
      true,
    );
    stateBytes = Math.max(stateBytes, aisBytes);
  }

  // Work of the evaluations: every `every` epochs and after the last.
  const evaluations = Math.ceil(spec.epochs / (spec.evaluate.every ?? 1)) + 1;
  let evalWork = evalRows * parameters * 4; // reconstruction, pseudo-likelihood, probe features
  if (spec.evaluate.exact !== false) {
    const smallest = Math.min(...spec.network.layers.map((l) => l.size));
    evalWork += 2 ** Math.min(24, smallest) * parameters;
  }
  if (ais) evalWork += ais.runs * ais.steps * parameters;
  if (spec.evaluate.recall)
    evalWork += evalRows * (spec.evaluate.recall.sweeps ?? 100) * parameters;
  const work = trainWork + evaluations * evalWork;
  within(
    limits,
    'maxWork',
    work,
    evaluations * evalWork > trainWork
      ? `${p}.evaluate`
      : spec.rule === 'hebbian'
        ? `${p}.data`
        : `${p}.epochs`,
    (v) => `implies ${v} weight visits of training and evaluation`,
    false,
  );
  return { weightBytes, stateBytes, dataBytes, bytes: weightBytes + stateBytes + dataBytes, work };
}

/** No limit at all: checkJobLimits with it is the estimate alone. */
export const NO_LIMITS: Readonly<Limits> = Object.freeze({
  maxUnits: Infinity,
  maxWeightBytes: Infinity,
  maxStateBytes: Infinity,
  maxDataBytes: Infinity,
  maxWork: Infinity,
  maxQueuedJobs: Infinity,
  maxQueuedBytes: Infinity,
});

/** Checks that queuing one more job of `bytes` keeps the queue within its limits. */
export function checkQueueLimits(
  limits: Limits,
  queued: { jobs: number; bytes: number },
  bytes: number,
): void {
  if (queued.jobs + 1 > limits.maxQueuedJobs)
    throw new LimitError(
      'queue',
      'maxQueuedJobs',
      `holds ${queued.jobs} jobs, the limit maxQueuedJobs: submit again when some have started`,
    );
  if (queued.bytes + bytes > limits.maxQueuedBytes)
    throw new LimitError(
      'queue',
      'maxQueuedBytes',
      `holds jobs estimated at ${bytesText(queued.bytes)}; this one (${bytesText(bytes)}) would pass the limit maxQueuedBytes = ${bytesText(limits.maxQueuedBytes)}: submit again when some have started`,
    );
}

/**
 * The estimate of a validated sequence job (rule 'stdp'), checked against the per-job limits;
 * `frames`: the frames of its sequences together (one round). @throws LimitError naming the
 * field and limit
 */
export function checkSequenceLimits(
  spec: SequenceJobSpec,
  limits: Limits,
  frames: number,
): JobEstimate {
  const p = 'spec';
  const d = validateDyBMSpec(spec.network.dybm, `${p}.network.dybm`);
  const n = d.units;
  within(limits, 'maxUnits', n, `${p}.network.dybm.units`, (v) => `are ${v}`, false);
  const synapses = d.synapses.pre.length;
  const traces = 1 + d.ltpDecays.length + d.ltdDecays.length;
  // Float64 parameters: a weight and a trace per decay rate per synapse, adagrad's sums, biases;
  // and the delay lines: maxDelay + 1 frames per unit.
  const weightBytes = 8 * (2 * synapses * traces + (d.maxDelay + 1) * n + 4 * n);
  within(
    limits,
    'maxWeightBytes',
    weightBytes,
    `${p}.network.dybm`,
    (v) => `needs ${v} of parameters`,
    true,
  );
  const dataBytes = frames * n * 8;
  within(limits, 'maxDataBytes', dataBytes, `${p}.data`, (v) => `holds ${v} of frames`, true);
  const work = spec.epochs * frames * synapses * traces;
  within(
    limits,
    'maxWork',
    work,
    `${p}.epochs`,
    (v) => `implies ${v} trace updates (rounds x frames x synapses x traces)`,
    false,
  );
  return { weightBytes, stateBytes: 0, dataBytes, bytes: weightBytes + dataBytes, work };
}
