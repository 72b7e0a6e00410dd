// spinmesh.v1.JobService: the public API of the cluster (jobs.proto). Handlers throw ServerError
// with a status and a message for the caller; anything else is logged and answered INTERNAL.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  isTerminalState,
  type Bus,
  type JobEventRecord,
  type JobState as BusJobState,
} from '@spinmesh/bus';
import {
  JobServiceService,
  JobState,
  ServerError,
  guardDecoding,
  toServiceError,
  type JobServiceServer,
  type ListJobsRequest,
  type ListJobsResponse,
  type WatchJobRequest,
  type WatchJobResponse,
} from '@spinmesh/proto';
import { quote } from '@spinmesh/model';
import type { StoredJob } from '@spinmesh/cluster';

import type { Coordinator } from './coordinator.js';
import { requireId, toStatusError, unary, writeMessage } from './handlers.js';
import { parseSpecText } from './plan.js';
import { toJobMessage, toWatchResponse } from './records.js';

const Status = grpc.status;

const BUS_STATES: Partial<Record<JobState, BusJobState>> = {
  [JobState.JOB_STATE_QUEUED]: 'queued',
  [JobState.JOB_STATE_RUNNING]: 'running',
  [JobState.JOB_STATE_COMPLETED]: 'completed',
  [JobState.JOB_STATE_FAILED]: 'failed',
  [JobState.JOB_STATE_CANCELLED]: 'cancelled',
};

/** Longest job spec accepted (1 MiB of text). */
const MAX_SPEC_CHARS = 1 << 20;

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

/** The open watch streams, each with the function that ends it, and whether they are closed. */
interface Watches {
  open: Set<(err?: ServerError) => void>;
  closed: boolean;
}

/** Adds JobService to `server`. */
export function addJobService(server: grpc.Server, opts: JobServiceOptions): JobServiceHandle {
  const { bus, coordinator, log } = opts;
  const blockMs = opts.watchBlockMs ?? 2000;
  const watches: Watches = { open: new Set(), closed: false };

  const impl: JobServiceServer = {
    submitJob: unary(log, 'SubmitJob', async (req) => {
      if (req.jobId !== '' && !JOB_ID.test(req.jobId))
        throw new ServerError(
          Status.INVALID_ARGUMENT,
          `job_id must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit (got '${quote(req.jobId, 40)}')`,
        );
      if (req.spec.length > MAX_SPEC_CHARS)
        throw new ServerError(
          Status.RESOURCE_EXHAUSTED,
          `spec is ${req.spec.length} characters, more than the ${MAX_SPEC_CHARS} a job spec may have (data go in files the spec names, not in the spec)`,
        );
      const input = parseSpecText(req.spec);
      const job = await coordinator.submit(input, req.jobId);
      return { job: toJobMessage(job, 0) };
    }),

    getJob: unary(log, 'GetJob', async (req) => {
      const job = await getJob(bus, req.jobId);
      return { job: toJobMessage(job, await generationOf(bus, job.id)) };
    }),

    listJobs: unary(log, 'ListJobs', (req) => listJobs(bus, req)),

    cancelJob: unary(log, 'CancelJob', async (req) => {
      await getJob(bus, req.jobId);
      const job = await coordinator.cancel(req.jobId);
      return { job: toJobMessage(job, await generationOf(bus, job.id)) };
    }),

    watchJob: (call) => watchJob(call, { bus, log, blockMs, watches }),
  };
  server.addService(...guardDecoding(JobServiceService, impl));

  return {
    close() {
      watches.closed = true;
      for (const finish of [...watches.open]) {
        finish(
          new ServerError(Status.UNAVAILABLE, 'the coordinator is shutting down; watch again'),
        );
      }
    },
  };
}

async function generationOf(bus: Bus, id: string): Promise<number> {
  return (await bus.getAssignment(id))?.generation ?? 0;
}

async function getJob(bus: Bus, id: string): Promise<StoredJob> {
  const job = (await bus.getJob(requireId(id))) as StoredJob | null;
  if (!job) throw new ServerError(Status.NOT_FOUND, `job '${id}' not found`);
  return job;
}

