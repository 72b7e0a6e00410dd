// The shape a queued job record must have to be started: every kind SubmitJob writes has it
// (RBM, Hopfield storage in one look, sequence jobs on one worker and on several), and records
// written by another hand are told apart with the field named.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { StoredJob } from '@spinmesh/cluster';

import { recordProblem } from '../src/record-shape.js';
import type { CoordinatorServer } from '../src/server.js';
import { coordinator } from './helpers.js';

const rbm = {
  name: 'bas',
  seed: 1,
  network: { rbm: { visible: 16, hidden: 8 } },
  data: { kind: 'bas', size: 4 },
  epochs: 2,
  train: { batchSize: 10, learningRate: 0.05, k: 1, negative: 'pcd', chains: 10 },
  workers: 2,
};
const hopfield = {
  name: 'memory',
  seed: 3,
  rule: 'hebbian',
  network: { hopfield: 100 },
  data: { kind: 'random', rows: 10, dims: 100 },
};
const example = (file: string): Record<string, unknown> =>
  parseYaml(
    readFileSync(fileURLToPath(new URL(`../../../examples/${file}`, import.meta.url)), 'utf8'),
  ) as Record<string, unknown>;

describe('recordProblem', () => {
  let server: CoordinatorServer;
  beforeAll(async () => {
    // One pass at start, the next far away: the records stay as SubmitJob wrote them.
    server = await coordinator({ pollIntervalMs: 600_000 });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('finds nothing wrong with any record SubmitJob writes', async () => {
    const specs = [rbm, hopfield, example('science.yaml'), example('science-cluster.yaml')];
    for (const spec of specs) {
      const stored = await server.coordinator.submit(spec);
      const record = (await server.bus.getJob(stored.id)) as StoredJob;
      expect(recordProblem(record), String(spec.name)).toBeNull();
    }
  });

  it('names what is wrong with a record written by another hand', async () => {
    const stored = await server.coordinator.submit(rbm);
    const good = (await server.bus.getJob(stored.id)) as StoredJob;
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ spec: undefined }, /neither spec nor sequence/],
      [{ spec: { network: 'x' } }, /^spec\.network/],
      [{ workers: 0 }, /^workers/],
      [{ workers: 'all' }, /^workers/],
      [{ workers: 1e6 }, /^workers/],
      [{ layout: undefined }, /^layout/],
      [{ layout: [{}] }, /^layout/],
      [{ layout: [{}, 3] }, /^layout/],
      [{ totalSteps: -1 }, /^totalSteps/],
      [{ stepsPerEpoch: 'x' }, /^stepsPerEpoch/],
    ];
    for (const [change, message] of bad)
      expect(recordProblem({ ...good, ...change } as StoredJob), JSON.stringify(change)).toMatch(
        message,
      );
  });
});
