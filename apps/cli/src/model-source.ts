// Where `sample`, `filters`, `complete` and `eval` find their model: a completed job on the
// coordinator (ModelService; --job) or a model file run in this process with packages/model's
// functions (--model). Both answer the same questions with the same results for the same seed.
import type { SpinmeshClient } from '@spinmesh/client';
import { loadKernels, type Kernels } from '@spinmesh/kernels';
import {
  completePattern,
  decodeModel,
  evaluateNetwork,
  loadData,
  loadModel,
  receptiveFields,
  sampleNetwork,
  validateJobSpec,
  type CompleteOptions,
  type CompleteResult,
  type DataSpec,
  type EvaluateSpec,
  type Evaluation,
  type JobSpec,
  type Network,
  type NetworkSpec,
  type ReceptiveFields,
  type SampleOptions,
  type SampleResult,
  type UnitName,
} from '@spinmesh/model';
import { ModelFormat, type Patterns } from '@spinmesh/proto';
import { UsageError } from './errors.js';
import { fromMessage } from './output.js';

/** A data set named on the command line: as a DataSpec, and as the text sent to a server. */
export interface DataArg {
  spec: DataSpec;
  text: string;
}

/** What `eval` asks for. */
export interface EvaluateRequest {
  exact: boolean;
  /** AIS runs (0: none) and temperatures (0: the default). */
  aisRuns: number;
  aisSteps: number;
  pseudo: boolean;
  recon: boolean;
  probe: boolean;
  /** Recall from cues with this fraction of units flipped (0: none). */
  recallFlip: number;
  /** At most this many rows (0: all). */
  limit: number;
  seed: number;
  /** null: the job's evaluation data. */
  data: DataArg | null;
}

export interface ModelSource {
  /** "job 'x'" or the model file's path, for messages. */
  readonly label: string;
  readonly network: NetworkSpec;
  /** The spec the model was trained with, when known (its data, its evaluation data). */
  readonly spec: JobSpec | null;
  sample(o: SampleOptions): Promise<SampleResult>;
  complete(o: CompleteOptions & { rows: number }): Promise<CompleteResult>;
  evaluate(r: EvaluateRequest): Promise<{ evaluation: Evaluation; rows: number }>;
  /** Receptive fields of the units connected to `visible` (a remote model is downloaded). */
  fields(limit: number | undefined, visible?: string): Promise<ReceptiveFields>;
}

/** The unit type of a layer (the first one when `name` is undefined). */
export function unitsOf(network: NetworkSpec, name?: string): UnitName {
  const l = name === undefined ? network.layers[0] : network.layers.find((x) => x.name === name);
  return l?.units ?? 'bernoulli';
}

/** A Hopfield memory: one lateral ising layer. */
export function isHopfieldSpec(network: NetworkSpec): boolean {
  const l = network.layers[0];
  return network.layers.length === 1 && l !== undefined && l.units === 'ising' && !!l.lateral;
}

function evaluateSpec(r: EvaluateRequest): EvaluateSpec {
  return {
    exact: r.exact,
    ais:
      r.aisRuns > 0 ? { runs: r.aisRuns, ...(r.aisSteps > 0 ? { steps: r.aisSteps } : {}) } : false,
    pseudo: r.pseudo,
    recon: r.recon,
    probe: r.probe,
    recall: r.recallFlip > 0 ? { flip: r.recallFlip } : false,
    ...(r.limit > 0 ? { limit: r.limit } : {}),
  };
}

/** A model file, run in this process. */
export class LocalSource implements ModelSource {
  readonly network: NetworkSpec;

  private constructor(
    readonly label: string,
    private readonly net: Network,
    readonly spec: JobSpec | null,
  ) {
    this.network = net.spec;
  }

  static open(path: string, kernels: Kernels): LocalSource {
    const m = loadModel(path, kernels);
    const training = m.training as { spec?: unknown } | undefined;
    let spec: JobSpec | null = null;
    try {
      if (training?.spec !== undefined) spec = validateJobSpec(training.spec);
    } catch {
      spec = null; // a spec of another version: the model still serves without it
    }
    return new LocalSource(path, m.network, spec);
  }

  sample(o: SampleOptions): Promise<SampleResult> {
    return Promise.resolve(sampleNetwork(this.net, o));
  }

  complete(o: CompleteOptions & { rows: number }): Promise<CompleteResult> {
    // As on the coordinator: no known units given means none is known.
    const dims = o.values.length / o.rows;
    const known = o.known.length === 0 ? new Uint8Array(dims) : o.known;
    return Promise.resolve(completePattern(this.net, { ...o, known }));
  }

