// Every job spec in examples/ is one a user can run as it is: it passes the cluster's checks
// (planJob loads its data, so a missing data set fails here), and the small ones run a few
// epochs in this process and produce an evaluation.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadKernels } from '@spinmesh/kernels';
import { runJob, validateJobSpec } from '@spinmesh/model';
import { planJob } from '@spinmesh/coordinator';

const dir = fileURLToPath(new URL('../examples', import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
const kernels = loadKernels('portable');

describe('examples/', () => {
  it('has the kinds of job the README promises', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'bas-rbm.yaml',
        'fmnist-rbm.yaml',
        'bas-loops.yaml',
        'hopfield.yaml',
      ]),
    );
  });

  it.each(files)('%s passes the cluster checks', (file) => {
    const spec = parse(readFileSync(join(dir, file), 'utf8')) as unknown;
    const plan = planJob(spec);
    expect(plan.totalSteps).toBeGreaterThan(0);
  });

  it.each(files.filter((f) => !f.startsWith('fmnist')))('%s runs', (file) => {
    const spec = validateJobSpec(parse(readFileSync(join(dir, file), 'utf8')));
    const short = {
      ...spec,
      epochs: spec.rule === 'hebbian' ? 1 : 3,
      evaluate: { ...spec.evaluate, every: 1 },
    };
    const res = runJob(short, kernels);
    expect(res.evaluations.length).toBeGreaterThan(0);
  });
});
