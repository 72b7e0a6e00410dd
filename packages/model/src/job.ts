// Training job specs (what a user writes in YAML or JSON) and the single-process runner that
// executes one. The cluster runs the same spec shard by shard; this runner is its reference.
import { philoxW0, seedHalves, wordToUniform, type Kernels } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { intIn as int, isRecord, onlyKeys } from './checks.js';
import {
  Network,
  rbmSpec,
  validateNetworkSpec,
  type NetworkSpec,
  type UnitName,
} from './network.js';
import { Trainer, type EpochStats } from './train.js';
import { type TrainOptions, validateTrainOptions } from './train-options.js';
import { barsAndStripes, basLogLikelihoodOptimum } from './data/bas.js';
import { binarize, type BinarizeMode, type Dataset } from './data/dataset.js';
import { join } from 'node:path';
import {
  FASHION_MNIST_DEFAULT_DIR,
  FASHION_MNIST_HINT,
  fashionMnistDefaultDir,
  fashionMnistFiles,
  fashionMnistFrom,
  idxDatasetFrom,
} from './data/fashion.js';
import { parseCsv } from './data/csv.js';
import { decodeIdx, type IdxArray } from './data/idx.js';
import {
  DataFileError,
  readDataFile,
  unconfinedAccess,
  withRoot,
  type DataAccess,
} from './data/source.js';
import type { StateArray } from './io/modelfile.js';
import { enumerationPlan, exactLogLikelihood, exactLogZ } from './eval/exact.js';
import { aisLogLikelihood } from './eval/ais.js';
import { pseudoLogLikelihood } from './eval/pseudo.js';
import { reconstructionError } from './eval/recon.js';
import { hiddenFeatures, probeAccuracy, trainProbe } from './eval/probe.js';
import { hopfieldSpec, isHopfield, recall, storeHebbian } from './hopfield.js';
import { GibbsSampler } from './sampler.js';
import { shapeNetwork } from './shard/layout.js';

/** Where training (or test) data comes from. */
export type DataSpec =
  | { kind: 'bas'; size: number }
  | {
      kind: 'fashion-mnist';
      /** @defaultValue 'train' */
      split?: 'train' | 'test';
      limit?: number;
      /** @defaultValue env SPINMESH_DATA_DIR or /usr/share/datasets/fashion-mnist */
      dir?: string;
      /** @defaultValue 'threshold' */
      binarize?: BinarizeMode;
      /** @defaultValue 0.5 */
      threshold?: number;
    }
  | { kind: 'idx'; images: string; labels?: string; binarize?: BinarizeMode; threshold?: number }
  | {
      kind: 'csv';
      path: string;
      label?: string | number;
      binarize?: BinarizeMode;
      threshold?: number;
    }
  | {
      /** Independent random binary patterns: each unit is 1 with probability p, else 0. */
      kind: 'random';
      rows: number;
      dims: number;
      /** @defaultValue 0.5 */
      p?: number;
      /** @defaultValue the job's seed */
      seed?: number;
    };

export interface EvaluateSpec {
  /** Evaluate after every `every` epochs (and always after the last). @defaultValue 1 */
  every?: number;
  /** Exact log-likelihood by enumeration (when the network is small enough). @defaultValue 'auto' */
  exact?: boolean | 'auto';
  /** AIS log-likelihood: false, or options. @defaultValue false */
  ais?: false | { runs?: number; steps?: number };
  /** Full pseudo-log-likelihood (sum over visible units). @defaultValue false */
  pseudo?: boolean;
  /** Reconstruction error. @defaultValue true */
  recon?: boolean;
  /** Linear-probe accuracy on the test data's labels. @defaultValue false */
  probe?: boolean;
  /** Held-out data for the figures; default: the training data. */
  test?: DataSpec;
  /** Evaluate on at most this many rows (the first ones). */
  limit?: number;
  /**
   * Recall accuracy: each row, with a fraction `flip` of its units flipped, is the cue for
   * greedy pattern completion; the figure is the fraction of units restored. Hebbian jobs
   * default to { flip: 0.1 }. @defaultValue false
   */
  recall?: false | { flip?: number; sweeps?: number };
}

