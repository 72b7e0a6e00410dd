// Sequence jobs: a dynamic Boltzmann machine learning sequences online by its STDP-form rule
// (rule 'stdp'), from a spec a user writes in YAML or JSON like every other job. The same spec
// runs in one process (runSequenceJob, `spinmesh train`) and on a coordinator (SubmitJob); the
// trained model is the DyBM's JSON snapshot, generated from with a cue (generateFrom).
import { SpecError } from '../errors.js';
import { intIn as int, isRecord, onlyKeys } from '../checks.js';
import { quote } from '../quote.js';
import { parseCsv } from '../data/csv.js';
import { readDataFile, unconfinedAccess, type DataAccess } from '../data/source.js';
import { MAX_NAME_CHARS, MAX_PATH_CHARS } from '../job.js';
import { DyBM, type DyBMSnapshot, type GenerateOptions } from './dybm.js';
import { FONT_7, recallErrors, wordFrames, type FrameSequence } from './science.js';
import { DYBM_MAX_SYNAPSES, validateDyBMSpec, type DyBMOptions, type DyBMSpec } from './spec.js';

/** Where the sequences come from. */
export type SequenceData =
  /** Frames given in the spec: each sequence a list of frames, each frame one value per unit. */
  | { kind: 'frames'; sequences: number[][][] }
  /** Words of the built-in 7-pixel font, read column by column (the SCIENCE task); `reverse` adds each word backwards. */
  | { kind: 'words'; words: string[]; reverse?: boolean }
  /** A CSV file: one row per time step, one column per unit (one sequence). */
  | { kind: 'csv'; path: string };

export interface SequenceJobSpec {
  name: string;
  seed: number;
  rule: 'stdp';
  network: { dybm: DyBMSpec };
  /** The DyBM's learning options (its seed is the job's). */
  train: Omit<DyBMOptions, 'seed'>;
  data: SequenceData;
  /**
   * Rounds: each learns one episode of every sequence in turn: forget the past, learn the
   * sequence, then its first `evaluate.cue` frames again (so a periodic sequence's wrap-around is
   * learned too).
   */
  epochs: number;
  evaluate: {
    /** Evaluate after every `every` rounds (and after the last). @defaultValue 1 */
    every: number;
    /** Frames of each sequence given as the cue of recall (binary units). @defaultValue 1 */
    cue: number;
    /**
     * Stop training at the first evaluation that recalls every sequence exactly (binary units),
     * so that `epochs` is the most rounds. @defaultValue false
     */
    stopWhenRecalled: boolean;
  };
  /**
   * Shards of the units, one worker process each. More than 1 needs binary units without LTD
   * (`ltdDecays: []`), where only spikes travel; 1 trains on one thread. @defaultValue 1
   */
  workers: number;
  /**
   * How many steps late a peer's spikes may be used (workers > 1): below the smallest delay,
   * the run equals the single-process one exactly. @defaultValue 0
   */
  staleness: number;
}

/** A sequence job's figures after a round. */
export interface SequenceEvaluation {
  epoch: number;
  /** Binary: fraction of the sequences recalled exactly from their cue (one period generated). */
  recallExact?: number;
  /** Binary: fraction of the generated frames that equal the sequence's. */
  recallFrames?: number;
  /** Gaussian: RMSE of the one-step-ahead predictions over the sequences (read, not learned). */
  rmse?: number;
  /** Mean log-likelihood per frame of the sequences under one-step prediction, in nats. */
  logLikelihood?: number;
}

const DYBM_KEYS = ['units', 'kind', 'delays', 'delaysPerPair', 'ltpDecays', 'ltdDecays', 'sigma'];
const TRAIN_KEYS = ['optimizer', 'learningRate', 'initStd', 'centring', 'centringRate'];

/**
 * Checks a sequence job from untrusted input (parsed YAML or JSON): the structure, the DyBM
 * (by building it) and the data (by loading it). @throws SpecError naming the field
 */
