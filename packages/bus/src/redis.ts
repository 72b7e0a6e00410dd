// The bus over Redis (ioredis): what a cluster's coordinator and workers share. Multi-key
// changes are Lua scripts (src/lua); keys come from keys.ts only.
import { Redis } from 'ioredis';
import type { Bus } from './bus.js';
import { fromHash, jobField, stateEventJson, toRecord } from './codec.js';
import {
  BusClosedError,
  BusConnectionError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
} from './errors.js';
import { Keys } from './keys.js';
import { BlockerPool } from './redis-blockers.js';
import {
  checkpointInfos,
  readCheckpoint,
  writeCheckpoint,
  type CheckpointStore,
} from './redis-checkpoints.js';
import { asBuffer, deleteMatching, exec, runScript, unexpected } from './redis-commands.js';
import {
  redisBusOptionsFromEnv,
  resolveOptions,
  type RedisBusOptions,
  type ResolvedRedisOptions,
} from './redis-options.js';
import { loadScripts, ScriptCode, type LoadedScript, type ScriptName } from './scripts.js';
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
  ShardAssignment,
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

let scripts: LoadedScript[] | undefined;

/** The {@link Bus} over Redis. Create one with {@link RedisBus.connect}. */
export class RedisBus implements Bus {
  /** The key builder; every key the bus touches comes from it. */
  readonly keys: Keys;
  private closed = false;
  private readonly blockers: BlockerPool;
  private readonly store: CheckpointStore;

  private constructor(
    private readonly redis: Redis,
    private readonly cfg: ResolvedRedisOptions,
    onError: ((err: Error) => void) | undefined,
  ) {
    this.keys = new Keys(cfg.prefix);
    this.blockers = new BlockerPool(redis, cfg.connectionName, cfg.commandTimeoutMs, onError);
    this.store = { redis, keys: this.keys, chunkBytes: cfg.checkpointChunkBytes };
  }

