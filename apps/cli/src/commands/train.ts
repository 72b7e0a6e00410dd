// `spinmesh train`: a job in this process (runJob, the model file written after every
// evaluation, --resume), or on the embedded local cluster (a coordinator and one worker
// process per shard over loopback gRPC) when --workers or the spec's cluster fields say so.
import { writeFileSync } from 'node:fs';
import { RedisBus, RemoteBus, redisBusOptionsFromEnv, type Bus } from '@spinmesh/bus';
import { SpinmeshClient } from '@spinmesh/client';
import { LocalCluster, planJob, readModel, type LocalClusterOptions } from '@spinmesh/coordinator';
import {
  jobSpecToJson,
  stalenessText,
  loadModel,
  runJob,
  saveModel,
  unconfinedAccess,
  validateJobSpec,
  type DataAccess,
  type JobEvent,
  type JobSpec,
} from '@spinmesh/model';
import { JobState } from '@spinmesh/proto';
import { kindOfSpec, type KindName } from '@spinmesh/cluster';
import { isKernelsChoice, type Context } from '../context.js';
import { InterruptedError, JobFailedError, LocalClusterError, UsageError } from '../errors.js';
import { followJob, type FollowResult } from '../follow.js';
import { plotArg, writeCurves } from '../plot.js';
import { describeEvaluation, fmt } from '../output.js';
import { absoluteDataPaths, applyOverrides, parseSpecFile, specBaseDir } from '../spec-file.js';
import { trainSequence } from './sequence.js';

/** The spec's fields that only a cluster run uses: their presence selects the cluster path. */
const CLUSTER_FIELDS = ['workers', 'staleness', 'checkpointEverySteps'];

export const TRAIN_OPTIONS = ['out', 'resume', 'epochs', 'workers', 'plot'];

/** Restarts of crashed workers (all slots together) that one `train` on the cluster allows. */
const WORKER_RESTARTS = 3;

export function train(ctx: Context): number | Promise<number> {
  const { args } = ctx;
  const specPath = args.positional[1];
  if (!specPath) throw new UsageError('train needs a spec file');
  const raw = parseSpecFile(specPath) as Record<string, unknown>;
  applyOverrides(raw, args);
  // Relative data paths name files next to the spec, wherever the command runs.
  const access = unconfinedAccess(specBaseDir(specPath));
  return TRAINERS[kindOfSpec(raw)](ctx, raw, access, plotArg(args));
}

/** How `train` runs a spec of one kind. */
type Trainer = (
  ctx: Context,
  raw: Record<string, unknown>,
  access: DataAccess,
  plot: string | undefined,
) => number | Promise<number>;

/** A network spec: in this process, or on the embedded local cluster when it has cluster fields. */
const trainNetwork: Trainer = (ctx, raw, access, plot) => {
  const spec = validateJobSpec(raw);
  if (CLUSTER_FIELDS.some((f) => raw[f] !== undefined)) {
    if (ctx.args.has('resume'))
      throw new UsageError('--resume runs in this process only: drop the cluster fields');
    return trainOnCluster(ctx, raw, spec, absoluteDataPaths(raw, access.baseDir), plot);
  }
  return trainHere(ctx, spec, access, plot);
};

/** The trainer of each job kind (a new kind: one line). */
const TRAINERS: Record<KindName, Trainer> = {
  boltzmann: trainNetwork,
  hebbian: trainNetwork,
  stdp: (ctx, raw, access, plot) => {
    if (plot !== undefined) throw new UsageError('--plot draws the learning curves of RBM jobs');
    return trainSequence(ctx, raw, access);
  },
};