export function validateSequenceJob(input: unknown): SequenceJobSpec {
  // Long by design (exempt in test/shape.test.ts): a validator, one check per field.
  const p = 'spec';
  if (!isRecord(input)) throw new SpecError(p, 'must be an object');
  onlyKeys(
    input,
    [
      'name',
      'seed',
      'rule',
      'network',
      'train',
      'data',
      'epochs',
      'evaluate',
      'workers',
      'staleness',
    ],
    p,
  );
  if (input['rule'] !== 'stdp') throw new SpecError(`${p}.rule`, "must be 'stdp'");
  const name = input['name'] ?? 'job';
  if (typeof name !== 'string' || name === '')
    throw new SpecError(`${p}.name`, 'must be a non-empty string');
  if (name.length > MAX_NAME_CHARS)
    throw new SpecError(`${p}.name`, `must be at most ${MAX_NAME_CHARS} characters`);
  const seed = input['seed'] === undefined ? 0 : int(input['seed'], `${p}.seed`, 0, 2 ** 53 - 1);
  const net = input['network'];
  if (!isRecord(net) || !isRecord(net['dybm']))
    throw new SpecError(`${p}.network`, "must be { dybm: { units, delays, ... } } for rule 'stdp'");
  onlyKeys(net, ['dybm'], `${p}.network`);
  const dIn = net['dybm'];
  onlyKeys(dIn, DYBM_KEYS, `${p}.network.dybm`);
  // `delaysPerPair: [3, 7, 11]`: every ordered pair (self-pairs included) gets a synapse of each.
  let dybm = dIn as unknown as DyBMSpec;
  if (dIn['delaysPerPair'] !== undefined) {
    const dp = dIn['delaysPerPair'];
    if (dIn['delays'] !== undefined)
      throw new SpecError(`${p}.network.dybm`, 'takes delays or delaysPerPair, not both');
    if (!Array.isArray(dp) || dp.some((d) => typeof d !== 'number'))
      throw new SpecError(`${p}.network.dybm.delaysPerPair`, 'must be a list of delays');
    const n = int(dIn['units'], `${p}.network.dybm.units`, 1, 4096);
    if (n * n * dp.length > DYBM_MAX_SYNAPSES)
      throw new SpecError(
        `${p}.network.dybm.delaysPerPair`,
        `gives ${n} x ${n} x ${dp.length} synapses, more than the ${DYBM_MAX_SYNAPSES} a DyBM may have`,
      );
    const { delaysPerPair: _, ...rest } = dIn;
    dybm = {
      ...rest,
      delays: Array.from({ length: n * n }, () => [...(dp as number[])]),
    } as unknown as DyBMSpec;
  }
  const trainIn = input['train'] ?? {};
  if (!isRecord(trainIn)) throw new SpecError(`${p}.train`, 'must be an object');
  onlyKeys(trainIn, TRAIN_KEYS, `${p}.train`);
  const train = trainIn as Omit<DyBMOptions, 'seed'>;
  // Building the DyBM checks the structure and the options, naming the field.
  try {
    new DyBM(dybm, { ...train, seed });
  } catch (e) {
    if (e instanceof SpecError) {
      const under = ['optimizer', 'learningRate', 'initStd', 'centring', 'centringRate'].some((k) =>
        e.field.includes(k),
      )
        ? 'train'
        : 'network.dybm';
      const field = e.field.replace(/^(spec|options)\.?/, '');
      throw new SpecError(
        `${p}.${under}${field ? `.${field}` : ''}`,
        e.message.slice(e.field.length + 1),
      );
    }
    throw e;
  }
  const epochs = int(input['epochs'] ?? 1, `${p}.epochs`, 1, 1_000_000);
  const evIn = input['evaluate'] ?? {};
  if (!isRecord(evIn)) throw new SpecError(`${p}.evaluate`, 'must be an object');
  onlyKeys(evIn, ['every', 'cue', 'stopWhenRecalled'], `${p}.evaluate`);
  const stop = evIn['stopWhenRecalled'] ?? false;
  if (typeof stop !== 'boolean')
    throw new SpecError(`${p}.evaluate.stopWhenRecalled`, 'must be a boolean');
  const evaluate = {
    every: int(evIn['every'] ?? 1, `${p}.evaluate.every`, 1, 1_000_000),
    cue: int(evIn['cue'] ?? 1, `${p}.evaluate.cue`, 1, 1_000_000),
    stopWhenRecalled: stop,
  };
  const resolved = validateDyBMSpec(dybm);
  const workers = int(input['workers'] ?? 1, `${p}.workers`, 1, resolved.units);
  if (workers > 1) {
    if (resolved.ltdDecays.length > 0 || resolved.kind !== 'binary')
      throw new SpecError(
        `${p}.workers`,
        'must be 1 unless the DyBM has binary units and no LTD (network.dybm.ltdDecays: []): only then do the shards exchange nothing but spikes',
      );
    if (evaluate.stopWhenRecalled)
      throw new SpecError(
        `${p}.evaluate.stopWhenRecalled`,
        'needs the whole model after every round: not with workers > 1',
      );
  }
  const stMax = workers > 1 ? resolved.minDelay - 1 : 0;
  const staleness = int(input['staleness'] ?? 0, `${p}.staleness`, 0, stMax);
  const data = validateSequenceData(input['data'], `${p}.data`);
  const spec: SequenceJobSpec = {
    name,
    seed,
    rule: 'stdp',
    network: { dybm },
    train,
    data,
    epochs,
    evaluate,
    workers,
    staleness,
  };
  // A CSV file is checked when it is read (loadSequences), not here: validation reads no files.
  if (data.kind !== 'csv') checkSequences(spec, inlineSequences(data));
  return spec;
}

