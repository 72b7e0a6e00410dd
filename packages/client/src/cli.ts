#!/usr/bin/env node
// The `spinmesh` command line. Exit codes: 0 done, 1 failed while running, 2 bad usage or input
// (a spec, option or file the user gave; the message names what is wrong), 130 / 143 a cluster
// run interrupted by SIGINT / SIGTERM (after stopping every process it started).
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import { RedisBus, RemoteBus, redisBusOptionsFromEnv, type Bus } from '@spinmesh/bus';
import { LocalCluster, planJob, readModel } from '@spinmesh/coordinator';
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
  type JobSpec,
} from '@spinmesh/model';
import {
  JobServiceClient,
  JobState,
  type Evaluation as EvaluationMessage,
  type Job,
  type WatchJobResponse,
} from '@spinmesh/proto';

const USAGE = `spinmesh: train and evaluate Boltzmann machines with local learning rules

usage: spinmesh <command> [options]

commands:
  train <spec.yaml|json>      run a training job and save the model: in this process, or, when
                              --workers is given or the spec has a cluster field (workers,
                              staleness, checkpointEverySteps), on an embedded local cluster (a
                              coordinator and one worker process per shard, over loopback gRPC)
      --out <file>            model file to write (default: <spec name>.smm); in this process it
                              is written after every evaluation and at the end, with the training
                              state; on the cluster once, at the end
      --resume <file>         continue training from a model file written by train (in this
                              process only)
      --epochs <n>            override spec.epochs
      --workers <n>           override spec.workers and run on the embedded local cluster
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

exit codes: 0 success, 1 failure while running, 2 bad usage, spec or input file, 130 / 143
interrupted (SIGINT / SIGTERM)`;

class UsageError extends Error {}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const takesValue = new Set(['out', 'resume', 'epochs', 'workers', 'kernels', 'binarize']);
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
  if (e.recallAccuracy !== undefined) parts.push(`recall acc ${fmt(e.recallAccuracy)}`);
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

/** The spec's fields that only a cluster run uses: their presence selects the cluster path. */
const CLUSTER_FIELDS = ['workers', 'staleness', 'checkpointEverySteps'];

function train(p: Parsed, json: boolean): number | Promise<number> {
  const specPath = p.positional[1];
  if (!specPath) throw new UsageError('train needs a spec file');
  const raw = readSpec(specPath) as Record<string, unknown>;
  for (const [flag, field] of [
    ['epochs', 'epochs'],
    ['workers', 'workers'],
  ] as const) {
    const v = p.flags.get(flag);
    if (typeof v !== 'string') continue;
    if (typeof raw !== 'object' || raw === null) throw new SpecError('spec', 'must be an object');
    raw[field] = Number(v);
  }
  const spec = validateJobSpec(raw);
  if (CLUSTER_FIELDS.some((f) => raw[f] !== undefined)) {
    if (p.flags.has('resume'))
      throw new UsageError('--resume runs in this process only: drop the cluster fields');
    return trainOnCluster(p, json, raw, spec);
  }
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
        saveModel(out, network, {
          training: { spec, epoch },
          ...(trainer ? { state: trainer.state() } : {}),
        });
    },
  });
  const last = result.evaluations[result.evaluations.length - 1];
  if (json)
    process.stdout.write(`${JSON.stringify({ type: 'done', model: out, evaluation: last })}\n`);
  else process.stderr.write(`model written to ${out}\n`);
  return 0;
}

/** A job that ended without a model (failed or cancelled on the cluster). */
class JobFailedError extends Error {}

