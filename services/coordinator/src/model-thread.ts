// The entry point of a model-operation thread (model-runner.ts): loads the kernels, runs the
// one operation it is sent, posts the result or the error, and exits.
import { parentPort, workerData } from 'node:worker_threads';
import { loadKernels } from '@spinmesh/kernels';
import { FormatError, SpecError, type DataAccess } from '@spinmesh/model';
import { runModelOp, type ModelOp } from './model-ops.js';
import type { ThreadReply } from './model-runner.js';

const port = parentPort!;
const data = workerData as {
  kernels: 'cuda' | 'native' | 'portable' | 'auto';
  dataAccess: DataAccess;
};
const kernels = loadKernels(data.kernels);
port.once('message', (op: ModelOp) => {
  runModelOp(op, kernels, data.dataAccess).then(
    (ok) => port.postMessage({ ok } satisfies ThreadReply),
    (e: unknown) => {
      const user = e instanceof SpecError || e instanceof FormatError;
      port.postMessage({ error: { user, message: (e as Error).message } } satisfies ThreadReply);
    },
  );
});
