// spinmesh.v1.ModelService (models.proto): a completed job's model, downloaded, sampled,
// completing patterns, evaluated. Requests are checked here (a bad field: INVALID_ARGUMENT; too
// much work or too large an answer: RESOURCE_EXHAUSTED) before any thread starts.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Bus } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  decodeModel,
  knownDataShape,
  npyFiles,
  validateData,
  type DataSpec,
  type EvaluateSpec,
  type JobSpec,
  type Limits,
} from '@spinmesh/model';
import {
  ModelFormat,
  ModelServiceService,
  ServerError,
  guardDecoding,
  toServiceError,
  type ModelChunk,
  type ModelServiceServer,
  type Patterns,
} from '@spinmesh/proto';
import type { StoredJob } from '@spinmesh/cluster';

import { LIMIT_ENV_VARS } from './config.js';
import { requireId, toStatusError, unary, writeMessage } from './handlers.js';
import { readModel } from './model-store.js';
import type { ModelRunner } from './model-runner.js';
import { parseSpecText } from './plan.js';
import { toEvaluation } from './records.js';

const Status = grpc.status;

export interface ModelServiceOptions {
  bus: Bus;
  runner: ModelRunner;
  kernels: Kernels;
  log: Logger;
  /** Largest answer in bytes (the values of Sample and Complete). */
  maxMessageBytes: number;
  /** Most unit updates one request may ask for (chains x sweeps x units, and the like). */
  maxUnitUpdates: number;
  /** maxStateBytes bounds a request's chains x units; maxDataBytes the data Evaluate loads. */
  limits: Pick<Limits, 'maxStateBytes' | 'maxDataBytes'>;
}

const MAX_CHUNK = 3 << 20;
const DEFAULT_CHUNK = 1 << 20;

function tooLarge(what: string, detail: string): ServerError {
  return new ServerError(Status.RESOURCE_EXHAUSTED, `${what}: ${detail}`);
}

function invalid(field: string, message: string): ServerError {
  return new ServerError(Status.INVALID_ARGUMENT, `${field} ${message}`);
}

function inRange(v: number, field: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw invalid(field, `must be an integer in [${min}, ${max}] (got ${v})`);
  return v;
}

function patterns(rows: number, dims: number, values: Float32Array): Patterns {
  return { rows, dims, values: Array.from(values) };
}