/** The user interrupted a cluster run (Ctrl-C) or it was told to stop. */
class InterruptedError extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted (${signal})`);
  }
}

/** An evaluation message as the model package's Evaluation (what the in-process path prints). */
function fromMessage(e: EvaluationMessage): Evaluation {
  const out: Evaluation = { epoch: e.epoch };
  for (const [k, v] of Object.entries(e))
    if (k !== 'epoch' && typeof v === 'number') (out as unknown as Record<string, number>)[k] = v;
  return out;
}

/**
 * `train` on the embedded local cluster: starts a coordinator and spec.workers worker processes,
 * submits the job, prints its progress and evaluations, writes the model file, and stops every
 * process it started (also on Ctrl-C and on errors).
 */
async function trainOnCluster(
  p: Parsed,
  json: boolean,
  raw: Record<string, unknown>,
  spec: JobSpec,
): Promise<number> {
  const choice = p.flags.get('kernels');
  if (choice !== undefined && choice !== 'native' && choice !== 'portable' && choice !== 'auto')
    throw new UsageError('--kernels must be native, portable or auto');
  // The cluster's own rules (sampled statistics, a network that splits into the shards, data
  // that load) are checked here too, before any process starts.
  planJob(raw);
  const out =
    typeof p.flags.get('out') === 'string' ? (p.flags.get('out') as string) : `${spec.name}.smm`;
  const say = (line: string): void => {
    if (!json) process.stderr.write(`${line}\n`);
  };
  const emit = (o: Record<string, unknown>): void => {
    if (json) process.stdout.write(`${JSON.stringify(o)}\n`);
  };
  // The first reason to give up (a child died, a signal), set from event handlers.
  const trouble: { first: Error | null } = { first: null };
  let abort: (err: Error) => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    abort = (err) => {
      trouble.first ??= err;
      reject(err);
    };
  });
  aborted.catch(() => undefined);
  const cluster = await LocalCluster.start({
    workers: spec.workers,
    ...(typeof choice === 'string' ? { kernels: choice } : {}),
    onExit: (name, code, signal) =>
      abort(new Error(`${name} exited unexpectedly (${signal ?? `code ${code}`})`)),
  });
  const onSignal = (signal: NodeJS.Signals): void => {
    say(`spinmesh: ${signal}: stopping the local cluster`);
    abort(new InterruptedError(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const client = new JobServiceClient(cluster.address, grpc.credentials.createInsecure());
  let bus: Bus | null = null;
  try {
    say(
      `local cluster: coordinator at ${cluster.address}, ${spec.workers} worker process${spec.workers === 1 ? '' : 'es'}, ` +
        (cluster.redis ? `Redis (prefix ${cluster.redisPrefix})` : 'in-process bus'),
    );
    const submitted = await Promise.race([submitJob(client, JSON.stringify(raw)), aborted]);
    const jobId = submitted.jobId;
    const total = submitted.progress?.totalSteps ?? 0;
    say(
      `job ${jobId} (${spec.name}): ${spec.workers} shard${spec.workers === 1 ? '' : 's'}, ${total} steps, staleness ${spec.staleness}`,
    );
    emit({ type: 'start', name: spec.name, jobId, workers: spec.workers, totalSteps: total });
    let lastPrint = 0;
    let last: Evaluation | undefined;
    const final = await Promise.race([
      watchJob(client, jobId, (e) => {
        if (e.progress) {
          const pr = e.progress;
          emit({ type: 'progress', step: pr.step, totalSteps: pr.totalSteps, epoch: pr.epoch });
          const now = Date.now();
          if (now - lastPrint < 1000 && pr.step !== pr.totalSteps) return;
          lastPrint = now;
          say(`epoch ${pr.epoch}/${spec.epochs}  step ${pr.step}/${pr.totalSteps}`);
        } else if (e.evaluation) {
          last = fromMessage(e.evaluation);
          if (json) emit({ type: 'evaluation', evaluation: last });
          else process.stdout.write(`epoch ${last.epoch}: ${describeEvaluation(last)}\n`);
        } else if (e.workers) {
          if (e.workers.kind !== 'waiting' || e.workers.available > 0) say(e.workers.message);
          emit({
            type: 'workers',
            kind: e.workers.kind,
            generation: e.workers.generation,
            message: e.workers.message,
          });
        } else if (e.state) {
          emit({ type: 'state', to: JobState[e.state.to], reason: e.state.reason });
        }
      }),
      aborted,
    ]);
    if (final.state !== JobState.JOB_STATE_COMPLETED)
      throw new JobFailedError(
        `job ${jobId} ${final.state === JobState.JOB_STATE_CANCELLED ? 'was cancelled' : 'failed'}: ${final.error || 'no reason given'}`,
      );
    bus = cluster.redis
      ? await RedisBus.connect({ ...redisBusOptionsFromEnv(), prefix: cluster.redisPrefix! })
      : await RemoteBus.connect({ address: cluster.address, secret: cluster.secret });
    const model = await readModel(bus, jobId);
    if (!model) throw new JobFailedError(`job ${jobId} completed but its model is not on the bus`);
    writeFileSync(out, model.bytes);
    if (cluster.redis) await bus.deleteJob(jobId);
    if (json)
      process.stdout.write(
        `${JSON.stringify({ type: 'done', model: out, jobId, evaluation: last })}\n`,
      );
    else process.stderr.write(`model written to ${out}\n`);
    return 0;
  } catch (err) {
    // A process that died on its own: show what the processes said last.
    if (trouble.first !== null && !(trouble.first instanceof InterruptedError))
      process.stderr.write(`${cluster.tails()}\n`);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    client.close();
    await bus?.close();
    await cluster.stop();
  }
}

function submitJob(client: JobServiceClient, spec: string): Promise<Job> {
  return new Promise((resolve, reject) => {
    client.submitJob({ spec, jobId: '' }, (err, res) => {
      if (err) {
        // The coordinator checks more than the local validation (the cluster's own rules).
        if (err.code === grpc.status.INVALID_ARGUMENT)
          reject(new SpecError('spec', err.details.replace(/^spec /, '')));
        else reject(new Error(`SubmitJob failed: ${err.details}`));
      } else if (!res.job) reject(new Error('SubmitJob returned no job'));
      else resolve(res.job);
    });
  });
}

/** Follows a job's events until it is final; resolves with the final job record. */
function watchJob(
  client: JobServiceClient,
  jobId: string,
  onEvent: (e: WatchJobResponse) => void,
): Promise<Job> {
  return new Promise((resolve, reject) => {
    const stream = client.watchJob({ jobId, afterEventId: '' });
    stream.on('data', (e: WatchJobResponse) => onEvent(e));
    stream.on('error', (err: grpc.ServiceError) =>
      reject(new Error(`WatchJob failed: ${err.details}`)),
    );
    stream.on('end', () => {
      try {
        client.getJob({ jobId }, (err, res) => {
          if (err) reject(new Error(`GetJob failed: ${err.details}`));
          else if (!res.job) reject(new Error('GetJob returned no job'));
          else resolve(res.job);
        });
      } catch (err) {
        reject(err as Error); // the client was closed meanwhile (the run was given up)
      }
    });
  });
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

function main(argv: string[]): number | Promise<number> {
  const p = parseArgs(argv);
  const json = p.flags.has('json');
  const cmd = p.positional[0];
  if (p.flags.has('help') || !cmd) {
    process.stdout.write(`${USAGE}\n`);
    return cmd || p.flags.has('help') ? 0 : 2;
  }
  switch (cmd) {
    case 'train':
      return train(p, json);
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

function fail(e: unknown): void {
  if (e instanceof UsageError || e instanceof SpecError || e instanceof FormatError) {
    process.stderr.write(`spinmesh: ${e.message}\n`);
    process.exitCode = 2;
  } else if (e instanceof InterruptedError) {
    process.stderr.write(`spinmesh: ${e.message}: every process of the local cluster stopped\n`);
    process.exitCode = e.signal === 'SIGINT' ? 130 : 143;
  } else if (e instanceof JobFailedError) {
    process.stderr.write(`spinmesh: ${e.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(
      `spinmesh: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exitCode = 1;
  }
}

try {
  const code = main(process.argv.slice(2));
  if (typeof code === 'number') process.exitCode = code;
  else
    code.then(
      (c) => {
        process.exitCode = c;
      },
      (e: unknown) => fail(e),
    );
} catch (e) {
  fail(e);
}