/** `train` in this process. */
async function trainHere(
  ctx: Context,
  spec: JobSpec,
  access: DataAccess,
  plot: string | undefined,
): Promise<number> {
  const { args, out } = ctx;
  const kernels = ctx.kernels();
  const file = args.str('out') ?? `${spec.name}.smm`;
  const resumePath = args.str('resume');
  const resume = resumePath !== undefined ? loadModel(resumePath, kernels) : undefined;
  let lastPrint = 0;
  const emit = (e: JobEvent): void => {
    if (out.json) {
      out.emit(e);
      return;
    }
    if (e.type === 'start') out.say(`job ${e.name}: ${e.rows} rows x ${e.dims} columns`);
    else if (e.type === 'epoch') {
      // Fast jobs run thousands of epochs a second: report at most once a second.
      const now = Date.now();
      if (now - lastPrint < 1000 && e.stats.epoch + 1 !== spec.epochs) return;
      lastPrint = now;
      out.say(
        `epoch ${e.stats.epoch + 1}/${spec.epochs}  ${e.stats.seconds.toFixed(2)} s  recon ${fmt(e.stats.reconstructionError)}  |dW| ${e.stats.updateNorm.toExponential(2)}`,
      );
    } else out.print(`epoch ${e.evaluation.epoch}: ${describeEvaluation(e.evaluation)}`);
  };
  const every = spec.evaluate.every ?? 1;
  const result = await runJob(spec, kernels, {
    access,
    onEvent: emit,
    ...(resume ? { resume: { network: resume.network, state: resume.state } } : {}),
    afterEpoch: (epoch, network, trainer) => {
      if (epoch % every === 0 || epoch === spec.epochs)
        saveModel(file, network, {
          training: { spec: jobSpecToJson(spec), epoch },
          ...(trainer ? { state: trainer.state() } : {}),
        });
    },
  });
  const last = result.evaluations[result.evaluations.length - 1];
  out.emit({ type: 'done', model: file, evaluation: last });
  out.say(`model written to ${file}`);
  if (plot !== undefined)
    return writeCurves(out, plot, result.evaluations, spec.name).then(() => 0);
  return 0;
}

/**
 * `train` on the embedded local cluster: starts a coordinator and spec.workers worker processes,
 * submits the job, prints its progress and evaluations, writes the model file, and stops every
 * process it started (also on Ctrl-C and on errors).
 */
async function trainOnCluster(
  ctx: Context,
  raw: Record<string, unknown>,
  spec: JobSpec,
  dataRoots: string[],
  plot: string | undefined,
): Promise<number> {
  const { args, out } = ctx;
  const choice = await checkClusterJob(ctx, raw, spec);
  const file = args.str('out') ?? `${spec.name}.smm`;
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
  const cluster = await startCluster(clusterOptions(ctx, spec, dataRoots, choice, abort));
  const stopListening = ctx.onInterrupt((signal) => {
    out.say(`spinmesh: ${signal}: stopping the local cluster`);
    abort(
      new InterruptedError(
        signal,
        `interrupted (${signal}): every process of the local cluster stopped`,
      ),
    );
  });
  const client = new SpinmeshClient({ address: cluster.address });
  let bus: Bus | null = null;
  try {
    const { jobId, evaluation, evaluations } = await submitAndFollow(
      ctx,
      cluster,
      client,
      raw,
      spec,
      aborted,
    );
    bus = cluster.redis
      ? await RedisBus.connect({ ...redisBusOptionsFromEnv(), prefix: cluster.redisPrefix! })
      : await RemoteBus.connect({ address: cluster.address, secret: cluster.secret });
    const model = await readModel(bus, jobId);
    if (!model) throw new JobFailedError(`job ${jobId} completed but its model is not on the bus`);
    writeFileSync(file, model.bytes);
    if (cluster.redis) await bus.deleteJob(jobId);
    out.emit({ type: 'done', model: file, jobId, evaluation });
    out.say(`model written to ${file}`);
    if (plot !== undefined) await writeCurves(out, plot, evaluations, spec.name);
    return 0;
  } catch (err) {
    // A process that died on its own: show what the processes said last.
    if (trouble.first !== null && !(trouble.first instanceof InterruptedError))
      process.stderr.write(`${cluster.tails()}\n`);
    // Interrupted: the calls in flight fail as cancelled; the interruption is what happened.
    if (trouble.first instanceof InterruptedError) throw trouble.first;
    throw err;
  } finally {
    stopListening();
    client.close();
    await bus?.close();
    await cluster.stop();
  }
}

/**
 * Checks what a cluster run needs before any process starts (--kernels, the cluster's own rules)
 * and says where its defaults differ from one process's; returns the --kernels choice.
 */
async function checkClusterJob(
  ctx: Context,
  raw: Record<string, unknown>,
  spec: JobSpec,
): Promise<string | undefined> {
  const { args, out } = ctx;
  const choice = args.str('kernels');
  if (choice !== undefined && !isKernelsChoice(choice))
    throw new UsageError('--kernels must be cuda, native, portable or auto');
  // The cluster's own rules (sampled statistics, a network that splits into the shards, data
  // that load) are checked here too, before any process starts.
  await planJob(raw);
  // A cluster can only exchange sampled spins, so its default statistics differ from one
  // process's: the same spec without the field trains a different model. Kept as it is (changing
  // either default would change the results of existing specs) and said once, here.
  if (spec.train.statistics === undefined)
    out.say(
      'note: a cluster job uses train.statistics: samples; in one process this spec uses means ' +
        '(set train.statistics: samples for identical results)',
    );
  return choice;
}

