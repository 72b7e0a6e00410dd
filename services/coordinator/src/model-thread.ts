// The entry point of a model-operation thread (model-runner.ts): loads the kernels, runs the
// one operation it is sent, posts the result or the error, and exits.
import { parentPort, workerData } from 'node:worker_threads';
import { loadKernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '@spinmesh/model';
import { runModelOp, type ModelOp } from './model-ops.js';
import type { ThreadReply } from './model-runner.js';

const port = parentPort!;
const kernels = loadKernels((workerData as { kernels: 'native' | 'portable' | 'auto' }).kernels);
port.once('message', (op: ModelOp) => {
  let reply: ThreadReply;
  try {
    reply = { ok: runModelOp(op, kernels) };
  } catch (e) {
    const user = e instanceof SpecError || e instanceof FormatError;
    reply = { error: { user, message: (e as Error).message } };
  }
  port.postMessage(reply);
});
