// The bus over Redis (ioredis): what a cluster's coordinator and workers share. Multi-key
// changes are Lua scripts (src/lua); keys come from keys.ts only.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import type { Bus } from './bus.js';
import { fromHash, jobField, stateEventJson, toRecord } from './codec.js';
import {
  BusClosedError,
  BusConnectionError,
  CheckpointReadError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
} from './errors.js';
import { Keys } from './keys.js';
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

/** TLS settings of the Redis connection. PEM contents and file paths may be mixed. */
export interface RedisTlsOptions {
  /** CA certificate(s), PEM, to trust a server certificate from a private CA. */
  ca?: string | Buffer;
  /** Path of a PEM file with the CA certificate(s); read when the bus connects. */
  caFile?: string;
  /** Client certificate, PEM (for servers that require client certificates). */
  cert?: string | Buffer;
  /** Path of a PEM file with the client certificate. */
  certFile?: string;
  /** Client private key, PEM. */
  key?: string | Buffer;
  /** Path of a PEM file with the client private key. */
  keyFile?: string;
  /**
   * Server name for SNI and the certificate check.
   * @defaultValue the host
   */
  servername?: string;
  /**
   * Refuse a server whose certificate does not check out. Turn off only for tests.
   * @defaultValue true
   */
  rejectUnauthorized?: boolean;
}

/**
 * Options of {@link RedisBus}. Explicit fields win over the parts of `url`.
 */
export interface RedisBusOptions {
  /**
   * `redis://[[username]:password@]host[:port][/db]`, or `rediss://...` for TLS.
   * @defaultValue none (host, port and the rest apply)
   */
  url?: string;
  /** @defaultValue `'127.0.0.1'` */
  host?: string;
  /** @defaultValue `6379` */
  port?: number;
  /**
   * ACL user name (Redis 6+).
   * @defaultValue none: the `default` user
   */
  username?: string;
  /**
   * Password of the ACL user, or the `requirepass` password.
   * @defaultValue none
   */
  password?: string;
  /**
   * TLS: `true` for the system's trusted CAs, or settings.
   * @defaultValue off, on for `rediss://` URLs
   */
  tls?: boolean | RedisTlsOptions;
  /**
   * Logical database number.
   * @defaultValue `0`
   */
  db?: number;
  /**
   * Every key of the bus lies under `<prefix>:`. Clusters (or tests) that share a Redis use
   * different prefixes. 1-64 characters of `[A-Za-z0-9._-]`.
   * @defaultValue `'spinmesh'`
   */
  prefix?: string;
  /**
   * Time to establish a connection, in milliseconds.
   * @defaultValue `10000`
   */
  connectTimeoutMs?: number;
  /**
   * Time for one command's reply, in milliseconds, before it fails with "Command timed out".
   * Blocking reads get their `blockMs` plus this.
   * @defaultValue `10000`
   */
  commandTimeoutMs?: number;
  /**
   * Checkpoints are stored in chunks of this many bytes (Redis strings are best kept small).
   * @defaultValue `1048576` (1 MiB)
   */
  checkpointChunkBytes?: number;
  /**
   * Keep at most this many newest events per job stream (exact trimming), unless an append
   * says otherwise.
   * @defaultValue no trimming
   */
  maxEventsPerJob?: number;
  /**
   * Name of the connections in `CLIENT LIST`; blocking readers get `-block` appended.
   * @defaultValue `'spinmesh-bus'`
   */
  connectionName?: string;
  /**
   * Called with connection errors (the client reconnects on its own). Libraries do not log: pass
   * your logger here.
   * @defaultValue ignore them (the failing calls reject anyway)
   */
  onError?: (err: Error) => void;
}

/** Defaults of {@link RedisBusOptions}. */
export const REDIS_BUS_DEFAULTS = {
  host: '127.0.0.1',
  port: 6379,
  db: 0,
  prefix: 'spinmesh',
  connectTimeoutMs: 10_000,
  commandTimeoutMs: 10_000,
  checkpointChunkBytes: 1 << 20,
  connectionName: 'spinmesh-bus',
} as const;

/** The variables redisBusOptionsFromEnv reads (services list them with their own). */
export const REDIS_ENV_VARS = [
  'REDIS_URL',
  'REDIS_USERNAME',
  'REDIS_PASSWORD',
  'REDIS_TLS_CA',
  'SPINMESH_REDIS_PREFIX',
] as const;

