// Commands that use a trained model, on the coordinator (--job) or from a file (--model):
// sample, filters, complete, eval.
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  FormatError,
  encodePng,
  DataFileError,
  loadData,
  validateData,
  type BinarizeMode,
  type DataSpec,
  type Image,
} from '@spinmesh/model';
import type { Args } from '../args.js';
import type { Context } from '../context.js';
import {
  HIDE_REGIONS,
  cuesFromCsv,
  cuesFromData,
  restoredFraction,
  type Cues,
  type HideRegion,
} from '../cues.js';
import { UsageError } from '../errors.js';
import {
  LocalSource,
  RemoteSource,
  isHopfieldSpec,
  unitsOf,
  type DataArg,
  type EvaluateRequest,
  type ModelSource,
} from '../model-source.js';
import { describeEvaluation } from '../output.js';
import { fieldsImage, panelsImage, patternsImage, type TileOptions } from '../render.js';

const SOURCE = ['job', 'model'];
const IMAGE = ['png', 'scale'];
export const SAMPLE_OPTIONS = [
  ...SOURCE,
  ...IMAGE,
  'cols',
  'csv',
  'count',
  'sweeps',
  'temperature',
  'seed',
  'layer',
  'states',
];
export const FILTERS_OPTIONS = [...SOURCE, ...IMAGE, 'cols', 'count', 'layer'];
export const COMPLETE_OPTIONS = [
  ...SOURCE,
  ...IMAGE,
  'csv',
  'cue-rows',
  'data',
  'binarize',
  'count',
  'offset',
  'hide',
  'flip',
  'sweeps',
  'temperature',
  'seed',
  'layer',
  'trajectory',
];
export const EVAL_OPTIONS = [
  ...SOURCE,
  'data',
  'binarize',
  'exact',
  'ais',
  'pseudo',
  'recon',
  'probe',
  'recall-flip',
  'limit',
  'seed',
];

/** The model of --job (on the coordinator) or --model (a file), or of a positional path. */
async function openSource(ctx: Context, command: string, path?: string): Promise<ModelSource> {
  const job = ctx.args.str('job');
  const model = ctx.args.str('model') ?? path;
  if (job !== undefined && model !== undefined)
    throw new UsageError(`${command} takes --job ID or --model FILE, not both`);
  if (model !== undefined) return LocalSource.open(model, ctx.kernels());
  if (job !== undefined) return RemoteSource.open(ctx.client(), job);
  throw new UsageError(
    `${command} needs --job ID (a completed job's model on the coordinator) or --model FILE (a model file)`,
  );
}

function tileOptions(args: Args): TileOptions {
  const scale = args.int('scale', 1, 64);
  const cols = args.int('cols', 1, 10_000);
  return {
    ...(scale !== undefined ? { scale } : {}),
    ...(cols !== undefined ? { cols } : {}),
  };
}

/** The --png and --csv outputs; at least one. */
function outputs(args: Args, command: string, csv: boolean): { png?: string; csv?: string } {
  const png = args.str('png');
  const csvPath = csv ? args.str('csv') : undefined;
  if (png === undefined && csvPath === undefined)
    throw new UsageError(`${command} needs --png FILE${csv ? ' or --csv FILE' : ''}`);
  return {
    ...(png !== undefined ? { png } : {}),
    ...(csvPath !== undefined ? { csv: csvPath } : {}),
  };
}

function writePng(path: string, img: Image): void {
  writeFileSync(path, encodePng(img));
}

function writeCsv(path: string, values: ArrayLike<number>, rows: number, dims: number): void {
  const lines: string[] = [];
  for (let r = 0; r < rows; r++)
    lines.push(Array.from({ length: dims }, (_, j) => String(values[r * dims + j])).join(','));
  writeFileSync(path, `${lines.join('\n')}\n`);
}