/** The learning rule of a job. */
export type JobRule = 'boltzmann' | 'hebbian';

export interface JobSpec {
  name: string;
  /** @defaultValue 0 */
  seed: number;
  /**
   * 'boltzmann': the Boltzmann learning rule as `train` says, over `epochs` passes.
   * 'hebbian': Hopfield storage in one look (L = (1/n) sum_p p p^T): the network must be a
   * Hopfield network (one lateral ising layer, e.g. `network: { hopfield: 100 }`), `train` is
   * not used and `epochs` is 1. @defaultValue 'boltzmann'
   */
  rule: JobRule;
  network: NetworkSpec;
  data: DataSpec;
  epochs: number;
  train: TrainOptions;
  init: { weightStd?: number; visibleBiasFromData?: boolean };
  evaluate: EvaluateSpec;
  /**
   * Cluster runs: the number of shards the units are split into, one worker process each
   * (1-65535). runJob, which runs in one process, ignores it. @defaultValue 1
   */
  workers: number;
  /**
   * Cluster runs: how many steps a shard may run ahead of the spins and updates of its peers.
   * 0 is lockstep (the result equals runJob's with `train.statistics: 'samples'`, bit for bit
   * with the portable kernels); 'unbounded' never waits. @defaultValue 0
   */
  staleness: number | 'unbounded';
  /**
   * Cluster runs: every shard checkpoints its state every this many steps (one step = one
   * minibatch update); after a worker failure every shard restarts from the newest step all of
   * them have checkpointed. 0: no periodic checkpoints (a failure restarts the job from the
   * start). @defaultValue 100
   */
  checkpointEverySteps: number;
}

/** Longest job name, in characters. */
export const MAX_NAME_CHARS = 256;
/** Longest file path in a data spec, in characters (Linux's PATH_MAX). */
export const MAX_PATH_CHARS = 4096;

function str(v: unknown, path: string, max = MAX_PATH_CHARS): string {
  if (typeof v !== 'string' || v.length === 0)
    throw new SpecError(path, 'must be a non-empty string');
  if (v.length > max)
    throw new SpecError(path, `must be at most ${max} characters (got ${v.length})`);
  return v;
}

const BINARIZE: BinarizeMode[] = ['threshold', 'none', 'bernoulli'];

