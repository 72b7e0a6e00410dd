#!/usr/bin/env node
// The `spinmesh` command line. Exit codes: 0 done, 1 failed while running, 2 bad usage or input
// (a spec, option or file the user gave; the message names what is wrong).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadKernels, type Kernels } from '@spinmesh/kernels';
import {
  FormatError,
  SpecError,
  evaluateNetwork,
  exportNpyDir,
  importNpyDir,
  loadData,
  loadModel,
  runJob,
  saveModel,
  validateJobSpec,
  type DataSpec,
  type EvaluateSpec,
  type Evaluation,
  type JobEvent,
} from '@spinmesh/model';

const USAGE = `spinmesh: train and evaluate Boltzmann machines with local learning rules

usage: spinmesh <command> [options]

commands:
  train <spec.yaml|json>      run a training job in this process and save the model
      --out <file>            model file to write (default: <spec name>.smm); written after
                              every evaluation and at the end, with the training state
      --resume <file>         continue training from a model file written by train
      --epochs <n>            override spec.epochs
  eval <model> <data>         evaluate a model file on data; <data> is one of
                              bas:<n> | fashion-mnist:<train|test>[:<limit>] | idx:<images>[,<labels>]
                              | csv:<path>; options --exact --ais[=runs,steps] --pseudo --recon
                              --probe (probe trains on fashion-mnist:train) --binarize=<threshold|none>
  info <model>                print a model file's spec and training state
  export-npy <model> <dir>    write each parameter array as <dir>/<name>.npy (+ manifest.json)
  import-npy <dir> <model>    build a model file from arrays written by export-npy (or by hand)

global options:
  --kernels <native|portable|auto>   dense kernels (default: env SPINMESH_KERNELS or auto)
  --json                             machine-readable output: one JSON object per line
  -h, --help                         this text

exit codes: 0 success, 1 failure while running, 2 bad usage, spec or input file`;

class UsageError extends Error {}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const takesValue = new Set(['out', 'resume', 'epochs', 'kernels', 'binarize']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') flags.set('help', true);
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      if (eq >= 0) flags.set(name, a.slice(eq + 1));
      else if (takesValue.has(name)) {
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value`);
        flags.set(name, v);
      } else flags.set(name, true);
    } else positional.push(a);
  }
  return { positional, flags };
}

function readSpec(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read spec ${path}: ${(e as Error).message}`);
  }
  try {
    return /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new FormatError(
      path,
      `is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(e as Error).message}`,
    );
  }
}

function parseData(arg: string, binarize?: string): DataSpec {
  const [kind, ...rest] = arg.split(':');
  const value = rest.join(':');
  const bin = binarize === undefined ? {} : { binarize: binarize as 'threshold' | 'none' };
  switch (kind) {
    case 'bas':
      return { kind: 'bas', size: Number(value || 4) };
    case 'fashion-mnist': {
      const [split, limit] = value.split(':');
      const d: DataSpec = {
        kind: 'fashion-mnist',
        split: (split || 'test') as 'train' | 'test',
        ...bin,
      };
      if (limit) d.limit = Number(limit);
      return d;
    }
    case 'idx': {
      const [images, labels] = value.split(',');
      if (!images) throw new UsageError('idx:<images>[,<labels>] needs a path');
      return labels ? { kind: 'idx', images, labels, ...bin } : { kind: 'idx', images, ...bin };
    }
    case 'csv':
      if (!value) throw new UsageError('csv:<path> needs a path');
      return { kind: 'csv', path: value, ...bin };
    default:
      throw new UsageError(
        `unknown data '${arg}' (bas:<n>, fashion-mnist:<split>, idx:<path>, csv:<path>)`,
      );
  }
}

function fmt(n: number | undefined, digits = 4): string {
  return n === undefined ? '-' : n.toFixed(digits);
}

function describeEvaluation(e: Evaluation): string {
  const parts: string[] = [];
  if (e.exactLogLikelihood !== undefined) parts.push(`exact LL ${fmt(e.exactLogLikelihood)}`);
  if (e.optimum !== undefined) parts.push(`(optimum ${fmt(e.optimum)})`);
  if (e.aisLogLikelihood !== undefined)
    parts.push(`AIS LL ${fmt(e.aisLogLikelihood)} [${fmt(e.aisLow)}, ${fmt(e.aisHigh)}]`);
  if (e.pseudoLogLikelihood !== undefined) parts.push(`pseudo-LL ${fmt(e.pseudoLogLikelihood)}`);
  if (e.reconstructionError !== undefined) parts.push(`recon ${fmt(e.reconstructionError)}`);
  if (e.probeAccuracy !== undefined) parts.push(`probe acc ${fmt(e.probeAccuracy)}`);
  return parts.join('  ');
}

function kernelsFrom(flags: Parsed['flags'], json: boolean): Kernels {
  const choice = flags.get('kernels');
  if (choice !== undefined && choice !== 'native' && choice !== 'portable' && choice !== 'auto')
    throw new UsageError('--kernels must be native, portable or auto');
  const k = loadKernels(choice);
  if (!json) process.stderr.write(`kernels: ${k.describe()}\n`);
  return k;
}

