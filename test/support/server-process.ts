// A server the tests start as a child process (redis-server, prometheus): its recent output for
// error messages, a kill when the test process exits, and an orderly stop that also removes its
// working directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';

export interface ServerProcess {
  readonly child: ChildProcess;
  /** The last 4000 characters it wrote. */
  output(): string;
  /** Whether it has exited. */
  exited(): boolean;
  /** SIGTERM (SIGKILL after 5 s), then removes `dir`. */
  stop(): Promise<void>;
}

/** Starts `bin` with `args` (and `env`, else this process's environment); `dir` is its own. */
export function startServerProcess(
  bin: string,
  args: string[],
  dir: string,
  env?: NodeJS.ProcessEnv,
): ServerProcess {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const hasExited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  return {
    child,
    output: () => output,
    exited: hasExited,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (!hasExited()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A port of 127.0.0.1 that was free a moment ago: listen on 0, read the port, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
