// The bus in one process: for the embedded local cluster and for tests. Same contract as the
// Redis bus. Each method does all of its work before its first await, so it is atomic in a
// single-threaded process; values are stored as JSON text or copied bytes, as Redis would.
import type { Bus } from './bus.js';
import { compareEventIds, stateEventJson, toRecord, type StoredJob } from './codec.js';
import {
  BusClosedError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
} from './errors.js';
import { isTerminalState } from './states.js';
import type {
  AppendEventOptions,
  Assignment,
  Checkpoint,
  CheckpointInfo,
  JobEvent,
  JobEventRecord,
  NewJobEvent,
  JobPage,
  JobPatch,
  JobRecord,
  JobState,
  ListJobsOptions,
  NewJob,
  ReadEventsOptions,
  SpinSnapshot,
  TransitionResult,
  UnitRange,
  WorkerInfo,
} from './types.js';
import {
  checkAssignment,
  checkBytes,
  checkId,
  checkListJobs,
  checkMaxLen,
  checkNonNegativeInt,
  checkPositiveInt,
  checkReadEvents,
  checkReassignArgs,
  checkShardArgs,
  checkTransitionArgs,
  encodeEvent,
  encodeJson,
  encodeNewJob,
  encodePatch,
  encodeUnits,
  encodeWorkerInfo,
  pageToken,
} from './validate.js';

interface MemoryJob {
  stored: StoredJob;
  events: { id: [number, number]; json: string }[];
  lastEventId: [number, number];
  assignment: {
    generation: number;
    shards: Map<number, { workerId: string; units: string }>;
  } | null;
  spins: Map<number, { step: number; packed: Uint8Array }>;
  checkpoints: Map<
    number,
    { step: number; data: Uint8Array; createdAt: number; generation: number }
  >;
}

/**
 * The state that `MemoryBus` instances share: give one store to several buses to model several
 * clients of one Redis (each bus closes on its own; the store lives on).
 */
export class MemoryStore {
  /** @internal */ readonly workers = new Map<string, { json: string; expiresAt: number }>();
  /** @internal Jobs in creation order (a Map keeps insertion order). */
  readonly jobs = new Map<string, MemoryJob>();
  /** @internal */ seq = 0;
  /** @internal Wake-up callbacks of blocked readers, by job id. */
  readonly waiters = new Map<string, Set<() => void>>();

  /** @internal */
  notify(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const wake of set) wake();
  }
}

/** Options of {@link MemoryBus}. */
export interface MemoryBusOptions {
  /**
   * State to share with other `MemoryBus` instances.
   * @defaultValue a new, private store
   */
  store?: MemoryStore;
  /**
   * Clock, in milliseconds since the epoch, for TTLs, timestamps and event ids.
   * @defaultValue `Date.now`
   */
  now?: () => number;
  /**
   * Keep at most this many newest events per job stream (exact trimming), unless an append says
   * otherwise.
   * @defaultValue no trimming
   */
  maxEventsPerJob?: number;
}

/** The in-process {@link Bus}. */
export class MemoryBus implements Bus {
  readonly store: MemoryStore;
  private readonly now: () => number;
  private readonly maxEventsPerJob: number;
  private closed = false;
  /** Blocked readers of this bus, to reject on close. */
  private readonly pending = new Set<(err: Error) => void>();

  constructor(options: MemoryBusOptions = {}) {
    this.store = options.store ?? new MemoryStore();
    this.now = options.now ?? Date.now;
    this.maxEventsPerJob =
      options.maxEventsPerJob === undefined
        ? 0
        : checkPositiveInt('maxEventsPerJob', options.maxEventsPerJob);
  }

  // --- membership ---------------------------------------------------------------------------

  async registerWorker(info: WorkerInfo, ttlMs: number): Promise<void> {
    this.open();
    const json = encodeWorkerInfo(info);
    checkPositiveInt('ttlMs', ttlMs);
    this.store.workers.set(info.id, { json, expiresAt: this.now() + ttlMs });
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    checkPositiveInt('ttlMs', ttlMs);
    const w = this.liveWorker(workerId);
    if (!w) return false;
    w.expiresAt = this.now() + ttlMs;
    return true;
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    this.open();
    const ids = [...this.store.workers.keys()].sort();
    const out: WorkerInfo[] = [];
    for (const id of ids) {
      const w = this.liveWorker(id);
      if (w) out.push(JSON.parse(w.json) as WorkerInfo);
    }
    return out;
  }

