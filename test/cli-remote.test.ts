// The `spinmesh` command line as a client of a real coordinator (a child process on 127.0.0.1
// with an API token): submit, watch, list, pull, complete, eval and cancel, and the exit codes
// of its failures; and sample / filters on a model file in this process. Every command runs
// the real binary as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wordFrames } from '@spinmesh/model';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'apps/cli/bin/spinmesh.js');
const coordinatorMain = join(root, 'services/coordinator/dist/main.js');
const TOKEN = 'cli-remote-test-token';

let dir: string;
let coordinator: ChildProcess | null = null;
let address = '';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `spinmesh args` against the test coordinator (token and address from the environment). */
function spinmesh(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: dir,
      env: {
        ...process.env,
        SPINMESH_ADDRESS: address,
        SPINMESH_TOKEN: TOKEN,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function jsonLines(s: string): Record<string, unknown>[] {
  return s
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A greyscale PNG as spinmesh writes it: size and pixels (filter type 0 on every row). */
function readPng(path: string): { width: number; height: number; pixels: Uint8Array } {
  const b = readFileSync(path);
  expect([...b.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(b.toString('latin1', 12, 16)).toBe('IHDR');
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  const idat: Buffer[] = [];
  for (let at = 8; at < b.length;) {
    const len = b.readUInt32BE(at);
    if (b.toString('latin1', at + 4, at + 8) === 'IDAT')
      idat.push(b.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  expect(b[25]).toBe(0); // colour type: grey
  expect(raw.length).toBe((width + 1) * height);
  const pixels = new Uint8Array(width * height);
  for (let y = 0; y < height; y++)
    pixels.set(raw.subarray(y * (width + 1) + 1, (y + 1) * (width + 1)), y * width);
  return { width, height, pixels };
}

/** Starts the coordinator and waits for its `listening` log line. */
function startCoordinator(): Promise<string> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SPINMESH_COORDINATOR_LISTEN: '127.0.0.1:0',
    SPINMESH_API_TOKEN: TOKEN,
    SPINMESH_KERNELS: 'portable',
    SPINMESH_COORDINATOR_POLL_MS: '50',
    SPINMESH_LOG_LEVEL: 'info',
    // It stops when this process goes away, however that happens.
    SPINMESH_STOP_ON_STDIN_CLOSE: '1',
  };
  delete env['REDIS_URL'];
  const child = spawn(process.execPath, [coordinatorMain], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  coordinator = child;
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(
      () => reject(new Error(`the coordinator did not start: ${log}`)),
      30_000,
    );
    child.on('exit', (code) => reject(new Error(`the coordinator exited (${code}): ${log}`)));
    child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    child.stdout!.on('data', (c: Buffer) => {
      log += c.toString();
      for (const line of log.split('\n')) {
        try {
          const o = JSON.parse(line) as { msg?: string; address?: string };
          if (o.msg === 'listening' && o.address) {
            clearTimeout(timer);
            resolve(o.address);
            return;
          }
        } catch {
          // a partial line
        }
      }
    });
  });
}

beforeAll(async () => {
  for (const f of [coordinatorMain, join(root, 'apps/cli/dist/cli.js')])
    if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  dir = mkdtempSync(join(tmpdir(), 'spinmesh-cli-remote-'));
  address = await startCoordinator();
});

afterAll(async () => {
  const c = coordinator;
  if (c && c.exitCode === null && c.signalCode === null) {
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('spinmesh against a coordinator', () => {
  it('submits a Hopfield job, watches it, lists, pulls, completes and evaluates it', async () => {
    const sub = await spinmesh(['submit', join(root, 'examples/hopfield.yaml'), '--id', 'memory']);
    expect(sub.stderr).toMatch(/job memory \(hopfield\) queued/);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toBe('memory\n');

    const w = await spinmesh(['watch', 'memory']);
    expect(w.code).toBe(0);
    expect(w.stderr).toMatch(/job memory: running -> completed/);
    expect(w.stderr).toMatch(/job memory completed: a model of \d+ bytes/);
    expect(w.stdout).toMatch(/^epoch 1: recall acc 1\.0000$/m);
    const wj = jsonLines((await spinmesh(['watch', 'memory', '--json'])).stdout);
    expect(wj.at(-1)).toMatchObject({ type: 'done', jobId: 'memory', state: 'COMPLETED' });
    expect(wj.filter((l) => l['type'] === 'state').map((l) => l['to'])).toEqual([
      'QUEUED',
      'RUNNING',
      'COMPLETED',
    ]);

    const l = await spinmesh(['list', '--json']);
    expect(l.code).toBe(0);
    expect(jsonLines(l.stdout)).toContainEqual(
      expect.objectContaining({
        type: 'job',
        jobId: 'memory',
        name: 'hopfield',
        state: 'COMPLETED',
      }),
    );
    const human = await spinmesh(['list', '--state', 'completed']);
    expect(human.stdout).toMatch(/^memory\s+hopfield\s+completed\s+1\/1\s+1\s/m);

    const p = await spinmesh(['pull', 'memory', '--out', 'memory.smm']);
    expect(p.code).toBe(0);
    expect(p.stderr).toMatch(/model of job memory \(step 1\) written to memory\.smm \(\d+ bytes\)/);
    const info = await spinmesh(['info', 'memory.smm']);
    expect(info.code).toBe(0);
    const parsed = JSON.parse(info.stdout) as {
      network: { layers: { size: number; units: string }[] };
      training: { spec: { name: string } };
    };
    expect(parsed.network.layers).toEqual([expect.objectContaining({ size: 100, units: 'ising' })]);
    expect(parsed.training.spec.name).toBe('hopfield');
    const npy = await spinmesh(['pull', 'memory', '--npy', 'arrays']);
    expect(npy.code).toBe(0);
    expect(readdirSync(join(dir, 'arrays'))).toContain('manifest.json');

    // 8 rows of the job's 10 patterns, bottom half hidden: original | cue | completion, 10x10
    // tiles drawn 2x (20 px) with a pixel between them.
    const c = await spinmesh(['complete', '--job', 'memory', '--png', 'complete.png', '--json']);
    expect(c.code).toBe(0);
    const done = jsonLines(c.stdout)[0]!;
    expect(done).toMatchObject({
      type: 'completion',
      rows: 8,
      dims: 100,
      converged: true,
      columns: ['original', 'cue', 'completion'],
    });
    expect(done['restored']).toBeGreaterThanOrEqual(0.99);
    const png = readPng(join(dir, 'complete.png'));
    expect([png.width, png.height]).toEqual([3 * 21 + 1, 8 * 21 + 1]);

    // The figure: cues with 10% of their bits flipped, >= 99% restored.
    const e = await spinmesh(['eval', '--job', 'memory', '--recall-flip', '0.1', '--json']);
    expect(e.code).toBe(0);
    const ev = jsonLines(e.stdout)[0]!;
    expect(ev).toMatchObject({ type: 'evaluation', rows: 10, jobId: 'memory' });
    expect(ev['recallAccuracy']).toBeGreaterThanOrEqual(0.99);
  });

  it('cancels a queued job; a second cancel and a watch of it exit 1', async () => {
    // An RBM job waits for workers, and none runs here.
    const sub = await spinmesh(['submit', join(root, 'examples/bas-rbm.yaml'), '--id', 'waiting']);
    expect(sub.code).toBe(0);
    const queued = jsonLines((await spinmesh(['list', '--state', 'queued', '--json'])).stdout);
    expect(queued).toEqual([expect.objectContaining({ jobId: 'waiting', state: 'QUEUED' })]);

    const late = await spinmesh(['watch', 'waiting', '--deadline', '0.5']);
    expect(late.code).toBe(4);
    expect(late.stderr).toMatch(/no answer within the deadline of 0\.5 s/);

    const c = await spinmesh(['cancel', 'waiting']);
    expect(c.code).toBe(0);
    expect(c.stdout).toBe('job waiting cancelled\n');
    const again = await spinmesh(['cancel', 'waiting']);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      "spinmesh: job 'waiting' is cancelled already and cannot be cancelled\n",
    );
    const w = await spinmesh(['watch', 'waiting']);
    expect(w.code).toBe(1);
    expect(w.stderr).toMatch(/spinmesh: job waiting was cancelled/);
    const pull = await spinmesh(['pull', 'waiting']);
    expect(pull.code).toBe(1);
    expect(pull.stderr).toMatch(/it has a model once it is completed/);
  });

  it('exits 3 for an unknown job, 5 for a bad token, 4 when unreachable, 2 for bad input', async () => {
    for (const args of [
      ['watch', 'nope'],
      ['cancel', 'nope'],
      ['pull', 'nope'],
      ['eval', '--job', 'nope'],
      ['sample', '--job', 'nope', '--png', 'x.png'],
    ]) {
      const r = await spinmesh(args);
      expect([args.join(' '), r.code]).toEqual([args.join(' '), 3]);
      expect(r.stderr).toBe("spinmesh: job 'nope' not found\n");
    }
    const wrong = await spinmesh(['list', '--token', 'wrong']);
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/the token is not valid/);
    const none = await spinmesh(['list'], { SPINMESH_TOKEN: '' });
    expect(none.code).toBe(5);
    expect(none.stderr).toMatch(/this server needs a token/);

    const away = await spinmesh(['list', '--address', '127.0.0.1:1']);
    expect(away.code).toBe(4);
    expect(away.stderr).toMatch(/cannot reach the coordinator at 127\.0\.0\.1:1/);

    writeFileSync(
      join(dir, 'bad.yaml'),
      'network: { rbm: { visible: 16, hidden: 2 } }\ndata: { kind: bas, size: 4 }\nepochs: -1\n',
    );
    const bad = await spinmesh(['submit', 'bad.yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/spec\.epochs must be/);
    const usage = await spinmesh(['list', '--png', 'x.png']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/list takes no option --png/);
  });
});

describe('sequence jobs (rule stdp)', () => {
  it('trains the SCIENCE task here and on the coordinator, and continues a cue both ways', async () => {
    const spec = join(root, 'examples/science.yaml');
    const local = await spinmesh(['train', spec, '--out', 'science.dybm.json', '--json']);
    expect(local.code, local.stderr).toBe(0);
    const done = jsonLines(local.stdout).at(-1)!;
    expect((done['evaluation'] as { recallExact: number }).recallExact).toBe(1);
    const sub = await spinmesh(['submit', spec, '--id', 'science', '--watch']);
    expect(sub.code, sub.stderr).toBe(0);
    // The first two letters as the cue: the rest of the word follows, from the file and the job.
    const fromFile = await spinmesh([
      'generate',
      '--model',
      'science.dybm.json',
      '--cue-word',
      'SC',
      '--steps',
      '35',
      '--json',
    ]);
    const fromJob = await spinmesh([
      'generate',
      '--job',
      'science',
      '--cue-word',
      'SC',
      '--steps',
      '35',
      '--json',
    ]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(fromJob.code, fromJob.stderr).toBe(0);
    const frames = (r: Run): number[] => jsonLines(r.stdout).at(-1)!['frames'] as number[];
    expect(frames(fromJob)).toEqual(frames(fromFile));
    const word = wordFrames('SCIENCE');
    // The cue is 11 frames (the blank column after C is not given): the model supplies it.
    const rest = word.steps - 11;
    expect(frames(fromFile).slice(0, rest * 7)).toEqual(Array.from(word.data.subarray(11 * 7)));
    const text = await spinmesh(['generate', '--model', 'science.dybm.json', '--cue-word', 'SC']);
    expect(text.stdout.split('\n')[0]).toMatch(/^[.#]+\|[.#]+$/);
    await spinmesh([
      'submit',
      join(root, 'examples/hopfield.yaml'),
      '--id',
      'not-a-sequence',
      '--watch',
    ]);
    const wrong = await spinmesh(['generate', '--job', 'not-a-sequence', '--steps', '3']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/not a sequence model/);
  });
});

describe('spinmesh on a model file', () => {
  it('draws samples and receptive fields of a trained RBM', async () => {
    const t = await spinmesh([
      'train',
      join(root, 'examples/bas-rbm.yaml'),
      '--epochs',
      '1000',
      '--out',
      'bas.smm',
    ]);
    expect(t.code).toBe(0);

    const s = await spinmesh([
      'sample',
      '--model',
      'bas.smm',
      '--png',
      's.png',
      '--csv',
      's.csv',
      '--count',
      '16',
      '--sweeps',
      '100',
      '--scale',
      '2',
      '--json',
    ]);
    expect(s.code).toBe(0);
    expect(jsonLines(s.stdout)[0]).toMatchObject({
      type: 'sample',
      rows: 16,
      dims: 16,
      layer: 'v',
    });
    // 16 tiles of 4x4 drawn 2x, 4 to a row, each pixel the probability in 0..255.
    const sp = readPng(join(dir, 's.png'));
    expect([sp.width, sp.height]).toEqual([4 * 9 + 1, 4 * 9 + 1]);
    const csv = readFileSync(join(dir, 's.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(16);
    csv.forEach((line, t) => {
      const p = line.split(',').map(Number);
      expect(p).toHaveLength(16);
      for (let j = 0; j < 16; j++) {
        const y = 1 + Math.floor(t / 4) * 9 + Math.floor(j / 4) * 2;
        const x = 1 + (t % 4) * 9 + (j % 4) * 2;
        for (const [dy, dx] of [
          [0, 0],
          [0, 1],
          [1, 0],
          [1, 1],
        ] as const)
          expect(sp.pixels[(y + dy) * sp.width + x + dx]).toBe(Math.round(p[j]! * 255));
      }
    });
    const states = await spinmesh([
      'sample',
      '--model',
      'bas.smm',
      '--csv',
      'states.csv',
      '--count',
      '16',
      '--sweeps',
      '100',
      '--states',
    ]);
    expect(states.code).toBe(0);
    const bits = readFileSync(join(dir, 'states.csv'), 'utf8').trim().split(/[,\n]/);
    expect(bits).toHaveLength(256);
    expect(new Set(bits)).toEqual(new Set(['0', '1']));

    // Same seed, same samples.
    const again = await spinmesh([
      'sample',
      '--model',
      'bas.smm',
      '--png',
      's2.png',
      '--count',
      '16',
      '--sweeps',
      '100',
      '--scale',
      '2',
    ]);
    expect(again.code).toBe(0);
    expect(readFileSync(join(dir, 's2.png'))).toEqual(readFileSync(join(dir, 's.png')));

    // 10 fields of 4x4, drawn 5x by default (20 px), 4 to a row; 0 weight is mid-grey, each
    // tile reaches black or white.
    const f = await spinmesh(['filters', '--model', 'bas.smm', '--png', 'f.png', '--count', '10']);
    expect(f.code).toBe(0);
    expect(f.stderr).toMatch(/receptive fields of 10 units of layer h on layer v/);
    const fp = readPng(join(dir, 'f.png'));
    expect([fp.width, fp.height]).toEqual([4 * 21 + 1, 3 * 21 + 1]);
    for (let t = 0; t < 10; t++) {
      const x0 = 1 + (t % 4) * 21;
      const y0 = 1 + Math.floor(t / 4) * 21;
      const px: number[] = [];
      for (let y = 0; y < 20; y++)
        for (let x = 0; x < 20; x++) px.push(fp.pixels[(y0 + y) * fp.width + x0 + x]!);
      expect(Math.min(...px) === 0 || Math.max(...px) === 255).toBe(true);
    }

    const e = await spinmesh(['eval', '--model', 'bas.smm', '--exact', '--json']);
    expect(e.code).toBe(0);
    const ev = jsonLines(e.stdout)[0]!;
    expect(ev).toMatchObject({ type: 'evaluation', rows: 30 });
    expect(ev['exactLogLikelihood']).toBeLessThanOrEqual(-Math.log(30) + 1e-9);

    const nothing = await spinmesh(['sample', '--model', 'bas.smm']);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/sample needs --png FILE or --csv FILE/);
  });
});
