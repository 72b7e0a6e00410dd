// A Docker engine with Compose v2 for the compose end-to-end test: the one this machine's
// environment points at when it answers, else a private dockerd from scripts/containers/engine.sh;
// and the registry images the project names, pulled where a registry answers, else built as local
// stand-ins by scripts/containers/standins.sh (test scaffolding, never product).
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPTS = fileURLToPath(new URL('../../scripts/containers/', import.meta.url));

export interface Engine {
  /** The environment every docker command of the test runs with. */
  env: NodeJS.ProcessEnv;
  /** Where it came from: 'ambient' (already there) or 'private' (started by the test). */
  kind: 'ambient' | 'private';
  /** Stops the engine if the test started it (its data root stays: the images are a cache). */
  stop(): Promise<void>;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end with a time limit; never throws for a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  cwd?: string,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Like run, but throws with the command's last output lines when it fails. */
export async function must(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  cwd?: string,
): Promise<string> {
  const r = await run(cmd, args, env, timeoutMs, cwd);
  if (r.code !== 0) {
    const tail = (r.stderr + r.stdout).trim().split('\n').slice(-15).join('\n');
    throw new Error(`${cmd} ${args.slice(0, 3).join(' ')} exited with ${r.code}:\n${tail}`);
  }
  return r.stdout;
}

function answers(env: NodeJS.ProcessEnv): boolean {
  return spawnSync('docker', ['info'], { env, stdio: 'ignore', timeout: 30_000 }).status === 0;
}

/**
 * An engine with Compose v2. @throws Error with the reason when none can be had (no docker
 * CLI, no root for a private dockerd, the daemon or Compose did not come up)
 */
export async function startEngine(): Promise<Engine> {
  const ambient = { ...process.env };
  if (answers(ambient)) {
    const compose = await run('docker', ['compose', 'version'], ambient, 30_000);
    if (compose.code !== 0) throw new Error('a Docker engine answers, but Compose v2 is missing');
    return { env: ambient, kind: 'ambient', stop: async () => {} };
  }
  const out = await must('bash', [`${SCRIPTS}engine.sh`, 'start'], process.env, 15 * 60_000);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const m of out.matchAll(/^export (DOCKER_HOST|DOCKER_CONFIG)=(.+)$/gm)) env[m[1]!] = m[2]!;
  if (!answers(env)) throw new Error('the private dockerd does not answer after engine.sh start');
  return {
    env,
    kind: 'private',
    stop: async () => {
      await must('bash', [`${SCRIPTS}engine.sh`, 'stop'], env, 60_000);
    },
  };
}

/** The images a list needs that the engine lacks. */
export async function missingImages(engine: Engine, images: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const image of images)
    if ((await run('docker', ['image', 'inspect', image], engine.env, 60_000)).code !== 0)
      missing.push(image);
  return missing;
}

/** The label standins.sh puts on its images. */
const STANDIN_LABEL = 'org.spinmesh.standin';

/**
 * Pulls the missing images where a registry answers; otherwise builds stand-ins for those
 * standins.sh knows. Returns which were pulled, which are stand-ins (built now or before), and
 * which could not be had at all.
 */
export async function provideImages(
  engine: Engine,
  images: string[],
): Promise<{ pulled: string[]; standins: string[]; unavailable: string[] }> {
  const missing = await missingImages(engine, images);
  const standins = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const image of images) {
      const r = await run(
        'docker',
        ['image', 'inspect', '--format', `{{index .Config.Labels "${STANDIN_LABEL}"}}`, image],
        engine.env,
        60_000,
      );
      if (r.code === 0 && r.stdout.trim() !== '' && r.stdout.trim() !== '<no value>')
        out.push(image);
    }
    return out;
  };
  const pulled: string[] = [];
  let registry = true;
  for (const image of missing) {
    // One failed pull says no registry answers: the rest are not tried.
    if (registry && (await run('docker', ['pull', '-q', image], engine.env, 180_000)).code === 0)
      pulled.push(image);
    else registry = false;
  }
  const still = await missingImages(engine, missing);
  if (still.length === 0) return { pulled, standins: await standins(), unavailable: [] };
  await must('bash', [`${SCRIPTS}standins.sh`], engine.env, 30 * 60_000);
  const unavailable = await missingImages(engine, still);
  return { pulled, standins: await standins(), unavailable };
}