/** A data set on the command line: a shorthand (bas:4, fashion-mnist:test:1000, ...) or YAML. */
export function parseDataArg(arg: string, binarize?: string): DataArg {
  if (binarize !== undefined && !['threshold', 'none', 'bernoulli'].includes(binarize))
    throw new UsageError(`--binarize must be threshold, none or bernoulli (got '${binarize}')`);
  const bin = binarize === undefined ? {} : { binarize: binarize as BinarizeMode };
  const m = /^([a-z-]+):(.*)$/.exec(arg);
  let spec: DataSpec;
  if (m && ['bas', 'fashion-mnist', 'idx', 'csv'].includes(m[1]!)) {
    const [kind, value] = [m[1]!, m[2]!];
    if (kind === 'bas') spec = { kind: 'bas', size: Number(value || 4) };
    else if (kind === 'fashion-mnist') {
      const [split, limit] = value.split(':');
      spec = { kind: 'fashion-mnist', split: (split || 'test') as 'train' | 'test', ...bin };
      if (limit) spec.limit = Number(limit);
    } else if (kind === 'idx') {
      const [images, labels] = value.split(',');
      if (!images) throw new UsageError('idx:<images>[,<labels>] needs a path');
      spec = labels ? { kind: 'idx', images, labels, ...bin } : { kind: 'idx', images, ...bin };
    } else {
      if (!value) throw new UsageError('csv:<path> needs a path');
      spec = { kind: 'csv', path: value, ...bin };
    }
    spec = validateData(spec, 'data');
    return { spec, text: JSON.stringify(spec) };
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(arg);
  } catch (e) {
    throw new UsageError(`--data is not valid YAML: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new UsageError(
      `unknown data '${arg}' (bas:<n>, fashion-mnist:<split>[:<limit>], idx:<images>[,<labels>], csv:<path>, or a data spec in YAML: '{kind: bas, size: 4}')`,
    );
  if (binarize !== undefined) (parsed as Record<string, unknown>)['binarize'] ??= binarize;
  spec = validateData(parsed, 'data');
  return { spec, text: JSON.stringify(spec) };
}

export async function sample(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const files = outputs(args, 'sample', true);
  const count = args.int('count', 1, 10_000) ?? 64;
  const sweeps = args.int('sweeps', 1, 100_000) ?? 1000;
  const temperature = args.num('temperature', { min: 0, minExclusive: true }) ?? 1;
  const seed = args.int('seed', 0) ?? 0;
  const layer = args.str('layer');
  const tiles = tileOptions(args);
  const src = await openSource(ctx, 'sample');
  const r = await src.sample({
    count,
    sweeps,
    temperature,
    seed,
    ...(layer !== undefined ? { visible: layer } : {}),
  });
  const values = args.has('states') ? r.states : r.means;
  if (files.png)
    writePng(
      files.png,
      patternsImage(values, r.rows, r.dims, unitsOf(src.network, r.layer), tiles),
    );
  if (files.csv) writeCsv(files.csv, values, r.rows, r.dims);
  out.emit({
    type: 'sample',
    rows: r.rows,
    dims: r.dims,
    layer: r.layer,
    sweeps,
    temperature,
    seed,
    ...files,
  });
  out.say(
    `${r.rows} samples of layer ${r.layer} of ${src.label} (${sweeps} sweeps at T=${temperature}, seed ${seed}; ${args.has('states') ? 'states' : 'means'}) written to ${[files.png, files.csv].filter(Boolean).join(' and ')}`,
  );
  return 0;
}

export async function filters(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const { png } = outputs(args, 'filters', false);
  const count = args.int('count', 1);
  const layer = args.str('layer');
  const tiles = tileOptions(args);
  const src = await openSource(ctx, 'filters');
  const f = await src.fields(count ?? 100, layer);
  writePng(png!, fieldsImage(f.values, f.count, f.dims, tiles));
  out.emit({
    type: 'filters',
    count: f.count,
    dims: f.dims,
    layer: f.layer,
    hiddenLayer: f.hiddenLayer,
    png,
  });
  out.say(
    `receptive fields of ${f.count} units of layer ${f.hiddenLayer} on layer ${f.layer} of ${src.label} written to ${png}`,
  );
  return 0;
}

/** Evenly spaced frames of a trajectory of `n` sweeps: at most `frames` indices, the last n-1. */
function frameIndices(n: number, frames: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= Math.min(frames, n); k++) {
    const i = Math.round((k * n) / Math.min(frames, n)) - 1;
    if (out[out.length - 1] !== i) out.push(i);
  }
  return out;
}

export async function complete(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const files = outputs(args, 'complete', true);
  const sweeps = args.int('sweeps', 1, 100_000);
  const temperature = args.num('temperature', { min: 0 });
  const seed = args.int('seed', 0) ?? 0;
  const layer = args.str('layer');
  const frames = !args.has('trajectory')
    ? 0
    : args.str('trajectory') === undefined
      ? 8
      : args.int('trajectory', 1, 1000)!;
  const hide = args.str('hide');
  if (hide !== undefined && !(HIDE_REGIONS as readonly string[]).includes(hide))
    throw new UsageError(`--hide must be one of ${HIDE_REGIONS.join(', ')} (got '${hide}')`);
  const flip = args.num('flip', { min: 0, max: 1 }) ?? 0;
  const cueFile = args.str('cue-rows');
  if (cueFile !== undefined)
    for (const o of ['data', 'count', 'offset', 'hide', 'flip'])
      if (args.has(o)) throw new UsageError(`--cue-rows gives the cues: it takes no --${o}`);
  const tiles = tileOptions(args);
  const src = await openSource(ctx, 'complete');
  const net = src.network;
  const l = layer === undefined ? net.layers[0] : net.layers.find((x) => x.name === layer);
  if (!l)
    throw new UsageError(
      `--layer must name a layer of the network (${net.layers.map((x) => x.name).join(', ')})`,
    );
  const units = l.units ?? 'bernoulli';
  const { cues, from } =
    cueFile !== undefined
      ? { cues: cuesFromCsv(cueFile, l.size, units), from: cueFile }
      : await cuesFromDataArgs(args, src, l, { hide, flip, seed });
  const r = await src.complete({
    values: cues.values,
    known: cues.known,
    rows: cues.rows,
    seed,
    trajectory: frames > 0,
    ...(sweeps !== undefined ? { sweeps } : {}),
    ...(temperature !== undefined ? { temperature } : {}),
    ...(layer !== undefined ? { visible: layer } : {}),
  });
  const score = restoredFraction(cues, r.values, units);
  const { columns, names } = completionColumns(cues, r, frames);
  if (files.png) writePng(files.png, panelsImage(columns, cues.rows, cues.dims, units, tiles));
  if (files.csv) writeCsv(files.csv, r.values, r.rows, r.dims);
  out.emit({
    type: 'completion',
    rows: r.rows,
    dims: r.dims,
    sweepsRun: r.sweepsRun,
    converged: r.converged,
    ...(score ? { restored: score.restored, restoredOf: score.units } : {}),
    columns: names,
    ...files,
  });
  out.say(
    `${src.label}: completed ${from} in ${r.sweepsRun} sweep${r.sweepsRun === 1 ? '' : 's'}${r.converged ? ' (settled)' : ''}` +
      (score
        ? `; restored ${(score.restored * 100).toFixed(1)}% of ${score.units} hidden or flipped units`
        : ''),
  );
  if (files.png) out.say(`${files.png}: ${names.join(' | ')}`);
  return 0;
}

type Layer = ModelSource['network']['layers'][number];

/** Cues drawn from the data of --data or of the model's spec, hidden or flipped as asked. */
async function cuesFromDataArgs(
  args: Args,
  src: ModelSource,
  l: Layer,
  opts: { hide: string | undefined; flip: number; seed: number },
): Promise<{ cues: Cues; from: string }> {
  const { hide, flip, seed } = opts;
  const units = l.units ?? 'bernoulli';
  const dataArg = args.str('data');
  const dataSpec =
    dataArg !== undefined
      ? parseDataArg(dataArg, args.str('binarize')).spec
      : (src.spec?.evaluate.test ?? src.spec?.data);
  if (!dataSpec)
    throw new UsageError(
      `${src.label} does not say what it was trained on: give the cues (--cue-rows FILE.csv) or the data (--data)`,
    );
  let data;
  try {
    data = await loadData(dataSpec, src.spec?.seed ?? 0);
  } catch (e) {
    if (!(e instanceof FormatError || e instanceof DataFileError)) throw e;
    throw new UsageError(
      `the cues come from ${dataArg !== undefined ? 'the data of --data' : `the data of ${src.label}`}, read on this machine: ${e.message}; give --data or --cue-rows`,
    );
  }
  if (data.dims !== l.size)
    throw new UsageError(`the data have ${data.dims} columns; layer ${l.name} has ${l.size} units`);
  const offset = args.int('offset', 0) ?? 0;
  const count = args.int('count', 1, 10_000) ?? Math.min(8, data.rows - offset);
  const region: HideRegion = (hide as HideRegion | undefined) ?? (flip > 0 ? 'none' : 'bottom');
  if (region === 'none' && flip === 0)
    throw new UsageError(
      'nothing to complete: hide a part (--hide bottom) or flip units (--flip 0.1)',
    );
  const cues = cuesFromData(data, units, { offset, count, hide: region, flip, seed });
  const from = `${cues.rows} rows of ${data.name ?? dataSpec.kind}${region !== 'none' ? `, ${region} half hidden` : ''}${flip > 0 ? `, ${flip * 100}% flipped` : ''}`;
  return { cues, from };
}

/** The image's columns and their names: the original, the cue, the completion, the sweeps. */
function completionColumns(
  cues: Cues,
  r: Awaited<ReturnType<ModelSource['complete']>>,
  frames: number,
): { columns: ArrayLike<number>[]; names: string[] } {
  const columns: ArrayLike<number>[] = [];
  const names: string[] = [];
  if (cues.original) {
    columns.push(cues.original);
    names.push('original');
  }
  columns.push(cues.display, r.means);
  names.push('cue', 'completion');
  for (const i of frameIndices(r.trajectory?.length ?? 0, frames)) {
    columns.push(r.trajectory![i]!);
    names.push(`sweep ${i + 1}`);
  }
  return { columns, names };
}

export async function evaluate(ctx: Context): Promise<number> {
  const { args, out } = ctx;
  const [, modelArg, dataPos] = args.positional;
  if (dataPos !== undefined && args.has('data'))
    throw new UsageError('eval takes the data as <data> or --data, not both');
  if (modelArg !== undefined && args.has('model'))
    throw new UsageError('eval takes the model as <model> or --model, not both');
  const dataText = args.str('data') ?? dataPos;
  const data = dataText !== undefined ? parseDataArg(dataText, args.str('binarize')) : null;
  const ais = args.str('ais');
  let aisRuns = 0;
  let aisSteps = 0;
  if (args.has('ais')) {
    const m = /^(\d+)(?:,(\d+))?$/.exec(ais ?? '100');
    if (!m) throw new UsageError(`--ais takes runs[,steps] (got '${ais}')`);
    aisRuns = Number(m[1]);
    aisSteps = m[2] !== undefined ? Number(m[2]) : 0;
    if (aisRuns < 2) throw new UsageError('--ais needs at least 2 runs');
  }
  const req: EvaluateRequest = {
    exact: args.has('exact'),
    aisRuns,
    aisSteps,
    pseudo: args.has('pseudo'),
    recon: args.has('recon'),
    probe: args.has('probe'),
    recallFlip: args.num('recall-flip', { min: 0, max: 0.5 }) ?? 0,
    limit: args.int('limit', 1) ?? 0,
    seed: args.int('seed', 0) ?? 0,
    data,
  };
  const src = await openSource(ctx, 'eval', modelArg);
  if (!req.exact && !req.aisRuns && !req.pseudo && !req.recon && !req.probe && !req.recallFlip) {
    // No figure asked for: what suits the network.
    if (isHopfieldSpec(src.network)) req.recallFlip = 0.1;
    else req.recon = true;
  }
  const { evaluation, rows } = await src.evaluate(req);
  const onData = dataText ?? 'its evaluation data';
  out.emit({
    type: 'evaluation',
    ...evaluation,
    rows,
    ...(src instanceof RemoteSource ? { jobId: ctx.args.str('job') } : {}),
  });
  out.print(
    `${src instanceof LocalSource ? basename(src.label) : src.label} on ${onData} (${rows} rows): ${describeEvaluation(evaluation)}`,
  );
  return 0;
}
