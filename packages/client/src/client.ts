// A small typed client of a spinmesh coordinator's public API (proto/spinmesh/v1/jobs.proto and
// models.proto): promises and callbacks over the generated gRPC clients, with the API token,
// TLS and a per-call deadline, and errors translated into domain errors (errors.ts).
import * as grpc from '@grpc/grpc-js';
import {
  JobServiceClient,
  ModelFormat,
  ModelServiceClient,
  tokenMetadata,
  type CompleteRequest,
  type CompleteResponse,
  type EvaluateRequest,
  type EvaluateResponse,
  type GenerateRequest,
  type GenerateResponse,
  type Job,
  type JobState,
  type ModelChunk,
  type SampleRequest,
  type SampleResponse,
  type WatchJobResponse,
} from '@spinmesh/proto';
import { ModelTransferError, toApiError, type ApiError } from './errors.js';

export interface ClientOptions {
  /** host:port of the coordinator. @defaultValue '127.0.0.1:7070' */
  address?: string;
  /** API token, sent with every call as `authorization: Bearer <token>`. @defaultValue none */
  token?: string;
  /**
   * TLS: false for plaintext, true to check the server's certificate against the system's CAs,
   * or the PEM bytes of the CA that signed it. @defaultValue false
   */
  tls?: boolean | { ca: Buffer };
  /**
   * Deadline of each call in milliseconds; for a stream (WatchJob, GetModel) the deadline of
   * the whole stream. @defaultValue none
   */
  deadlineMs?: number;
}

/** A file of a downloaded model: the .smm file, or an .npy array or manifest.json. */
export interface ModelFile {
  file: string;
  bytes: Buffer;
}

/** A downloaded model: its files, and the step it was trained to. */
export interface DownloadedModel {
  files: ModelFile[];
  step: number;
}

/** A page of ListJobs. */
export interface JobPage {
  jobs: Job[];
  /** Empty on the last page. */
  nextPageToken: string;
}

export interface ListJobsOptions {
  /** Only jobs in these states; empty: every state. */
  states?: JobState[];
  /** Jobs per page, 1-1000. @defaultValue 100 (the server's) */
  pageSize?: number;
  pageToken?: string;
}

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;

/** The promise of a unary call, and how to give it up. */
interface Pending {
  cancel(): void;
}

/**
 * A connection to one coordinator. Calls are promises that reject with an ApiError subclass
 * (JobNotFoundError, UnavailableError, ...). cancelAll() gives up every call in flight (they
 * reject with CallCancelledError); close() releases the channel.
 */
export class SpinmeshClient {
  readonly address: string;
  private readonly jobs: JobServiceClient;
  private readonly models: ModelServiceClient;
  private readonly token: string | undefined;
  private readonly deadlineMs: number | undefined;
  private readonly pending = new Set<Pending>();

  constructor(opts: ClientOptions = {}) {
    this.address = opts.address ?? '127.0.0.1:7070';
    this.token = opts.token;
    this.deadlineMs = opts.deadlineMs;
    const tls = opts.tls ?? false;
    const creds =
      tls === false
        ? grpc.credentials.createInsecure()
        : grpc.credentials.createSsl(tls === true ? null : tls.ca);
    // Samples and completions can be large: the server enforces its own limit
    // (SPINMESH_MAX_MESSAGE_BYTES), the client takes whatever it is sent.
    const channelOptions = {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    };
    this.jobs = new JobServiceClient(this.address, creds, channelOptions);
    // One channel for both services.
    this.models = new ModelServiceClient(this.address, creds, {
      ...channelOptions,
      channelOverride: this.jobs.getChannel(),
    });
  }

  private metadata(): grpc.Metadata {
    return this.token === undefined ? new grpc.Metadata() : tokenMetadata(this.token);
  }

  private callOptions(): Partial<grpc.CallOptions> {
    return this.deadlineMs === undefined ? {} : { deadline: Date.now() + this.deadlineMs };
  }

  private error(err: grpc.ServiceError, method: string): ApiError {
    return toApiError(err, method, this.address, this.deadlineMs);
  }

