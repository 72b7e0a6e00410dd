// Training job specs (what a user writes in YAML or JSON): their types and their validation.
import { SpecError } from './errors.js';
import { intIn as int, isRecord, onlyKeys } from './checks.js';
import { rbmSpec, validateNetworkSpec, type NetworkSpec, type UnitName } from './network.js';
import { validateTrainOptions, type TrainOptions } from './train-options.js';
import type { BinarizeMode } from './data/dataset.js';
import { hopfieldSpec, isHopfield } from './hopfield.js';
import { shapeNetwork } from './shard/layout.js';
import { OWNED_PRODUCT_BLOCK } from './shard/shard-options.js';

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
   * 0 is lockstep (the result equals runJob's with `train.statistics: 'samples'`: bit for bit
   * with replicated tiles and the portable kernels, or any kernels with `train.productBlock`
   * and a layout at its multiples; up to float summation order otherwise and with owned
   * ones); Infinity never waits (the spec's text says 'unbounded', and so
   * does its JSON form, JobSpecJson). @defaultValue 0
   */
  staleness: number;
  /**
   * Cluster runs: who holds a weight between units of two shards. 'replicated': both shards,
   * and only 1-bit spins travel. 'owned': the shard of its `from` unit alone, which sends the
   * other side partial fields (float32): every weight is computed and updated once and a shard
   * holds about 1/K of them, but the fields are 32 times the spins' bytes; lockstep only. On the
   * benchmark machine replicated tiles were faster on every workload measured
   * (docs/cluster-performance.md, "Owned tiles"). @defaultValue 'replicated'
   */
  tiles: 'owned' | 'replicated';
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
  // Long by design (exempt in test/shape.test.ts): a validator, one check per field.
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
      'tiles',
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
  // Bounded staleness travels as a uint32 whose largest value means unbounded. A spec validated
  // before (Infinity) is taken as it is.
  if (
    st !== 'unbounded' &&
    st !== Infinity &&
    !(typeof st === 'number' && Number.isInteger(st) && st >= 0 && st < 0xffff_ffff)
  )
    throw new SpecError(`${p}.staleness`, "must be an integer in [0, 4294967294] or 'unbounded'");
  const staleness = st === 'unbounded' ? Infinity : (st as number);
  const tiles = input['tiles'] ?? 'replicated';
  if (tiles !== 'owned' && tiles !== 'replicated')
    throw new SpecError(`${p}.tiles`, "must be 'owned' or 'replicated'");
  if (tiles === 'owned' && staleness !== 0)
    throw new SpecError(
      `${p}.tiles`,
      "'owned' needs staleness 0 (a shard draws from its peers' partial fields of the same stage); use 'replicated' for asynchronous runs",
    );
  if (tiles === 'owned' && (train.productBlock ?? 0) !== 0)
    throw new SpecError(`${p}.train.productBlock`, OWNED_PRODUCT_BLOCK);
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
    tiles,
    checkpointEverySteps,
  };
}

/**
 * A validated spec as JSON can hold it (job records, model files): the same, except that an
 * unbounded staleness is the spec's own 'unbounded', since JSON has no Infinity.
 */
export type JobSpecJson = Omit<JobSpec, 'staleness' | 'tiles'> & {
  staleness: number | 'unbounded';
  /** Absent in records written before the field: those jobs keep replicated tiles. */
  tiles?: JobSpec['tiles'];
};

/** A validated spec in its JSON form: the one place Infinity becomes 'unbounded'. */
export function jobSpecToJson(spec: JobSpec): JobSpecJson {
  return { ...spec, staleness: spec.staleness === Infinity ? 'unbounded' : spec.staleness };
}

/**
 * A spec's JSON form (validated when it was written) back in the code's form: the one place
 * 'unbounded' becomes Infinity.
 */
export function jobSpecFromJson(json: JobSpecJson): JobSpec {
  return {
    ...json,
    staleness: json.staleness === 'unbounded' ? Infinity : json.staleness,
    tiles: json.tiles ?? 'replicated',
  };
}

/** A staleness as a person reads it: a number of steps, or 'unbounded'. */
export function stalenessText(staleness: number): string {
  return staleness === Infinity ? 'unbounded' : String(staleness);
}
