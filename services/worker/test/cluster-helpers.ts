// Test harness for real worker processes: a bus served over gRPC from this process (or Redis),
// worker child processes (node services/worker/dist/main.js) with their JSON logs, a
// WorkerControl client that plays the coordinator, and the references a sharded run must equal.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import { BUS_SERVER_OPTIONS, MemoryBus, serveBus, type Bus, type JobEvent } from '@spinmesh/bus';
import { PortableKernels, type Kernels } from '@spinmesh/kernels';
import {
  LoopbackCluster,
  Network,
  Trainer,
  assemble,
  barsAndStripes,
  columnMeans,
  evenLayout,
  initVisibleBias,
  validateJobSpec,
  type Dataset,
  type JobSpec,
  type ShardLayout,
} from '@spinmesh/model';
import {
  UnitType,
  WorkerControlClient,
  WorkerState,
  type AssignResponse,
  type ShardAssignment,
  type StopResponse,
  type CheckpointAtRequest,
  type CheckpointAtResponse,
  type WorkerStatus,
} from '@spinmesh/proto';
import { ShardEvents, readShardExports } from '@spinmesh/cluster';

import { SECRET_METADATA, jobParameterSource } from '../src/index.js';

export const root = fileURLToPath(new URL('../../..', import.meta.url));
export const mainJs = fileURLToPath(new URL('../dist/main.js', import.meta.url));
export const portable = new PortableKernels();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until it holds, failing after `ms`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Whether something accepts TCP connections at host:port. */
export function portOpen(address: string): Promise<boolean> {
  const m = /^(.*):(\d+)$/.exec(address)!;
  return new Promise((resolve) => {
    const sock = createConnection({ host: m[1]!, port: Number(m[2]) });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

// --- the bus, served from this process ------------------------------------------------------------

export interface ServedBus {
  address: string;
  bus: MemoryBus;
  close(): Promise<void>;
}

export async function serveMemoryBus(secret: string): Promise<ServedBus> {
  const bus = new MemoryBus();
  const server = new grpc.Server(BUS_SERVER_OPTIONS);
  serveBus(server, bus, { secret });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    bus,
    close: async () => {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await bus.close();
    },
  };
}

// --- worker processes -----------------------------------------------------------------------------

export interface LogLine {
  level: string;
  msg: string;
  worker: string;
  [k: string]: unknown;
}

export interface WorkerProc {
  id: string;
  child: ChildProcess;
  /** host:port it registered (from its `listening` line). */
  address: string;
  logs: LogLine[];
  stderr: string[];
  /** Exit code and signal, once it exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts and reaps worker processes. */
export class WorkerProcs {
  readonly all = new Set<WorkerProc>();

  constructor(private readonly baseEnv: Record<string, string>) {}

  async start(id: string, env: Record<string, string> = {}): Promise<WorkerProc> {
    const child = spawn(process.execPath, [mainJs], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        SPINMESH_WORKER_ID: id,
        SPINMESH_KERNELS: 'portable',
        SPINMESH_HEARTBEAT_MS: '200',
        SPINMESH_PROGRESS_MS: '100',
        ...this.baseEnv,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: LogLine[] = [];
    const stderr: string[] = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    let buffered = '';
    let onLine: ((l: LogLine) => void) | null = null;
    child.stdout!.on('data', (b: Buffer) => {
      buffered += b.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const l = JSON.parse(line) as LogLine;
          logs.push(l);
          onLine?.(l);
        } catch {
          stderr.push(`stdout: ${line}`);
        }
      }
    });
    child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
    const address = await new Promise<string>((resolve, reject) => {
      onLine = (l) => {
        if (l.msg === 'listening') resolve(String(l['address']));
      };
      void exited.then(({ code }) =>
        reject(new Error(`worker ${id} exited (${code}) before listening: ${stderr.join('')}`)),
      );
    });
    onLine = null;
    const w: WorkerProc = { id, child, address, logs, stderr, exited };
    this.all.add(w);
    void exited.then(() => this.all.delete(w));
    return w;
  }

  /** SIGKILLs whatever still runs and waits for it. */
  async killAll(): Promise<void> {
    const left = [...this.all];
    for (const w of left) w.child.kill('SIGKILL');
    await Promise.all(left.map((w) => w.exited));
  }
}

// --- playing the coordinator ----------------------------------------------------------------------

/** WorkerControl calls with the cluster secret. */
export class Control {
  private readonly clients = new Map<string, WorkerControlClient>();

  constructor(private readonly secret: string) {}

  private client(address: string): WorkerControlClient {
    let c = this.clients.get(address);
    if (!c) {
      c = new WorkerControlClient(address, grpc.credentials.createInsecure());
      this.clients.set(address, c);
    }
    return c;
  }

  private md(secret = this.secret): grpc.Metadata {
    const md = new grpc.Metadata();
    if (secret !== '') md.set(SECRET_METADATA, secret);
    return md;
  }

  assign(address: string, a: ShardAssignment, secret?: string): Promise<AssignResponse> {
    return new Promise((resolve, reject) =>
      this.client(address).assign(a, this.md(secret), { deadline: Date.now() + 10_000 }, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  }

  stop(address: string, jobId: string, checkpoint: boolean): Promise<StopResponse> {
    return new Promise((resolve, reject) =>
      this.client(address).stop(
        { jobId, checkpoint },
        this.md(),
        { deadline: Date.now() + 20_000 },
        (e, r) => (e ? reject(e) : resolve(r)),
      ),
    );
  }

  checkpointAt(address: string, r: CheckpointAtRequest): Promise<CheckpointAtResponse> {
    return new Promise((resolve, reject) =>
      this.client(address).checkpointAt(
        r,
        this.md(),
        { deadline: Date.now() + 10_000 },
        (e, res) => (e ? reject(e) : resolve(res)),
      ),
    );
  }

  status(address: string): Promise<WorkerStatus> {
    return new Promise((resolve, reject) =>
      this.client(address).status({}, this.md(), { deadline: Date.now() + 5_000 }, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/** Bars-and-stripes 4x4 with an RBM 16-16: 30 rows, batches of 10, PCD with centring. */
export function basSpec(epochs: number, seed = 7): JobSpec {
  return validateJobSpec({
    name: 'bas-cluster',
    seed,
    network: { rbm: { visible: 16, hidden: 16 } },
    data: { kind: 'bas', size: 4 },
    epochs,
    train: {
      batchSize: 10,
      negative: 'pcd',
      chains: 12,
      k: 1,
      learningRate: 0.1,
      momentum: 0.5,
      weightDecay: 0.001,
      centring: true,
      statistics: 'samples',
    },
    init: { weightStd: 0.1 },
  });
}

export interface ClusterJob {
  id: string;
  spec: JobSpec;
  layout: ShardLayout;
  data: Dataset;
  totalSteps: number;
}

/** Stores the job as the coordinator would: record with spec and layout, and the assignment. */
export async function createJob(
  bus: Bus,
  id: string,
  spec: JobSpec,
  shards: number,
): Promise<ClusterJob> {
  const layout = evenLayout(spec.network, shards);
  const data = barsAndStripes(4);
  const totalSteps = spec.epochs * Math.ceil(data.rows / spec.train.batchSize!);
  await bus.createJob({ id, spec, layout, totalSteps });
  return { id, spec, layout, data, totalSteps };
}

const names = (job: ClusterJob): string[] => job.spec.network.layers.map((l) => l.name);

function ranges(job: ClusterJob, s: number): { layer: number; start: number; end: number }[] {
  return names(job).flatMap((name, layer) => {
    const r = job.layout[s]![name];
    return r ? [{ layer, start: r[0], end: r[1] }] : [];
  });
}

/** Every shard's ShardAssignment for workers at `addresses` (shard s on addresses[s]). */
export function assignments(
  job: ClusterJob,
  addresses: readonly string[],
  generation: number,
  opts: { staleness?: number; checkpointEvery: number; restoreFrom?: number },
): ShardAssignment[] {
  const K = job.layout.length;
  return addresses.map((_, s) => ({
    jobId: job.id,
    generation,
    shardId: s,
    shardCount: K,
    network: {
      layers: job.spec.network.layers.map((l) => ({
        name: l.name,
        size: l.size,
        units: UnitType.UNIT_TYPE_BERNOULLI,
        lateral: false,
      })),
      connections: job.spec.network.connections.map((c) => ({ from: c.from, to: c.to })),
    },
    units: ranges(job, s),
    // Every shard of a cross-layer RBM split touches every other.
    peers: addresses
      .map((address, p) => ({ shardId: p, address, units: ranges(job, p) }))
      .filter((p) => p.shardId !== s),
    staleness: opts.staleness ?? 0,
    checkpointEverySteps: opts.checkpointEvery,
    restoreFromStep: opts.restoreFrom ?? 0,
    seed: job.spec.seed,
  }));
}

/** Waits until every worker reports DONE (fails fast on FAILED). */
export async function waitDone(
  control: Control,
  addresses: readonly string[],
  ms: number,
): Promise<WorkerStatus[]> {
  let last: WorkerStatus[] = [];
  await until(
    async () => {
      last = await Promise.all(addresses.map((a) => control.status(a)));
      const failed = last.find((s) => s.state === WorkerState.WORKER_STATE_FAILED);
      if (failed) throw new Error(`worker ${failed.workerId} failed: ${failed.error}`);
      return last.every((s) => s.state === WorkerState.WORKER_STATE_DONE);
    },
    ms,
    'every shard to be done',
  );
  return last;
}

/** The model assembled from the shards' final exports on the bus. */
export async function assembleFromBus(bus: Bus, job: ClusterJob): Promise<Network> {
  const exports = await readShardExports(bus, job.id, job.layout.length, job.totalSteps);
  if (exports === null) throw new Error('some shard has no final export on the bus');
  return assemble(job.spec.network, portable, exports);
}

/** The same job in one process, shard by shard (LoopbackCluster, lockstep). */
export function loopbackReference(job: ClusterJob, k: Kernels = portable): Network {
  const c = new LoopbackCluster({
    network: job.spec.network,
    train: job.spec.train,
    layout: job.layout,
    kernels: k,
    data: { x: job.data.x, rows: job.data.rows },
    steps: job.totalSteps,
    params: jobParameterSource(job.spec, job.data, k),
  });
  c.run();
  return c.assemble();
}

/** The single-process Trainer on the same initial network (runJob's), sampled statistics. */
export function singleProcessReference(job: ClusterJob, k: Kernels = portable): Network {
  const net = Network.create(job.spec.network, k, {
    seed: job.spec.seed,
    weightStd: job.spec.init.weightStd ?? 0.01,
  });
  initVisibleBias(net, columnMeans(job.data));
  const tr = new Trainer(net, { ...job.spec.train, statistics: 'samples' });
  for (let e = 0; e < job.spec.epochs; e++) tr.trainEpoch(job.data.x, job.data.rows);
  return net;
}

/** Whether two networks' parameters are bit-identical, and the largest difference. */
export function compare(a: Network, b: Network): { identical: boolean; maxDiff: number } {
  let identical = true;
  let maxDiff = 0;
  const pb = b.parameters();
  a.parameters().forEach((p, i) => {
    const q = pb[i]!.data;
    for (let j = 0; j < p.data.length; j++) {
      if (!Object.is(p.data[j], q[j])) identical = false;
      maxDiff = Math.max(maxDiff, Math.abs(p.data[j]! - q[j]!));
    }
  });
  return { identical, maxDiff };
}

/** Every event of a job so far. */
export async function events(bus: Bus, jobId: string): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await bus.readEvents(jobId, { count: 1000, ...(after ? { after } : {}) });
    out.push(...page);
    if (page.length < 1000) return out;
    after = page.at(-1)!.id;
  }
}

/** Waits for a shard's checkpoint event of at least `step`. */
export async function waitCheckpoint(
  bus: Bus,
  jobId: string,
  shard: number,
  step: number,
  ms: number,
): Promise<number> {
  let got = 0;
  await until(
    async () => {
      const es = await events(bus, jobId);
      for (const e of es) {
        const ev = e.event;
        if (ev.type === ShardEvents.checkpoint && ev['shard'] === shard)
          got = Math.max(got, Number(ev['step']));
      }
      return got >= step;
    },
    ms,
    `shard ${shard}'s checkpoint at step ${step}`,
  );
  return got;
}
