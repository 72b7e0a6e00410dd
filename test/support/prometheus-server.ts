// Starts a real, throw-away Prometheus (Debian's) on a free port of 127.0.0.1 with a given
// configuration, for tests, and stops it. Its storage lives in a fresh temporary directory,
// removed on stop. Also: instant queries over its HTTP API.
import { accessSync, constants, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { stringify } from 'yaml';

import { freePort, startServerProcess } from './server-process.js';

export interface PrometheusServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly pid: number;
  readonly port: number;
  /** Stops the server (SIGTERM, then waits for it to exit) and removes its directory. */
  stop(): Promise<void>;
}

/** Finds prometheus on PATH or in /usr/bin, or fails naming the package that provides it. */
export function findPrometheus(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, 'prometheus');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    "prometheus not found: install the Debian package 'prometheus' (apt-get install prometheus, " +
      'or run scripts/setup.sh); the metrics end-to-end test scrapes the services with a real one',
  );
}

/** Starts Prometheus with `config` (the parsed prometheus.yml); retries on a port taken meanwhile. */
export async function startPrometheus(config: unknown): Promise<PrometheusServer> {
  const bin = findPrometheus();
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await startOn(bin, port, config);
    } catch (err) {
      lastError = err as Error;
      if (!/address already in use/i.test(lastError.message)) throw lastError;
    }
  }
  throw lastError!;
}

async function startOn(bin: string, port: number, config: unknown): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'spinmesh-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, stringify(config));
  const server = startServerProcess(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    dir,
  );
  const { child, stop } = server;
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (server.exited()) {
      await stop();
      throw new Error(
        `prometheus exited during start-up (port ${port}): ${server.output().trim()}`,
      );
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready on port ${port} within 20 s: ${server.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, pid: child.pid!, port, stop };
}

/** One series of an instant query's vector result. */
export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** GET /api/v1/<path> with query parameters; throws unless the API says success. */
export async function promApi<T>(
  url: string,
  path: string,
  params: Record<string, string | string[]>,
): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const x of [v].flat()) q.append(k, x);
  const res = await fetch(`${url}/api/v1/${path}?${q}`);
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success')
    throw new Error(`${path} ${JSON.stringify(params)}: ${body.error}`);
  return body.data;
}

/** An instant query's samples (a scalar answer comes back as one sample without labels). */
export async function instantQuery(url: string, query: string): Promise<Sample[]> {
  const data = await promApi<{ resultType: string; result: unknown }>(url, 'query', { query });
  if (data.resultType === 'vector') return data.result as Sample[];
  if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
  throw new Error(`${query}: a ${data.resultType} result, not an instant vector`);
}