/** Checks a data spec from untrusted input. @throws SpecError naming the field under `path` */
export function validateData(d: unknown, path: string): DataSpec {
  if (!isRecord(d)) throw new SpecError(path, 'must be an object with a kind');
  const bin = (): { binarize?: BinarizeMode; threshold?: number } => {
    const out: { binarize?: BinarizeMode; threshold?: number } = {};
    if (d['binarize'] !== undefined) {
      if (!BINARIZE.includes(d['binarize'] as BinarizeMode))
        throw new SpecError(`${path}.binarize`, `must be one of ${BINARIZE.join(', ')}`);
      out.binarize = d['binarize'] as BinarizeMode;
    }
    if (d['threshold'] !== undefined) {
      const t = d['threshold'];
      if (typeof t !== 'number' || !(t > 0 && t < 1))
        throw new SpecError(`${path}.threshold`, 'must be a number in (0, 1)');
      out.threshold = t;
    }
    return out;
  };
  switch (d['kind']) {
    case 'bas':
      onlyKeys(d, ['kind', 'size'], path);
      return { kind: 'bas', size: int(d['size'], `${path}.size`, 2, 8) };
    case 'fashion-mnist': {
      onlyKeys(d, ['kind', 'split', 'limit', 'dir', 'binarize', 'threshold'], path);
      const split = d['split'] ?? 'train';
      if (split !== 'train' && split !== 'test')
        throw new SpecError(`${path}.split`, "must be 'train' or 'test'");
      const out: DataSpec = { kind: 'fashion-mnist', split, ...bin() };
      if (d['limit'] !== undefined) out.limit = int(d['limit'], `${path}.limit`, 1);
      if (d['dir'] !== undefined) out.dir = str(d['dir'], `${path}.dir`);
      return out;
    }
    case 'idx': {
      onlyKeys(d, ['kind', 'images', 'labels', 'binarize', 'threshold'], path);
      const out: DataSpec = { kind: 'idx', images: str(d['images'], `${path}.images`), ...bin() };
      if (d['labels'] !== undefined) out.labels = str(d['labels'], `${path}.labels`);
      return out;
    }
    case 'random': {
      onlyKeys(d, ['kind', 'rows', 'dims', 'p', 'seed'], path);
      const rows = int(d['rows'], `${path}.rows`, 1, 1_000_000);
      const dims = int(d['dims'], `${path}.dims`, 1, 1 << 20);
      if (rows * dims > 1 << 28)
        throw new SpecError(path, `rows x dims must be at most ${1 << 28} (got ${rows * dims})`);
      const out: DataSpec = { kind: 'random', rows, dims };
      if (d['p'] !== undefined) {
        const q = d['p'];
        if (typeof q !== 'number' || !(q >= 0 && q <= 1))
          throw new SpecError(`${path}.p`, 'must be a number in [0, 1]');
        out.p = q;
      }
      if (d['seed'] !== undefined) out.seed = int(d['seed'], `${path}.seed`, 0, 2 ** 53 - 1);
      return out;
    }
    case 'csv': {
      onlyKeys(d, ['kind', 'path', 'label', 'binarize', 'threshold'], path);
      const out: DataSpec = { kind: 'csv', path: str(d['path'], `${path}.path`), ...bin() };
      const label = d['label'];
      if (label !== undefined) {
        if (typeof label !== 'string' && !(typeof label === 'number' && Number.isInteger(label)))
          throw new SpecError(`${path}.label`, 'must be a column name or index');
        out.label = label;
      }
      return out;
    }
    default:
      throw new SpecError(
        `${path}.kind`,
        "must be one of 'bas', 'fashion-mnist', 'idx', 'csv', 'random'",
      );
  }
}

function validateNetwork(n: unknown, path: string): NetworkSpec {
  if (isRecord(n) && 'hopfield' in n) {
    onlyKeys(n, ['hopfield'], path);
    return hopfieldSpec(int(n['hopfield'], `${path}.hopfield`, 1, 1 << 16));
  }
  if (isRecord(n) && 'rbm' in n) {
    onlyKeys(n, ['rbm'], path);
    const r = n['rbm'];
    if (!isRecord(r))
      throw new SpecError(`${path}.rbm`, 'must be an object with visible and hidden');
    onlyKeys(r, ['visible', 'hidden', 'units'], `${path}.rbm`);
    const units = (r['units'] ?? 'bernoulli') as UnitName;
    return validateNetworkSpec(
      rbmSpec(
        int(r['visible'], `${path}.rbm.visible`, 1),
        int(r['hidden'], `${path}.rbm.hidden`, 1),
        units,
      ),
      path,
    );
  }
  return validateNetworkSpec(n, path);
}

/**
 * A field given as null (`epochs:` with nothing after it in YAML) is a mistake, not a request for
 * the default: it is refused, naming the field.
 */
function rejectNulls(v: unknown, path: string): void {
  if (v === null) throw new SpecError(path, 'is null: give it a value or leave it out');
  if (Array.isArray(v)) v.forEach((x, i) => rejectNulls(x, `${path}[${i}]`));
  else if (isRecord(v)) for (const [k, x] of Object.entries(v)) rejectNulls(x, `${path}.${k}`);
}