/**
 * Reads the bus's settings from the environment:
 * - `REDIS_URL`: `redis://` or `rediss://` URL (default `redis://127.0.0.1:6379`)
 * - `REDIS_USERNAME`, `REDIS_PASSWORD`: ACL credentials (override those in the URL)
 * - `REDIS_TLS_CA`: path of a PEM CA file; turns TLS on
 * - `SPINMESH_REDIS_PREFIX`: key prefix (default `spinmesh`)
 *
 * Empty variables count as unset.
 */
export function redisBusOptionsFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): RedisBusOptions {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const options: RedisBusOptions = {};
  const url = get('REDIS_URL');
  const username = get('REDIS_USERNAME');
  const password = get('REDIS_PASSWORD');
  const ca = get('REDIS_TLS_CA');
  const prefix = get('SPINMESH_REDIS_PREFIX');
  if (url !== undefined) options.url = url;
  if (username !== undefined) options.username = username;
  if (password !== undefined) options.password = password;
  if (ca !== undefined) options.tls = { caFile: ca };
  if (prefix !== undefined) options.prefix = prefix;
  return options;
}

interface Resolved {
  redis: RedisOptions;
  /** host:port (user, TLS), for error messages; never the password. */
  target: string;
  prefix: string;
  commandTimeoutMs: number;
  checkpointChunkBytes: number;
  maxEventsPerJob: number;
  connectionName: string;
}