/** The states a ListJobs request names, each once (none: every state). */
function listedStates(req: ListJobsRequest): (BusJobState | undefined)[] {
  const states: (BusJobState | undefined)[] = req.states.length === 0 ? [undefined] : [];
  for (const [i, st] of req.states.entries()) {
    const name = BUS_STATES[st];
    if (name === undefined)
      throw new ServerError(
        Status.INVALID_ARGUMENT,
        `states[${i}] must be one of QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED (got ${st})`,
      );
    if (!states.includes(name)) states.push(name);
  }
  return states;
}

async function listJobs(bus: Bus, req: ListJobsRequest): Promise<ListJobsResponse> {
  if (req.pageSize > 1000)
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `page_size must be at most 1000 (got ${req.pageSize})`,
    );
  const states = listedStates(req);
  // The token is '<index into states>.<the bus's token>' (empty: that state from its start).
  let at = 0;
  let busToken: string | undefined;
  if (req.pageToken !== '') {
    const m = /^(\d+)\.(.*)$/.exec(req.pageToken);
    if (!m || Number(m[1]) >= states.length)
      throw new ServerError(
        Status.INVALID_ARGUMENT,
        'page_token is not a token of this listing (pass next_page_token as it came, with the same states)',
      );
    at = Number(m[1]);
    busToken = m[2] === '' ? undefined : m[2];
  }
  const pageSize = req.pageSize === 0 ? 100 : req.pageSize;
  const jobs: StoredJob[] = [];
  let next = '';
  while (at < states.length && jobs.length < pageSize) {
    const state = states[at];
    const page = await bus.listJobs({
      pageSize: pageSize - jobs.length,
      ...(state ? { state } : {}),
      ...(busToken !== undefined ? { pageToken: busToken } : {}),
    });
    jobs.push(...(page.jobs as StoredJob[]));
    if (page.nextPageToken !== null) {
      busToken = page.nextPageToken;
      next = `${at}.${busToken}`;
      if (jobs.length >= pageSize) break;
    } else {
      busToken = undefined;
      at++;
      next = at < states.length ? `${at}.` : '';
    }
  }
  const generations = await Promise.all(jobs.map((j) => generationOf(bus, j.id)));
  return { jobs: jobs.map((j, i) => toJobMessage(j, generations[i]!)), nextPageToken: next };
}

/** Streams a job's events from `after_event_id` until its final state (or the call ends). */
function watchJob(
  call: grpc.ServerWritableStream<WatchJobRequest, WatchJobResponse>,
  ctx: { bus: Bus; log: Logger; blockMs: number; watches: Watches },
): void {
  const { bus, blockMs, watches } = ctx;
  const id = call.request.jobId;
  let done = false;
  const finish = (err?: ServerError): void => {
    if (done) return;
    done = true;
    watches.open.delete(finish);
    // An 'error' event sets the call's status and ends it (grpc-js).
    if (err) call.emit('error', toServiceError(err, 'WatchJob'));
    else call.end();
  };
  watches.open.add(finish);
  call.on('cancelled', () => finish());
  const reasonOf = async (jobId: string): Promise<string> => {
    const job = (await bus.getJob(jobId)) as StoredJob | null;
    return job?.error ?? job?.reason ?? '';
  };
  const run = async (): Promise<void> => {
    await getJob(bus, id);
    let after: string | undefined = call.request.afterEventId || undefined;
    for (;;) {
      if (done || watches.closed) return;
      const events = await bus.readEvents(id, {
        ...(after !== undefined ? { after } : {}),
        count: 500,
        blockMs,
      });
      if (done || watches.closed) return;
      for (const { id: eventId, event } of events) {
        after = eventId;
        const final = isFinalStateEvent(event);
        const reason = final ? await reasonOf(id) : '';
        await writeMessage(call, toWatchResponse(eventId, event, reason));
        if (final) return;
      }
      if (events.length === 0) {
        // The final state event may have been trimmed from the stream: look at the record.
        const job = await bus.getJob(id);
        if (!job || isTerminalState(job.state)) return;
      }
    }
  };
  run().then(
    () => finish(),
    (err: unknown) => finish(toStatusError(err, 'WatchJob', ctx.log)),
  );
}

function isFinalStateEvent(e: JobEventRecord): boolean {
  const to = e['to'];
  return e.type === 'state' && (to === 'completed' || to === 'failed' || to === 'cancelled');
}