/** Checks a job spec from untrusted input (parsed YAML or JSON). @throws SpecError naming the field */
export function validateJobSpec(input: unknown): JobSpec {
  const p = 'spec';
  if (!isRecord(input)) throw new SpecError(p, 'must be an object');
  rejectNulls(input, p);
  onlyKeys(
    input,
    [
      'name',
      'seed',
      'rule',
      'network',
      'data',
      'epochs',
      'train',
      'init',
      'evaluate',
      'workers',
      'staleness',
      'checkpointEverySteps',
    ],
    p,
  );
  const name =
    input['name'] === undefined ? 'job' : str(input['name'], `${p}.name`, MAX_NAME_CHARS);
  const seed = input['seed'] === undefined ? 0 : int(input['seed'], `${p}.seed`, 0, 2 ** 53 - 1);
  const rule = input['rule'] ?? 'boltzmann';
  if (rule !== 'boltzmann' && rule !== 'hebbian')
    throw new SpecError(`${p}.rule`, "must be 'boltzmann' or 'hebbian'");
  if (input['network'] === undefined) throw new SpecError(`${p}.network`, 'is required');
  const network = validateNetwork(input['network'], `${p}.network`);
  if (input['data'] === undefined) throw new SpecError(`${p}.data`, 'is required');
  const data = validateData(input['data'], `${p}.data`);
  const epochs = int(input['epochs'] ?? 1, `${p}.epochs`, 1, 1_000_000);
  const trainIn = input['train'] ?? {};
  if (!isRecord(trainIn)) throw new SpecError(`${p}.train`, 'must be an object');
  const train = { ...trainIn, seed: trainIn['seed'] ?? seed } as TrainOptions;
  if (rule === 'hebbian') {
    if (!isHopfield(shapeNetwork(network)))
      throw new SpecError(
        `${p}.network`,
        "must be a Hopfield network for rule 'hebbian' (one lateral ising layer and no connections: { hopfield: n })",
      );
    // (A validated spec carries train.seed: validation must accept its own output.)
    if (Object.keys(trainIn).some((k) => k !== 'seed'))
      throw new SpecError(`${p}.train`, "is not used by rule 'hebbian' (storage is one look)");
    if (epochs !== 1)
      throw new SpecError(`${p}.epochs`, "must be 1 for rule 'hebbian' (storage is one look)");
  } else {
    // Checked now against the network, so a bad option fails before any data is loaded.
    try {
      validateTrainOptions(train, shapeNetwork(network));
    } catch (e) {
      if (e instanceof SpecError && !e.field.startsWith('spec.'))
        throw new SpecError(`${p}.${e.field}`, e.message.slice(e.field.length + 1));
      throw e;
    }
  }
  const initIn = input['init'] ?? {};
  if (!isRecord(initIn)) throw new SpecError(`${p}.init`, 'must be an object');
  onlyKeys(initIn, ['weightStd', 'visibleBiasFromData'], `${p}.init`);
  const init: JobSpec['init'] = {};
  if (initIn['weightStd'] !== undefined) {
    const w = initIn['weightStd'];
    if (typeof w !== 'number' || !(w >= 0 && w < 10))
      throw new SpecError(`${p}.init.weightStd`, 'must be a number in [0, 10)');
    init.weightStd = w;
  }
  if (initIn['visibleBiasFromData'] !== undefined) {
    if (typeof initIn['visibleBiasFromData'] !== 'boolean')
      throw new SpecError(`${p}.init.visibleBiasFromData`, 'must be a boolean');
    init.visibleBiasFromData = initIn['visibleBiasFromData'];
  }
  const ev = input['evaluate'] ?? {};
  if (!isRecord(ev)) throw new SpecError(`${p}.evaluate`, 'must be an object');
  const ep = `${p}.evaluate`;
  onlyKeys(
    ev,
    ['every', 'exact', 'ais', 'pseudo', 'recon', 'probe', 'test', 'limit', 'recall'],
    ep,
  );
  const evaluate: EvaluateSpec = { every: int(ev['every'] ?? 1, `${ep}.every`, 1) };
  if (rule === 'hebbian') {
    evaluate.recon = false;
    evaluate.recall = { flip: 0.1 };
  }
  for (const k of ['pseudo', 'recon', 'probe'] as const) {
    if (ev[k] !== undefined && typeof ev[k] !== 'boolean')
      throw new SpecError(`${ep}.${k}`, 'must be a boolean');
    if (ev[k] !== undefined) evaluate[k] = ev[k] as boolean;
  }
  if (ev['exact'] !== undefined) {
    if (ev['exact'] !== 'auto' && typeof ev['exact'] !== 'boolean')
      throw new SpecError(`${ep}.exact`, "must be true, false or 'auto'");
    evaluate.exact = ev['exact'] as boolean | 'auto';
  }
  if (ev['ais'] !== undefined && ev['ais'] !== false) {
    const a = ev['ais'] === true ? {} : ev['ais'];
    if (!isRecord(a)) throw new SpecError(`${ep}.ais`, 'must be false, true or { runs, steps }');
    onlyKeys(a, ['runs', 'steps'], `${ep}.ais`);
    const ais: { runs?: number; steps?: number } = {};
    if (a['runs'] !== undefined) ais.runs = int(a['runs'], `${ep}.ais.runs`, 2, 100_000);
    if (a['steps'] !== undefined) ais.steps = int(a['steps'], `${ep}.ais.steps`, 10, 10_000_000);
    evaluate.ais = ais;
  }
  if (ev['recall'] !== undefined && ev['recall'] !== true) {
    const r = ev['recall'];
    if (r === false) evaluate.recall = false;
    else {
      if (!isRecord(r))
        throw new SpecError(`${ep}.recall`, 'must be false, true or { flip, sweeps }');
      onlyKeys(r, ['flip', 'sweeps'], `${ep}.recall`);
      const rec: { flip?: number; sweeps?: number } = {};
      if (r['flip'] !== undefined) {
        const f = r['flip'];
        if (typeof f !== 'number' || !(f >= 0 && f <= 0.5))
          throw new SpecError(`${ep}.recall.flip`, 'must be a number in [0, 0.5]');
        rec.flip = f;
      }
      if (r['sweeps'] !== undefined) rec.sweeps = int(r['sweeps'], `${ep}.recall.sweeps`, 1, 1e6);
      evaluate.recall = rec;
    }
  } else if (ev['recall'] === true) evaluate.recall = {};
  if (ev['test'] !== undefined) evaluate.test = validateData(ev['test'], `${ep}.test`);
  if (ev['limit'] !== undefined) evaluate.limit = int(ev['limit'], `${ep}.limit`, 1);
  const workers = int(input['workers'] ?? 1, `${p}.workers`, 1, 0xffff);
  const st = input['staleness'] ?? 0;
  // Bounded staleness travels as a uint32 whose largest value means 'unbounded'.
  if (
    st !== 'unbounded' &&
    !(typeof st === 'number' && Number.isInteger(st) && st >= 0 && st < 0xffff_ffff)
  )
    throw new SpecError(`${p}.staleness`, "must be an integer in [0, 4294967294] or 'unbounded'");
  const staleness = st as number | 'unbounded';
  const checkpointEverySteps = int(
    input['checkpointEverySteps'] ?? 100,
    `${p}.checkpointEverySteps`,
    0,
  );
  if (rule === 'hebbian' && workers !== 1)
    throw new SpecError(`${p}.workers`, "must be 1 for rule 'hebbian' (storage is one look)");
  return {
    name,
    seed,
    rule,
    network,
    data,
    epochs,
    train,
    init,
    evaluate,
    workers,
    staleness,
    checkpointEverySteps,
  };
}

