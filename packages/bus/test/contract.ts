// The contract of a Bus, run against every implementation (memory.test.ts, redis.test.ts), so
// that the two cannot drift apart.
import { afterEach, describe, expect, it } from 'vitest';
import {
  BusClosedError,
  IllegalTransitionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
  type Assignment,
  type Bus,
  type JobEvent,
  type WorkerInfo,
} from '@spinmesh/bus';

/**
 * Defines the contract suite.
 * @param makeBus - a new client of the state named `prefix`: two clients made with the same
 *   prefix share their state (as two processes on one Redis do); different prefixes never do.
 * @param cleanup - removes every trace of `prefix` (run after each test for each prefix it used).
 */
export function runBusContract(
  name: string,
  makeBus: (prefix: string) => Promise<Bus>,
  cleanup: (prefix: string) => Promise<void>,
): void {
  describe(`Bus contract: ${name}`, () => {
    const opened: Bus[] = [];
    const prefixes: string[] = [];
    let counter = 0;

    /** A fresh prefix for this test, and its first client. */
    async function fresh(): Promise<{ prefix: string; bus: Bus }> {
      const prefix = `c${process.pid}-${Date.now().toString(36)}-${++counter}`;
      prefixes.push(prefix);
      return { prefix, bus: await client(prefix) };
    }

    async function client(prefix: string): Promise<Bus> {
      const bus = await makeBus(prefix);
      opened.push(bus);
      return bus;
    }

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
      for (const p of prefixes.splice(0)) await cleanup(p);
    });

    const worker = (id: string, extra: Partial<WorkerInfo> = {}): WorkerInfo => ({
      id,
      address: `127.0.0.1:${5000 + id.length}`,
      cores: 2,
      startedAt: 1_700_000_000_000,
      meta: { version: '0.1.0', gpu: false, tags: ['a', 'b'] },
      ...extra,
    });

    const assignment = (generation: number, workers: string[]): Assignment => ({
      generation,
      shards: workers.map((workerId, shardId) => ({
        shardId,
        workerId,
        units: [
          { layer: 0, start: shardId * 10, end: shardId * 10 + 10 },
          { layer: 1, start: shardId * 5, end: shardId * 5 + 5 },
        ],
      })),
    });

    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

    describe('membership', () => {
      it('registers, lists (sorted by id), heartbeats and removes workers', async () => {
        const { bus } = await fresh();
        expect(await bus.listWorkers()).toEqual([]);
        await bus.registerWorker(worker('w2'), 10_000);
        await bus.registerWorker(worker('w1'), 10_000);
        expect(await bus.listWorkers()).toEqual([worker('w1'), worker('w2')]);
        expect(await bus.heartbeat('w1', 10_000)).toBe(true);
        expect(await bus.heartbeat('nobody', 10_000)).toBe(false);
        // A restarted worker registers again: the new announcement replaces the old.
        await bus.registerWorker(worker('w1', { address: '10.0.0.7:7000', cores: 8 }), 10_000);
        expect((await bus.listWorkers())[0]).toEqual(
          worker('w1', { address: '10.0.0.7:7000', cores: 8 }),
        );
        expect(await bus.removeWorker('w1')).toBe(true);
        expect(await bus.removeWorker('w1')).toBe(false);
        expect((await bus.listWorkers()).map((w) => w.id)).toEqual(['w2']);
      });

      it('forgets a worker whose TTL ran out, unless heartbeats extend it', async () => {
        const { prefix, bus } = await fresh();
        const other = await client(prefix);
        // TTLs far apart, so that a loaded machine's pauses cannot reorder what the test sees:
        // 'beating' is extended long before its first TTL runs out, and is checked after it.
        const t0 = Date.now();
        await bus.registerWorker(worker('short'), 150);
        await bus.registerWorker(worker('beating'), 3_000);
        await bus.registerWorker(worker('long'), 600_000);
        expect(await other.heartbeat('beating', 600_000)).toBe(true);
        // Wait for 'short' to expire, and for the first TTL of 'beating' to pass.
        for (;;) {
          const ids = (await other.listWorkers()).map((w) => w.id);
          if (!ids.includes('short') && Date.now() - t0 > 3_200) break;
          if (Date.now() - t0 > 60_000) throw new Error(`'short' never expired: ${ids.join(' ')}`);
          await sleep(50);
        }
        expect((await other.listWorkers()).map((w) => w.id)).toEqual(['beating', 'long']);
        expect(await bus.heartbeat('short', 1_000)).toBe(false);
        expect(await bus.removeWorker('short')).toBe(false);
        // An expired worker may come back by registering again.
        await bus.registerWorker(worker('short'), 600_000);
        expect((await other.listWorkers()).map((w) => w.id)).toEqual(['beating', 'long', 'short']);
      });

      it('refuses bad announcements', async () => {
        const { bus } = await fresh();
        await expect(bus.registerWorker(worker('bad:id'), 1000)).rejects.toThrow(
          InvalidArgumentError,
        );
        await expect(bus.registerWorker(worker('w', { address: 'nohost' }), 1000)).rejects.toThrow(
          /info.address must be host:port/,
        );
        await expect(bus.registerWorker(worker('w', { cores: 0 }), 1000)).rejects.toThrow(
          /info.cores/,
        );
        await expect(bus.registerWorker(worker('w'), 0)).rejects.toThrow(/ttlMs/);
        await expect(bus.heartbeat('w', -5)).rejects.toThrow(InvalidArgumentError);
        expect(await bus.listWorkers()).toEqual([]);
      });
    });

    describe('jobs', () => {
      it('creates a queued job, reads it back and refuses a second with the same id', async () => {
        const { bus } = await fresh();
        const before = Date.now();
        const rec = await bus.createJob({
          id: 'job-1',
          spec: { layers: [784, 500], rule: 'cd1', lr: 0.05 },
          note: 'first',
          dropped: null,
        });
        expect(rec).toMatchObject({
          id: 'job-1',
          state: 'queued',
          spec: { layers: [784, 500], rule: 'cd1', lr: 0.05 },
          note: 'first',
        });
        expect(rec).not.toHaveProperty('dropped');
        expect(rec.createdAt).toBeGreaterThanOrEqual(before - 1000);
        expect(rec.updatedAt).toBe(rec.createdAt);
        expect(await bus.getJob('job-1')).toEqual(rec);
        // Fields may be of interface types (no index signature), as generated spec types are.
        interface Spec {
          layers: number[];
          name?: string;
        }
        const spec: Spec = { layers: [4, 3] };
        expect((await bus.createJob({ id: 'typed', spec })).spec).toEqual({ layers: [4, 3] });
        expect(await bus.getJob('job-2')).toBeNull();
        await expect(bus.createJob({ id: 'job-1' })).rejects.toThrow(JobExistsError);
        await expect(bus.createJob({ id: 'job-1' })).rejects.toThrow("job 'job-1' already exists");
      });

      it('refuses bad job ids, reserved fields and values that are not JSON', async () => {
        const { bus } = await fresh();
        await expect(bus.createJob({ id: '' })).rejects.toThrow(/job.id/);
        await expect(bus.createJob({ id: 'a*b' })).rejects.toThrow(InvalidArgumentError);
        await expect(bus.createJob({ id: 'j', state: 'running' })).rejects.toThrow(
          /job.state is set by the bus/,
        );
        await expect(bus.createJob({ id: 'j', x: { y: [1, Number.NaN] } })).rejects.toThrow(
          /job.x.y\[1\] must be a finite number/,
        );
        expect(await bus.getJob('j')).toBeNull();
      });

      it('moves a job through its life cycle with patches, and terminal states are final', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j', spec: { a: 1 }, scratch: true });
        const r1 = await bus.transitionJob('j', ['queued'], 'running', {
          progress: { step: 0 },
          scratch: null,
        });
        expect(r1.ok).toBe(true);
        expect(r1.record).toMatchObject({
          state: 'running',
          progress: { step: 0 },
          spec: { a: 1 },
        });
        expect(r1.record).not.toHaveProperty('scratch');
        expect(r1.record.updatedAt).toBeGreaterThanOrEqual(r1.record.createdAt);

        // Not in an allowed state: no change, the current record comes back.
        const r2 = await bus.transitionJob('j', ['queued'], 'cancelled');
        expect(r2).toEqual({ ok: false, record: r1.record });

        // Back to the queue (e.g. no worker left), then run again and fail.
        expect((await bus.transitionJob('j', ['running'], 'queued')).ok).toBe(true);
        expect((await bus.transitionJob('j', ['queued'], 'running')).ok).toBe(true);
        const r3 = await bus.transitionJob('j', ['queued', 'running'], 'failed', {
          error: 'worker w3 lost and no checkpoint',
        });
        expect(r3.record).toMatchObject({
          state: 'failed',
          error: 'worker w3 lost and no checkpoint',
        });

        // Nothing leaves a terminal state: asking is a programming error...
        await expect(bus.transitionJob('j', ['failed'], 'running')).rejects.toThrow(
          IllegalTransitionError,
        );
        await expect(bus.transitionJob('j', ['failed'], 'running')).rejects.toThrow(
          "job 'j': illegal state transition failed -> running",
        );
        // ...and a legal request from another state finds the job no longer there.
        const r4 = await bus.transitionJob('j', ['running', 'queued'], 'cancelled');
        expect(r4.ok).toBe(false);
        expect(r4.record.state).toBe('failed');
        expect(await bus.getJob('j')).toEqual(r3.record);
      });

      it('checks transition arguments before reading anything', async () => {
        const { bus } = await fresh();
        await expect(bus.transitionJob('nope', ['queued'], 'completed')).rejects.toThrow(
          IllegalTransitionError,
        );
        await expect(bus.transitionJob('nope', [], 'running')).rejects.toThrow(/allowedFrom/);
        await expect(bus.transitionJob('nope', ['queued'], 'running')).rejects.toThrow(
          JobNotFoundError,
        );
        await bus.createJob({ id: 'j' });
        await expect(bus.transitionJob('j', ['queued'], 'running', { state: 'x' })).rejects.toThrow(
          /patch.state/,
        );
        await expect(
          bus.transitionJob('j', ['queued'], 'bogus' as unknown as 'running'),
        ).rejects.toThrow(/to must be one of/);
        expect((await bus.getJob('j'))!.state).toBe('queued');
      });

      it('lets exactly one of several concurrent clients win a transition', async () => {
        const { prefix, bus } = await fresh();
        const clients = [bus, ...(await Promise.all([1, 2, 3, 4, 5].map(() => client(prefix))))];
        for (let j = 0; j < 20; j++) await bus.createJob({ id: `job${j}` });
        for (let j = 0; j < 20; j++) {
          const results = await Promise.all(
            clients.map((c, i) => c.transitionJob(`job${j}`, ['queued'], 'running', { owner: i })),
          );
          const winners = results.flatMap((r, i) => (r.ok ? [i] : []));
          expect(winners).toHaveLength(1);
          const stored = await bus.getJob(`job${j}`);
          expect(stored).toMatchObject({ state: 'running', owner: winners[0] });
          for (const r of results) if (!r.ok) expect(r.record.state).toBe('running');
        }
      });

      it('updates progress until the job ends', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        expect(await bus.updateJobProgress('j', { step: 10, loss: 0.25 })).toBe(true);
        expect((await bus.getJob('j'))!.progress).toEqual({ step: 10, loss: 0.25 });
        await bus.transitionJob('j', ['queued'], 'cancelled');
        expect(await bus.updateJobProgress('j', { step: 11 })).toBe(false);
        expect((await bus.getJob('j'))!.progress).toEqual({ step: 10, loss: 0.25 });
        await expect(bus.updateJobProgress('zz', 1)).rejects.toThrow(JobNotFoundError);
      });

      it('lists jobs in creation order, page by page, filtered by state', async () => {
        const { bus } = await fresh();
        const ids = ['m', 'c', 'x', 'a', 'q', 'b', 'z'];
        for (const id of ids) await bus.createJob({ id });
        for (const id of ['c', 'a', 'b']) await bus.transitionJob(id, ['queued'], 'running');

        const seen: string[] = [];
        let token: string | undefined;
        let pages = 0;
        do {
          const page = await bus.listJobs({ pageSize: 3, ...(token ? { pageToken: token } : {}) });
          seen.push(...page.jobs.map((j) => j.id));
          token = page.nextPageToken ?? undefined;
          pages++;
        } while (token);
        expect(seen).toEqual(ids);
        expect(pages).toBe(3);

        const all = await bus.listJobs();
        expect(all.jobs.map((j) => j.id)).toEqual(ids);
        expect(all.nextPageToken).toBeNull();
        const exact = await bus.listJobs({ pageSize: 7 });
        expect(exact.nextPageToken).toBeNull();

        const running = await bus.listJobs({ state: 'running', pageSize: 2 });
        expect(running.jobs.map((j) => j.id)).toEqual(['c', 'a']);
        const rest = await bus.listJobs({ state: 'running', pageToken: running.nextPageToken! });
        expect(rest.jobs.map((j) => j.id)).toEqual(['b']);
        expect(rest.nextPageToken).toBeNull();
        expect((await bus.listJobs({ state: 'failed' })).jobs).toEqual([]);

        // A deletion between pages neither repeats nor skips the others.
        const first = await bus.listJobs({ pageSize: 2 });
        await bus.deleteJob('x');
        await bus.createJob({ id: 'late' });
        const second = await bus.listJobs({ pageSize: 100, pageToken: first.nextPageToken! });
        expect(second.jobs.map((j) => j.id)).toEqual(['a', 'q', 'b', 'z', 'late']);

        await expect(bus.listJobs({ pageToken: 'garbage' })).rejects.toThrow(/pageToken/);
        await expect(bus.listJobs({ pageSize: 0 })).rejects.toThrow(/pageSize/);
        await expect(bus.listJobs({ pageSize: 1001 })).rejects.toThrow(/pageSize/);
      });

      it('deletes a job with all its data; later writes for it fail', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j', spec: {} });
        await bus.createJob({ id: 'j2' });
        await bus.setAssignment('j', assignment(1, ['w1', 'w2']));
        await bus.putSpins('j', 0, 5, new Uint8Array([1, 2, 3]));
        await bus.putCheckpoint('j', 1, 5, new Uint8Array(100).fill(7));
        await bus.appendEvent('j', { type: 'eval', at: 1, loss: 0.5 });

        expect(await bus.deleteJob('j')).toBe(true);
        expect(await bus.deleteJob('j')).toBe(false);
        expect(await bus.getJob('j')).toBeNull();
        expect(await bus.getAssignment('j')).toBeNull();
        expect(await bus.getSpins('j', 0)).toBeNull();
        expect(await bus.getCheckpoint('j', 1)).toBeNull();
        expect(await bus.listCheckpoints('j')).toEqual([]);
        expect((await bus.listJobs()).jobs.map((r) => r.id)).toEqual(['j2']);
        await expect(bus.readEvents('j')).rejects.toThrow(JobNotFoundError);
        await expect(bus.putSpins('j', 0, 6, new Uint8Array(1))).rejects.toThrow(JobNotFoundError);
        await expect(bus.putCheckpoint('j', 0, 6, new Uint8Array(1))).rejects.toThrow(
          JobNotFoundError,
        );
        await expect(bus.appendEvent('j', { type: 'x', at: 1 })).rejects.toThrow(JobNotFoundError);
        await expect(bus.setAssignment('j', assignment(2, ['w1']))).rejects.toThrow(
          JobNotFoundError,
        );
        await expect(bus.reassignShard('j', 0, 'w1', 'w2')).rejects.toThrow(JobNotFoundError);
        expect(await bus.getSpins('j', 0)).toBeNull();
        expect(await bus.listCheckpoints('j')).toEqual([]);

        // The id is free again, with nothing of the old job attached.
        await bus.createJob({ id: 'j' });
        const events = await bus.readEvents('j');
        expect(events.map((e) => e.event)).toEqual([
          { type: 'state', at: expect.any(Number), from: null, to: 'queued' },
        ]);
        expect(await bus.getAssignment('j')).toBeNull();
      });
    });

    describe('shard assignment', () => {
      it('stores an assignment and refuses one that is not newer', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        expect(await bus.getAssignment('j')).toBeNull();
        const a1 = assignment(1, ['w1', 'w2', 'w3']);
        await bus.setAssignment('j', { ...a1, shards: [...a1.shards].reverse() });
        expect(await bus.getAssignment('j')).toEqual(a1);
        await expect(bus.setAssignment('j', assignment(1, ['w9']))).rejects.toThrow(
          StaleAssignmentError,
        );
        const a5 = assignment(5, ['w4']);
        await bus.setAssignment('j', a5);
        expect(await bus.getAssignment('j')).toEqual(a5); // shards 1 and 2 are gone
        await expect(bus.setAssignment('j', assignment(3, ['w1']))).rejects.toThrow(
          "job 'j': assignment generation 3 is stale (the stored one is 5; a new one must be larger)",
        );
        await expect(bus.setAssignment('nope', a1)).rejects.toThrow(JobNotFoundError);
      });

      it('refuses malformed assignments', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        const dup = assignment(1, ['w1', 'w2']);
        dup.shards[1]!.shardId = 0;
        await expect(bus.setAssignment('j', dup)).rejects.toThrow(/shards\[1\].shardId repeats/);
        const empty = assignment(1, ['w1']);
        empty.shards[0]!.units[0] = { layer: 0, start: 4, end: 4 };
        await expect(bus.setAssignment('j', empty)).rejects.toThrow(
          /units\[0\].end must be > start/,
        );
        await expect(bus.setAssignment('j', assignment(1.5, ['w1']))).rejects.toThrow(/generation/);
        await expect(bus.setAssignment('j', assignment(1, ['no good']))).rejects.toThrow(
          /workerId/,
        );
        expect(await bus.getAssignment('j')).toBeNull();
      });

      it('reassigns a shard only from its holder and bumps the generation', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        await expect(bus.reassignShard('j', 0, 'w1', 'w2')).rejects.toThrow(
          "job 'j' has no shard assignment",
        );
        await bus.setAssignment('j', assignment(4, ['w1', 'w2']));
        expect(await bus.reassignShard('j', 0, 'w1', 'w3')).toBe(true);
        const a = await bus.getAssignment('j');
        expect(a!.generation).toBe(5);
        expect(a!.shards.map((s) => s.workerId)).toEqual(['w3', 'w2']);
        expect(a!.shards[0]!.units).toEqual(assignment(4, ['w1']).shards[0]!.units);
        expect(await bus.reassignShard('j', 0, 'w1', 'w4')).toBe(false);
        expect((await bus.getAssignment('j'))!.generation).toBe(5);
        await expect(bus.reassignShard('j', 7, 'w1', 'w4')).rejects.toThrow(ShardNotFoundError);
        await expect(bus.reassignShard('j', 1, 'w2', 'w2')).rejects.toThrow(InvalidArgumentError);
      });

      it('lets exactly one of several concurrent coordinators move a shard', async () => {
        const { prefix, bus } = await fresh();
        const clients = [bus, ...(await Promise.all([1, 2, 3].map(() => client(prefix))))];
        await bus.createJob({ id: 'j' });
        await bus.setAssignment('j', assignment(1, ['dead', 'w2']));
        const results = await Promise.all(
          clients.map((c, i) => c.reassignShard('j', 0, 'dead', `new${i}`)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const a = await bus.getAssignment('j');
        expect(a!.generation).toBe(2);
        expect(a!.shards[0]!.workerId).toBe(`new${results.indexOf(true)}`);
      });
    });

    describe('spin snapshots', () => {
      it('keeps the latest snapshot per shard; an older step does not overwrite it', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        expect(await bus.getSpins('j', 0)).toBeNull();
        const packed = new Uint8Array([0, 1, 2, 253, 254, 255, 0, 10, 13]);
        expect(await bus.putSpins('j', 0, 10, packed)).toBe(true);
        packed[0] = 99; // the bus holds its own copy
        const got = await bus.getSpins('j', 0);
        expect(got).toEqual({
          step: 10,
          packed: new Uint8Array([0, 1, 2, 253, 254, 255, 0, 10, 13]),
        });
        got!.packed[1] = 42;
        expect((await bus.getSpins('j', 0))!.packed[1]).toBe(1);
        expect(await bus.putSpins('j', 0, 9, new Uint8Array([7]))).toBe(false);
        expect(await bus.putSpins('j', 0, 10, new Uint8Array([8]))).toBe(true);
        expect(await bus.putSpins('j', 1, 3, new Uint8Array(0))).toBe(true);
        expect(await bus.getSpins('j', 0)).toEqual({ step: 10, packed: new Uint8Array([8]) });
        expect(await bus.getSpins('j', 1)).toEqual({ step: 3, packed: new Uint8Array(0) });
        await expect(bus.putSpins('j', -1, 1, new Uint8Array(1))).rejects.toThrow(/shardId/);
        await expect(bus.putSpins('j', 0, 1.5, new Uint8Array(1))).rejects.toThrow(/step/);
      });
    });

    describe('checkpoints', () => {
      const pattern = (step: number, bytes: number): Uint8Array => {
        const out = new Uint8Array(bytes);
        for (let i = 0; i < bytes; i++) out[i] = (i * 31 + step * 7) & 0xff;
        return out;
      };

      it('round-trips checkpoints, larger than a chunk too, and keeps the latest', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        expect(await bus.getCheckpoint('j', 0)).toBeNull();
        const big = pattern(1, 2.5 * (1 << 20) + 3); // more than two 1 MiB chunks
        expect(await bus.putCheckpoint('j', 0, 100, big)).toBe(true);
        const got = await bus.getCheckpoint('j', 0);
        expect(got!.step).toBe(100);
        expect(Buffer.compare(got!.data, big)).toBe(0);

        expect(await bus.putCheckpoint('j', 0, 200, pattern(2, 1000))).toBe(true);
        expect(await bus.putCheckpoint('j', 0, 150, pattern(3, 10))).toBe(false);
        expect(await bus.putCheckpoint('j', 2, 7, new Uint8Array(0))).toBe(true);
        expect(await bus.getCheckpoint('j', 0)).toEqual({ step: 200, data: pattern(2, 1000) });
        expect(await bus.getCheckpoint('j', 2)).toEqual({ step: 7, data: new Uint8Array(0) });
        expect(await bus.getCheckpoint('j', 1)).toBeNull();
        const list = await bus.listCheckpoints('j');
        expect(list.map(({ shardId, step, bytes }) => ({ shardId, step, bytes }))).toEqual([
          { shardId: 0, step: 200, bytes: 1000 },
          { shardId: 2, step: 7, bytes: 0 },
        ]);
        for (const c of list) expect(c.createdAt).toBeGreaterThan(0);
      });

      it("lists each checkpoint with its writer's generation (0 when it gave none)", async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        expect(await bus.putCheckpoint('j', 0, 10, new Uint8Array(3))).toBe(true);
        expect(await bus.putCheckpoint('j', 1, 10, new Uint8Array(3), 4)).toBe(true);
        const gens = async (): Promise<[number, number, number][]> =>
          (await bus.listCheckpoints('j')).map((c) => [c.shardId, c.step, c.generation]);
        expect(await gens()).toEqual([
          [0, 10, 0],
          [1, 10, 4],
        ]);
        // a rewrite of the same step under a newer generation replaces it, generation and all
        expect(await bus.putCheckpoint('j', 0, 10, new Uint8Array(3), 5)).toBe(true);
        expect(await gens()).toEqual([
          [0, 10, 5],
          [1, 10, 4],
        ]);
        await expect(bus.putCheckpoint('j', 0, 20, new Uint8Array(1), -1)).rejects.toThrow(
          /generation/,
        );
        await expect(bus.putCheckpoint('j', 0, 20, new Uint8Array(1), 1.5)).rejects.toThrow(
          /generation/,
        );
        expect(await gens()).toEqual([
          [0, 10, 5],
          [1, 10, 4],
        ]);
      });

      it("refuses a checkpoint of a writer older than the job's assignment", async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        // no assignment yet: nothing to compare with
        expect(await bus.putCheckpoint('j', 0, 10, new Uint8Array([1]), 1)).toBe(true);
        await bus.setAssignment('j', assignment(3, ['w1']));
        const err = await bus.putCheckpoint('j', 0, 20, pattern(5, 3000), 2).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StaleWriterError);
        expect(err).toMatchObject({ jobId: 'j', shardId: 0, generation: 2, currentGeneration: 3 });
        expect((err as Error).message).toBe(
          "job 'j' slot 0: a checkpoint written under generation 2 is refused: the assignment " +
            'is at generation 3 (a newer run replaced it)',
        );
        // not even the same step: a rollback may be restoring it
        await expect(bus.putCheckpoint('j', 0, 10, new Uint8Array([9]), 2)).rejects.toThrow(
          StaleWriterError,
        );
        expect(await bus.getCheckpoint('j', 0)).toEqual({ step: 10, data: new Uint8Array([1]) });
        // the current generation, a newer one (told before the bus) and 0 (unchecked) go through
        expect(await bus.putCheckpoint('j', 0, 20, new Uint8Array([2]), 3)).toBe(true);
        expect(await bus.putCheckpoint('j', 0, 30, new Uint8Array([3]), 4)).toBe(true);
        expect(await bus.putCheckpoint('j', 0, 40, new Uint8Array([4]))).toBe(true);
        expect(await bus.reassignShard('j', 0, 'w1', 'w2')).toBe(true); // generation 4
        await expect(bus.putCheckpoint('j', 1, 1, new Uint8Array([5]), 3)).rejects.toThrow(
          /generation 3 is refused: the assignment is at generation 4/,
        );
        expect(
          (await bus.listCheckpoints('j')).map((c) => [c.shardId, c.step, c.generation]),
        ).toEqual([[0, 40, 0]]);
      });

      it('never shows a concurrent reader a torn checkpoint', async () => {
        const { prefix, bus } = await fresh();
        const readers = await Promise.all([client(prefix), client(prefix)]);
        await bus.createJob({ id: 'j' });
        const sizes = (step: number): number => (1 << 20) + ((step * 389_017) % (2 << 20));
        const expected = new Map<number, Uint8Array>();
        for (let step = 1; step <= 12; step++) expected.set(step, pattern(step, sizes(step)));

        let writing = true;
        const writer = (async () => {
          for (let step = 1; step <= 12; step++) {
            expect(await bus.putCheckpoint('j', 0, step, expected.get(step)!)).toBe(true);
          }
          writing = false;
        })();
        let reads = 0;
        const steps = new Set<number>();
        const read = async (r: Bus): Promise<void> => {
          while (writing) {
            const c = await r.getCheckpoint('j', 0);
            if (c) {
              reads++;
              steps.add(c.step);
              const want = expected.get(c.step)!;
              if (c.data.length !== want.length || Buffer.compare(c.data, want) !== 0) {
                throw new Error(`torn checkpoint at step ${c.step} (${c.data.length} bytes)`);
              }
            }
            await new Promise((r) => setImmediate(r));
          }
        };
        await Promise.all([writer, ...readers.map(read)]);
        expect(reads).toBeGreaterThan(0);
        const last = await readers[0]!.getCheckpoint('j', 0);
        expect(last!.step).toBe(12);
        expect(Buffer.compare(last!.data, expected.get(12)!)).toBe(0);
      });
    });

    describe('events', () => {
      it('appends events after the creation event and reads them in order', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          ids.push(
            await bus.appendEvent('j', { type: 'eval', at: 1000 + i, step: i * 100, pll: -0.5 }),
          );
        }
        await bus.transitionJob('j', ['queued'], 'running');
        const all = await bus.readEvents('j');
        expect(all).toHaveLength(7);
        expect(all[0]!.event).toMatchObject({ type: 'state', from: null, to: 'queued' });
        expect(all.slice(1, 6).map((e) => e.id)).toEqual(ids);
        expect(all[3]!.event).toEqual({ type: 'eval', at: 1002, step: 200, pll: -0.5 });
        expect(all[6]!.event).toMatchObject({ type: 'state', from: 'queued', to: 'running' });
        for (let i = 1; i < all.length; i++) {
          const [a, b] = [all[i - 1]!.id, all[i]!.id].map((id) => id.split('-').map(Number));
          expect(a![0]! < b![0]! || (a![0] === b![0] && a![1]! < b![1]!)).toBe(true);
        }
        expect(await bus.readEvents('j', { after: ids[2]!, count: 2 })).toEqual(all.slice(4, 6));
        expect(await bus.readEvents('j', { after: all[6]!.id })).toEqual([]);
        await expect(bus.readEvents('j', { after: 'latest' })).rejects.toThrow(/after/);
        await expect(bus.appendEvent('j', { type: '', at: 1 })).rejects.toThrow(/event.type/);
        await expect(bus.readEvents('nope')).rejects.toThrow(JobNotFoundError);
      });

      it('gives a watcher from the beginning the history first, then waits for more', async () => {
        const { prefix, bus } = await fresh();
        const watcherBus = await client(prefix);
        await bus.createJob({ id: 'j' });
        await bus.appendEvent('j', { type: 'eval', at: 1, n: 1 });
        await bus.appendEvent('j', { type: 'eval', at: 2, n: 2 });
        const history = await watcherBus.readEvents('j', { blockMs: 5000 });
        expect(history.map((e) => e.event.type)).toEqual(['state', 'eval', 'eval']);
        // Nothing new: a short block times out empty.
        const last = history[history.length - 1]!.id;
        expect(await watcherBus.readEvents('j', { after: last, blockMs: 50 })).toEqual([]);
      });

      it('wakes blocked readers when an event is appended', async () => {
        const { prefix, bus } = await fresh();
        const watcherBus = await client(prefix);
        await bus.createJob({ id: 'j' });
        const [created] = await bus.readEvents('j');
        // Three watchers on one client, one on another: all wake on one append.
        const waits = [watcherBus, watcherBus, watcherBus, bus].map((b) =>
          b.readEvents('j', { after: created!.id, blockMs: 60_000 }),
        );
        await sleep(50);
        const id = await bus.appendEvent('j', { type: 'progress', at: 5, step: 42 });
        const woken = await Promise.all(waits);
        for (const got of woken) {
          expect(got).toEqual([{ id, event: { type: 'progress', at: 5, step: 42 } }]);
        }
      });

      it('rejects a blocked read when its bus closes', async () => {
        const { prefix, bus } = await fresh();
        const watcherBus = await client(prefix);
        await bus.createJob({ id: 'j' });
        const [created] = await bus.readEvents('j');
        const wait = watcherBus.readEvents('j', { after: created!.id, blockMs: 10_000 });
        const outcome = wait.then(
          () => 'resolved',
          (err: unknown) => err,
        );
        await sleep(50);
        await watcherBus.close();
        expect(await outcome).toBeInstanceOf(BusClosedError);
        // The other client is unaffected.
        await bus.appendEvent('j', { type: 'x', at: 1 });
        expect(await bus.readEvents('j', { after: created!.id })).toHaveLength(1);
      });

      it('trims a stream to maxLen newest events', async () => {
        const { bus } = await fresh();
        await bus.createJob({ id: 'j' });
        for (let i = 0; i < 10; i++)
          await bus.appendEvent('j', { type: 'e', at: i }, { maxLen: 3 });
        const left: JobEvent[] = await bus.readEvents('j');
        expect(left.map((e) => e.event.at)).toEqual([7, 8, 9]);
        await expect(bus.appendEvent('j', { type: 'e', at: 0 }, { maxLen: 0 })).rejects.toThrow(
          /maxLen/,
        );
      });
    });

    describe('lifetime', () => {
      it('answers ping, and refuses every call after close', async () => {
        const { bus } = await fresh();
        await bus.ping();
        await bus.close();
        await bus.close(); // idempotent
        await expect(bus.ping()).rejects.toThrow(BusClosedError);
        await expect(bus.getJob('j')).rejects.toThrow(BusClosedError);
        await expect(bus.listWorkers()).rejects.toThrow('the bus is closed');
      });

      it('keeps clients of different prefixes apart', async () => {
        const a = await fresh();
        const b = await fresh();
        await a.bus.createJob({ id: 'same', who: 'a' });
        await b.bus.createJob({ id: 'same', who: 'b' });
        await a.bus.registerWorker(worker('wa'), 10_000);
        await a.bus.putSpins('same', 0, 1, new Uint8Array([1]));
        expect((await b.bus.getJob('same'))!.who).toBe('b');
        expect(await b.bus.listWorkers()).toEqual([]);
        expect(await b.bus.getSpins('same', 0)).toBeNull();
        expect((await b.bus.listJobs()).jobs.map((j) => j.who)).toEqual(['b']);
        await b.bus.deleteJob('same');
        expect((await a.bus.getJob('same'))!.who).toBe('a');
      });
    });
  });
}
