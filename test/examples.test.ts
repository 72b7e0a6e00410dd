// Every job spec in examples/ is one a user can run as it is: it passes the cluster's checks
// (planJob loads its data, so a missing data set fails here), and the small ones run a few
// epochs in this process and produce an evaluation.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadKernels } from '@spinmesh/kernels';
import { runJob, runSequenceJob, validateJobSpec, validateSequenceJob } from '@spinmesh/model';
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

  it.each(files)('%s passes the cluster checks', async (file) => {
    const spec = parse(readFileSync(join(dir, file), 'utf8')) as { rule?: string };
    // Sequence jobs (rule stdp) have their own checks; the coordinator trains them on a thread.
    if (spec.rule === 'stdp') expect(validateSequenceJob(spec).epochs).toBeGreaterThan(0);
    else expect((await planJob(spec)).totalSteps).toBeGreaterThan(0);
  });

  it.each(files.filter((f) => !f.startsWith('fmnist')))('%s runs', async (file) => {
    const raw = parse(readFileSync(join(dir, file), 'utf8')) as { rule?: string };
    if (raw.rule === 'stdp') {
      expect((await runSequenceJob({ ...raw, epochs: 3 })).evaluations.length).toBeGreaterThan(0);
      return;
    }
    const spec = validateJobSpec(raw);
    const short = {
      ...spec,
      epochs: spec.rule === 'hebbian' ? 1 : 3,
      evaluate: { ...spec.evaluate, every: 1 },
    };
    const res = await runJob(short, kernels);
    expect(res.evaluations.length).toBeGreaterThan(0);
  });
});
