// The work of ModelService's Sample, Complete and Evaluate: pure functions of a model file and
// a request, run on a worker thread (model-thread.ts) so that a long evaluation never stalls
// the coordinator's control loop, and can be stopped when its caller goes away.
import type { Kernels } from '@spinmesh/kernels';
import {
  completePattern,
  decodeModel,
  decodeSequenceModel,
  encodeSequenceModel,
  generateFrom,
  runSequenceJob,
  evaluateNetwork,
  loadData,
  sampleNetwork,
  type CompleteOptions,
  type DataAccess,
  type CompleteResult,
  type DataSpec,
  type EvaluateSpec,
  type Evaluation,
  type JobSpec,
  type SampleOptions,
  type SampleResult,
  type SequenceEvaluation,
  type SequenceJobSpec,
} from '@spinmesh/model';

export type ModelOp =
  | { kind: 'sample'; model: Uint8Array; options: SampleOptions }
  | { kind: 'complete'; model: Uint8Array; options: CompleteOptions }
  | {
      kind: 'evaluate';
      model: Uint8Array;
      /** The job's spec (its data and evaluation data). */
      spec: JobSpec;
      /** The data to evaluate on; null: the job's evaluation data. */
      data: DataSpec | null;
      evaluate: EvaluateSpec;
      seed: number;
    }
  | {
      kind: 'generate';
      model: Uint8Array;
      cue: Float64Array;
      cueSteps: number;
      steps: number;
      mode: 'mostLikely' | 'sample';
      seed: number | null;
    }
  /** Trains a sequence job (rule 'stdp') from its spec: the model file and the evaluations. */
  | { kind: 'train-sequence'; spec: SequenceJobSpec };

export type ModelOpResult =
  | { kind: 'sample'; result: SampleResult }
  | { kind: 'complete'; result: CompleteResult }
  | { kind: 'evaluate'; result: { evaluation: Evaluation; rows: number } }
  | { kind: 'generate'; result: { frames: Float64Array; units: number } }
  | {
      kind: 'train-sequence';
      result: { model: Uint8Array; evaluations: SequenceEvaluation[] };
    };

/**
 * Runs one operation, reading data files as `access` allows. @throws SpecError or FormatError
 * for a request the model cannot serve
 */
export async function runModelOp(
  op: ModelOp,
  kernels: Kernels,
  access: DataAccess,
): Promise<ModelOpResult> {
  if (op.kind === 'train-sequence') {
    const { model, evaluations } = await runSequenceJob(op.spec, { access });
    const last = evaluations.at(-1) ?? null;
    return {
      kind: 'train-sequence',
      result: { model: encodeSequenceModel(model, op.spec, last), evaluations },
    };
  }
  if (op.kind === 'generate') {
    const { model } = decodeSequenceModel(op.model);
    const frames = generateFrom(model, op.cue, op.cueSteps, op.steps, {
      mode: op.mode,
      ...(op.seed !== null ? { seed: op.seed } : {}),
    });
    return { kind: 'generate', result: { frames, units: model.units } };
  }
  const { network } = decodeModel(op.model, kernels, 'the job model');
  switch (op.kind) {
    case 'sample':
      return { kind: 'sample', result: sampleNetwork(network, op.options) };
    case 'complete':
      return { kind: 'complete', result: completePattern(network, op.options) };
    case 'evaluate': {
      const spec = op.spec;
      const dataSpec = op.data ?? spec.evaluate.test ?? spec.data;
      const field =
        op.data !== null ? 'data' : spec.evaluate.test ? 'spec.evaluate.test' : 'spec.data';
      const data = await loadData(dataSpec, spec.seed, access, field);
      const train = op.evaluate.probe
        ? await loadData(spec.data, spec.seed, access, 'spec.data')
        : data;
      const evaluation = evaluateNetwork(network, data, op.evaluate, {
        seed: op.seed,
        train,
        epoch: spec.epochs,
        dataSpec,
      });
      return {
        kind: 'evaluate',
        result: { evaluation, rows: Math.min(data.rows, op.evaluate.limit ?? data.rows) },
      };
    }
  }
}
