// `--plot` of the command line, as a user runs it: the learning curves of a job trained in this
// process, on the embedded local cluster, and followed on a coordinator (submit --watch, watch),
// each a PNG that decodes and an SVG beside it that names its series and axes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '@spinmesh/coordinator';
import { basJob, startCluster } from './cluster-helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'apps/cli/dist/cli.js');
let dir: string;
let cluster: LocalCluster | null = null;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process (asynchronously, so the test's own cluster keeps serving). */
function spinmesh(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: dir,
      env: { ...process.env, SPINMESH_KERNELS: 'portable', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The plot's PNG decoded, and the text of its SVG's <text> elements. */
function readPlot(png: string): { width: number; height: number; texts: string[] } {
  const image = PNG.sync.read(readFileSync(join(dir, png)));
  const svg = readFileSync(join(dir, png.replace(/\.png$/, '.svg')), 'utf8');
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
  return { width: image.width, height: image.height, texts };
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  dir = mkdtempSync(join(tmpdir(), 'spinmesh-cli-plot-'));
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('spinmesh --plot', () => {
  it('train in this process: exact LL, AIS LL, pseudo-LL and reconstruction error', async () => {
    const spec = {
      name: 'bas-plot',
      seed: 5,
      network: { rbm: { visible: 9, hidden: 6 } },
      data: { kind: 'bas', size: 3 },
      epochs: 600,
      train: { batchSize: 14, negative: 'pcd', chains: 100, k: 1, learningRate: 0.1 },
      evaluate: { every: 200, exact: true, ais: { runs: 20, steps: 200 }, pseudo: true },
    };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const r = await spinmesh(['train', 'spec.json', '--out', 'm.smm', '--plot', 'curve.png']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/learning curves written to curve\.png and curve\.svg/);
    const p = readPlot('curve.png');
    expect(p.width).toBeGreaterThan(600);
    expect(p.height).toBeGreaterThan(600);
    for (const t of [
      'Learning curves: bas-plot',
      'log-likelihood (nats per example)',
      'epoch',
      'exact LL',
      'AIS LL (bar: its interval)',
      'pseudo-LL',
      'Reconstruction error',
    ])
      expect(p.texts, t).toContain(t);
  });

  it('refuses a --plot that is not a .png before training', async () => {
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(basJob(10)));
    const r = await spinmesh(['train', 'spec.json', '--out', 'never.smm', '--plot', 'c.jpg']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--plot needs a file name ending in \.png/);
    expect(existsSync(join(dir, 'never.smm'))).toBe(false);
    const s = await spinmesh(['submit', 'spec.json', '--plot', 'c.png'], {
      SPINMESH_ADDRESS: '127.0.0.1:1',
    });
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/--plot draws what --watch follows/);
  });

  it('train on the embedded cluster, and submit --watch and watch on a coordinator', async () => {
    writeFileSync(
      join(dir, 'cluster.json'),
      JSON.stringify(basJob(200, { workers: 1, evaluate: { every: 50, exact: true } })),
    );
    const t = await spinmesh(['train', 'cluster.json', '--out', 'c.smm', '--plot', 'embedded.png']);
    expect(t.code, t.stderr).toBe(0);
    expect(readPlot('embedded.png').texts).toContain('exact LL');

    cluster = await startCluster(1);
    const env = { SPINMESH_ADDRESS: cluster.address };
    const s = await spinmesh(
      ['submit', 'cluster.json', '--id', 'plotted', '--watch', '--plot', 'watched.png'],
      env,
    );
    expect(s.code, s.stderr).toBe(0);
    const watched = readPlot('watched.png');
    expect(watched.texts).toContain('Learning curves: job plotted (bas-cluster)');
    expect(watched.texts).toContain('exact LL');
    // Watching the job after its end: the events it kept, the same curves.
    const w = await spinmesh(['watch', 'plotted', '--plot', 'again.png'], env);
    expect(w.code, w.stderr).toBe(0);
    expect(readPlot('again.png').texts).toEqual(watched.texts);
  });
});