/** Every sequence fits the DyBM and is at least as long as the cue. @throws SpecError */
function checkSequences(spec: SequenceJobSpec, seqs: readonly FrameSequence[]): void {
  const units = spec.network.dybm.units;
  for (const [q, s] of seqs.entries()) {
    if (s.units !== units)
      throw new SpecError(
        'spec.data',
        `sequence ${q} has ${s.units} values per frame but the DyBM has ${units} units`,
      );
    if (spec.evaluate.cue > s.steps)
      throw new SpecError(
        'spec.evaluate.cue',
        `is ${spec.evaluate.cue} frames, longer than sequence ${q} (${s.steps} frames)`,
      );
  }
}

function validateSequenceData(d: unknown, path: string): SequenceData {
  if (!isRecord(d)) throw new SpecError(path, "must be { kind: 'frames' | 'words' | 'csv', ... }");
  switch (d['kind']) {
    case 'frames': {
      onlyKeys(d, ['kind', 'sequences'], path);
      const seqs = d['sequences'];
      if (!Array.isArray(seqs) || seqs.length === 0)
        throw new SpecError(`${path}.sequences`, 'must be a non-empty list of sequences');
      seqs.forEach((s, q) => {
        if (!Array.isArray(s) || s.length === 0)
          throw new SpecError(`${path}.sequences[${q}]`, 'must be a non-empty list of frames');
        s.forEach((f, t) => {
          if (!Array.isArray(f) || f.length === 0 || f.some((v) => typeof v !== 'number'))
            throw new SpecError(
              `${path}.sequences[${q}][${t}]`,
              'must be a non-empty list of numbers',
            );
          if (f.length !== (s[0] as unknown[]).length)
            throw new SpecError(`${path}.sequences[${q}][${t}]`, 'has another length than frame 0');
        });
      });
      return { kind: 'frames', sequences: seqs as number[][][] };
    }
    case 'words': {
      onlyKeys(d, ['kind', 'words', 'reverse'], path);
      const words = d['words'];
      if (!Array.isArray(words) || words.length === 0 || words.some((w) => typeof w !== 'string'))
        throw new SpecError(`${path}.words`, 'must be a non-empty list of words');
      for (const [q, w] of (words as string[]).entries())
        for (const ch of w)
          if (!FONT_7[ch])
            throw new SpecError(
              `${path}.words[${q}]`,
              `has '${quote(ch)}', not in the font (${Object.keys(FONT_7).join('')})`,
            );
      if (d['reverse'] !== undefined && typeof d['reverse'] !== 'boolean')
        throw new SpecError(`${path}.reverse`, 'must be a boolean');
      return {
        kind: 'words',
        words: words as string[],
        ...(d['reverse'] !== undefined ? { reverse: d['reverse'] as boolean } : {}),
      };
    }
    case 'csv': {
      onlyKeys(d, ['kind', 'path'], path);
      if (typeof d['path'] !== 'string' || d['path'] === '')
        throw new SpecError(`${path}.path`, 'must be a non-empty string');
      if (d['path'].length > MAX_PATH_CHARS)
        throw new SpecError(`${path}.path`, `must be at most ${MAX_PATH_CHARS} characters`);
      return { kind: 'csv', path: d['path'] };
    }
    default:
      throw new SpecError(`${path}.kind`, "must be one of 'frames', 'words', 'csv'");
  }
}

