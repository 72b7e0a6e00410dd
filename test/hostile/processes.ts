// The real services the hostile-input corpus is sent to: the coordinator's and the worker's
// main, each a child process run under strace, so the test can list every file a service
// opened after it started listening, and read its peak resident memory from /proc.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One successful open: the path as the process named it, and its flags (`O_RDONLY|…`). */
export interface Opened {
  path: string;
  flags: string;
}

/** A service process under strace. */
export interface TracedService {
  readonly name: string;
  /** host:port its gRPC server listens on. */
  readonly address: string;
  /** The Node process's pid (strace is its parent). */
  readonly pid: number;
  /** Whether it is still running. */
  alive(): boolean;
  /** How it ended, when it did ('' while it runs). */
  ending(): string;
  /** Peak resident set size so far, in bytes (VmHWM). */
  peakRssBytes(): number;
  /** Files it opened since it started listening (successful opens only), as strace saw them. */
  openedSinceReady(): Opened[];
  /** Its recent log output. */
  output(): string;
  stop(): Promise<void>;
}

/** strace is needed to watch what the services open; the set-up script installs it. */
export function haveStrace(): boolean {
  return spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;
}

/**
 * Starts `services/<service>/dist/main.js` under strace with `env` added to this process's
 * environment, and waits for its `listening` log line (the first one with an address).
 */
export function startTraced(
  name: string,
  service: 'coordinator' | 'worker',
  env: Record<string, string>,
  /** strace writes `<traceFile>.<thread id>`, one file per thread. */
  traceFile: string,
  /**
   * A service whose resident memory passes this is killed (and counts as crashed), so a
   * memory bomb that gets through fails the test instead of exhausting the machine.
   */
  killAboveBytes: number,
): Promise<TracedService> {
  const main = join(ROOT, `services/${service}/dist/main.js`);
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    SPINMESH_LOG_LEVEL: 'info',
    SPINMESH_STOP_ON_STDIN_CLOSE: '1',
    ...env,
  };
  delete childEnv['REDIS_URL'];
  const child: ChildProcess = spawn(
    'strace',
    // -ff: one file per thread, so no call is split across lines by another thread's.
    ['-ff', '-qq', '-e', 'trace=open,openat,openat2', '-o', traceFile, process.execPath, main],
    { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let log = '';
  let ending = '';
  let readyAt = new Map<string, number>();
  const keep = (c: Buffer): void => {
    log = (log + c.toString()).slice(-200_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      ending ||= signal ? `killed by ${signal}` : `exited with code ${String(code)}`;
      resolve();
    }),
  );
  const kill = (): void => void child.kill('SIGKILL');
  process.once('exit', kill);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start listening within 60 s:\n${log.slice(-3000)}`)),
      60_000,
    );
    void exited.then(() =>
      reject(new Error(`${name} ${ending} before listening:\n${log.slice(-3000)}`)),
    );
    const onData = (): void => {
      for (const line of log.split('\n')) {
        let o: { msg?: string; address?: string };
        try {
          o = JSON.parse(line) as typeof o;
        } catch {
          continue;
        }
        if (o.msg !== 'listening' || typeof o.address !== 'string') continue;
        child.stdout!.off('data', onData);
        clearTimeout(timer);
        readyAt = traceSizes(traceFile);
        const pid = tracee(child.pid!);
        // A guard, not a wait: it samples memory until the process ends.
        const guard = setInterval(() => {
          peakRss(pid);
          if (residentBytes(pid) > killAboveBytes) {
            ending = `killed by the test: resident memory above ${Math.round(killAboveBytes / 2 ** 20)} MiB`;
            process.kill(pid, 'SIGKILL');
          }
        }, 100);
        void exited.then(() => clearInterval(guard));
        const address = o.address;
        resolve({
          name,
          address,
          pid,
          alive: () => child.exitCode === null && child.signalCode === null,
          ending: () => ending,
          peakRssBytes: () => peakRss(pid),
          openedSinceReady: () => openedSince(traceFile, readyAt),
          output: () => log,
          async stop() {
            process.removeListener('exit', kill);
            if (child.exitCode === null && child.signalCode === null) {
              child.stdin!.end();
              child.kill('SIGTERM');
              const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
              await exited;
              clearTimeout(t);
            }
          },
        });
        return;
      }
    };
    child.stdout!.on('data', onData);
  });
}

/** The process strace started (its only child). */
function tracee(stracePid: number): number {
  const children = readFileSync(`/proc/${stracePid}/task/${stracePid}/children`, 'utf8').trim();
  const pid = Number(children.split(' ')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`strace ${stracePid} has no child`);
  return pid;
}

/** VmRSS of a process, in bytes (0 once it has gone). */
function residentBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

let lastPeak = new Map<number, number>();

/** VmHWM of a process, in bytes; the last value read once it has exited. */
function peakRss(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) lastPeak.set(pid, Number(m[1]) * 1024);
  } catch {
    // gone: keep the last reading
  }
  return lastPeak.get(pid) ?? 0;
}

export function resetPeaks(): void {
  lastPeak = new Map();
}

/** The sizes of strace's per-thread output files (`<prefix>.<tid>`). */
function traceSizes(prefix: string): Map<string, number> {
  const dir = dirname(prefix);
  const base = `${basename(prefix)}.`;
  return new Map(
    readdirSync(dir)
      .filter((f) => f.startsWith(base))
      .map((f) => [join(dir, f), statSync(join(dir, f)).size]),
  );
}

/** The successful opens strace logged after the sizes `from` of its output files. */
function openedSince(prefix: string, from: Map<string, number>): Opened[] {
  const out: Opened[] = [];
  // e.g. `openat(AT_FDCWD, "/data/x.csv", O_RDONLY|O_CLOEXEC) = 21`
  const re = /open(?:at2?)?\((?:[^,]*, )?"((?:[^"\\]|\\.)*)", ([A-Z_|]+)[^\n]*\) = (-?\d+)/g;
  for (const file of traceSizes(prefix).keys()) {
    const text = readFileSync(file)
      .subarray(from.get(file) ?? 0)
      .toString('utf8');
    for (let m = re.exec(text); m; m = re.exec(text))
      if (Number(m[3]) >= 0) out.push({ path: m[1]!, flags: m[2]! });
  }
  return out;
}