/**
 * Loads the rows a data spec names (values in [0,1], binarized as the spec says), reading its
 * files as `access` allows (relative paths against its base directory); `field` names the data
 * spec in errors. @throws SpecError naming the field, FormatError naming the file
 */
export async function loadData(
  d: DataSpec,
  seed = 0,
  access: DataAccess = unconfinedAccess(),
  field = 'spec.data',
): Promise<Dataset> {
  let ds: Dataset;
  switch (d.kind) {
    case 'bas':
      return barsAndStripes(d.size);
    case 'fashion-mnist':
      ds = await readFashionMnist(d, access, field);
      break;
    case 'idx': {
      const images = await readIdxFile(d.images, `${field}.images`, access);
      const labels =
        d.labels === undefined
          ? undefined
          : { array: await readIdxFile(d.labels, `${field}.labels`, access), path: d.labels };
      ds = idxDatasetFrom(images, d.images, labels);
      break;
    }
    case 'csv': {
      const bytes = await readDataFile(d.path, `${field}.path`, access);
      ds = parseCsv(
        bytes.toString('utf8'),
        d.label === undefined ? {} : { label: d.label },
        d.path,
      );
      break;
    }
    case 'random':
      return randomPatterns(d.rows, d.dims, d.p ?? 0.5, d.seed ?? seed);
  }
  const mode = d.binarize ?? (d.kind === 'fashion-mnist' ? 'threshold' : 'none');
  return mode === 'none' ? ds : binarize(ds, mode, d.threshold ?? 0.5, seed);
}