  /**
   * Connects (and authenticates) to Redis, and resolves when the connection is ready.
   * @throws `BusConnectionError` saying why (refused, wrong password, TLS...), after which
   *   nothing is left open; `InvalidArgumentError` for bad options.
   */
  static async connect(options: RedisBusOptions = {}): Promise<RedisBus> {
    const cfg = resolveOptions(options);
    scripts ??= loadScripts();
    const redis = new Redis(cfg.redis);
    let lastError: Error | undefined;
    redis.on('error', (err: Error) => {
      lastError = err;
      options.onError?.(err);
    });
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      const cause = lastError ?? (err as Error);
      throw new BusConnectionError(cfg.target, cause.message, { cause });
    }
    for (const s of scripts) {
      redis.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    }
    return new RedisBus(redis, cfg, options.onError);
  }

  /** {@link RedisBus.connect} with {@link redisBusOptionsFromEnv}. */
  static fromEnv(
    env: Readonly<Record<string, string | undefined>> = process.env,
  ): Promise<RedisBus> {
    return RedisBus.connect(redisBusOptionsFromEnv(env));
  }

  /** The key prefix. */
  get prefix(): string {
    return this.cfg.prefix;
  }

  // --- membership ---------------------------------------------------------------------------

  async registerWorker(info: WorkerInfo, ttlMs: number): Promise<void> {
    this.open();
    const json = encodeWorkerInfo(info);
    checkPositiveInt('ttlMs', ttlMs);
    await exec(
      this.redis
        .multi()
        .set(this.keys.worker(info.id), json, 'PX', ttlMs)
        .sadd(this.keys.workers(), info.id),
    );
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    checkPositiveInt('ttlMs', ttlMs);
    return (await this.redis.pexpire(this.keys.worker(workerId), ttlMs)) === 1;
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    this.open();
    const ids = (await this.redis.smembers(this.keys.workers())).sort();
    if (ids.length === 0) return [];
    const infos = await this.redis.mget(ids.map((id) => this.keys.worker(id)));
    const out: WorkerInfo[] = [];
    const expired: string[] = [];
    ids.forEach((id, i) => {
      const json = infos[i];
      if (json) out.push(JSON.parse(json) as WorkerInfo);
      else expired.push(id);
    });
    await Promise.all(
      expired.map((id) =>
        this.script('pruneWorker', [this.keys.workers(), this.keys.worker(id)], [id]),
      ),
    );
    return out;
  }

  async removeWorker(workerId: string): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    const [deleted] = await exec(
      this.redis.multi().del(this.keys.worker(workerId)).srem(this.keys.workers(), workerId),
    );
    return deleted === 1;
  }

  // --- jobs -----------------------------------------------------------------------------------

  async createJob(job: NewJob): Promise<JobRecord> {
    this.open();
    const { id, fields } = encodeNewJob(job);
    const now = Date.now();
    const k = this.keys;
    const [code, hash] = (await this.script(
      'createJob',
      [k.job(id), k.jobs(), k.jobSeq(), k.events(id)],
      [
        id,
        now,
        this.cfg.maxEventsPerJob,
        stateEventJson(now, null, 'queued'),
        ...fields.flatMap(([name, json]) => [jobField(name), json]),
      ],
    )) as [number, string[]];
    if (code === ScriptCode.JobExists) throw new JobExistsError(id);
    return toRecord(fromHash(hash));
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    this.open();
    checkId('jobId', jobId);
    const hash = await this.redis.hgetall(this.keys.job(jobId));
    return Object.keys(hash).length === 0 ? null : toRecord(fromHash(hash));
  }

  async listJobs(options: ListJobsOptions = {}): Promise<JobPage> {
    this.open();
    const { state, pageSize, afterSeq } = checkListJobs(options);
    // Without a state filter one batch of pageSize + 1 tells whether more follow; with one,
    // read larger batches and filter.
    const batch = state === undefined ? pageSize + 1 : Math.max(2 * pageSize, 200);
    const jobs: JobRecord[] = [];
    let lastSeq = 0;
    let cursor = afterSeq;
    let more = false;
    for (;;) {
      const reply = await this.redis.zrangebyscore(
        this.keys.jobs(),
        `(${cursor}`,
        '+inf',
        'WITHSCORES',
        'LIMIT',
        0,
        batch,
      );
      if (reply.length === 0) break;
      const ids: string[] = [];
      for (let i = 0; i < reply.length; i += 2) ids.push(reply[i]!);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(this.keys.job(id));
      const hashes = (await exec(pipeline)) as Record<string, string>[];
      for (const hash of hashes) {
        if (Object.keys(hash).length === 0) continue; // deleted meanwhile
        const stored = fromHash(hash);
        if (state !== undefined && stored.state !== state) continue;
        if (jobs.length === pageSize) {
          more = true;
          break;
        }
        jobs.push(toRecord(stored));
        lastSeq = stored.seq;
      }
      if (more || ids.length < batch) break;
      cursor = Number(reply[reply.length - 1]);
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
    const reply = (await this.script(
      'transitionJob',
      [this.keys.job(jobId), this.keys.events(jobId)],
      [
        to,
        Date.now(),
        this.cfg.maxEventsPerJob,
        from.length,
        ...from,
        set.length,
        ...set.flatMap(([name, json]) => [jobField(name), json]),
        ...del.map(jobField),
      ],
    )) as [number, string[]?];
    const [code, hash] = reply;
    switch (code) {
      case ScriptCode.Ok:
        return { ok: true, record: toRecord(fromHash(hash!)) };
      case ScriptCode.StateConflict:
      case ScriptCode.TerminalState:
        return { ok: false, record: toRecord(fromHash(hash!)) };
      case ScriptCode.JobNotFound:
        throw new JobNotFoundError(jobId);
      default:
        throw unexpected('transition-job', code);
    }
  }

  async updateJobProgress(jobId: string, progress: unknown): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    const json = encodeJson('progress', progress);
    const code = (await this.script(
      'updateProgress',
      [this.keys.job(jobId)],
      [jobField('progress'), json, Date.now()],
    )) as number;
    if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
    return code === ScriptCode.Ok;
  }

  async deleteJob(jobId: string): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    const [deleted] = await exec(
      this.redis.multi().del(this.keys.job(jobId)).zrem(this.keys.jobs(), jobId),
    );
    // With the record gone every later write for the job fails, so this sweep is final.
    await deleteMatching(this.redis, this.keys.jobAll(jobId));
    return deleted === 1;
  }

  // --- shard assignment -----------------------------------------------------------------------

  async setAssignment(jobId: string, assignment: Assignment): Promise<void> {
    this.open();
    checkId('jobId', jobId);
    checkAssignment(assignment);
    const [code, current] = (await this.script(
      'setAssignment',
      [this.keys.job(jobId), this.keys.assignment(jobId)],
      [
        assignment.generation,
        ...assignment.shards.flatMap((s) => [
          `w:${s.shardId}`,
          s.workerId,
          `u:${s.shardId}`,
          encodeUnits(s),
        ]),
      ],
    )) as [number, number?];
    if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
    if (code === ScriptCode.StaleGeneration) {
      throw new StaleAssignmentError(jobId, assignment.generation, current!);
    }
  }

  async getAssignment(jobId: string): Promise<Assignment | null> {
    this.open();
    checkId('jobId', jobId);
    const hash = await this.redis.hgetall(this.keys.assignment(jobId));
    if (hash.generation === undefined) return null;
    const shards: ShardAssignment[] = [];
    for (const [field, workerId] of Object.entries(hash)) {
      if (!field.startsWith('w:')) continue;
      const shardId = Number(field.slice(2));
      const units = JSON.parse(hash[`u:${shardId}`] ?? '[]') as UnitRange[];
      shards.push({ shardId, workerId, units });
    }
    shards.sort((a, b) => a.shardId - b.shardId);
    return { generation: Number(hash.generation), shards };
  }

  async reassignShard(
    jobId: string,
    shardId: number,
    fromWorker: string,
    toWorker: string,
  ): Promise<boolean> {
    this.open();
    checkReassignArgs(jobId, shardId, fromWorker, toWorker);
    const [code] = (await this.script(
      'reassignShard',
      [this.keys.job(jobId), this.keys.assignment(jobId)],
      [`w:${shardId}`, fromWorker, toWorker],
    )) as [number, unknown?];
    switch (code) {
      case ScriptCode.Ok:
        return true;
      case ScriptCode.ShardNotHeld:
        return false;
      case ScriptCode.JobNotFound:
        throw new JobNotFoundError(jobId);
      case ScriptCode.NoAssignment:
        throw new ShardNotFoundError(jobId, null);
      case ScriptCode.ShardNotFound:
        throw new ShardNotFoundError(jobId, shardId);
      default:
        throw unexpected('reassign-shard', code);
    }
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
    const [code] = (await this.script(
      'putSpins',
      [this.keys.job(jobId), this.keys.spins(jobId, shardId)],
      [step, asBuffer(packed)],
    )) as [number, number?];
    if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
    return code === ScriptCode.Ok;
  }

  async getSpins(jobId: string, shardId: number): Promise<SpinSnapshot | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    const [step, data] = await this.redis.hmgetBuffer(
      this.keys.spins(jobId, shardId),
      'step',
      'data',
    );
    if (!step || !data) return null;
    return { step: Number(step.toString()), packed: new Uint8Array(data) };
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
    return writeCheckpoint(this.store, jobId, shardId, step, data, generation);
  }

  async getCheckpoint(jobId: string, shardId: number): Promise<Checkpoint | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    return readCheckpoint(this.store, jobId, shardId);
  }

  async listCheckpoints(jobId: string): Promise<CheckpointInfo[]> {
    this.open();
    checkId('jobId', jobId);
    const hash = await this.redis.hgetall(this.keys.checkpoints(jobId));
    return checkpointInfos(hash);
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
    const maxLen = checkMaxLen('maxLen', options.maxLen) || this.cfg.maxEventsPerJob;
    const [code, id] = (await this.script(
      'appendEvent',
      [this.keys.job(jobId), this.keys.events(jobId)],
      [json, maxLen],
    )) as [number, string?];
    if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
    return id!;
  }

  async readEvents(jobId: string, options: ReadEventsOptions = {}): Promise<JobEvent[]> {
    this.open();
    checkId('jobId', jobId);
    const { afterId, count, blockMs } = checkReadEvents(options);
    if ((await this.redis.exists(this.keys.job(jobId))) === 0) throw new JobNotFoundError(jobId);
    const stream = this.keys.events(jobId);
    let reply: [string, [string, string[]][]][] | null;
    if (blockMs === 0) {
      reply = await this.redis.xread('COUNT', count, 'STREAMS', stream, afterId);
    } else {
      // A blocked XREAD holds its connection: never the shared one, and one per waiting reader.
      const conn = this.blockers.acquire();
      try {
        reply = await conn.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', stream, afterId);
      } catch (err) {
        if (this.closed) throw new BusClosedError();
        throw err;
      } finally {
        this.blockers.release(conn);
      }
    }
    const entries = reply?.[0]?.[1] ?? [];
    return entries.map(([id, fields]) => {
      const i = fields.indexOf('e');
      return { id, event: JSON.parse(fields[i + 1] ?? 'null') as JobEventRecord };
    });
  }

  // --- lifetime -------------------------------------------------------------------------------

  async ping(): Promise<void> {
    this.open();
    await this.redis.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.blockers.close();
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  // --- helpers --------------------------------------------------------------------------------

  private open(): void {
    if (this.closed) throw new BusClosedError();
  }

  /** Runs one of the scripts of src/lua (defined on the connection at connect). */
  private script(
    name: ScriptName,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
  ): Promise<unknown> {
    return runScript(this.redis, name, keys, args);
  }
}
