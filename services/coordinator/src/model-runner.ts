// Runs model operations on worker threads, at most `maxConcurrent` at a time: one thread per
// operation, terminated when the caller's deadline passes or the caller goes away.
import { Worker } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import type { DataAccess } from '@spinmesh/model';
import { ServerError } from '@spinmesh/proto';
import type { ModelOp, ModelOpResult } from './model-ops.js';

/** What a thread posts back. */
export type ThreadReply = { ok: ModelOpResult } | { error: { user: boolean; message: string } };

/**
 * The thread's script: next to this module in dist/; from the TypeScript sources (the tests),
 * the built copy in dist/ (`npm run build` makes it).
 */
const THREAD_URL = import.meta.url.endsWith('.ts')
  ? new URL('../dist/model-thread.js', import.meta.url)
  : new URL('./model-thread.js', import.meta.url);

export interface ModelRunnerOptions {
  kernels: 'cuda' | 'native' | 'portable' | 'auto';
  /** Operations running at once; more are refused with RESOURCE_EXHAUSTED. */
  maxConcurrent: number;
  /** The files Evaluate and sequence training may read their data from. */
  dataAccess: DataAccess;
}

export class ModelRunner {
  private running = 0;
  private readonly threads = new Set<Worker>();

  constructor(private readonly opts: ModelRunnerOptions) {}

  /** Operations running now. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Runs `op` on a thread of its own. Rejects with a ServerError: RESOURCE_EXHAUSTED when
   * maxConcurrent run already, DEADLINE_EXCEEDED or CANCELLED when stopped, INVALID_ARGUMENT
   * for a request the model cannot serve.
   */
  run(
    op: ModelOp,
    what: string,
    call: grpc.ServerUnaryCall<unknown, unknown>,
  ): Promise<ModelOpResult> {
    if (this.running >= this.opts.maxConcurrent)
      return Promise.reject(
        new ServerError(
          grpc.status.RESOURCE_EXHAUSTED,
          `${what}: ${this.running} model operations are running, the most this coordinator runs at once (SPINMESH_MODEL_OPS_MAX); try again later`,
        ),
      );
    this.running++;
    const { result, stop } = this.runDetached(op);
    let timer: NodeJS.Timeout | undefined;
    let onCancel: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      const deadline = call.getDeadline();
      const ms = deadline instanceof Date ? deadline.getTime() - Date.now() : deadline - Date.now();
      timer = setTimeout(
        () => {
          stop();
          reject(
            new ServerError(
              grpc.status.DEADLINE_EXCEEDED,
              `${what}: the deadline passed before the work was done; it was stopped`,
            ),
          );
        },
        Number.isFinite(ms) ? Math.max(0, Math.min(ms, 2 ** 31 - 1)) : 2 ** 31 - 1,
      );
      onCancel = () => {
        stop();
        reject(new ServerError(grpc.status.CANCELLED, `${what}: the caller cancelled the call`));
      };
      call.on('cancelled', onCancel);
    });
    return Promise.race([result, stopped]).finally(() => {
      this.running--;
      clearTimeout(timer);
      call.off('cancelled', onCancel!);
    });
  }

  /**
   * Runs `op` on a thread of its own that no call waits for (training a sequence job, or the
   * body of run()): not counted against maxConcurrent; stop() terminates it (its result then
   * rejects). A request the model cannot serve rejects with INVALID_ARGUMENT.
   */
  runDetached(op: ModelOp): { result: Promise<ModelOpResult>; stop: () => void } {
    const thread = new Worker(THREAD_URL, {
      workerData: { kernels: this.opts.kernels, dataAccess: this.opts.dataAccess },
    });
    this.threads.add(thread);
    const result = new Promise<ModelOpResult>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        this.threads.delete(thread);
        fn();
        void thread.terminate();
      };
      thread.once('message', (reply: ThreadReply) =>
        settle(() => {
          if ('ok' in reply) resolve(reply.ok);
          else if (reply.error.user)
            reject(new ServerError(grpc.status.INVALID_ARGUMENT, reply.error.message));
          else reject(new Error(reply.error.message));
        }),
      );
      thread.once('error', (err) => settle(() => reject(err)));
      thread.once('exit', (code) =>
        settle(() => reject(new Error(`the thread stopped (exit code ${code})`))),
      );
    });
    // A stopped run's rejection is the caller's to see, or nobody's (run() raced it).
    result.catch(() => undefined);
    thread.postMessage(op);
    return { result, stop: () => void thread.terminate() };
  }

  /** Stops every running operation (at shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.threads].map((t) => t.terminate()));
  }
}