/**
 * The sequences a spec names, as steps x units frames, checked against the spec; a CSV file is
 * read as `access` allows. @throws SpecError naming the field, FormatError naming the file
 */
export async function loadSequences(
  spec: SequenceJobSpec,
  access: DataAccess = unconfinedAccess(),
): Promise<FrameSequence[]> {
  const d = spec.data;
  if (d.kind !== 'csv') return inlineSequences(d);
  const bytes = await readDataFile(d.path, 'spec.data.path', access);
  const ds = parseCsv(bytes.toString('utf8'), {}, d.path);
  const seqs = [{ data: Float64Array.from(ds.x), steps: ds.rows, units: ds.dims }];
  checkSequences(spec, seqs);
  return seqs;
}

/** The sequences given in the spec itself (frames, words). */
function inlineSequences(d: Exclude<SequenceData, { kind: 'csv' }>): FrameSequence[] {
  switch (d.kind) {
    case 'frames':
      return d.sequences.map((s) => ({
        data: Float64Array.from(s.flat()),
        steps: s.length,
        units: s[0]!.length,
      }));
    case 'words': {
      const out: FrameSequence[] = [];
      for (const w of d.words) {
        const f = wordFrames(w);
        out.push(f);
        if (d.reverse) out.push(reverseWordFrames(f));
      }
      return out;
    }
  }
}

function reverseWordFrames(seq: FrameSequence): FrameSequence {
  const { steps, units } = seq;
  const data = new Float64Array(seq.data.length);
  for (let t = 0; t < steps; t++)
    data.set(seq.data.subarray((steps - 1 - t) * units, (steps - t) * units), t * units);
  return { data, steps, units };
}

/** The DyBM a sequence job starts from (its initial parameters come from the job's seed). */
export function createSequenceModel(spec: SequenceJobSpec): DyBM {
  return new DyBM(spec.network.dybm, { ...spec.train, seed: spec.seed });
}

/** One round: an episode of every sequence (forget the past, learn it, then its cue again). */
export function trainRound(model: DyBM, seqs: readonly FrameSequence[], cue: number): void {
  for (const s of seqs) {
    model.reset();
    model.train(s.data, s.steps);
    model.train(s.data, Math.min(cue, s.steps));
  }
}

/** Frames of one episode of a sequence: the sequence, then its first `cue` frames again. */
export function episodeLength(seq: FrameSequence, cue: number): number {
  return seq.steps + Math.min(cue, seq.steps);
}

/** Frames a sequence job learns in all: rounds x the episodes of every sequence. */
export function sequenceJobFrames(spec: SequenceJobSpec, seqs: readonly FrameSequence[]): number {
  return spec.epochs * seqs.reduce((n, s) => n + episodeLength(s, spec.evaluate.cue), 0);
}

/** Shard s's units of K: contiguous ranges as even as can be. */
export function sequenceShardUnits(units: number, shards: number, s: number): [number, number] {
  return [Math.floor((s * units) / shards), Math.floor(((s + 1) * units) / shards)];
}

/** The figures of a model on the sequences (the model itself is not changed). */
export function evaluateSequences(
  model: DyBM,
  seqs: readonly FrameSequence[],
  cue: number,
  epoch: number,
): SequenceEvaluation {
  const out: SequenceEvaluation = { epoch };
  const copy = model.clone();
  let ll = 0;
  let frames = 0;
  let se = 0;
  let values = 0;
  for (const s of seqs) {
    copy.reset();
    for (let t = 0; t < s.steps; t++) {
      const x = s.data.subarray(t * s.units, (t + 1) * s.units);
      ll += copy.logLikelihood(x);
      const p = copy.predict();
      for (let j = 0; j < s.units; j++) se += (x[j]! - p[j]!) ** 2;
      values += s.units;
      frames++;
      copy.read(x, 1);
    }
  }
  out.logLikelihood = ll / frames;
  if (model.spec.kind === 'gaussian') {
    out.rmse = Math.sqrt(se / values);
    return out;
  }
  let exact = 0;
  let right = 0;
  let total = 0;
  for (const s of seqs) {
    const { wrongFrames } = recallErrors(model, s, cue);
    if (wrongFrames === 0) exact++;
    right += s.steps - wrongFrames;
    total += s.steps;
  }
  out.recallExact = exact / seqs.length;
  out.recallFrames = right / total;
  return out;
}