/** The local cluster for this job: its workers, data roots, kernels and restart policy. */
function clusterOptions(
  ctx: Context,
  spec: JobSpec,
  dataRoots: string[],
  choice: string | undefined,
  abort: (err: Error) => void,
): LocalClusterOptions {
  const { out } = ctx;
  return {
    workers: spec.workers,
    // The services read only the directories of the files this spec names.
    env: { ...process.env, SPINMESH_DATA_ROOTS: dataRoots.join(':') },
    ...(choice !== undefined ? { kernels: choice } : {}),
    // A worker that dies is started again in its slot, and the coordinator restores the job
    // from its last common checkpoint (as it does for a service's worker); the coordinator
    // dying, or workers dying more often than this, ends the command.
    workerRestarts: WORKER_RESTARTS,
    onRestart: (r) => {
      out.say(
        `spinmesh: ${r.name} (pid ${r.oldPid ?? '?'}) exited unexpectedly (${r.signal ?? `code ${r.code}`}): ` +
          `started again as pid ${r.pid ?? '?'} (restart ${r.restarts} of ${r.limit}); ` +
          'the job resumes from its last checkpoint, if it has one',
      );
      out.emit({
        type: 'worker-restarted',
        name: r.name,
        oldPid: r.oldPid,
        ...(r.signal ? { signal: r.signal } : { code: r.code }),
        pid: r.pid,
        restarts: r.restarts,
      });
    },
    onExit: (name, code, signal) =>
      abort(
        new LocalClusterError(
          `${name} of the local cluster exited unexpectedly (${signal ?? `code ${code}`})` +
            (name === 'coordinator' ? '' : ` after ${WORKER_RESTARTS} restarts of workers`),
        ),
      ),
  };
}

/** Submits the job, prints its start, and follows it to its end (or until `aborted` rejects). */
async function submitAndFollow(
  ctx: Context,
  cluster: LocalCluster,
  client: SpinmeshClient,
  raw: Record<string, unknown>,
  spec: JobSpec,
  aborted: Promise<never>,
): Promise<{
  jobId: string;
  evaluation: FollowResult['evaluation'];
  evaluations: FollowResult['evaluations'];
}> {
  const { out } = ctx;
  const pids = workerPids(cluster);
  out.say(
    `local cluster: coordinator at ${cluster.address}, ${spec.workers} worker process${spec.workers === 1 ? '' : 'es'} (pid ${pids.join(', ')}), ` +
      (cluster.redis ? `Redis (prefix ${cluster.redisPrefix})` : 'in-process bus'),
  );
  const submitted = await Promise.race([client.submitJob(JSON.stringify(raw)), aborted]);
  const jobId = submitted.jobId;
  const total = submitted.progress?.totalSteps ?? 0;
  out.say(
    `job ${jobId} (${spec.name}): ${spec.workers} shard${spec.workers === 1 ? '' : 's'}, ${total} steps, staleness ${stalenessText(spec.staleness)}`,
  );
  out.emit({
    type: 'start',
    name: spec.name,
    jobId,
    workers: spec.workers,
    totalSteps: total,
    workerPids: pids,
  });
  const {
    job: final,
    evaluation,
    evaluations,
  } = await Promise.race([
    followJob(client, jobId, out, { epochs: spec.epochs, quietWaiting: true, retries: 0 }),
    aborted,
  ]);
  if (final.state !== JobState.JOB_STATE_COMPLETED)
    throw new JobFailedError(
      `job ${jobId} ${final.state === JobState.JOB_STATE_CANCELLED ? 'was cancelled' : 'failed'}: ${final.error || 'no reason given'}`,
    );
  return { jobId, evaluation, evaluations };
}

/** LocalCluster.start, its failures to start as LocalClusterErrors (no stack trace to show). */
async function startCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  try {
    return await LocalCluster.start(opts);
  } catch (err) {
    throw new LocalClusterError(`the local cluster did not start: ${(err as Error).message}`);
  }
}

/** The process ids of the cluster's workers, in slot order. */
function workerPids(cluster: LocalCluster): number[] {
  return [...cluster.processes.values()]
    .filter((p) => p.name.startsWith('worker-'))
    .map((p) => p.child.pid ?? 0);
}