  private unary<T>(
    method: string,
    start: (
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: Callback<T>,
    ) => grpc.ClientUnaryCall,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { cancel: () => undefined };
      this.pending.add(entry);
      const call = start(this.metadata(), this.callOptions(), (err, res) => {
        this.pending.delete(entry);
        if (err) reject(this.error(err, method));
        else resolve(res!);
      });
      entry.cancel = () => call.cancel();
    });
  }

  /** Queues a job; `spec` is YAML or JSON text. Resolves with the stored job (QUEUED). */
  async submitJob(spec: string, jobId = ''): Promise<Job> {
    const res = await this.unary<{ job?: Job }>('SubmitJob', (md, o, cb) =>
      this.jobs.submitJob({ spec, jobId }, md, o, cb),
    );
    if (!res.job) throw new Error('SubmitJob returned no job');
    return res.job;
  }

  async getJob(jobId: string): Promise<Job> {
    const res = await this.unary<{ job?: Job }>('GetJob', (md, o, cb) =>
      this.jobs.getJob({ jobId }, md, o, cb),
    );
    if (!res.job) throw new Error('GetJob returned no job');
    return res.job;
  }

  /** One page of jobs, oldest first. */
  listJobs(opts: ListJobsOptions = {}): Promise<JobPage> {
    return this.unary<JobPage>('ListJobs', (md, o, cb) =>
      this.jobs.listJobs(
        {
          states: opts.states ?? [],
          pageSize: opts.pageSize ?? 0,
          pageToken: opts.pageToken ?? '',
        },
        md,
        o,
        cb,
      ),
    );
  }

  /** Every job, page after page. */
  async *allJobs(opts: Omit<ListJobsOptions, 'pageToken'> = {}): AsyncGenerator<Job> {
    let pageToken = '';
    do {
      const page = await this.listJobs({ ...opts, pageToken });
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
  }

  /** Cancels a queued or running job; JobStateError when it is final already. */
  async cancelJob(jobId: string): Promise<Job> {
    const res = await this.unary<{ job?: Job }>('CancelJob', (md, o, cb) =>
      this.jobs.cancelJob({ jobId }, md, o, cb),
    );
    if (!res.job) throw new Error('CancelJob returned no job');
    return res.job;
  }

  /**
   * Follows a job's events (the history first) until the stream ends, which it does after the
   * event that makes the job final. `afterEventId` resumes after an event seen before.
   */
  watchJob(
    jobId: string,
    onEvent: (e: WatchJobResponse) => void,
    afterEventId = '',
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stream = this.jobs.watchJob(
        { jobId, afterEventId },
        this.metadata(),
        this.callOptions(),
      );
      const entry: Pending = { cancel: () => stream.cancel() };
      this.pending.add(entry);
      let failed = false;
      stream.on('data', (e: WatchJobResponse) => {
        try {
          onEvent(e);
        } catch (err) {
          failed = true;
          this.pending.delete(entry);
          stream.cancel();
          reject(err as Error);
        }
      });
      stream.on('error', (err: grpc.ServiceError) => {
        this.pending.delete(entry);
        if (!failed) reject(this.error(err, 'WatchJob'));
      });
      stream.on('end', () => {
        this.pending.delete(entry);
        if (!failed) resolve();
      });
    });
  }

  /**
   * Downloads a completed job's model: the .smm file, or the .npy arrays and manifest.json.
   * Every chunk must continue its file where the last one ended, and every file must reach
   * the size its chunks announce. @throws ModelTransferError when they do not
   */
  getModel(
    jobId: string,
    format: ModelFormat = ModelFormat.MODEL_FORMAT_SMM,
    chunkBytes = 0,
  ): Promise<DownloadedModel> {
    return new Promise<DownloadedModel>((resolve, reject) => {
      const stream = this.models.getModel(
        { jobId, format, chunkBytes },
        this.metadata(),
        this.callOptions(),
      );
      const entry: Pending = { cancel: () => stream.cancel() };
      this.pending.add(entry);
      const files: { file: string; size: number; parts: Buffer[]; received: number }[] = [];
      let step = 0;
      let bad: ModelTransferError | null = null;
      const fail = (message: string): void => {
        if (bad) return;
        bad = new ModelTransferError(`GetModel of job '${jobId}': ${message}`);
        this.pending.delete(entry);
        stream.cancel();
        reject(bad);
      };
      stream.on('data', (c: ModelChunk) => {
        if (bad) return;
        step = c.step;
        let f = files[files.length - 1];
        if (!f || f.file !== c.file) {
          if (f && f.received !== f.size)
            return fail(`${f.file} ended after ${f.received} of its ${f.size} bytes`);
          if (files.some((x) => x.file === c.file))
            return fail(`${c.file} came twice, with other files between`);
          f = { file: c.file, size: c.fileBytes, parts: [], received: 0 };
          files.push(f);
        }
        if (c.fileBytes !== f.size)
          return fail(`${c.file} changed its size from ${f.size} to ${c.fileBytes} bytes`);
        if (c.offset !== f.received)
          return fail(`a chunk of ${c.file} starts at ${c.offset}, expected ${f.received}`);
        if (f.received + c.data.length > f.size)
          return fail(`${c.file} has more than its ${f.size} bytes`);
        f.parts.push(c.data);
        f.received += c.data.length;
      });
      stream.on('error', (err: grpc.ServiceError) => {
        this.pending.delete(entry);
        if (!bad) reject(this.error(err, 'GetModel'));
      });
      stream.on('end', () => {
        this.pending.delete(entry);
        if (bad) return;
        const short = files.find((f) => f.received !== f.size);
        if (short)
          return fail(`${short.file} ended after ${short.received} of ${short.size} bytes`);
        if (files.length === 0) return fail('the stream held no file');
        resolve({
          files: files.map((f) => ({ file: f.file, bytes: Buffer.concat(f.parts, f.size) })),
          step,
        });
      });
    });
  }

  sample(req: Partial<SampleRequest> & { jobId: string }): Promise<SampleResponse> {
    const full: SampleRequest = {
      count: 0,
      sweeps: 0,
      temperature: 0,
      seed: 0,
      layer: '',
      ...req,
    };
    return this.unary<SampleResponse>('Sample', (md, o, cb) => this.models.sample(full, md, o, cb));
  }

  complete(req: Partial<CompleteRequest> & { jobId: string }): Promise<CompleteResponse> {
    const full: CompleteRequest = {
      known: Buffer.alloc(0),
      sweeps: 0,
      seed: 0,
      trajectory: false,
      layer: '',
      ...req,
    };
    return this.unary<CompleteResponse>('Complete', (md, o, cb) =>
      this.models.complete(full, md, o, cb),
    );
  }

  generate(req: Partial<GenerateRequest> & { jobId: string }): Promise<GenerateResponse> {
    const full: GenerateRequest = { steps: 0, sample: false, seed: 0, ...req };
    return this.unary<GenerateResponse>('Generate', (md, o, cb) =>
      this.models.generate(full, md, o, cb),
    );
  }

  evaluate(req: Partial<EvaluateRequest> & { jobId: string }): Promise<EvaluateResponse> {
    const full: EvaluateRequest = {
      data: '',
      exact: false,
      aisRuns: 0,
      aisSteps: 0,
      pseudo: false,
      recon: false,
      probe: false,
      recallFlip: 0,
      limit: 0,
      seed: 0,
      ...req,
    };
    return this.unary<EvaluateResponse>('Evaluate', (md, o, cb) =>
      this.models.evaluate(full, md, o, cb),
    );
  }

  /** Gives up every call in flight: each rejects with CallCancelledError. */
  cancelAll(): void {
    for (const p of [...this.pending]) {
      this.pending.delete(p);
      p.cancel();
    }
  }

  /** Closes the channel (after cancelling what is in flight). */
  close(): void {
    this.cancelAll();
    this.jobs.close();
  }
}