/** Adds ModelService to `server`. */
export function addModelService(server: grpc.Server, opts: ModelServiceOptions): void {
  const { bus, runner, log } = opts;

  /** The job, which must be COMPLETED, and its model file (either kind). */
  const anyModelOf = async (
    jobId: string,
  ): Promise<{ job: StoredJob; step: number; bytes: Uint8Array }> => {
    const job = (await bus.getJob(requireId(jobId))) as StoredJob | null;
    if (!job) throw new ServerError(Status.NOT_FOUND, `job '${jobId}' not found`);
    if (job.state !== 'completed' || (!job.spec && !job.sequence))
      throw new ServerError(
        Status.FAILED_PRECONDITION,
        `job '${jobId}' is ${job.state}: it has a model once it is completed`,
      );
    const model = await readModel(bus, jobId);
    if (!model)
      throw new ServerError(
        Status.FAILED_PRECONDITION,
        `job '${jobId}' is completed but its model is no longer stored`,
      );
    return { job, ...model };
  };
  /** A Boltzmann model (network); a sequence model is refused, naming the call to use. */
  const modelOf = async (
    jobId: string,
  ): Promise<{ job: StoredJob & { spec: JobSpec }; step: number; bytes: Uint8Array }> => {
    const m = await anyModelOf(jobId);
    if (!m.job.spec)
      throw new ServerError(
        Status.FAILED_PRECONDITION,
        `job '${jobId}' holds a sequence model (rule 'stdp'): use Generate (or GetModel)`,
      );
    return m as { job: StoredJob & { spec: JobSpec }; step: number; bytes: Uint8Array };
  };

  const units = (spec: JobSpec): number => spec.network.layers.reduce((n, l) => n + l.size, 0);
  const layerSize = (spec: JobSpec, name: string, field: string): number => {
    const l =
      name === '' ? spec.network.layers[0] : spec.network.layers.find((x) => x.name === name);
    if (!l)
      throw invalid(
        field,
        `must name a layer of the network (${spec.network.layers.map((x) => x.name).join(', ')})`,
      );
    return l.size;
  };
  const checkAnswer = (what: string, floats: number, hint: string): void => {
    if (floats * 4 > opts.maxMessageBytes)
      throw tooLarge(
        what,
        `the answer would hold ${floats} floats (${floats * 4} bytes), more than the ${opts.maxMessageBytes} bytes a message may carry (SPINMESH_MAX_MESSAGE_BYTES); ${hint}`,
      );
  };
  const checkWork = (what: string, updates: number, hint: string): void => {
    if (updates > opts.maxUnitUpdates)
      throw tooLarge(
        what,
        `it asks for ${updates.toExponential(2)} unit updates, more than the ${opts.maxUnitUpdates.toExponential(2)} one request may (SPINMESH_MAX_UNIT_UPDATES); ${hint}`,
      );
  };

  /** `values` float32 values of chain state or data within the limit `limit`. */
  const checkBytes = (
    what: string,
    limit: 'maxStateBytes' | 'maxDataBytes',
    values: number,
    hint: string,
  ): void => {
    if (values * 4 > opts.limits[limit])
      throw tooLarge(
        what,
        `it needs ${values * 4} bytes of ${limit === 'maxStateBytes' ? 'chain state' : 'data'}, more than the limit ${limit} = ${opts.limits[limit]} (${LIMIT_ENV_VARS[limit]}); ${hint}`,
      );
  };

  const impl: ModelServiceServer = {
    getModel(call) {
      const req = call.request;
      const what = 'GetModel';
      const run = async (): Promise<void> => {
        const chunk = req.chunkBytes === 0 ? DEFAULT_CHUNK : req.chunkBytes;
        if (chunk > MAX_CHUNK) throw invalid('chunk_bytes', `must be at most ${MAX_CHUNK}`);
        if (
          req.format !== ModelFormat.MODEL_FORMAT_UNSPECIFIED &&
          req.format !== ModelFormat.MODEL_FORMAT_SMM &&
          req.format !== ModelFormat.MODEL_FORMAT_NPY
        )
          throw invalid(
            'format',
            `must be MODEL_FORMAT_SMM or MODEL_FORMAT_NPY (got ${req.format})`,
          );
        const { job, step, bytes } = await anyModelOf(req.jobId);
        if (job.sequence && req.format === ModelFormat.MODEL_FORMAT_NPY)
          throw new ServerError(
            Status.FAILED_PRECONDITION,
            `job '${job.id}' holds a sequence model: it comes as one JSON file (MODEL_FORMAT_SMM), not .npy arrays`,
          );
        const files = job.sequence
          ? [{ file: `${job.sequence.name}.dybm.json`, bytes }]
          : req.format === ModelFormat.MODEL_FORMAT_NPY
            ? npyFiles(decodeModel(bytes, opts.kernels, `model of job '${job.id}'`).network)
            : [{ file: `${job.spec!.name}.smm`, bytes }];
        for (const f of files) {
          for (let off = 0; off === 0 || off < f.bytes.length; off += chunk) {
            if (call.cancelled) return;
            const msg: ModelChunk = {
              file: f.file,
              offset: off,
              fileBytes: f.bytes.length,
              data: Buffer.from(f.bytes.subarray(off, off + chunk)),
              step,
            };
            await writeMessage(call, msg);
          }
        }
      };
      run().then(
        () => call.end(),
        (err: unknown) => call.emit('error', toServiceError(toStatusError(err, what, log), what)),
      );
    },

    sample: unary(log, 'Sample', async (req, call) => {
      const count = inRange(req.count, 'count', 1, 10_000);
      const sweeps = req.sweeps === 0 ? 1000 : inRange(req.sweeps, 'sweeps', 1, 100_000);
      if (!(Number.isFinite(req.temperature) && req.temperature >= 0))
        throw invalid('temperature', `must be a finite number >= 0 (got ${req.temperature})`);
      const { job, bytes } = await modelOf(req.jobId);
      const dims = layerSize(job.spec, req.layer, 'layer');
      checkAnswer('Sample', 2 * count * dims, 'ask for fewer samples');
      checkBytes('Sample', 'maxStateBytes', count * units(job.spec), 'ask for fewer samples');
      checkWork('Sample', count * sweeps * units(job.spec), 'ask for fewer samples or sweeps');
      const out = await runner.run(
        {
          kind: 'sample',
          model: bytes,
          options: {
            count,
            sweeps,
            temperature: req.temperature === 0 ? 1 : req.temperature,
            seed: req.seed,
            ...(req.layer !== '' ? { visible: req.layer } : {}),
          },
        },
        'Sample',
        call,
      );
      if (out.kind !== 'sample') throw new Error('wrong result kind');
      const r = out.result;
      return {
        states: patterns(r.rows, r.dims, r.states),
        means: patterns(r.rows, r.dims, r.means),
        layer: r.layer,
      };
    }),

    complete: unary(log, 'Complete', async (req, call) => {
      const cues = req.cues;
      if (!cues) throw invalid('cues', 'is required (rows, dims and rows x dims values)');
      const rows = inRange(cues.rows, 'cues.rows', 1, 10_000);
      const sweeps = req.sweeps === 0 ? 50 : inRange(req.sweeps, 'sweeps', 1, 100_000);
      if (
        req.temperature !== undefined &&
        !(Number.isFinite(req.temperature) && req.temperature >= 0)
      )
        throw invalid('temperature', `must be a finite number >= 0 (got ${req.temperature})`);
      const { job, bytes } = await modelOf(req.jobId);
      const dims = layerSize(job.spec, req.layer, 'layer');
      if (cues.dims !== dims)
        throw invalid('cues.dims', `must be ${dims}, the size of the layer (got ${cues.dims})`);
      if (cues.values.length !== rows * dims)
        throw invalid(
          'cues.values',
          `must hold rows x dims = ${rows * dims} values (got ${cues.values.length})`,
        );
      const known = req.known.length === 0 ? new Uint8Array(dims) : req.known;
      if (known.length !== dims && known.length !== rows * dims)
        throw invalid(
          'known',
          `must hold dims = ${dims} or rows x dims = ${rows * dims} bytes (got ${known.length})`,
        );
      checkAnswer(
        'Complete',
        (2 + (req.trajectory ? sweeps : 0)) * rows * dims,
        req.trajectory ? 'ask for fewer sweeps or rows, or no trajectory' : 'send fewer rows',
      );
      checkWork('Complete', rows * sweeps * units(job.spec), 'ask for fewer rows or sweeps');
      checkBytes('Complete', 'maxStateBytes', rows * units(job.spec), 'send fewer rows');
      const out = await runner.run(
        {
          kind: 'complete',
          model: bytes,
          options: {
            values: Float32Array.from(cues.values),
            known: Uint8Array.from(known),
            rows,
            sweeps,
            seed: req.seed,
            trajectory: req.trajectory,
            ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
            ...(req.layer !== '' ? { visible: req.layer } : {}),
          },
        },
        'Complete',
        call,
      );
      if (out.kind !== 'complete') throw new Error('wrong result kind');
      const r = out.result;
      return {
        values: patterns(r.rows, r.dims, r.values),
        means: patterns(r.rows, r.dims, r.means),
        sweepsRun: r.sweepsRun,
        converged: r.converged,
        trajectory: (r.trajectory ?? []).map((t) => patterns(r.rows, r.dims, t)),
      };
    }),

    generate: unary(log, 'Generate', async (req, call) => {
      const steps = inRange(req.steps, 'steps', 1, 100_000);
      const cue = req.cue ?? { rows: 0, dims: 0, values: [] };
      const { job, bytes } = await anyModelOf(req.jobId);
      if (!job.sequence)
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `job '${job.id}' holds a Boltzmann model, not a sequence model: use Sample or Complete`,
        );
      const units = job.sequence.network.dybm.units;
      if (cue.rows > 100_000) throw invalid('cue.rows', 'must be at most 100000 frames');
      if (cue.rows > 0 && cue.dims !== units)
        throw invalid('cue.dims', `must be ${units}, the model's units (got ${cue.dims})`);
      if (cue.values.length !== cue.rows * units)
        throw invalid(
          'cue.values',
          `must hold rows x ${units} = ${cue.rows * units} values (got ${cue.values.length})`,
        );
      checkAnswer('Generate', steps * units, 'ask for fewer steps');
      const out = await runner.run(
        {
          kind: 'generate',
          model: bytes,
          cue: Float64Array.from(cue.values),
          cueSteps: cue.rows,
          steps,
          mode: req.sample ? 'sample' : 'mostLikely',
          seed: req.sample ? req.seed : null,
        },
        'Generate',
        call,
      );
      if (out.kind !== 'generate') throw new Error('wrong result kind');
      return {
        frames: patterns(steps, out.result.units, Float32Array.from(out.result.frames)),
      };
    }),

    evaluate: unary(log, 'Evaluate', async (req, call) => {
      let data: DataSpec | null = null;
      if (req.data.trim() !== '') {
        data = validateData(parseSpecText(req.data), 'data');
      }
      const aisRuns = req.aisRuns === 0 ? 0 : inRange(req.aisRuns, 'ais_runs', 2, 100_000);
      const aisSteps =
        req.aisSteps === 0 ? 14_500 : inRange(req.aisSteps, 'ais_steps', 10, 10_000_000);
      if (!(req.recallFlip >= 0 && req.recallFlip <= 0.5))
        throw invalid('recall_flip', `must be a number in [0, 0.5] (got ${req.recallFlip})`);
      const evaluate: EvaluateSpec = {
        exact: req.exact,
        ais: aisRuns > 0 ? { runs: aisRuns, steps: aisSteps } : false,
        pseudo: req.pseudo,
        recon: req.recon,
        probe: req.probe,
        recall: req.recallFlip > 0 ? { flip: req.recallFlip } : false,
        ...(req.limit > 0 ? { limit: req.limit } : {}),
      };
      if (!req.exact && aisRuns === 0 && !req.pseudo && !req.recon && !req.probe && !req.recallFlip)
        throw invalid(
          'evaluate',
          'asks for no figure: set one or more of exact, ais_runs, pseudo, recon, probe, recall_flip',
        );
      const { job, bytes } = await modelOf(req.jobId);
      checkBytes('Evaluate', 'maxStateBytes', aisRuns * units(job.spec), 'ask for fewer AIS runs');
      const shape = knownDataShape(data ?? job.spec.data);
      if (shape) checkBytes('Evaluate', 'maxDataBytes', shape.rows * shape.dims, 'use fewer rows');
      checkWork(
        'Evaluate',
        aisRuns * aisSteps * units(job.spec),
        'ask for fewer AIS runs or temperatures',
      );
      const out = await runner.run(
        { kind: 'evaluate', model: bytes, spec: job.spec, data, evaluate, seed: req.seed },
        'Evaluate',
        call,
      );
      if (out.kind !== 'evaluate') throw new Error('wrong result kind');
      return {
        evaluation: toEvaluation(out.result.evaluation),
        rows: out.result.rows,
      };
    }),
  };
  server.addService(...guardDecoding(ModelServiceService, impl));
}