  async evaluate(r: EvaluateRequest): Promise<{ evaluation: Evaluation; rows: number }> {
    const dataSpec = r.data?.spec ?? this.spec?.evaluate.test ?? this.spec?.data;
    if (!dataSpec)
      throw new UsageError(
        `${this.label} does not say what it was trained on: name the data (--data, or eval <model> <data>)`,
      );
    const seed = this.spec?.seed ?? 0;
    const data = await loadData(dataSpec, seed);
    // The probe trains on the job's training data; a model without its spec: Fashion-MNIST's.
    const train = r.probe
      ? await loadData(
          this.spec?.data ?? {
            kind: 'fashion-mnist',
            split: 'train',
            ...(dataSpec.kind === 'fashion-mnist' && dataSpec.binarize
              ? { binarize: dataSpec.binarize }
              : {}),
          },
          seed,
        )
      : undefined;
    const ev = evaluateSpec(r);
    // As the coordinator does: AIS's base rates come from the training data too.
    // epoch stays 0: the figures are the model's, whatever its history (an imported copy of
    // a model evaluates the same).
    const evaluation = evaluateNetwork(this.net, data, ev, {
      seed: r.seed,
      dataSpec,
      train: train ?? data,
    });
    return { evaluation, rows: Math.min(data.rows, ev.limit ?? data.rows) };
  }

  fields(limit: number | undefined, visible?: string): Promise<ReceptiveFields> {
    return Promise.resolve(
      receptiveFields(this.net, {
        ...(limit !== undefined ? { limit } : {}),
        ...(visible !== undefined ? { visible } : {}),
      }),
    );
  }
}

function floats(p: Patterns | undefined): Float32Array {
  return Float32Array.from(p?.values ?? []);
}

/** A completed job's model on the coordinator. */
export class RemoteSource implements ModelSource {
  private constructor(
    private readonly client: SpinmeshClient,
    private readonly jobId: string,
    readonly spec: JobSpec,
  ) {}

  get label(): string {
    return `job '${this.jobId}'`;
  }

  get network(): NetworkSpec {
    return this.spec.network;
  }

  /** The job (its spec says the network and the data). NOT_FOUND for an unknown id. */
  static async open(client: SpinmeshClient, jobId: string): Promise<RemoteSource> {
    const job = await client.getJob(jobId);
    return new RemoteSource(client, jobId, JSON.parse(job.specJson) as JobSpec);
  }

  async sample(o: SampleOptions): Promise<SampleResult> {
    const r = await this.client.sample({
      jobId: this.jobId,
      count: o.count,
      sweeps: o.sweeps ?? 0,
      temperature: o.temperature ?? 0,
      seed: o.seed ?? 0,
      layer: o.visible ?? '',
    });
    return {
      rows: r.states?.rows ?? 0,
      dims: r.states?.dims ?? 0,
      layer: r.layer,
      states: floats(r.states),
      means: floats(r.means),
    };
  }

  async complete(o: CompleteOptions & { rows: number }): Promise<CompleteResult> {
    const dims = o.values.length / o.rows;
    const r = await this.client.complete({
      jobId: this.jobId,
      cues: { rows: o.rows, dims, values: Array.from(o.values) },
      known: Buffer.from(Uint8Array.from(o.known, (k) => (k ? 1 : 0))),
      sweeps: o.sweeps ?? 0,
      seed: o.seed ?? 0,
      trajectory: o.trajectory ?? false,
      layer: o.visible ?? '',
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    });
    return {
      rows: r.values?.rows ?? 0,
      dims: r.values?.dims ?? 0,
      values: floats(r.values),
      means: floats(r.means),
      sweepsRun: r.sweepsRun,
      converged: r.converged,
      ...(o.trajectory ? { trajectory: r.trajectory.map(floats) } : {}),
    };
  }

  async evaluate(r: EvaluateRequest): Promise<{ evaluation: Evaluation; rows: number }> {
    const res = await this.client.evaluate({
      jobId: this.jobId,
      data: r.data?.text ?? '',
      exact: r.exact,
      aisRuns: r.aisRuns,
      aisSteps: r.aisSteps,
      pseudo: r.pseudo,
      recon: r.recon,
      probe: r.probe,
      recallFlip: r.recallFlip,
      limit: r.limit,
      seed: r.seed,
    });
    return {
      evaluation: res.evaluation ? fromMessage(res.evaluation) : { epoch: 0 },
      rows: res.rows,
    };
  }

  async fields(limit: number | undefined, visible?: string): Promise<ReceptiveFields> {
    const model = await this.client.getModel(this.jobId, ModelFormat.MODEL_FORMAT_SMM);
    const { network } = decodeModel(model.files[0]!.bytes, loadKernels('portable'), this.label);
    return receptiveFields(network, {
      ...(limit !== undefined ? { limit } : {}),
      ...(visible !== undefined ? { visible } : {}),
    });
  }
}
