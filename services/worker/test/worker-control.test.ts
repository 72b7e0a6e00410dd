// WorkerControl in one process (a Worker on real gRPC, an in-process MemoryBus): the answers to
// good and bad calls, the cluster secret, health, a one-shard job against the single-process
// trainer, and the failures a worker reports instead of crashing.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBus } from '@spinmesh/bus';
import {
  HealthClient,
  ServiceNames,
  ServingStatus,
  WorkerState,
  type ShardAssignment,
} from '@spinmesh/proto';
import { ShardEvents, checkpointSlots, exportSlot, moveSlot } from '@spinmesh/cluster';

import { Worker, silentLogger } from '../src/index.js';
import {
  Control,
  assembleFromBus,
  assignments,
  basSpec,
  compare,
  createJob,
  events,
  portable,
  singleProcessReference,
  until,
  waitDone,
} from './cluster-helpers.js';

const SECRET = 'in-process';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startWorker(
  id = 'w1',
  bus = new MemoryBus(),
): Promise<{ w: Worker; bus: MemoryBus; control: Control }> {
  const w = await Worker.start({
    id,
    listen: '127.0.0.1:0',
    bus,
    kernels: portable,
    log: silentLogger(),
    clusterSecret: SECRET,
    heartbeatMs: 100,
    progressMs: 50,
  });
  const control = new Control(SECRET);
  cleanups.push(
    () => w.shutdown(),
    () => control.close(),
  );
  return { w, bus, control };
}

/** A MemoryBus whose writes of shard 0's checkpoint slots wait while held, or fail when told. */
class GatedBus extends MemoryBus {
  held: (() => void)[] = [];
  holding = false;
  failing: string | null = null;

  override async putCheckpoint(
    jobId: string,
    shardId: number,
    step: number,
    data: Uint8Array,
    generation?: number,
  ): Promise<boolean> {
    if (checkpointSlots(0).includes(shardId)) {
      if (this.failing !== null) throw new Error(this.failing);
      if (this.holding) await new Promise<void>((r) => this.held.push(r));
    }
    return super.putCheckpoint(jobId, shardId, step, data, generation);
  }

  release(): void {
    this.holding = false;
    for (const r of this.held.splice(0)) r();
  }
}