async function readIdxFile(path: string, field: string, access: DataAccess): Promise<IdxArray> {
  return decodeIdx(await readDataFile(path, field, access), path, access.maxBytes);
}

/** Fashion-MNIST from `dir`, which a confined reader may also find in the package's directory. */
async function readFashionMnist(
  d: Extract<DataSpec, { kind: 'fashion-mnist' }>,
  access: DataAccess,
  field: string,
): Promise<Dataset> {
  const dirField = `${field}.dir`;
  const dir = d.dir ?? fashionMnistDefaultDir();
  // The package's directory, and the one the service's administrator named, for this kind only.
  const allowed = withRoot(withRoot(access, FASHION_MNIST_DEFAULT_DIR), fashionMnistDefaultDir());
  const split = d.split ?? 'train';
  const files = fashionMnistFiles(split);
  const read = async (base: string): Promise<{ array: IdxArray; path: string }> => {
    for (const name of [base, `${base}.gz`]) {
      const path = join(dir, name);
      try {
        return { array: await readIdxFile(path, dirField, allowed), path };
      } catch (e) {
        if (!(e instanceof DataFileError && e.problem === 'missing')) throw e;
      }
    }
    throw new SpecError(dirField, `holds no ${base} (nor ${base}.gz) ${FASHION_MNIST_HINT}`);
  };
  const images = await read(files.images);
  const labels = await read(files.labels);
  return fashionMnistFrom(images.array, images.path, labels.array, labels.path, split, d.limit);
}

// Stream words of the random patterns and of the recall cues' flips; arbitrary, fixed.
const STREAM_PATTERNS = 0x524e4450; // 'RNDP'
const STREAM_FLIPS = 0x464c4950; // 'FLIP'

/** rows x dims independent {0,1} units, each 1 with probability p; draws keyed by (seed, row, unit). */
export function randomPatterns(rows: number, dims: number, p: number, seed: number): Dataset {
  const { seedLo, seedHi } = seedHalves(seed);
  const x = new Float32Array(rows * dims);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < dims; j++)
      x[r * dims + j] =
        wordToUniform(philoxW0(j, r, 0, STREAM_PATTERNS, seedLo, seedHi)) < p ? 1 : 0;
  return { x, rows, dims, name: `random ${rows}x${dims} p=${p}` };
}

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

/** Mean of each column of the data. */
export function columnMeans(data: Dataset): Float64Array {
  const mean = new Float64Array(data.dims);
  for (let r = 0; r < data.rows; r++)
    for (let j = 0; j < data.dims; j++) mean[j]! += data.x[r * data.dims + j]!;
  for (let j = 0; j < data.dims; j++) mean[j]! /= data.rows;
  return mean;
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
