// JobService over real gRPC against a coordinator with its in-process bus and no workers:
// validation errors with their status codes, the job record, watching (history first, then
// live, ending at a final state), cancelling, health, and the bus served to workers.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteBus } from '@spinmesh/bus';
import { JobState, ServiceNames, ServingStatus } from '@spinmesh/proto';
import type { CoordinatorServer } from '../src/server.js';
import {
  cancel,
  coordinator,
  failure,
  getJob,
  healthOf,
  jobClient,
  submit,
  watch,
} from './helpers.js';

const spec = {
  name: 'bas',
  seed: 3,
  network: { rbm: { visible: 16, hidden: 16 } },
  data: { kind: 'bas', size: 4 },
  epochs: 10,
  workers: 2,
  train: { batchSize: 30, negative: 'pcd', chains: 20 },
};

let server: CoordinatorServer;
let client: ReturnType<typeof jobClient>;

beforeAll(async () => {
  server = await coordinator({ clusterSecret: 'sesame' });
  client = jobClient(server.address);
});

afterAll(async () => {
  client.close();
  await server.close();
});

describe('JobService', () => {
  it.each([
    ['name: [unclosed', /^spec is not valid YAML or JSON/],
    [{ ...spec, epochs: 0 }, /^spec\.epochs must be an integer/],
    [{ ...spec, train: { ...spec.train, statistics: 'means' } }, /^spec\.train\.statistics /],
    [
      { ...spec, workers: 40 },
      /^spec\.workers cannot split this network into 40 shards: .* \(at most 16 for this network\)$/,
    ],
    [{ ...spec, colour: 'red' }, /^spec\.colour is not a known field/],
  ])('refuses %j with INVALID_ARGUMENT naming the field, storing nothing', async (bad, message) => {
    const err = await failure(submit(client, bad));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(message);
    expect((await server.bus.listJobs()).jobs).toHaveLength(0);
  });

  it('answers NOT_FOUND, INVALID_ARGUMENT and ALREADY_EXISTS for bad ids', async () => {
    const nf = await failure(getJob(client, 'nope'));
    expect(nf.code).toBe(grpc.status.NOT_FOUND);
    expect(nf.details).toBe("job 'nope' not found");
    expect((await failure(getJob(client, ''))).code).toBe(grpc.status.INVALID_ARGUMENT);
    const bad = await failure(submit(client, spec, 'no spaces'));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^job_id must be 1-128 characters/);
    await submit(client, spec, 'twice');
    const dup = await failure(submit(client, spec, 'twice'));
    expect(dup.code).toBe(grpc.status.ALREADY_EXISTS);
    const watchErr = (await watch(client, 'nope')).error;
    expect(watchErr?.code).toBe(grpc.status.NOT_FOUND);
    const cancelErr = await failure(cancel(client, 'nope'));
    expect(cancelErr.code).toBe(grpc.status.NOT_FOUND);
  });

  it('queues a job, says it waits for workers, and cancels it', async () => {
    const job = await submit(client, spec);
    expect(job.state).toBe(JobState.JOB_STATE_QUEUED);
    expect(job.workers).toBe(2);
    expect(job.progress?.totalSteps).toBe(10);
    expect(JSON.parse(job.specJson)).toMatchObject({
      workers: 2,
      staleness: 0,
      train: { statistics: 'samples' },
    });

    // A watcher sees the creation, then the wait for workers (the coordinator has none).
    const early = await watch(client, job.jobId, (es) =>
      es.some((e) => e.workers?.kind === 'waiting'),
    );
    expect(early.events[0]!.state).toEqual({
      from: JobState.JOB_STATE_UNSPECIFIED,
      to: JobState.JOB_STATE_QUEUED,
      reason: '',
    });
    const waiting = early.events.find((e) => e.workers)!.workers!;
    expect(waiting).toMatchObject({ kind: 'waiting', needed: 2, available: 0 });
    // First come, first served: the job 'twice' of the test above is ahead of it in the queue.
    expect(waiting.message).toBe(
      'waiting for 2 idle live workers (0 available) behind job twice, first in the queue',
    );
    const head = await watch(client, 'twice', (es) => es.some((e) => e.workers));
    expect(head.events.find((e) => e.workers)!.workers!.message).toBe(
      'waiting for 2 idle live workers (0 available)',
    );

    const live = watch(client, job.jobId);
    const cancelled = await cancel(client, job.jobId);
    expect(cancelled.state).toBe(JobState.JOB_STATE_CANCELLED);
    const { events, error } = await live;
    expect(error).toBeNull();
    expect(events.at(-1)!.state).toEqual({
      from: JobState.JOB_STATE_QUEUED,
      to: JobState.JOB_STATE_CANCELLED,
      reason: 'cancelled by a CancelJob call',
    });

    // A late watcher gets the whole history, then the stream ends; ids resume a watch.
    const late = await watch(client, job.jobId);
    expect(late.events.map((e) => e.eventId)).toEqual(events.map((e) => e.eventId));
    const resumed = await watch(client, job.jobId, undefined, events[0]!.eventId);
    expect(resumed.events.map((e) => e.eventId)).toEqual(events.slice(1).map((e) => e.eventId));
    expect(JSON.parse(late.events[0]!.json)).toMatchObject({ type: 'state', to: 'queued' });

    const again = await failure(cancel(client, job.jobId));
    expect(again.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(again.details).toMatch(/is cancelled already/);
    expect((await getJob(client, job.jobId)).state).toBe(JobState.JOB_STATE_CANCELLED);
  });

  it('serves the health protocol and its bus to callers with the cluster secret only', async () => {
    expect(await healthOf(server.address, ServiceNames.jobs)).toBe(ServingStatus.SERVING);
    expect(await healthOf(server.address, ServiceNames.bus)).toBe(ServingStatus.SERVING);

    const bus = new RemoteBus({ address: server.address, secret: 'sesame' });
    await bus.ping();
    expect((await bus.listJobs()).jobs.length).toBeGreaterThan(0);
    await bus.close();
    const wrong = new RemoteBus({ address: server.address, secret: 'open' });
    await expect(wrong.ping()).rejects.toThrow(/secret/);
    await wrong.close();
  });
});
