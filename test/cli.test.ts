// End to end through the `spinmesh` command line as a user runs it: real child processes, real
// files, and Debian's numpy reading the exported arrays.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'apps/cli/dist/cli.js');
let dir: string;

function spinmesh(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  dir = mkdtempSync(join(tmpdir(), 'spinmesh-cli-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = {
  name: 'bas-small',
  seed: 5,
  network: { rbm: { visible: 9, hidden: 6 } },
  data: { kind: 'bas', size: 3 },
  epochs: 1000,
  train: {
    batchSize: 14,
    negative: 'pcd',
    chains: 200,
    k: 1,
    learningRate: 0.1,
    momentum: 0.5,
    centring: true,
  },
  evaluate: { every: 500, exact: true, pseudo: true },
};

describe('spinmesh CLI', () => {
  it('trains, saves with training state, resumes, evaluates and exports', () => {
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const r = spinmesh(['train', 'spec.json', '--out', 'm.smm', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const evals = lines.filter((l) => l['type'] === 'evaluation');
    expect(evals).toHaveLength(2);
    const done = lines[lines.length - 1]!;
    expect(done['type']).toBe('done');
    const ev = done['evaluation'] as Record<string, number>;
    // 3x3 bars-and-stripes has 14 patterns: the optimum is -log 14 = -2.64; an untrained model
    // with data-mean biases sits near -6.2. 1000 updates of centred PCD must be well on the way.
    expect(ev['exactLogLikelihood']).toBeGreaterThan(-4.5);
    expect(ev['exactLogLikelihood']).toBeLessThanOrEqual(-Math.log(14) + 1e-9);
    expect(ev['pseudoLogLikelihood']).toBeLessThan(0);

    // Resuming a finished job with more epochs continues from the saved epoch and state.
    const more = spinmesh([
      'train',
      'spec.json',
      '--resume',
      'm.smm',
      '--epochs',
      '1500',
      '--out',
      'm2.smm',
      '--json',
    ]);
    expect(more.code).toBe(0);
    const epochs = more.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; stats?: { epoch: number } })
      .filter((l) => l.type === 'epoch');
    expect(epochs).toHaveLength(500);
    expect(epochs[0]!.stats!.epoch).toBe(1000);

    const info = spinmesh(['info', 'm2.smm']);
    expect(info.code).toBe(0);
    const parsed = JSON.parse(info.stdout) as { training: { epoch: number }; state: string[] };
    expect(parsed.training.epoch).toBe(1500);
    expect(parsed.state).toContain('chains.v');

    const e = spinmesh(['eval', 'm2.smm', 'bas:3', '--exact', '--json']);
    expect(e.code).toBe(0);
    expect(
      (JSON.parse(e.stdout) as { exactLogLikelihood: number }).exactLogLikelihood,
    ).toBeGreaterThan(-4.5);

    // Stopping at 1000 and resuming gives exactly the model of an uninterrupted run.
    const straight = spinmesh([
      'train',
      'spec.json',
      '--epochs',
      '1500',
      '--out',
      'm3.smm',
      '--json',
    ]);
    expect(straight.code).toBe(0);
    const e3 = spinmesh(['eval', 'm3.smm', 'bas:3', '--exact', '--json']);
    expect(JSON.parse(e3.stdout)).toEqual(JSON.parse(e.stdout));

    const x = spinmesh(['export-npy', 'm2.smm', 'npy']);
    expect(x.code).toBe(0);
    const shape = execFileSync(
      '/usr/bin/python3',
      [
        '-c',
        'import numpy, sys; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape)',
        join(dir, 'npy', 'v-h.weights.npy'),
      ],
      { encoding: 'utf8' },
    );
    expect(shape.trim()).toBe('float32 (9, 6)');
    const back = spinmesh(['import-npy', 'npy', 'back.smm']);
    expect(back.code).toBe(0);
    const e2 = spinmesh(['eval', 'back.smm', 'bas:3', '--exact', '--json']);
    expect(JSON.parse(e2.stdout)).toEqual(JSON.parse(e.stdout));
  });

  it("reads relative data paths from the spec file's directory, in this process and on the embedded cluster", () => {
    mkdirSync(join(dir, 'specs', 'data'), { recursive: true });
    const rows = ['1,0,1,0,1,0,1,0,1', '0,1,0,1,0,1,0,1,0', '1,1,1,0,0,0,1,1,1'];
    writeFileSync(join(dir, 'specs', 'data', 'rows.csv'), `${rows.join('\n')}\n`);
    const rel = {
      ...spec,
      name: 'rel',
      data: { kind: 'csv', path: 'data/rows.csv' },
      epochs: 2,
      evaluate: { every: 2, exact: true },
    };
    writeFileSync(join(dir, 'specs', 'rel.json'), JSON.stringify(rel));
    // Run from the directory above the spec's: the path is the spec's, not the shell's.
    const here = spinmesh(['train', 'specs/rel.json', '--out', 'rel.smm']);
    expect(here.code, here.stderr).toBe(0);
    const cluster = spinmesh([
      'train',
      'specs/rel.json',
      '--out',
      'rel-cluster.smm',
      '--workers',
      '1',
      '--kernels',
      'portable',
    ]);
    expect(cluster.code, cluster.stderr).toBe(0);
    expect(existsSync(join(dir, 'rel-cluster.smm'))).toBe(true);
    // A relative path that names nothing next to the spec is refused, naming the field.
    writeFileSync(
      join(dir, 'specs', 'missing.json'),
      JSON.stringify({ ...rel, data: { kind: 'csv', path: 'rows.csv' } }),
    );
    const missing = spinmesh(['train', 'specs/missing.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('spec.data.path cannot be read (ENOENT): rows.csv');
  }, 120_000);

  it('bad input gets exit code 2 and a message naming what is wrong', () => {
    writeFileSync(
      join(dir, 'neg.json'),
      JSON.stringify({ ...spec, network: { layers: [{ name: 'v', size: -3 }], connections: [] } }),
    );
    const neg = spinmesh(['train', 'neg.json']);
    expect(neg.code).toBe(2);
    expect(neg.stderr).toContain('spec.network.layers[0].size must be a positive integer');

    writeFileSync(
      join(dir, 'lr.yaml'),
      'network: { rbm: { visible: 9, hidden: 4 } }\ndata: { kind: bas, size: 3 }\ntrain: { learningRate: -1 }\n',
    );
    const lr = spinmesh(['train', 'lr.yaml']);
    expect(lr.code).toBe(2);
    expect(lr.stderr).toMatch(/spec\.train\.learningRate must be/);

    writeFileSync(join(dir, 'bad.yaml'), 'network: [unclosed\n');
    const yaml = spinmesh(['train', 'bad.yaml']);
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toContain('bad.yaml: is not valid YAML');

    // Latin-1, not UTF-8: said so, not read with U+FFFD in place of the byte.
    writeFileSync(
      join(dir, 'latin1.yaml'),
      Buffer.concat([Buffer.from('name: caf'), Buffer.from([0xe9]), Buffer.from('\n')]),
    );
    const latin1 = spinmesh(['train', 'latin1.yaml']);
    expect(latin1.code).toBe(2);
    expect(latin1.stderr).toContain('spec latin1.yaml is not valid UTF-8');

    writeFileSync(join(dir, 'not-a-model.smm'), 'hello');
    const model = spinmesh(['eval', 'not-a-model.smm', 'bas:3']);
    expect(model.code).toBe(2);
    expect(model.stderr).toContain('not-a-model.smm');

    // A model file of another format version.
    const good = readFileSync(join(dir, 'm.smm'));
    good.writeUInt32LE(7, 8);
    writeFileSync(join(dir, 'v7.smm'), good);
    const v7 = spinmesh(['info', 'v7.smm']);
    expect(v7.code).toBe(2);
    expect(v7.stderr).toMatch(/version 7 is not supported/);

    writeFileSync(join(dir, 'broken.idx'), Buffer.from([0, 0, 8, 3, 0, 0, 0, 2]));
    const idx = spinmesh(['eval', 'm.smm', 'idx:broken.idx']);
    expect(idx.code).toBe(2);
    expect(idx.stderr).toContain('broken.idx');

    const unknown = spinmesh(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });
});