async function code(p: Promise<unknown>): Promise<{ code: number; details: string } | null> {
  return p.then(
    () => null,
    (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
  );
}

describe('Worker (in process)', () => {
  it('registers with a TTL, serves health, and leaves the membership on shutdown', async () => {
    const { w, bus } = await startWorker('w-reg');
    const [info] = await bus.listWorkers();
    expect(info).toMatchObject({ id: 'w-reg', address: w.address, cores: 1 });
    expect(info!.meta).toMatchObject({ service: 'worker', pid: process.pid });
    const health = new HealthClient(w.address, grpc.credentials.createInsecure());
    cleanups.push(() => health.close());
    for (const service of ['', ServiceNames.peer, ServiceNames.workerControl]) {
      const r = await new Promise<{ status: ServingStatus }>((resolve, reject) =>
        health.check({ service }, (e, res) => (e ? reject(e) : resolve(res))),
      );
      expect(r.status).toBe(ServingStatus.SERVING);
    }
    await w.shutdown();
    expect(await bus.listWorkers()).toEqual([]);
  });

  it('refuses callers without the cluster secret', async () => {
    const { w } = await startWorker();
    const stranger = new Control('wrong');
    cleanups.push(() => stranger.close());
    const err = await code(stranger.status(w.address));
    expect(err?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('will not start beyond loopback without a secret, and starts there with one', async () => {
    const bus = new MemoryBus();
    const opts = { id: 'wide', bus, kernels: portable, log: silentLogger() };
    for (const listen of ['0.0.0.0:0', '[::]:0'])
      await expect(Worker.start({ ...opts, listen })).rejects.toThrow(
        /listens beyond loopback .* needs a cluster secret/,
      );
    expect((await bus.listWorkers()).length).toBe(0);
    const w = await Worker.start({ ...opts, listen: '0.0.0.0:0', clusterSecret: SECRET });
    cleanups.push(() => w.shutdown());
    expect((await bus.listWorkers()).map((i) => i.id)).toEqual(['wide']);
  });

  it('refuses malformed assignments with INVALID_ARGUMENT naming the field', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'j', basSpec(1), 2);
    const [good] = assignments(job, [w.address, '127.0.0.1:1'], 1, { checkpointEvery: 0 });
    const cases: [Partial<ShardAssignment>, RegExp][] = [
      [{ jobId: 'no good' }, /^assignment.job_id must be/],
      [{ generation: 0 }, /^assignment.generation must be >= 1/],
      [{ shardId: 5 }, /^assignment.shard_id must be < shard_count 2 \(got 5\)/],
      [{ units: [] }, /^assignment.units must list the units/],
      [{ units: [{ layer: 0, start: 3, end: 3 }] }, /^assignment.units\[0\].end must be > start/],
      [
        { units: [{ layer: 9, start: 0, end: 3 }] },
        /^assignment.units\[0\].layer must be a layer index/,
      ],
      [
        { peers: [{ shardId: 1, address: 'nowhere', units: [] }] },
        /^assignment.peers\[0\].address must be host:port/,
      ],
      [
        { peers: [{ shardId: 0, address: 'a:1', units: [] }] },
        /^assignment.peers\[0\].shard_id is this shard/,
      ],
    ];
    for (const [patch, msg] of cases) {
      const err = await code(control.assign(w.address, { ...good!, ...patch }));
      expect(err?.code, JSON.stringify(patch)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err?.details).toMatch(msg);
    }
    expect((await control.status(w.address)).state).toBe(WorkerState.WORKER_STATE_IDLE);
  });

  it('trains a one-shard job to the single-process result, then holds it until Stop', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'solo', basSpec(10), 1);
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 7 });
    expect(await control.assign(w.address, a!)).toEqual({
      workerId: 'w1',
      jobId: 'solo',
      generation: 1,
    });
    // The same assignment again is accepted as it is; another one of the same generation is not.
    expect((await control.assign(w.address, a!)).generation).toBe(1);
    const [st] = await waitDone(control, [w.address], 60_000);
    expect(st).toMatchObject({ jobId: 'solo', step: job.totalSteps, checkpointStep: 28 });
    expect(compare(await assembleFromBus(bus, job), singleProcessReference(job))).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect((await bus.getCheckpoint('solo', exportSlot(0)))!.step).toBe(job.totalSteps);
    const types = (await events(bus, 'solo')).map((e) => e.event.type);
    expect(types).toContain(ShardEvents.checkpoint);
    expect(types).toContain(ShardEvents.done);

    const other = await code(control.assign(w.address, { ...a!, jobId: 'other' }));
    expect(other?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(other?.details).toMatch(/holds job 'solo'.*stop it first/);
    const same = await code(control.assign(w.address, { ...a!, checkpointEverySteps: 3 }));
    expect(same?.code).toBe(grpc.status.FAILED_PRECONDITION);
    // Stopping another job is a no-op that tells the current state; stopping this one makes the worker idle.
    expect(await control.stop(w.address, 'other', true)).toEqual({
      step: job.totalSteps,
      checkpointStep: 0,
    });
    expect(await control.stop(w.address, 'solo', true)).toEqual({
      step: job.totalSteps,
      checkpointStep: 28,
    });
    expect((await control.status(w.address)).state).toBe(WorkerState.WORKER_STATE_IDLE);
  });

  it('checkpoints a step asked for (CheckpointAt) to the move slot, from which a run restores', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'mv', basSpec(100_000), 1);
    // no periodic checkpoints: the move's is the only one
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 0 });
    const req = (step: number, generation = 1, holdMs = 60_000) => ({
      jobId: 'mv',
      generation,
      step,
      holdMs,
    });
    const idle = await code(control.checkpointAt(w.address, req(10)));
    expect(idle?.code).toBe(grpc.status.FAILED_PRECONDITION);
    await control.assign(w.address, a!);
    await until(async () => (await control.status(w.address)).step > 10, 60_000, 'steps');
    // a step the shard has passed, another generation, another job
    expect(await control.checkpointAt(w.address, req(1))).toMatchObject({ accepted: false });
    for (const bad of [req(10 ** 6, 2), { ...req(10 ** 6), jobId: 'other' }]) {
      const err = await code(control.checkpointAt(w.address, bad));
      expect(err?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err?.details).toBe('CheckpointAt: this worker runs another job or generation');
    }
    // ahead of the shard: accepted (a shard fast enough to pass it first refuses; ask further)
    let T = 0;
    for (let ahead = 2000; T === 0; ahead *= 2) {
      const step = (await control.status(w.address)).step + ahead;
      const r = await control.checkpointAt(w.address, req(step));
      if (r.accepted) T = step;
      else expect(r.step).toBeGreaterThanOrEqual(step - 1); // refused only once it is there
    }
    const moved = async () =>
      (await bus.listCheckpoints('mv')).find((c) => c.shardId === moveSlot(0));
    await until(async () => (await moved())?.step === T, 60_000, `the checkpoint of step ${T}`);
    expect((await moved())!.generation).toBe(1);
    // It holds there (the steps past a move's step would be redone): still at T a while later,
    // where it would otherwise have drawn thousands of steps.
    expect((await control.status(w.address)).step).toBe(T);
    await new Promise((r) => setTimeout(r, 300));
    expect((await control.status(w.address)).step).toBe(T);
    // A request for a later step ends the hold.
    expect(await control.checkpointAt(w.address, req(T + 500, 1, 0))).toEqual({
      accepted: true,
      step: T,
    });
    await until(async () => (await moved())?.step === T + 500, 60_000, 'the later checkpoint');
    await until(
      async () => (await control.status(w.address)).step > T + 500,
      60_000,
      'steps past it (no hold asked)',
    );
    const periodic = (await bus.listCheckpoints('mv')).filter((c) =>
      checkpointSlots(0).includes(c.shardId),
    );
    expect(periodic).toEqual([]);
    // a new generation of the shard restores it and draws on
    await control.assign(w.address, { ...a!, generation: 2, restoreFromStep: T + 500 });
    await until(
      async () => {
        const st = await control.status(w.address);
        return st.generation === 2 && st.step > T + 500;
      },
      60_000,
      'steps past the restored one',
    );
    expect((await control.status(w.address)).error).toBe('');
  });

  it('rejects an older generation, and reports a job it cannot load as FAILED', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'g', basSpec(1000), 1);
    const [a] = assignments(job, [w.address], 3, { checkpointEvery: 0 });
    await control.assign(w.address, a!);
    const old = await code(control.assign(w.address, { ...a!, generation: 2 }));
    expect(old?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(old?.details).toMatch(/older than the generation 3/);
    // A newer generation asks for a checkpoint that does not exist: FAILED, with the reason.
    await control.assign(w.address, { ...a!, generation: 4, restoreFromStep: 50 });
    await until(
      async () => (await control.status(w.address)).state === WorkerState.WORKER_STATE_FAILED,
      60_000,
      'FAILED',
    );
    expect((await control.status(w.address)).error).toMatch(
      /restore_from_step 50: shard 0 has no checkpoint of that step on the bus \(it has none\)/,
    );
    await control.stop(w.address, 'g', false);

    await control.assign(w.address, { ...a!, jobId: 'missing', generation: 1 });
    await until(
      async () => (await control.status(w.address)).state === WorkerState.WORKER_STATE_FAILED,
      60_000,
      'FAILED',
    );
    expect((await control.status(w.address)).error).toBe("job 'missing' is not on the bus");
    const failed = (await events(bus, 'g')).filter((e) => e.event.type === ShardEvents.failed);
    expect(failed).toHaveLength(1);
  });

  it('ends a run quietly when the bus refuses its checkpoint for a newer generation', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'z', basSpec(100_000), 1);
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 20 });
    await bus.setAssignment('z', {
      generation: 1,
      shards: [{ shardId: 0, workerId: 'w1', units: a!.units }],
    });
    await control.assign(w.address, a!);
    await until(async () => (await bus.listCheckpoints('z')).length > 0, 60_000, 'a checkpoint');
    // The coordinator moves the shard on (it took this worker for dead): generation 2.
    expect(await bus.reassignShard('z', 0, 'w1', 'w2')).toBe(true);
    const fenced = await bus.listCheckpoints('z');
    await until(
      async () => (await control.status(w.address)).state === WorkerState.WORKER_STATE_IDLE,
      60_000,
      'IDLE',
    );
    const st = await control.status(w.address);
    expect(st.error).toBe('');
    expect(st.step).toBeGreaterThan(fenced[0]!.step); // it did try to write a later one
    expect(await bus.listCheckpoints('z')).toEqual(fenced);
    expect(fenced.every((c) => c.generation === 1)).toBe(true);
    const types = (await events(bus, 'z')).map((e) => e.event.type);
    expect(types).not.toContain(ShardEvents.failed);
    expect((await bus.getJob('z'))!.state).toBe('queued'); // the job itself is untouched
    // The ended run holds nothing: another job may have the worker at once, without a Stop.
    const next = await createJob(bus, 'after', basSpec(10), 1);
    const [b] = assignments(next, [w.address], 1, { checkpointEvery: 0 });
    expect((await control.assign(w.address, b!)).jobId).toBe('after');
    const [done] = await waitDone(control, [w.address], 60_000);
    expect(done).toMatchObject({ jobId: 'after', step: next.totalSteps });
  });

  it('stops a running shard without a checkpoint at once', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'long', basSpec(100_000), 1);
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 0 });
    await control.assign(w.address, a!);
    await until(async () => (await control.status(w.address)).step > 10, 60_000, 'steps');
    const t0 = Date.now();
    const r = await control.stop(w.address, 'long', false);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(r.step).toBeGreaterThan(10);
    expect(r.checkpointStep).toBe(0);
    expect(await bus.listCheckpoints('long')).toEqual([]);
  });

  it('stops with a checkpoint at the next step boundary when there are no periodic ones', async () => {
    const { w, bus, control } = await startWorker();
    const job = await createJob(bus, 'b', basSpec(100_000), 1);
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 0 });
    await control.assign(w.address, a!);
    await until(async () => (await control.status(w.address)).step > 10, 60_000, 'steps');
    const r = await control.stop(w.address, 'b', true);
    expect(r.checkpointStep).toBe(r.step);
    const list = await bus.listCheckpoints('b');
    expect(list.map((c) => c.step)).toEqual([r.step]);
  });

  it('draws on while a checkpoint is written, and fails the run when a write fails', async () => {
    const bus = new GatedBus();
    bus.holding = true;
    const { w, control } = await startWorker('w1', bus);
    const job = await createJob(bus, 'bg', basSpec(100_000), 1);
    const [a] = assignments(job, [w.address], 1, { checkpointEvery: 20 });
    await control.assign(w.address, a!);
    await until(() => bus.held.length > 0, 60_000, 'the write of step 20 to begin');
    // Held on the bus, the checkpoint of step 20 does not hold the shard up: it draws on to the
    // next checkpoint, whose write waits for the first.
    await until(async () => (await control.status(w.address)).step >= 40, 60_000, 'step 40');
    expect(bus.held).toHaveLength(1);
    expect(await bus.listCheckpoints('bg')).toEqual([]);
    expect((await control.status(w.address)).checkpointStep).toBe(0);
    bus.release();
    await until(
      async () => (await control.status(w.address)).checkpointStep >= 40,
      60_000,
      'the checkpoints of steps 20 and 40',
    );
    bus.failing = 'the bus is out of memory';
    await until(
      async () => (await control.status(w.address)).state === WorkerState.WORKER_STATE_FAILED,
      60_000,
      'FAILED',
    );
    expect((await control.status(w.address)).error).toMatch(/the bus is out of memory/);
  });
});
