// The embedded local cluster: a coordinator process and worker processes started as children of
// the calling process (`spinmesh train` with workers, and the integration tests), talking over
// loopback gRPC, with the coordinator's in-process bus (or Redis when REDIS_URL is set). Every
// child is told to stop when its stdin closes, so none outlives the parent, even a killed one.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is services/coordinator/{src,dist}/local-cluster.*). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The built entry points of the two services. */
export const SERVICE_MAINS = {
  coordinator: `${ROOT}services/coordinator/dist/main.js`,
  worker: `${ROOT}services/worker/dist/main.js`,
} as const;

export interface LocalClusterOptions {
  /** Worker processes to start. */
  workers: number;
  /**
   * The environment the children start from (their own variables are added to it). REDIS_URL
   * in it makes the cluster use Redis instead of the coordinator's in-process bus.
   * @defaultValue process.env
   */
  env?: NodeJS.ProcessEnv;
  /** Extra variables for the coordinator. */
  coordinatorEnv?: Record<string, string>;
  /** Extra variables for every worker. */
  workerEnv?: Record<string, string>;
  /** Kernels of every process (SPINMESH_KERNELS); unset: inherited. */
  kernels?: string;
  /** Longest wait for the coordinator to say where it listens, in ms. @defaultValue 30000 */
  startTimeoutMs?: number;
  /** How long stop() lets the children end after SIGTERM before SIGKILL, in ms. @defaultValue 10000 */
  stopGraceMs?: number;
  /**
   * Called when a child exits while the cluster is not stopping, and is not restarted (the
   * coordinator, or a worker past `workerRestarts`).
   */
  onExit?: (name: string, code: number | null, signal: NodeJS.Signals | null) => void;
  /**
   * How many times, all slots together, a worker that exits on its own (a crash, a kill) is
   * started again in its slot: a new process with the same name and worker id, so that the
   * coordinator finds the worker of its assignment holding no job at its next Status call and
   * restores the job from its last common checkpoint, rather than waiting out the heartbeat
   * timeout. Bounded, so that a worker that cannot run ends the cluster instead of looping.
   * @defaultValue 0 (never: onExit is called)
   */
  workerRestarts?: number;
  /** Called when a worker was started again in its slot (`restarts`: so far, this one included). */
  onRestart?: (restart: WorkerRestart) => void;
  /** Paths of the entry points (tests). @defaultValue SERVICE_MAINS */
  mains?: { coordinator: string; worker: string };
}

/** A worker started again after it exited on its own (LocalClusterOptions.workerRestarts). */
export interface WorkerRestart {
  /** 'worker-<i>'. */
  name: string;
  /** The process that exited, and how. */
  oldPid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The new process. */
  pid: number | undefined;
  /** Restarts so far (this one included), and the most allowed. */
  restarts: number;
  limit: number;
}

/** One child process of the cluster. */
export interface LocalProcess {
  /** 'coordinator', or 'worker-<i>'. */
  readonly name: string;
  readonly child: ChildProcess;
  /** The last lines it wrote (stdout and stderr), for diagnostics. */
  tail(): string;
  /** Resolves when it has exited. */
  readonly exited: Promise<void>;
}

/** A coordinator and its workers, as child processes. */
export class LocalCluster {
  /** host:port of the coordinator's gRPC server (JobService; the bus when in-process). */
  address = '';
  /** The cluster secret every process was given. */
  readonly secret = randomBytes(18).toString('base64url');
  /** The key prefix on Redis (null with the in-process bus). */
  readonly redisPrefix: string | null;
  readonly processes = new Map<string, LocalProcess>();
  private readonly opts: LocalClusterOptions;
  private readonly env: NodeJS.ProcessEnv;
  private stopping = false;
  private nextWorker = 0;
  private restarts = 0;

  private constructor(opts: LocalClusterOptions) {
    this.opts = opts;
    this.env = { ...(opts.env ?? process.env) };
    const redis = (this.env['REDIS_URL'] ?? '') !== '';
    // A private prefix keeps this cluster's workers and jobs apart from any other on the server.
    this.redisPrefix = redis
      ? this.env['SPINMESH_REDIS_PREFIX'] ||
        `spinmesh-local-${process.pid}-${randomBytes(4).toString('hex')}`
      : null;
  }

