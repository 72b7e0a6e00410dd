// spinmesh.v1.JobService: the public API of the cluster (jobs.proto). Handlers throw ServerError
// with a status and a message for the caller; anything else is logged and answered INTERNAL.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  BusClosedError,
  BusConnectionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  RemoteBusError,
  isTerminalState,
  type Bus,
  type JobEventRecord,
} from '@spinmesh/bus';
import { FormatError, SpecError } from '@spinmesh/model';
import {
  JobServiceService,
  ServerError,
  toServiceError,
  type JobServiceServer,
  type WatchJobResponse,
} from '@spinmesh/proto';

import { JobStateError, type Coordinator } from './coordinator.js';
import { parseSpecText } from './plan.js';
import { toJobMessage, toWatchResponse, type StoredJob } from './records.js';

const Status = grpc.status;

/** What the bus accepts as a job id. */
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface JobServiceOptions {
  bus: Bus;
  coordinator: Coordinator;
  log: Logger;
  /** How long one blocking read of a job's events waits before it looks again. @defaultValue 2000 */
  watchBlockMs?: number;
}

/** A JobService handle: add it to a server; close() ends the watch streams (at shutdown). */
export interface JobServiceHandle {
  close(): void;
}

/** The status and message for what a handler threw. */
function toStatusError(err: unknown, what: string, log: Logger): ServerError {
  if (err instanceof ServerError) return err;
  if (err instanceof SpecError) return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof FormatError) return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof InvalidArgumentError)
    return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof JobNotFoundError) return new ServerError(Status.NOT_FOUND, err.message);
  if (err instanceof JobExistsError) return new ServerError(Status.ALREADY_EXISTS, err.message);
  if (err instanceof JobStateError) return new ServerError(Status.FAILED_PRECONDITION, err.message);
  if (
    err instanceof BusConnectionError ||
    err instanceof BusClosedError ||
    err instanceof RemoteBusError
  ) {
    log.warn({ err }, `${what}: state bus unavailable`);
    return new ServerError(Status.UNAVAILABLE, `${what} failed: the state bus is unavailable`);
  }
  log.warn({ err }, `${what} failed`);
  return new ServerError(Status.INTERNAL, `${what} failed`);
}

function requireId(id: string): string {
  if (id === '') throw new ServerError(Status.INVALID_ARGUMENT, 'job_id must not be empty');
  return id;
}

/** Adds JobService to `server`. */
export function addJobService(server: grpc.Server, opts: JobServiceOptions): JobServiceHandle {
  const { bus, coordinator, log } = opts;
  const blockMs = opts.watchBlockMs ?? 2000;
  /** The open watch streams, each with the function that ends it. */
  const watchers = new Set<(err?: ServerError) => void>();
  let closed = false;

  const generationOf = async (id: string): Promise<number> =>
    (await bus.getAssignment(id))?.generation ?? 0;

  const getJob = async (id: string): Promise<StoredJob> => {
    const job = (await bus.getJob(requireId(id))) as StoredJob | null;
    if (!job) throw new ServerError(Status.NOT_FOUND, `job '${id}' not found`);
    return job;
  };

  const unary =
    <Req, Res>(what: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      fn(call.request).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(toStatusError(err, what, log), what), null),
      );
    };

  const impl: JobServiceServer = {
    submitJob: unary('SubmitJob', async (req) => {
      if (req.jobId !== '' && !JOB_ID.test(req.jobId))
        throw new ServerError(
          Status.INVALID_ARGUMENT,
          `job_id must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit (got '${req.jobId.slice(0, 40)}')`,
        );
      const input = parseSpecText(req.spec);
      const job = await coordinator.submit(input, req.jobId);
      return { job: toJobMessage(job, 0) };
    }),

    getJob: unary('GetJob', async (req) => {
      const job = await getJob(req.jobId);
      return { job: toJobMessage(job, await generationOf(job.id)) };
    }),

    cancelJob: unary('CancelJob', async (req) => {
      await getJob(req.jobId);
      const job = await coordinator.cancel(req.jobId);
      return { job: toJobMessage(job, await generationOf(job.id)) };
    }),

    watchJob(call) {
      const id = call.request.jobId;
      let done = false;
      const finish = (err?: ServerError): void => {
        if (done) return;
        done = true;
        watchers.delete(finish);
        // An 'error' event sets the call's status and ends it (grpc-js).
        if (err) call.emit('error', toServiceError(err, 'WatchJob'));
        else call.end();
      };
      watchers.add(finish);
      call.on('cancelled', () => finish());
      // Waits for the client to take what was written (a cancelled call resolves it too).
      const write = (msg: WatchJobResponse): Promise<void> =>
        new Promise((resolve) => {
          if (call.write(msg)) {
            resolve();
            return;
          }
          const go = (): void => {
            call.off('drain', go);
            call.off('cancelled', go);
            resolve();
          };
          call.on('drain', go);
          call.on('cancelled', go);
        });
      const run = async (): Promise<void> => {
        await getJob(id);
        let after: string | undefined = call.request.afterEventId || undefined;
        for (;;) {
          if (done || closed) return;
          const events = await bus.readEvents(id, {
            ...(after !== undefined ? { after } : {}),
            count: 500,
            blockMs,
          });
          if (done || closed) return;
          for (const { id: eventId, event } of events) {
            after = eventId;
            const final = isFinalStateEvent(event);
            const reason = final ? await reasonOf(id) : '';
            await write(toWatchResponse(eventId, event, reason));
            if (final) return;
          }
          if (events.length === 0) {
            // The final state event may have been trimmed from the stream: look at the record.
            const job = await bus.getJob(id);
            if (!job || isTerminalState(job.state)) return;
          }
        }
      };
      const reasonOf = async (jobId: string): Promise<string> => {
        const job = (await bus.getJob(jobId)) as StoredJob | null;
        return job?.error ?? job?.reason ?? '';
      };
      run().then(
        () => finish(),
        (err: unknown) => finish(toStatusError(err, 'WatchJob', log)),
      );
    },
  };
  server.addService(JobServiceService, impl);

  return {
    close() {
      closed = true;
      for (const finish of [...watchers]) {
        finish(
          new ServerError(Status.UNAVAILABLE, 'the coordinator is shutting down; watch again'),
        );
      }
    },
  };
}

function isFinalStateEvent(e: JobEventRecord): boolean {
  const to = e['to'];
  return e.type === 'state' && (to === 'completed' || to === 'failed' || to === 'cancelled');
}