export interface SequenceJobResult {
  model: DyBM;
  evaluations: SequenceEvaluation[];
}

/** Runs a sequence job in this process (its CSV file read as `opts.access` allows). */
export async function runSequenceJob(
  input: unknown,
  opts: { onEvaluation?: (e: SequenceEvaluation) => void; access?: DataAccess } = {},
): Promise<SequenceJobResult> {
  const spec = validateSequenceJob(input);
  const seqs = await loadSequences(spec, opts.access);
  const model = createSequenceModel(spec);
  const evaluations: SequenceEvaluation[] = [];
  for (let e = 1; e <= spec.epochs; e++) {
    trainRound(model, seqs, spec.evaluate.cue);
    if (e % spec.evaluate.every === 0 || e === spec.epochs) {
      const ev = evaluateSequences(model, seqs, spec.evaluate.cue, e);
      evaluations.push(ev);
      opts.onEvaluation?.(ev);
      if (spec.evaluate.stopWhenRecalled && ev.recallExact === 1) break;
    }
  }
  return { model, evaluations };
}

/** A sequence model file: the DyBM's snapshot and the job it came from, as UTF-8 JSON. */
export interface SequenceModelFile {
  format: 'spinmesh-sequence-model';
  version: 1;
  spec: SequenceJobSpec;
  evaluation: SequenceEvaluation | null;
  dybm: DyBMSnapshot;
}

/** The bytes of a sequence model file. */
export function encodeSequenceModel(
  model: DyBM,
  spec: SequenceJobSpec,
  evaluation: SequenceEvaluation | null,
): Uint8Array {
  const file: SequenceModelFile = {
    format: 'spinmesh-sequence-model',
    version: 1,
    spec,
    evaluation,
    dybm: model.toJSON(),
  };
  return Buffer.from(JSON.stringify(file));
}

/** Whether bytes look like a sequence model file (JSON with its format tag). */
export function isSequenceModel(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 64)).toString('utf8');
  return head.startsWith('{"format":"spinmesh-sequence-model"');
}

/** Reads a sequence model file. @throws SpecError when the bytes are not one */
export function decodeSequenceModel(bytes: Uint8Array): { file: SequenceModelFile; model: DyBM } {
  let file: SequenceModelFile;
  try {
    file = JSON.parse(Buffer.from(bytes).toString('utf8')) as SequenceModelFile;
  } catch (e) {
    throw new SpecError('model', `is not a sequence model file (not JSON: ${(e as Error).name})`);
  }
  if (file.format !== 'spinmesh-sequence-model' || file.version !== 1)
    throw new SpecError('model', 'is not a sequence model file of version 1');
  return { file, model: DyBM.fromJSON(file.dybm) };
}

/**
 * Continues a cue: forgets the past, reads the cue frames (cueSteps x units), then generates
 * `steps` frames (most likely, or sampled with a seed). The model is not changed.
 */
export function generateFrom(
  model: DyBM,
  cue: ArrayLike<number>,
  cueSteps: number,
  steps: number,
  opts: GenerateOptions = {},
): Float64Array {
  const n = model.units;
  if (!Number.isInteger(cueSteps) || cueSteps < 0)
    throw new SpecError('cue', `must be whole frames of ${n} values`);
  if (cue.length !== cueSteps * n)
    throw new SpecError(
      'cue',
      `has ${cue.length} values, expected ${cueSteps} frames x ${n} units`,
    );
  if (!Number.isInteger(steps) || steps < 1 || steps > 1_000_000)
    throw new SpecError('steps', `must be an integer in [1, 1000000], got ${steps}`);
  if (model.spec.kind === 'binary')
    for (let i = 0; i < cue.length; i++)
      if (cue[i] !== 0 && cue[i] !== 1)
        throw new SpecError(`cue[${i}]`, `is ${cue[i]}; a binary DyBM's frames hold 0 or 1`);
  return model.clone().recall(cue, cueSteps, steps, opts);
}
