// spinmesh.v1.ModelService (models.proto): a completed job's model, downloaded, sampled,
// completing patterns, generating, evaluated, as far as its kind's model answers each.
// Requests are checked (a bad field: INVALID_ARGUMENT; too much work or too large an answer:
// RESOURCE_EXHAUSTED) before any thread starts; the operations are in model-operations.ts.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Bus } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import type { Limits } from '@spinmesh/model';
import {
  ModelFormat,
  ModelServiceService,
  guardDecoding,
  toServiceError,
  type GetModelRequest,
  type ModelChunk,
  type ModelServiceServer,
} from '@spinmesh/proto';

import { toStatusError, unary, writeMessage } from './handlers.js';
import { RequestBounds, invalid, modelOf } from './model-access.js';
import { complete, evaluate, generate, sample, type OperationDeps } from './model-operations.js';
import type { ModelRunner } from './model-runner.js';

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

/** Adds ModelService to `server`. */
export function addModelService(server: grpc.Server, opts: ModelServiceOptions): void {
  const { log } = opts;
  const d: OperationDeps = {
    bus: opts.bus,
    runner: opts.runner,
    bounds: new RequestBounds(opts.maxMessageBytes, opts.maxUnitUpdates, opts.limits),
  };
  const impl: ModelServiceServer = {
    getModel(call) {
      const what = 'GetModel';
      getModel(opts, call).then(
        () => call.end(),
        (err: unknown) => call.emit('error', toServiceError(toStatusError(err, what, log), what)),
      );
    },
    sample: unary(log, 'Sample', (req, call) => sample(d, req, call)),
    complete: unary(log, 'Complete', (req, call) => complete(d, req, call)),
    generate: unary(log, 'Generate', (req, call) => generate(d, req, call)),
    evaluate: unary(log, 'Evaluate', (req, call) => evaluate(d, req, call)),
  };
  server.addService(...guardDecoding(ModelServiceService, impl));
}

/** Streams a model's files (as its kind has them) in chunks. */
async function getModel(
  opts: ModelServiceOptions,
  call: grpc.ServerWritableStream<GetModelRequest, ModelChunk>,
): Promise<void> {
  const req = call.request;
  const chunk = req.chunkBytes === 0 ? DEFAULT_CHUNK : req.chunkBytes;
  if (chunk > MAX_CHUNK) throw invalid('chunk_bytes', `must be at most ${MAX_CHUNK}`);
  if (
    req.format !== ModelFormat.MODEL_FORMAT_UNSPECIFIED &&
    req.format !== ModelFormat.MODEL_FORMAT_SMM &&
    req.format !== ModelFormat.MODEL_FORMAT_NPY
  )
    throw invalid('format', `must be MODEL_FORMAT_SMM or MODEL_FORMAT_NPY (got ${req.format})`);
  const { job, kind, step, bytes } = await modelOf(opts.bus, req.jobId);
  const npy = req.format === ModelFormat.MODEL_FORMAT_NPY;
  for (const f of kind.modelFiles(job, bytes, npy, opts.kernels)) {
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
}
