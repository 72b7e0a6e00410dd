// ModelService's operations on a model: Sample and Complete (network models), Generate
// (sequence models), Evaluate (network models, on data). Each checks its request, then runs on
// a model thread.
import type * as grpc from '@grpc/grpc-js';
import type { Bus } from '@spinmesh/bus';
import {
  knownDataShape,
  validateData,
  type DataSpec,
  type EvaluateSpec,
  type JobSpec,
} from '@spinmesh/model';
import type {
  CompleteRequest,
  CompleteResponse,
  EvaluateRequest,
  EvaluateResponse,
  GenerateRequest,
  GenerateResponse,
  Patterns,
  SampleRequest,
  SampleResponse,
} from '@spinmesh/proto';

import { inRange, invalid, modelServing, networkSpec, type RequestBounds } from './model-access.js';
import type { ModelRunner } from './model-runner.js';
import { parseSpecText } from './plan.js';
import { toEvaluation } from './records.js';

/** What the operations need. */
export interface OperationDeps {
  bus: Bus;
  runner: ModelRunner;
  bounds: RequestBounds;
}

/** The call, for the runner to stop the thread when its caller goes away. */
type Call = grpc.ServerUnaryCall<unknown, unknown>;

function patterns(rows: number, dims: number, values: Float32Array): Patterns {
  return { rows, dims, values: Array.from(values) };
}

const units = (spec: JobSpec): number => spec.network.layers.reduce((n, l) => n + l.size, 0);

function layerSize(spec: JobSpec, name: string, field: string): number {
  const l = name === '' ? spec.network.layers[0] : spec.network.layers.find((x) => x.name === name);
  if (!l)
    throw invalid(
      field,
      `must name a layer of the network (${spec.network.layers.map((x) => x.name).join(', ')})`,
    );
  return l.size;
}

export async function sample(
  d: OperationDeps,
  req: SampleRequest,
  call: Call,
): Promise<SampleResponse> {
  const count = inRange(req.count, 'count', 1, 10_000);
  const sweeps = req.sweeps === 0 ? 1000 : inRange(req.sweeps, 'sweeps', 1, 100_000);
  if (!(Number.isFinite(req.temperature) && req.temperature >= 0))
    throw invalid('temperature', `must be a finite number >= 0 (got ${req.temperature})`);
  const m = await modelServing(d.bus, req.jobId, 'sample');
  const spec = networkSpec(m);
  const dims = layerSize(spec, req.layer, 'layer');
  d.bounds.answer('Sample', 2 * count * dims, 'ask for fewer samples');
  d.bounds.bytes('Sample', 'maxStateBytes', count * units(spec), 'ask for fewer samples');
  d.bounds.work('Sample', count * sweeps * units(spec), 'ask for fewer samples or sweeps');
  const out = await d.runner.run(
    {
      kind: 'sample',
      model: m.bytes,
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
}

export async function complete(
  d: OperationDeps,
  req: CompleteRequest,
  call: Call,
): Promise<CompleteResponse> {
  const cues = req.cues;
  if (!cues) throw invalid('cues', 'is required (rows, dims and rows x dims values)');
  const rows = inRange(cues.rows, 'cues.rows', 1, 10_000);
  const sweeps = req.sweeps === 0 ? 50 : inRange(req.sweeps, 'sweeps', 1, 100_000);
  if (req.temperature !== undefined && !(Number.isFinite(req.temperature) && req.temperature >= 0))
    throw invalid('temperature', `must be a finite number >= 0 (got ${req.temperature})`);
  const m = await modelServing(d.bus, req.jobId, 'complete');
  const spec = networkSpec(m);
  const dims = layerSize(spec, req.layer, 'layer');
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
  d.bounds.answer(
    'Complete',
    (2 + (req.trajectory ? sweeps : 0)) * rows * dims,
    req.trajectory ? 'ask for fewer sweeps or rows, or no trajectory' : 'send fewer rows',
  );
  d.bounds.work('Complete', rows * sweeps * units(spec), 'ask for fewer rows or sweeps');
  d.bounds.bytes('Complete', 'maxStateBytes', rows * units(spec), 'send fewer rows');
  const out = await d.runner.run(
    {
      kind: 'complete',
      model: m.bytes,
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
}

export async function generate(
  d: OperationDeps,
  req: GenerateRequest,
  call: Call,
): Promise<GenerateResponse> {
  const steps = inRange(req.steps, 'steps', 1, 100_000);
  const cue = req.cue ?? { rows: 0, dims: 0, values: [] };
  const m = await modelServing(d.bus, req.jobId, 'generate');
  const units = m.job.sequence!.network.dybm.units;
  if (cue.rows > 100_000) throw invalid('cue.rows', 'must be at most 100000 frames');
  if (cue.rows > 0 && cue.dims !== units)
    throw invalid('cue.dims', `must be ${units}, the model's units (got ${cue.dims})`);
  if (cue.values.length !== cue.rows * units)
    throw invalid(
      'cue.values',
      `must hold rows x ${units} = ${cue.rows * units} values (got ${cue.values.length})`,
    );
  d.bounds.answer('Generate', steps * units, 'ask for fewer steps');
  const out = await d.runner.run(
    {
      kind: 'generate',
      model: m.bytes,
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
}

/** The figures an Evaluate request asks for. @throws INVALID_ARGUMENT naming the field */
function evaluateSpec(req: EvaluateRequest): {
  evaluate: EvaluateSpec;
  aisRuns: number;
  aisSteps: number;
} {
  const aisRuns = req.aisRuns === 0 ? 0 : inRange(req.aisRuns, 'ais_runs', 2, 100_000);
  const aisSteps = req.aisSteps === 0 ? 14_500 : inRange(req.aisSteps, 'ais_steps', 10, 10_000_000);
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
  return { evaluate, aisRuns, aisSteps };
}

export async function evaluate(
  d: OperationDeps,
  req: EvaluateRequest,
  call: Call,
): Promise<EvaluateResponse> {
  let data: DataSpec | null = null;
  if (req.data.trim() !== '') {
    data = validateData(parseSpecText(req.data), 'data');
  }
  const { evaluate, aisRuns, aisSteps } = evaluateSpec(req);
  const m = await modelServing(d.bus, req.jobId, 'evaluate');
  const spec = networkSpec(m);
  d.bounds.bytes('Evaluate', 'maxStateBytes', aisRuns * units(spec), 'ask for fewer AIS runs');
  const shape = knownDataShape(data ?? spec.data);
  if (shape) d.bounds.bytes('Evaluate', 'maxDataBytes', shape.rows * shape.dims, 'use fewer rows');
  d.bounds.work(
    'Evaluate',
    aisRuns * aisSteps * units(spec),
    'ask for fewer AIS runs or temperatures',
  );
  const out = await d.runner.run(
    { kind: 'evaluate', model: m.bytes, spec, data, evaluate, seed: req.seed },
    'Evaluate',
    call,
  );
  if (out.kind !== 'evaluate') throw new Error('wrong result kind');
  return {
    evaluation: toEvaluation(out.result.evaluation),
    rows: out.result.rows,
  };
}