  /** Starts the coordinator, waits until it listens, then starts the workers. */
  static async start(opts: LocalClusterOptions): Promise<LocalCluster> {
    const c = new LocalCluster(opts);
    try {
      await c.startCoordinator();
      for (let i = 0; i < opts.workers; i++) c.startWorker();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** Whether the cluster uses Redis (REDIS_URL) rather than the coordinator's in-process bus. */
  get redis(): boolean {
    return this.redisPrefix !== null;
  }

  /** The variables every child gets. */
  private common(): NodeJS.ProcessEnv {
    return {
      ...this.env,
      SPINMESH_CLUSTER_SECRET: this.secret,
      SPINMESH_STOP_ON_STDIN_CLOSE: '1',
      ...(this.opts.kernels ? { SPINMESH_KERNELS: this.opts.kernels } : {}),
      ...(this.redisPrefix !== null ? { SPINMESH_REDIS_PREFIX: this.redisPrefix } : {}),
    };
  }

  /** Starts (or restarts) the coordinator and waits for its address. */
  async startCoordinator(): Promise<string> {
    const mains = this.opts.mains ?? SERVICE_MAINS;
    const p = this.spawn('coordinator', mains.coordinator, {
      ...this.common(),
      SPINMESH_COORDINATOR_LISTEN: this.address === '' ? '127.0.0.1:0' : this.address,
      SPINMESH_LOG_LEVEL: this.env['SPINMESH_LOG_LEVEL'] ?? 'info',
      ...this.opts.coordinatorEnv,
    });
    this.address = await waitForListening(p, this.opts.startTimeoutMs ?? 30_000);
    return this.address;
  }

  /** Starts one more worker; returns its process name. */
  startWorker(): string {
    const i = this.nextWorker++;
    const name = `worker-${i}`;
    this.spawnWorker(i);
    return name;
  }

  /** Starts the worker of slot i (its first start, or a restart). */
  private spawnWorker(i: number): LocalProcess {
    const mains = this.opts.mains ?? SERVICE_MAINS;
    return this.spawn(`worker-${i}`, mains.worker, {
      ...this.common(),
      ...(this.redisPrefix === null ? { SPINMESH_BUS_ADDRESS: this.address } : {}),
      SPINMESH_WORKER_LISTEN: '127.0.0.1:0',
      SPINMESH_WORKER_ID: `local-${process.pid}-${i}`,
      OPENBLAS_NUM_THREADS: this.env['OPENBLAS_NUM_THREADS'] ?? '1',
      ...this.opts.workerEnv,
    });
  }

  /**
   * A child exited while the cluster was not stopping: a worker within the restart budget is
   * started again in its slot; anything else goes to onExit.
   */
  private exitedOnItsOwn(
    p: LocalProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    const limit = this.opts.workerRestarts ?? 0;
    const slot = /^worker-(\d+)$/.exec(p.name);
    if (slot === null || this.restarts >= limit) {
      this.opts.onExit?.(p.name, code, signal);
      return;
    }
    this.restarts++;
    let next: LocalProcess;
    try {
      next = this.spawnWorker(Number(slot[1]));
    } catch {
      this.opts.onExit?.(p.name, code, signal);
      return;
    }
    this.opts.onRestart?.({
      name: p.name,
      oldPid: p.child.pid,
      code,
      signal,
      pid: next.child.pid,
      restarts: this.restarts,
      limit,
    });
  }

  /** Sends a signal to one child (SIGKILL: a crash) and waits for it to exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.processes.get(name);
    if (!p) throw new Error(`no process '${name}'`);
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
    await p.exited;
  }

  /**
   * Stops every child: SIGTERM, then SIGKILL after the grace period; the workers first, so that
   * they can still reach the coordinator's bus while they drain. Idempotent.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const grace = this.opts.stopGraceMs ?? 10_000;
    const end = async (p: LocalProcess): Promise<void> => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), grace);
      await p.exited;
      clearTimeout(timer);
    };
    const all = [...this.processes.values()];
    await Promise.all(all.filter((p) => p.name !== 'coordinator').map(end));
    await Promise.all(all.filter((p) => p.name === 'coordinator').map(end));
  }

  /** The last lines of every child's output, for an error report. */
  tails(): string {
    return [...this.processes.values()]
      .map((p) => `--- ${p.name} (pid ${p.child.pid ?? '?'}) ---\n${p.tail()}`)
      .join('\n');
  }

  private spawn(name: string, main: string, env: NodeJS.ProcessEnv): LocalProcess {
    if (!existsSync(main))
      throw new Error(`${main} is missing: run \`npm run build\` in the repository first`);
    const child = spawn(process.execPath, [main], {
      env,
      // stdin stays an open pipe: when this process dies, it closes and the child stops.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        lines.push(line.length > 2000 ? `${line.slice(0, 2000)}...` : line);
        if (lines.length > 200) lines.shift();
      }
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.stdin!.on('error', () => undefined);
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        if (!this.stopping) this.exitedOnItsOwn(p, code, signal);
        resolve();
      });
      child.once('error', () => resolve());
    });
    const p: LocalProcess = { name, child, exited, tail: () => lines.join('\n') };
    this.processes.set(name, p);
    return p;
  }
}

/** Reads the coordinator's log lines until the `listening` one, and returns its address. */
function waitForListening(p: LocalProcess, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const o = JSON.parse(line) as { msg?: unknown; address?: unknown };
          if (o.msg === 'listening' && typeof o.address === 'string') {
            done();
            resolve(o.address);
            return;
          }
        } catch {
          // not a log line
        }
      }
    };
    const onExit = (): void => {
      done();
      reject(new Error(`the coordinator exited during start-up:\n${p.tail()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the coordinator did not start within ${timeoutMs} ms:\n${p.tail()}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      p.child.stdout!.off('data', onData);
      p.child.off('exit', onExit);
    };
    p.child.stdout!.on('data', onData);
    p.child.once('exit', onExit);
  });
}
