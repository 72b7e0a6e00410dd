// Real worker processes (node services/worker/dist/main.js) on real gRPC, driven through
// WorkerControl by this test playing the coordinator, with the state bus (a MemoryBus) served
// over gRPC from this process: a sharded job equals the in-process references bit for bit, a
// SIGKILLed worker is replaced and the job rolled back to the newest common checkpoint with the
// same final model, and SIGTERM drains a worker.
import { execFileSync } from 'node:child_process';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WorkerState } from '@spinmesh/proto';
import { commonCheckpointStep, checkpointSlots, ShardEvents } from '@spinmesh/cluster';

import {
  Control,
  WorkerProcs,
  assembleFromBus,
  assignments,
  basSpec,
  compare,
  createJob,
  events,
  loopbackReference,
  root,
  serveMemoryBus,
  singleProcessReference,
  until,
  waitCheckpoint,
  waitDone,
  type ServedBus,
  type WorkerProc,
  portOpen,
} from './cluster-helpers.js';

const SECRET = 'test-secret';
let served: ServedBus;
let procs: WorkerProcs;
let control: Control;

beforeAll(async () => {
  // The children run the compiled service: build it (incremental; a no-op when up to date).
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-b', 'services/worker'], {
    cwd: root,
    stdio: 'inherit',
  });
  served = await serveMemoryBus(SECRET);
  procs = new WorkerProcs({
    SPINMESH_BUS_ADDRESS: served.address,
    SPINMESH_CLUSTER_SECRET: SECRET,
  });
  control = new Control(SECRET);
});

afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') {
    for (const w of procs.all) {
      console.error(`--- ${w.id} ---\n${w.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      console.error(w.stderr.join(''));
    }
  }
  await procs.killAll();
});

afterAll(async () => {
  control?.close();
  await procs?.killAll();
  await served?.close();
});

/** SIGTERMs the workers and checks that each drains, exits 0 and frees its port. */
async function terminate(ws: WorkerProc[]): Promise<void> {
  for (const w of ws) w.child.kill('SIGTERM');
  const codes = await Promise.all(ws.map((w) => w.exited));
  expect(codes.map((c) => c.code)).toEqual(ws.map(() => 0));
  for (const w of ws) expect(await portOpen(w.address)).toBe(false);
}

describe('worker processes', () => {
  for (const K of [2, 3]) {
    it(`train BAS 4x4 (RBM 16-16) over ${K} processes at staleness 0: bit for bit the single-process result`, async () => {
      const ws = await Promise.all(Array.from({ length: K }, (_, i) => procs.start(`w${K}-${i}`)));
      const job = await createJob(served.bus, `bas-k${K}`, basSpec(20), K);
      const as = assignments(
        job,
        ws.map((w) => w.address),
        1,
        { checkpointEvery: 15 },
      );
      const t0 = Date.now();
      const replies = await Promise.all(as.map((a, s) => control.assign(ws[s]!.address, a)));
      expect(replies.map((r) => r.workerId)).toEqual(ws.map((w) => w.id));
      const statuses = await waitDone(
        control,
        ws.map((w) => w.address),
        30_000,
      );
      const took = Date.now() - t0;
      const got = await assembleFromBus(served.bus, job);
      const loop = loopbackReference(job);
      const single = singleProcessReference(job);
      expect(compare(got, loop)).toEqual({ identical: true, maxDiff: 0 });
      expect(compare(got, single)).toEqual({ identical: true, maxDiff: 0 });
      // Every link went over the peers' framed streams, not gRPC.
      for (const w of ws) {
        const open = w.logs.filter((l) => l.msg === 'peer link open');
        expect(open.length).toBeGreaterThanOrEqual(K - 1);
        expect(new Set(open.map((l) => l['via']))).toEqual(new Set(['stream']));
      }

      // Counters: lockstep means every spin used was of the same step.
      for (const st of statuses) {
        expect(st.step).toBe(job.totalSteps);
        expect(st.totalSteps).toBe(job.totalSteps);
        expect(st.staleness!.count).toBeGreaterThan(0);
        expect(st.staleness!.maxSteps).toBe(0);
        expect(st.framesSent).toBeGreaterThan(0);
        expect(st.framesReceived).toBeGreaterThanOrEqual(st.framesSent / (K - 1) - 1);
        expect(st.peers.map((p) => p.shardId).length).toBe(K - 1);
        expect(st.checkpointStep).toBe(Math.floor((job.totalSteps - 1) / 15) * 15);
        // Where the time went: some in the trainer, some waiting (lockstep: every stage needs
        // the peers' spins), the two within the run's wall time, which has stopped (done).
        expect(st.computeSeconds).toBeGreaterThan(0);
        expect(st.waitSeconds).toBeGreaterThan(0);
        expect(st.computeSeconds + st.waitSeconds).toBeLessThanOrEqual(st.runSeconds);
        expect(st.runSeconds).toBeLessThan(took / 1000);
      }
      const sent = statuses.reduce((n, s) => n + s.framesSent, 0);
      const received = statuses.reduce((n, s) => n + s.framesReceived, 0);
      expect(received).toBe(sent);
      const es = await events(served.bus, job.id);
      expect(es.filter((e) => e.event.type === ShardEvents.done)).toHaveLength(K);
      expect(es.some((e) => e.event.type === ShardEvents.progress)).toBe(true);
      const ms = (k: 'computeSeconds' | 'waitSeconds' | 'runSeconds'): string =>
        statuses.map((x) => (x[k] * 1000).toFixed(0)).join('/');
      console.log(
        `K=${K}: ${job.totalSteps} steps in ${took} ms; frames ${sent}, bytes ${statuses.reduce((n, s) => n + s.bytesSent, 0)}; ` +
          `ms computing ${ms('computeSeconds')}, waiting ${ms('waitSeconds')}, in all ${ms('runSeconds')}`,
      );

      for (const w of ws) {
        const r = await control.stop(w.address, job.id, false);
        expect(r.step).toBe(job.totalSteps);
        expect((await control.status(w.address)).state).toBe(WorkerState.WORKER_STATE_IDLE);
      }
      await terminate(ws);
      expect(await served.bus.listWorkers()).toEqual([]);
      expect(await served.bus.deleteJob(job.id)).toBe(true);
    });
  }

  it('lets a shard run ahead of a slowed peer within the staleness bound', async () => {
    // SPINMESH_DEBUG_SLOWDOWN=4: shard 1 stays busy 3x as long again as it worked.
    const ws = [
      await procs.start('s-0'),
      await procs.start('s-1', { SPINMESH_DEBUG_SLOWDOWN: '4' }),
    ];
    expect(ws[1]!.logs.find((l) => l.msg === 'starting')?.['slowdown']).toBe(4);
    const job = await createJob(served.bus, 'bas-stale', basSpec(30), 2);
    const addresses = ws.map((w) => w.address);
    const as = assignments(job, addresses, 1, { staleness: 2, checkpointEvery: 10 });
    await Promise.all(as.map((a, s) => control.assign(addresses[s]!, a)));
    const statuses = await waitDone(control, addresses, 30_000);
    for (const st of statuses) {
      expect(st.staleness!.count).toBeGreaterThan(0);
      expect(st.staleness!.maxSteps).toBeLessThanOrEqual(2);
      expect(st.staleness!.buckets.at(-1)!.count).toBe(st.staleness!.count);
    }
    // Every parameter is covered once and the lateral-free model is whole.
    const got = await assembleFromBus(served.bus, job);
    expect(got.parameters().every((p) => p.data.every(Number.isFinite))).toBe(true);
    await Promise.all(addresses.map((a) => control.stop(a, job.id, false)));
    await terminate(ws);
    await served.bus.deleteJob(job.id);
  });

  it('recovers from a SIGKILLed worker: new generation from the newest common checkpoint, same final model', async () => {
    const K = 3;
    const ws = await Promise.all(Array.from({ length: K }, (_, i) => procs.start(`r-${i}`)));
    const job = await createJob(served.bus, 'bas-recover', basSpec(120), K);
    const every = 10;
    const gen1 = assignments(
      job,
      ws.map((w) => w.address),
      1,
      { checkpointEvery: every },
    );
    await Promise.all(gen1.map((a, s) => control.assign(ws[s]!.address, a)));
    await waitCheckpoint(served.bus, job.id, 1, 3 * every, 30_000);
    ws[1]!.child.kill('SIGKILL');
    expect((await ws[1]!.exited).signal).toBe('SIGKILL');
    const before = await Promise.all([ws[0]!, ws[2]!].map((w) => control.status(w.address)));
    expect(before.every((s) => s.step < job.totalSteps)).toBe(true);

    const replacement = await procs.start('r-new');
    const T = commonCheckpointStep(await served.bus.listCheckpoints(job.id), K);
    expect(T).toBeGreaterThanOrEqual(3 * every);
    expect(T % every).toBe(0);
    const addresses = [ws[0]!.address, replacement.address, ws[2]!.address];
    const gen2 = assignments(job, addresses, 2, { checkpointEvery: every, restoreFrom: T });
    await Promise.all(gen2.map((a, s) => control.assign(addresses[s]!, a)));
    const statuses = await waitDone(control, addresses, 40_000);
    expect(statuses.map((s) => s.generation)).toEqual([2, 2, 2]);

    const got = await assembleFromBus(served.bus, job);
    expect(compare(got, loopbackReference(job))).toEqual({ identical: true, maxDiff: 0 });
    expect(compare(got, singleProcessReference(job))).toEqual({ identical: true, maxDiff: 0 });
    console.log(
      `recovery: killed shard 1 after step ${before.map((s) => s.step).join('/')}, restored all from ${T}`,
    );

    await Promise.all(addresses.map((a) => control.stop(a, job.id, false)));
    await terminate([ws[0]!, replacement, ws[2]!]);
    expect(await served.bus.listWorkers()).toEqual([]);
    await served.bus.deleteJob(job.id);
  });

  it('drains on SIGTERM: finishes its checkpoint interval, checkpoints, leaves the membership, exits 0', async () => {
    const ws = await Promise.all([procs.start('t-0'), procs.start('t-1')]);
    const job = await createJob(served.bus, 'bas-term', basSpec(200), 2);
    const every = 20;
    const as = assignments(
      job,
      ws.map((w) => w.address),
      1,
      { checkpointEvery: every },
    );
    await Promise.all(as.map((a, s) => control.assign(ws[s]!.address, a)));
    await until(
      async () => (await control.status(ws[1]!.address)).step > 2 * every + 5,
      30_000,
      'shard 1 past its second checkpoint',
    );
    ws[1]!.child.kill('SIGTERM');
    const exit = await ws[1]!.exited;
    expect(exit.code).toBe(0);
    expect((await served.bus.listWorkers()).map((w) => w.id)).toEqual(['t-0']);
    const logs = ws[1]!.logs;
    const stopped = logs.find((l) => l.msg === 'shard stopped');
    expect(stopped).toBeDefined();
    const ckpt = Number(stopped!['checkpointStep']);
    expect(ckpt).toBeGreaterThan(2 * every);
    expect(ckpt % every).toBe(0);
    // Its checkpoint is on the bus, and the peer, which went on with it, has the same step.
    const list = await served.bus.listCheckpoints(job.id);
    const has = (shard: number): number[] =>
      list.filter((c) => checkpointSlots(shard).includes(c.shardId)).map((c) => c.step);
    expect(has(1)).toContain(ckpt);
    expect(has(0)).toContain(ckpt);
    expect(commonCheckpointStep(list, 2)).toBe(ckpt);
    expect(logs.at(-1)!.msg).toBe('stopped');

    // The other worker is blocked on the missing peer; a Stop without checkpoint is immediate.
    const r = await control.stop(ws[0]!.address, job.id, false);
    expect(r.step).toBeGreaterThanOrEqual(ckpt);
    await terminate([ws[0]!]);
    expect(await served.bus.listWorkers()).toEqual([]);
    await served.bus.deleteJob(job.id);
  });
});
