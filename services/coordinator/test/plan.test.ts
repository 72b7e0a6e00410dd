// Submitted specs: the cluster fields of a job spec, what a cluster job refuses, and how the
// units are split into shards and who exchanges spins with whom.
import { describe, expect, it } from 'vitest';
import { SpecError, jobSpecFromJson, jobSpecToJson, validateJobSpec } from '@spinmesh/model';
import { STALENESS_UNBOUNDED, UnitType } from '@spinmesh/proto';
import { buildAssignment, peerShards, shardRanges } from '../src/assignment.js';
import { planJob } from '../src/kinds/index.js';
import { parseSpecText } from '../src/plan.js';

const base = {
  name: 'bas',
  seed: 3,
  network: { rbm: { visible: 16, hidden: 16 } },
  data: { kind: 'bas', size: 4 },
  epochs: 10,
  train: { batchSize: 30, negative: 'pcd', chains: 50 },
};

function specError(fn: () => unknown): SpecError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SpecError) return e;
    throw e;
  }
  throw new Error('no SpecError');
}

async function rejection(p: Promise<unknown>): Promise<SpecError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SpecError) return e;
    throw e;
  }
  throw new Error('no SpecError');
}

describe('job spec cluster fields', () => {
  it('default to one worker, lockstep, a checkpoint every 100 steps', () => {
    const s = validateJobSpec(base);
    expect([s.workers, s.staleness, s.checkpointEverySteps]).toEqual([1, 0, 100]);
  });

  it('accept what they document', () => {
    const s = validateJobSpec({
      ...base,
      workers: 3,
      staleness: 'unbounded',
      checkpointEverySteps: 0,
    });
    // In the code an unbounded staleness is Infinity; its JSON form (records, model files) says
    // 'unbounded' again.
    expect([s.workers, s.staleness, s.checkpointEverySteps]).toEqual([3, Infinity, 0]);
    expect(jobSpecToJson(s).staleness).toBe('unbounded');
    expect(jobSpecFromJson(JSON.parse(JSON.stringify(jobSpecToJson(s))))).toEqual(s);
    expect(validateJobSpec({ ...base, staleness: 7 }).staleness).toBe(7);
  });

  it.each([
    [{ workers: 0 }, 'spec.workers'],
    [{ workers: 1.5 }, 'spec.workers'],
    [{ staleness: -1 }, 'spec.staleness'],
    [{ staleness: 'forever' }, 'spec.staleness'],
    [{ staleness: 2 ** 32 - 1 }, 'spec.staleness'],
    [{ checkpointEverySteps: -5 }, 'spec.checkpointEverySteps'],
    [{ train: { productBlock: -1 } }, 'spec.train.productBlock'],
    [{ tiles: 'owned', train: { productBlock: 64 } }, 'spec.train.productBlock'],
  ])('refuse %j naming %s', (extra, field) => {
    expect(specError(() => validateJobSpec({ ...base, ...extra })).field).toBe(field);
  });
});

describe('planJob', () => {
  it('fills in sampled statistics and counts the steps', async () => {
    const plan = await planJob({ ...base, workers: 2 });
    expect(plan.spec.train.statistics).toBe('samples');
    expect(plan.rows).toBe(30);
    expect(plan.stepsPerEpoch).toBe(1);
    expect(plan.totalSteps).toBe(10);
    expect(plan.layout).toEqual([
      { v: [0, 8], h: [0, 8] },
      { v: [8, 16], h: [8, 16] },
    ]);
  });

  it('puts the shard boundaries at multiples of train.productBlock where the layers allow', async () => {
    const spec = {
      ...base,
      network: { rbm: { visible: 784, hidden: 20 } },
      data: { kind: 'random', rows: 30, dims: 784 },
    };
    const plan = await planJob({ ...spec, workers: 2, train: { ...base.train, productBlock: 64 } });
    // h has no multiple of 64 between its ends: its boundary stays where the even split puts it
    expect(plan.layout).toEqual([
      { v: [0, 384], h: [0, 10] },
      { v: [384, 784], h: [10, 20] },
    ]);
  });

  it.each([
    [{ train: { ...base.train, statistics: 'means' } }, 'spec.train.statistics'],
    [{ train: { ...base.train, positive: 'meanfield' } }, 'spec.train.positive'],
    [{ workers: 17 }, 'spec.workers'],
    [{ network: { rbm: { visible: 9, hidden: 4 } } }, 'spec.network'],
    [{ train: { ...base.train, batchSize: 0 } }, 'spec.train.batchSize'],
    [{ data: { kind: 'csv', path: '/nonexistent/x.csv' } }, 'spec.data.path'],
    [{ evaluate: { test: { kind: 'bas', size: 3 } } }, 'spec.evaluate.test'],
  ])('refuses %j naming %s', async (extra, field) => {
    expect((await rejection(planJob({ ...base, ...extra }))).field).toBe(field);
  });

  it('reads YAML and JSON text, and names the spec when neither parses', () => {
    expect(parseSpecText('name: x\nepochs: 2\n')).toEqual({ name: 'x', epochs: 2 });
    expect(parseSpecText('{"name": "x"}')).toEqual({ name: 'x' });
    expect(specError(() => parseSpecText('name: [unclosed')).field).toBe('spec');
    expect(specError(() => parseSpecText('  ')).field).toBe('spec');
  });
});

describe('assignments', () => {
  const dbm = {
    layers: [
      { name: 'v', size: 6 },
      { name: 'h1', size: 4 },
      { name: 'h2', size: 2 },
    ],
    connections: [
      { from: 'v', to: 'h1' },
      { from: 'h1', to: 'h2' },
    ],
  };

  it('peer shards are those owning units of a connected layer, symmetrically', () => {
    const layout = [{ v: [0, 6] }, { h1: [0, 4] }, { h2: [0, 2] }] as const;
    expect(peerShards(dbm, layout, 0)).toEqual([1]);
    expect(peerShards(dbm, layout, 1)).toEqual([0, 2]);
    expect(peerShards(dbm, layout, 2)).toEqual([1]);
  });

  it('carries everything a worker needs', async () => {
    const plan = await planJob({
      ...base,
      workers: 2,
      staleness: 'unbounded',
      checkpointEverySteps: 5,
    });
    const shards = [
      { shardId: 0, workerId: 'w0', address: 'h:1' },
      { shardId: 1, workerId: 'w1', address: 'h:2' },
    ];
    const a = buildAssignment({
      jobId: 'j',
      generation: 3,
      spec: plan.spec,
      layout: plan.layout,
      shards,
      shardId: 1,
      restoreFromStep: 5,
    });
    expect(a).toEqual({
      jobId: 'j',
      generation: 3,
      shardId: 1,
      shardCount: 2,
      network: {
        layers: [
          { name: 'v', size: 16, units: UnitType.UNIT_TYPE_BERNOULLI, lateral: false },
          { name: 'h', size: 16, units: UnitType.UNIT_TYPE_BERNOULLI, lateral: false },
        ],
        connections: [{ from: 'v', to: 'h' }],
      },
      units: shardRanges(plan.spec.network, plan.layout, 1),
      peers: [
        {
          shardId: 0,
          address: 'h:1',
          units: [
            { layer: 0, start: 0, end: 8 },
            { layer: 1, start: 0, end: 8 },
          ],
        },
      ],
      staleness: STALENESS_UNBOUNDED,
      checkpointEverySteps: 5,
      restoreFromStep: 5,
      seed: 3,
    });
    expect(a.units).toEqual([
      { layer: 0, start: 8, end: 16 },
      { layer: 1, start: 8, end: 16 },
    ]);
  });
});