/** Merges the URL, the options and the defaults, and checks them. */
function resolveOptions(options: RedisBusOptions): Resolved {
  let host: string = REDIS_BUS_DEFAULTS.host;
  let port: number = REDIS_BUS_DEFAULTS.port;
  let db: number = REDIS_BUS_DEFAULTS.db;
  let username: string | undefined;
  let password: string | undefined;
  let tls: boolean | RedisTlsOptions = false;
  if (options.url !== undefined) {
    let u: URL;
    try {
      u = new URL(options.url);
    } catch {
      throw new InvalidArgumentError('url', 'is not a URL');
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
      throw new InvalidArgumentError(
        'url',
        `must start with redis:// or rediss:// (got ${u.protocol}//)`,
      );
    }
    if (u.hostname) host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    if (u.port) port = Number(u.port);
    if (u.username) username = decodeURIComponent(u.username);
    if (u.password) password = decodeURIComponent(u.password);
    const path = u.pathname.replace(/^\//, '');
    if (path !== '') {
      if (!/^\d+$/.test(path))
        throw new InvalidArgumentError('url', `has a database '${path}' that is not a number`);
      db = Number(path);
    }
    if (u.protocol === 'rediss:') tls = true;
  }
  if (options.host !== undefined) host = options.host;
  if (options.port !== undefined) port = options.port;
  if (options.db !== undefined) db = options.db;
  if (options.username !== undefined) username = options.username;
  if (options.password !== undefined) password = options.password;
  if (options.tls !== undefined) tls = options.tls;
  checkPositiveInt('port', port, 65535);
  checkNonNegativeInt('db', db);
  const prefix = new Keys(options.prefix ?? REDIS_BUS_DEFAULTS.prefix).prefix;
  const connectTimeoutMs = checkPositiveInt(
    'connectTimeoutMs',
    options.connectTimeoutMs ?? REDIS_BUS_DEFAULTS.connectTimeoutMs,
  );
  const commandTimeoutMs = checkPositiveInt(
    'commandTimeoutMs',
    options.commandTimeoutMs ?? REDIS_BUS_DEFAULTS.commandTimeoutMs,
  );
  const checkpointChunkBytes = checkPositiveInt(
    'checkpointChunkBytes',
    options.checkpointChunkBytes ?? REDIS_BUS_DEFAULTS.checkpointChunkBytes,
    512 << 20,
  );
  const maxEventsPerJob =
    options.maxEventsPerJob === undefined
      ? 0
      : checkPositiveInt('maxEventsPerJob', options.maxEventsPerJob);
  const connectionName = options.connectionName ?? REDIS_BUS_DEFAULTS.connectionName;
  const redis: RedisOptions = {
    host,
    port,
    db,
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    connectionName,
    lazyConnect: true,
  };
  if (username !== undefined) redis.username = username;
  if (password !== undefined) redis.password = password;
  if (tls !== false) redis.tls = tlsOptions(tls === true ? {} : tls);
  const who = username !== undefined ? ` as '${username}'` : '';
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}${tls !== false ? ' (TLS)' : ''}${who}`;
  return {
    redis,
    target,
    prefix,
    commandTimeoutMs,
    checkpointChunkBytes,
    maxEventsPerJob,
    connectionName,
  };
}

function tlsOptions(t: RedisTlsOptions): ConnectionOptions {
  const read = (field: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new InvalidArgumentError(`tls.${field}`, `cannot be read (${(err as Error).message})`);
    }
  };
  const out: ConnectionOptions = {};
  const ca = t.ca ?? (t.caFile !== undefined ? read('caFile', t.caFile) : undefined);
  const cert = t.cert ?? (t.certFile !== undefined ? read('certFile', t.certFile) : undefined);
  const key = t.key ?? (t.keyFile !== undefined ? read('keyFile', t.keyFile) : undefined);
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  if (t.servername !== undefined) out.servername = t.servername;
  if (t.rejectUnauthorized !== undefined) out.rejectUnauthorized = t.rejectUnauthorized;
  return out;
}

let scripts: LoadedScript[] | undefined;

/** Most idle blocking connections kept for reuse; more are opened while needed. */
const MAX_IDLE_BLOCKERS = 4;
/** Attempts of a checkpoint read that a concurrent replacement spoils before giving up. */
const CHECKPOINT_READ_ATTEMPTS = 10;

/** The {@link Bus} over Redis. Create one with {@link RedisBus.connect}. */
export class RedisBus implements Bus {
  /** The key builder; every key the bus touches comes from it. */
  readonly keys: Keys;
  private closed = false;
  private readonly idleBlockers: Redis[] = [];
  private readonly blockers = new Set<Redis>();

  private constructor(
    private readonly redis: Redis,
    private readonly cfg: Resolved,
    private readonly onError: ((err: Error) => void) | undefined,
  ) {
    this.keys = new Keys(cfg.prefix);
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
    await this.deleteMatching(this.keys.jobAll(jobId));
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
    const size = this.cfg.checkpointChunkBytes;
    const version = randomBytes(8).toString('hex');
    const chunks = Math.ceil(data.length / size);
    const chunkKeys = Array.from({ length: chunks }, (_, i) =>
      this.keys.checkpointChunk(jobId, shardId, version, i),
    );
    if (chunks > 0) {
      const bytes = asBuffer(data);
      const pipeline = this.redis.pipeline();
      chunkKeys.forEach((key, i) => pipeline.set(key, bytes.subarray(i * size, (i + 1) * size)));
      await exec(pipeline);
    }
    const pointer: CheckpointPointer = {
      version,
      step,
      chunks,
      bytes: data.length,
      at: Date.now(),
      gen: generation,
    };
    const [code, previous] = (await this.script(
      'commitCheckpoint',
      [this.keys.job(jobId), this.keys.checkpoints(jobId), this.keys.assignment(jobId)],
      [shardId, step, JSON.stringify(pointer), generation],
    )) as [number, (string | number)?];
    if (code !== ScriptCode.Ok) {
      await this.unlink(chunkKeys);
      if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
      if (code === ScriptCode.StaleGeneration)
        throw new StaleWriterError(jobId, shardId, generation, Number(previous));
      return false;
    }
    if (typeof previous === 'string' && previous !== '') {
      const old = JSON.parse(previous) as CheckpointPointer;
      await this.unlink(
        Array.from({ length: old.chunks }, (_, i) =>
          this.keys.checkpointChunk(jobId, shardId, old.version, i),
        ),
      );
    }
    return true;
  }

  async getCheckpoint(jobId: string, shardId: number): Promise<Checkpoint | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    // Chunks of a version never change once written, and go only after the pointer has moved
    // on: if every chunk of the version we read is there, the bytes are that version's, whole.
    for (let attempt = 0; attempt < CHECKPOINT_READ_ATTEMPTS; attempt++) {
      const json = await this.redis.hget(this.keys.checkpoints(jobId), `p:${shardId}`);
      if (json === null) return null;
      const p = JSON.parse(json) as CheckpointPointer;
      const data = new Uint8Array(p.bytes);
      if (p.chunks === 0) return { step: p.step, data };
      const parts = await this.redis.mgetBuffer(
        Array.from({ length: p.chunks }, (_, i) =>
          this.keys.checkpointChunk(jobId, shardId, p.version, i),
        ),
      );
      if (parts.some((part) => part === null)) continue; // replaced meanwhile: read the new one
      let offset = 0;
      for (const part of parts as Buffer[]) {
        if (offset + part.length > p.bytes) break;
        data.set(part, offset);
        offset += part.length;
      }
      if (offset !== p.bytes || parts.reduce((n, b) => n + b!.length, 0) !== p.bytes) {
        throw new Error(
          `corrupt checkpoint of job '${jobId}' shard ${shardId}: chunks hold a different size than ${p.bytes} bytes`,
        );
      }
      return { step: p.step, data };
    }
    throw new CheckpointReadError(jobId, shardId, CHECKPOINT_READ_ATTEMPTS);
  }

  async listCheckpoints(jobId: string): Promise<CheckpointInfo[]> {
    this.open();
    checkId('jobId', jobId);
    const hash = await this.redis.hgetall(this.keys.checkpoints(jobId));
    const out: CheckpointInfo[] = [];
    for (const [field, json] of Object.entries(hash)) {
      if (!field.startsWith('p:')) continue;
      const p = JSON.parse(json) as CheckpointPointer;
      out.push({
        shardId: Number(field.slice(2)),
        step: p.step,
        bytes: p.bytes,
        createdAt: p.at,
        generation: p.gen ?? 0,
      });
    }
    return out.sort((a, b) => a.shardId - b.shardId);
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
      const conn = this.acquireBlocker();
      try {
        reply = await conn.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', stream, afterId);
      } catch (err) {
        if (this.closed) throw new BusClosedError();
        throw err;
      } finally {
        this.releaseBlocker(conn);
      }
    }
    const entries = reply?.[0]?.[1] ?? [];
    return entries.map(([id, fields]) => {
      const i = fields.indexOf('e');
      return { id, event: JSON.parse(fields[i + 1] ?? 'null') as JobEventRecord };
    });
  }

  private acquireBlocker(): Redis {
    const idle = this.idleBlockers.pop();
    if (idle) return idle;
    const conn = this.redis.duplicate({
      connectionName: `${this.cfg.connectionName}-block`,
      // The command timeout would cut a long BLOCK short; the blocking time-out (BLOCK plus
      // this much) guards against a connection that died silently.
      commandTimeout: undefined,
      blockingTimeout: this.cfg.commandTimeoutMs,
      blockingTimeoutGrace: this.cfg.commandTimeoutMs,
    });
    conn.on('error', (err: Error) => this.onError?.(err));
    this.blockers.add(conn);
    return conn;
  }

  private releaseBlocker(conn: Redis): void {
    if (!this.closed && this.idleBlockers.length < MAX_IDLE_BLOCKERS && conn.status !== 'end') {
      this.idleBlockers.push(conn);
      return;
    }
    this.blockers.delete(conn);
    conn.disconnect();
  }

  // --- lifetime -------------------------------------------------------------------------------

  async ping(): Promise<void> {
    this.open();
    await this.redis.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.blockers) conn.disconnect();
    this.blockers.clear();
    this.idleBlockers.length = 0;
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
    const command = (
      this.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>
    )[name]!;
    return command.call(this.redis, ...keys, ...args);
  }

  private async unlink(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) await this.redis.unlink(...keys.slice(i, i + 1000));
  }

  /** Deletes every key that matches a SCAN pattern. */
  private async deleteMatching(pattern: string): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length > 0) await this.redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  }
}

/** Where a shard's current checkpoint lies (JSON in the job's checkpoints hash). */
interface CheckpointPointer {
  version: string;
  step: number;
  chunks: number;
  bytes: number;
  at: number;
  /** The writer's generation (absent in pointers written before it was kept: 0). */
  gen?: number;
}

/** Runs a MULTI or pipeline and returns its replies, throwing the first error. */
async function exec(commands: ChainableCommander): Promise<unknown[]> {
  const results = await commands.exec();
  if (results === null) throw new Error('Redis transaction aborted');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function unexpected(script: string, code: unknown): Error {
  return new Error(`unexpected reply ${String(code)} from ${script}`);
}