  async removeWorker(workerId: string): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    const live = this.liveWorker(workerId) !== undefined;
    this.store.workers.delete(workerId);
    return live;
  }

  private liveWorker(id: string): { json: string; expiresAt: number } | undefined {
    const w = this.store.workers.get(id);
    if (w && w.expiresAt <= this.now()) {
      this.store.workers.delete(id);
      return undefined;
    }
    return w;
  }

  // --- jobs -----------------------------------------------------------------------------------

  async createJob(job: NewJob): Promise<JobRecord> {
    this.open();
    const { id, fields } = encodeNewJob(job);
    if (this.store.jobs.has(id)) throw new JobExistsError(id);
    const now = this.now();
    const entry: MemoryJob = {
      stored: {
        id,
        state: 'queued',
        seq: ++this.store.seq,
        createdAt: now,
        updatedAt: now,
        fields: new Map(fields),
      },
      events: [],
      lastEventId: [0, 0],
      assignment: null,
      spins: new Map(),
      checkpoints: new Map(),
    };
    this.store.jobs.set(id, entry);
    this.addEvent(entry, stateEventJson(now, null, 'queued'), this.maxEventsPerJob);
    return toRecord(entry.stored);
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    this.open();
    checkId('jobId', jobId);
    const job = this.store.jobs.get(jobId);
    return job ? toRecord(job.stored) : null;
  }

  async listJobs(options: ListJobsOptions = {}): Promise<JobPage> {
    this.open();
    const { state, pageSize, afterSeq } = checkListJobs(options);
    const jobs: JobRecord[] = [];
    let lastSeq = 0;
    let more = false;
    for (const { stored } of this.store.jobs.values()) {
      if (stored.seq <= afterSeq) continue;
      if (state !== undefined && stored.state !== state) continue;
      if (jobs.length === pageSize) {
        more = true;
        break;
      }
      jobs.push(toRecord(stored));
      lastSeq = stored.seq;
    }
    return { jobs, nextPageToken: more ? pageToken(lastSeq) : null };
  }

  async transitionJob(
    jobId: string,
    allowedFrom: readonly JobState[],
    to: JobState,
    patch?: JobPatch,
  ): Promise<TransitionResult> {
    this.open();
    const from = checkTransitionArgs(jobId, allowedFrom, to);
    const { set, del } = encodePatch(patch);
    const job = this.job(jobId);
    const current = job.stored.state;
    if (isTerminalState(current) || !from.includes(current)) {
      return { ok: false, record: toRecord(job.stored) };
    }
    const now = this.now();
    job.stored.state = to;
    job.stored.updatedAt = now;
    for (const [name, json] of set) job.stored.fields.set(name, json);
    for (const name of del) job.stored.fields.delete(name);
    this.addEvent(job, stateEventJson(now, current, to), this.maxEventsPerJob);
    return { ok: true, record: toRecord(job.stored) };
  }

  async updateJobProgress(jobId: string, progress: unknown): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    const json = encodeJson('progress', progress);
    const job = this.job(jobId);
    if (isTerminalState(job.stored.state)) return false;
    job.stored.fields.set('progress', json);
    job.stored.updatedAt = this.now();
    return true;
  }

  async deleteJob(jobId: string): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    return this.store.jobs.delete(jobId);
  }

  // --- shard assignment -----------------------------------------------------------------------

  async setAssignment(jobId: string, assignment: Assignment): Promise<void> {
    this.open();
    checkId('jobId', jobId);
    checkAssignment(assignment);
    const job = this.job(jobId);
    const current = job.assignment?.generation;
    if (current !== undefined && assignment.generation <= current) {
      throw new StaleAssignmentError(jobId, assignment.generation, current);
    }
    job.assignment = {
      generation: assignment.generation,
      shards: new Map(
        assignment.shards.map((s) => [s.shardId, { workerId: s.workerId, units: encodeUnits(s) }]),
      ),
    };
  }

  async getAssignment(jobId: string): Promise<Assignment | null> {
    this.open();
    checkId('jobId', jobId);
    const a = this.store.jobs.get(jobId)?.assignment;
    if (!a) return null;
    const shards = [...a.shards.entries()]
      .sort(([x], [y]) => x - y)
      .map(([shardId, s]) => ({
        shardId,
        workerId: s.workerId,
        units: JSON.parse(s.units) as UnitRange[],
      }));
    return { generation: a.generation, shards };
  }

  async reassignShard(
    jobId: string,
    shardId: number,
    fromWorker: string,
    toWorker: string,
  ): Promise<boolean> {
    this.open();
    checkReassignArgs(jobId, shardId, fromWorker, toWorker);
    const a = this.job(jobId).assignment;
    if (!a) throw new ShardNotFoundError(jobId, null);
    const shard = a.shards.get(shardId);
    if (!shard) throw new ShardNotFoundError(jobId, shardId);
    if (shard.workerId !== fromWorker) return false;
    shard.workerId = toWorker;
    a.generation += 1;
    return true;
  }

  // --- spin snapshots -------------------------------------------------------------------------

  async putSpins(
    jobId: string,
    shardId: number,
    step: number,
    packed: Uint8Array,
  ): Promise<boolean> {
    this.open();
    checkShardArgs(jobId, shardId);
    checkNonNegativeInt('step', step);
    checkBytes('packed', packed);
    const job = this.job(jobId);
    const current = job.spins.get(shardId);
    if (current && step < current.step) return false;
    job.spins.set(shardId, { step, packed: packed.slice() });
    return true;
  }

  async getSpins(jobId: string, shardId: number): Promise<SpinSnapshot | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    const s = this.store.jobs.get(jobId)?.spins.get(shardId);
    return s ? { step: s.step, packed: s.packed.slice() } : null;
  }

  // --- checkpoints ----------------------------------------------------------------------------

  async putCheckpoint(
    jobId: string,
    shardId: number,
    step: number,
    data: Uint8Array,
    generation = 0,
  ): Promise<boolean> {
    this.open();
    checkShardArgs(jobId, shardId);
    checkNonNegativeInt('step', step);
    checkBytes('data', data);
    checkNonNegativeInt('generation', generation);
    const job = this.job(jobId);
    const assigned = job.assignment?.generation;
    if (generation > 0 && assigned !== undefined && generation < assigned)
      throw new StaleWriterError(jobId, shardId, generation, assigned);
    const current = job.checkpoints.get(shardId);
    if (current && step < current.step) return false;
    job.checkpoints.set(shardId, { step, data: data.slice(), createdAt: this.now(), generation });
    return true;
  }

  async getCheckpoint(jobId: string, shardId: number): Promise<Checkpoint | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    const c = this.store.jobs.get(jobId)?.checkpoints.get(shardId);
    return c ? { step: c.step, data: c.data.slice() } : null;
  }

  async listCheckpoints(jobId: string): Promise<CheckpointInfo[]> {
    this.open();
    checkId('jobId', jobId);
    const job = this.store.jobs.get(jobId);
    if (!job) return [];
    return [...job.checkpoints.entries()]
      .sort(([x], [y]) => x - y)
      .map(([shardId, c]) => ({
        shardId,
        step: c.step,
        bytes: c.data.length,
        createdAt: c.createdAt,
        generation: c.generation,
      }));
  }

  // --- events ---------------------------------------------------------------------------------

  async appendEvent(
    jobId: string,
    event: NewJobEvent,
    options: AppendEventOptions = {},
  ): Promise<string> {
    this.open();
    checkId('jobId', jobId);
    const json = encodeEvent(event);
    const maxLen = checkMaxLen('maxLen', options.maxLen) || this.maxEventsPerJob;
    return this.addEvent(this.job(jobId), json, maxLen);
  }

  async readEvents(jobId: string, options: ReadEventsOptions = {}): Promise<JobEvent[]> {
    this.open();
    checkId('jobId', jobId);
    const { after, count, blockMs } = checkReadEvents(options);
    const first = this.collect(this.job(jobId), after, count);
    if (first.length > 0 || blockMs === 0) return first;
    await this.waitForEvent(jobId, blockMs);
    const job = this.store.jobs.get(jobId);
    return job ? this.collect(job, after, count) : [];
  }

  private addEvent(job: MemoryJob, json: string, maxLen: number): string {
    const ms = this.now();
    const [lastMs, lastSeq] = job.lastEventId;
    const id: [number, number] = ms > lastMs ? [ms, 0] : [lastMs, lastSeq + 1];
    job.lastEventId = id;
    job.events.push({ id, json });
    if (maxLen > 0 && job.events.length > maxLen) job.events.splice(0, job.events.length - maxLen);
    this.store.notify(job.stored.id);
    return `${id[0]}-${id[1]}`;
  }

  private collect(job: MemoryJob, after: [number, number], count: number): JobEvent[] {
    const out: JobEvent[] = [];
    for (const e of job.events) {
      if (compareEventIds(e.id, after) <= 0) continue;
      out.push({ id: `${e.id[0]}-${e.id[1]}`, event: JSON.parse(e.json) as JobEventRecord });
      if (out.length === count) break;
    }
    return out;
  }

  /** Resolves at the next append to the job's stream, or after `ms`; rejects on close. */
  private waitForEvent(jobId: string, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let set = this.store.waiters.get(jobId);
      if (!set) this.store.waiters.set(jobId, (set = new Set()));
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.store.waiters.get(jobId)?.delete(wake);
        this.pending.delete(finish);
        if (err) reject(err);
        else resolve();
      };
      const wake = (): void => finish();
      const timer = setTimeout(wake, ms);
      set.add(wake);
      this.pending.add(finish);
    });
  }

  // --- lifetime -------------------------------------------------------------------------------

  async ping(): Promise<void> {
    this.open();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const finish of [...this.pending]) finish(new BusClosedError());
  }

  private open(): void {
    if (this.closed) throw new BusClosedError();
  }

  private job(jobId: string): MemoryJob {
    const job = this.store.jobs.get(jobId);
    if (!job) throw new JobNotFoundError(jobId);
    return job;
  }
}