function train(p: Parsed, json: boolean): void {
  const specPath = p.positional[1];
  if (!specPath) throw new UsageError('train needs a spec file');
  const raw = readSpec(specPath) as Record<string, unknown>;
  const epochs = p.flags.get('epochs');
  if (typeof epochs === 'string') {
    if (typeof raw !== 'object' || raw === null) throw new SpecError('spec', 'must be an object');
    raw['epochs'] = Number(epochs);
  }
  const spec = validateJobSpec(raw);
  const kernels = kernelsFrom(p.flags, json);
  const out =
    typeof p.flags.get('out') === 'string' ? (p.flags.get('out') as string) : `${spec.name}.smm`;
  const resumePath = p.flags.get('resume');
  const resume = typeof resumePath === 'string' ? loadModel(resumePath, kernels) : undefined;
  let lastPrint = 0;
  const emit = (e: JobEvent): void => {
    if (json) {
      process.stdout.write(`${JSON.stringify(e)}\n`);
      return;
    }
    if (e.type === 'start')
      process.stderr.write(`job ${e.name}: ${e.rows} rows x ${e.dims} columns\n`);
    else if (e.type === 'epoch') {
      // Fast jobs run thousands of epochs a second: report at most once a second.
      const now = Date.now();
      if (now - lastPrint < 1000 && e.stats.epoch + 1 !== spec.epochs) return;
      lastPrint = now;
      process.stderr.write(
        `epoch ${e.stats.epoch + 1}/${spec.epochs}  ${e.stats.seconds.toFixed(2)} s  recon ${fmt(e.stats.reconstructionError)}  |dW| ${e.stats.updateNorm.toExponential(2)}\n`,
      );
    } else
      process.stdout.write(`epoch ${e.evaluation.epoch}: ${describeEvaluation(e.evaluation)}\n`);
  };
  const every = spec.evaluate.every ?? 1;
  const result = runJob(spec, kernels, {
    onEvent: emit,
    ...(resume ? { resume: { network: resume.network, state: resume.state } } : {}),
    afterEpoch: (epoch, network, trainer) => {
      if (epoch % every === 0 || epoch === spec.epochs)
        saveModel(out, network, { training: { spec, epoch }, state: trainer.state() });
    },
  });
  const last = result.evaluations[result.evaluations.length - 1];
  if (json)
    process.stdout.write(`${JSON.stringify({ type: 'done', model: out, evaluation: last })}\n`);
  else process.stderr.write(`model written to ${out}\n`);
}

function evaluate(p: Parsed, json: boolean): void {
  const [, modelPath, dataArg] = p.positional;
  if (!modelPath || !dataArg) throw new UsageError('eval needs <model> <data>');
  const kernels = kernelsFrom(p.flags, json);
  const { network } = loadModel(modelPath, kernels);
  const bin = p.flags.get('binarize');
  const dataSpec = parseData(dataArg, typeof bin === 'string' ? bin : undefined);
  const data = loadData(dataSpec);
  const ais = p.flags.get('ais');
  const ev: EvaluateSpec = {
    exact: p.flags.has('exact') ? true : false,
    pseudo: p.flags.has('pseudo'),
    recon: p.flags.has('recon') || p.flags.size === 0,
    probe: p.flags.has('probe'),
  };
  if (ais !== undefined) {
    const [runs, steps] = typeof ais === 'string' ? ais.split(',').map(Number) : [];
    ev.ais = { ...(runs ? { runs } : {}), ...(steps ? { steps } : {}) };
  }
  if (!ev.exact && !ev.ais && !ev.pseudo && !ev.probe) ev.recon = true;
  const train = ev.probe
    ? loadData({
        kind: 'fashion-mnist',
        split: 'train',
        ...(typeof bin === 'string' ? { binarize: bin as 'none' } : {}),
      })
    : undefined;
  const result = evaluateNetwork(network, data, ev, { ...(train ? { train } : {}), dataSpec });
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else
    process.stdout.write(`${basename(modelPath)} on ${dataArg}: ${describeEvaluation(result)}\n`);
}

function info(p: Parsed): void {
  const modelPath = p.positional[1];
  if (!modelPath) throw new UsageError('info needs <model>');
  const m = loadModel(modelPath, loadKernels('portable'));
  const arrays = m.network.parameters().map((a) => `${a.name} [${a.shape.join('x')}]`);
  process.stdout.write(
    `${JSON.stringify({ created: m.created, network: m.network.spec, parameters: arrays, state: Object.keys(m.state), training: m.training, meta: m.meta }, null, 2)}\n`,
  );
}

function main(argv: string[]): number {
  const p = parseArgs(argv);
  const json = p.flags.has('json');
  const cmd = p.positional[0];
  if (p.flags.has('help') || !cmd) {
    process.stdout.write(`${USAGE}\n`);
    return cmd || p.flags.has('help') ? 0 : 2;
  }
  switch (cmd) {
    case 'train':
      train(p, json);
      return 0;
    case 'eval':
      evaluate(p, json);
      return 0;
    case 'info':
      info(p);
      return 0;
    case 'export-npy': {
      const [, model, dir] = p.positional;
      if (!model || !dir) throw new UsageError('export-npy needs <model> <dir>');
      exportNpyDir(loadModel(model, loadKernels('portable')).network, dir);
      process.stderr.write(`arrays written to ${dir}\n`);
      return 0;
    }
    case 'import-npy': {
      const [, dir, model] = p.positional;
      if (!dir || !model) throw new UsageError('import-npy needs <dir> <model>');
      saveModel(model, importNpyDir(dir, loadKernels('portable')), { meta: { importedFrom: dir } });
      process.stderr.write(`model written to ${model}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${cmd}' (spinmesh --help lists them)`);
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError || e instanceof SpecError || e instanceof FormatError) {
    process.stderr.write(`spinmesh: ${e.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(
      `spinmesh: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exitCode = 1;
  }
}
