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
const cli = join(root, 'packages/client/dist/cli.js');
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
      /local cluster: coordinator at 127\.0\.0\.1:\d+, 1 worker process, in-process bus/,
    );
    expect(plain.stderr).toMatch(/model written to plain\.smm/);
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
