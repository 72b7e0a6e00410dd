// `spinmesh train` on the embedded local cluster, as a user runs it: a spec with `workers: 2`
// starts a coordinator and two worker processes (in-process bus), prints the evaluation, writes
// the model (the single-process model, bit for bit, at staleness 0), and leaves no process
// behind, also when interrupted with Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basJob, compareNetworks, decode, reference } from './cluster-helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'apps/cli/dist/cli.js');
let dir: string;

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  dir = mkdtempSync(join(tmpdir(), 'spinmesh-cluster-cli-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Processes whose environment carries the marker: the CLI's children, wherever they went. */
function marked(marker: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'latin1');
      if (env.includes(`SPINMESH_TEST_MARKER=${marker}`)) out.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

function env(marker: string): NodeJS.ProcessEnv {
  return { ...process.env, SPINMESH_TEST_MARKER: marker, SPINMESH_KERNELS: 'portable' };
}

describe('spinmesh train on the embedded local cluster', () => {
  it('trains with two worker processes and writes the single-process model', async () => {
    const spec = basJob(200, { workers: 2 });
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const marker = randomUUID();
    const r = spawnSync(
      process.execPath,
      [cli, 'train', 'spec.json', '--out', 'cluster.smm', '--kernels', 'portable', '--json'],
      { cwd: dir, encoding: 'utf8', env: env(marker), timeout: 120_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'start', workers: 2, totalSteps: 200 });
    const done = lines.at(-1)!;
    expect(done).toMatchObject({ type: 'done', model: 'cluster.smm' });
    const ref = await reference(spec);
    expect((done['evaluation'] as Record<string, number>)['exactLogLikelihood']).toBe(ref.ll);
    const model = decode(readFileSync(join(dir, 'cluster.smm')));
    expect(compareNetworks(model, ref.network)).toEqual({ identical: true, maxDiff: 0 });
    expect(marked(marker)).toEqual([]);

    // The plain output prints the evaluation like the in-process path does.
    const plain = spawnSync(
      process.execPath,
      [cli, 'train', 'spec.json', '--out', 'plain.smm', '--workers', '1'],
      { cwd: dir, encoding: 'utf8', env: env(marker), timeout: 120_000 },
    );
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/^epoch 200: exact LL -\d+\.\d{4}/m);
    expect(plain.stderr).toMatch(
      /local cluster: coordinator at 127\.0\.0\.1:\d+, 1 worker process \(pid \d+\), in-process bus/,
    );
    expect(plain.stderr).toMatch(/model written to plain\.smm/);
    expect(plain.stderr).not.toMatch(/note:/);

    // A spec that leaves train.statistics to its default trains differently here than in one
    // process: the command says so, once.
    const defaults = basJob(20, { workers: 1 }) as { train: Record<string, unknown> };
    delete defaults.train['statistics'];
    writeFileSync(join(dir, 'defaults.json'), JSON.stringify(defaults));
    const noted = spawnSync(
      process.execPath,
      [cli, 'train', 'defaults.json', '--out', 'defaults.smm'],
      { cwd: dir, encoding: 'utf8', env: env(marker), timeout: 120_000 },
    );
    expect(noted.status).toBe(0);
    expect(noted.stderr.match(/^note: .*$/gm)).toEqual([
      'note: a cluster job uses train.statistics: samples; in one process this spec uses means ' +
        '(set train.statistics: samples for identical results)',
    ]);
    expect(marked(marker)).toEqual([]);
  });

  it('refuses what the cluster cannot run with exit code 2, starting nothing that stays', () => {
    const spec = basJob(10, { workers: 2, train: { statistics: 'means', batchSize: 30 } });
    writeFileSync(join(dir, 'means.json'), JSON.stringify(spec));
    const marker = randomUUID();
    const r = spawnSync(process.execPath, [cli, 'train', 'means.json'], {
      cwd: dir,
      encoding: 'utf8',
      env: env(marker),
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /spinmesh: spec\.train\.statistics must be 'samples' in a cluster job/,
    );
    expect(marked(marker)).toEqual([]);
  });

  it('a worker killed with SIGKILL is started again and the job ends with the undisturbed model', async () => {
    // Slowed down (the slowdown changes no result) so that the job is still running when the kill
    // lands after the first checkpoint, on a fast machine as on a loaded one.
    const spec = basJob(4000, { workers: 2, checkpointEverySteps: 100 });
    writeFileSync(join(dir, 'kill.json'), JSON.stringify(spec));
    const marker = randomUUID();
    const child = spawn(
      process.execPath,
      [cli, 'train', 'kill.json', '--out', 'kill.smm', '--kernels', 'portable'],
      {
        cwd: dir,
        env: { ...env(marker), SPINMESH_DEBUG_SLOWDOWN: '4' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exit = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    // The victim: the second worker, once every shard is past its first checkpoint (step 100).
    let killedAt = 0;
    const victim = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no progress:\n${stderr}`)), 120_000);
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const pids = /worker processes \(pid (\d+), (\d+)\)/.exec(stderr);
        const steps = [...stderr.matchAll(/step (\d+)\/4000/g)].map((m) => Number(m[1]));
        const step = Math.max(0, ...steps);
        if (pids && step > 100 && killedAt === 0) {
          killedAt = step;
          clearTimeout(timer);
          resolve(Number(pids[2]));
        }
      });
      child.once('exit', () => reject(new Error(`the CLI exited before the kill:\n${stderr}`)));
    });
    expect(killedAt).toBeLessThan(4000);
    process.kill(victim, 'SIGKILL');
    expect(await exit, stderr).toBe(0);
    expect(stderr).toMatch(
      new RegExp(
        `spinmesh: worker-1 \\(pid ${victim}\\) exited unexpectedly \\(SIGKILL\\): started again as pid \\d+ \\(restart 1 of 3\\)`,
      ),
    );
    // The coordinator restored every shard from a checkpoint, not from the start.
    const restored = /generation [2-9]: .*, restoring step (\d+)/.exec(stderr);
    expect(restored, stderr).not.toBeNull();
    expect(Number(restored![1]) % 100).toBe(0);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(stdout).toMatch(/^epoch 4000: exact LL/m);
    const ref = await reference(spec);
    const model = decode(readFileSync(join(dir, 'kill.smm')));
    expect(compareNetworks(model, ref.network)).toEqual({ identical: true, maxDiff: 0 });
    expect(marked(marker)).toEqual([]);
    console.log(
      `embedded cluster: worker SIGKILL at step ~${killedAt}, restarted, restored from step ` +
        `${restored![1]}: model bit-identical to the undisturbed run`,
    );
  });

  it('stops every process it started on Ctrl-C', async () => {
    writeFileSync(join(dir, 'long.json'), JSON.stringify(basJob(1_000_000, { workers: 2 })));
    const marker = randomUUID();
    const child = spawn(process.execPath, [cli, 'train', 'long.json', '--out', 'never.smm'], {
      cwd: dir,
      env: env(marker),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const exit = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no progress: ${stderr}`)), 60_000);
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (/step \d+\/1000000/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(marked(marker).length).toBe(4); // the CLI, the coordinator, two workers
    child.kill('SIGINT');
    expect(await exit).toBe(130);
    expect(stderr).toMatch(/interrupted \(SIGINT\): every process of the local cluster stopped/);
    expect(marked(marker)).toEqual([]);
    expect(existsSync(join(dir, 'never.smm'))).toBe(false);
  });
});
