// A corpus of malformed requests (bad specs, wrong types, huge sizes, unknown fields, missing
// data sets, unknown job ids, bad pages, bad model requests): each gets the right status code
// and a message naming what is wrong, and the server goes on serving with nothing changed.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JobServiceClient,
  ModelServiceClient,
  ServiceNames,
  ServingStatus,
  type Job,
  type ListJobsResponse,
} from '@spinmesh/proto';
import type { CoordinatorServer } from '../src/server.js';
import { basSpec as base, coordinator, healthOf, jobIdCalls, submit, unary } from './helpers.js';

const S = grpc.status;

/** base with `value` at the dotted path (undefined: the field removed). */
function withField(path: string, value: unknown): Record<string, unknown> {
  const spec = structuredClone(base) as Record<string, unknown>;
  const keys = path.split('.');
  let o = spec;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return spec;
}

interface Case {
  what: string;
  call: () => Promise<unknown>;
  code: grpc.status;
  message: RegExp;
}

function field(path: string): RegExp {
  return new RegExp(`^${path.replace(/[.[\]]/g, (c) => `\\${c}`)}( |\\.|\\[)`);
}

function corpus(jobs: JobServiceClient, models: ModelServiceClient): Case[] {
  const cases: Case[] = [];
  const submitText = (what: string, text: string, code: grpc.status, message: RegExp, jobId = '') =>
    cases.push({
      what,
      call: () => unary((cb) => jobs.submitJob({ spec: text, jobId }, cb)),
      code,
      message,
    });
  const badSpec = (path: string, value: unknown, expected = `spec.${path}`) =>
    submitText(
      `spec.${path} = ${JSON.stringify(value) ?? 'removed'}`,
      JSON.stringify(withField(path, value)),
      S.INVALID_ARGUMENT,
      field(expected),
    );

  // Wrong types and out-of-range values, field by field.
  for (const v of [123, '', null, [], {}, true]) badSpec('name', v);
  for (const v of [-1, 1.5, 'x', 2 ** 60, null, true, [], {}]) badSpec('seed', v);
  for (const v of [0, -3, 1.5, 'ten', null, 1e9, [], false]) badSpec('epochs', v);
  for (const v of [0, 70_000, 'two', 1.5, -1, null, {}]) badSpec('workers', v);
  for (const v of [-1, 'forever', 1.5, null, 2 ** 40, [], true]) badSpec('staleness', v);
  for (const v of [-1, 'x', 0.5, null, {}]) badSpec('checkpointEverySteps', v);
  for (const v of ['hopfield', 3, null, ['hebbian']]) badSpec('rule', v);
  for (const v of [0, -1, 'x', 1.5, null]) badSpec('train.batchSize', v);
  for (const v of [-1, 'x', null, [], Infinity]) badSpec('train.learningRate', v, 'spec.train');
  for (const v of [0, -1, 'x', 1.5]) badSpec('train.k', v);
  for (const v of ['nope', 3, null]) badSpec('train.negative', v);
  for (const v of [0, -1, 'many', 2.5]) badSpec('train.chains', v);
  for (const v of [2, -1, 'x']) badSpec('train.momentum', v);
  for (const v of [-1, 'x']) badSpec('train.weightDecay', v);
  for (const v of ['yes', 3]) badSpec('train.centring', v);
  for (const v of ['nope', 3]) badSpec('train.positive', v);
  for (const v of ['means', 'x']) badSpec('train.statistics', v);
  for (const v of [1, 'x', null]) badSpec('train.schedule', v);
  for (const v of [['x'], 'v', [3]]) badSpec('train.visible', v);
  for (const v of [0, 'x', -2]) badSpec('evaluate.every', v);
  for (const v of ['maybe', 3]) badSpec('evaluate.exact', v);
  for (const v of [{ runs: 1 }, 'lots', { steps: 1 }, { runs: 10, extra: 1 }])
    badSpec('evaluate.ais', v);
  for (const v of ['yes', 1]) badSpec('evaluate.pseudo', v);
  for (const v of ['yes', 1]) badSpec('evaluate.recon', v);
  for (const v of [0, 'x']) badSpec('evaluate.limit', v);
  for (const v of [{ flip: 0.9 }, 'x', { flip: 0.1, extra: 2 }]) badSpec('evaluate.recall', v);
  for (const v of [{ kind: 'nope' }, 'bas']) badSpec('evaluate.test', v);
  for (const v of [1, 'x', []]) badSpec('init', v);
  for (const v of [-1, 'x', 11]) badSpec('init.weightStd', v);
  for (const v of ['yes', 1]) badSpec('init.visibleBiasFromData', v);

  // Networks.
  for (const v of [null, 'rbm', [], 7]) badSpec('network', v);
  for (const v of [null, 'big', []]) badSpec('network.rbm', v);
  for (const v of [0, -1, 'x', 1.5, null]) badSpec('network.rbm.visible', v);
  for (const v of [0, -1, 'x', 1.5]) badSpec('network.rbm.hidden', v);
  badSpec('network.rbm.units', 'quantum', 'spec.network');
  badSpec('network.rbm.extra', 1);
  badSpec('network.hopfield', 10, 'spec.network');
  for (const v of [
    { layers: 'x' },
    { layers: [] },
    { layers: [{ name: 'v', size: 0 }] },
    { layers: [{ size: 3 }] },
  ])
    badSpec('network', v);
  badSpec('network.rbm.visible', 10, 'spec.network'); // 10 visible units, 16 data columns

  // Data sets: bad kinds, bad fields, and data that does not exist.
  for (const v of [null, 'bas', 3, { kind: 'nope' }, {}]) badSpec('data', v);
  for (const v of [1, 'x', 13, null]) badSpec('data.size', v);
  badSpec('data.extra', 1);
  for (const v of [
    { kind: 'idx', images: '/nonexistent/images.idx' },
    { kind: 'csv', path: '/nonexistent/data.csv' },
    { kind: 'fashion-mnist', dir: '/nonexistent/fmnist' },
    { kind: 'idx', images: '' },
    { kind: 'csv' },
    { kind: 'fashion-mnist', split: 'validation' },
    { kind: 'fashion-mnist', limit: 0 },
    { kind: 'fashion-mnist', binarize: 'maybe' },
    { kind: 'fashion-mnist', threshold: 1.5 },
    { kind: 'random', rows: 0, dims: 16 },
    { kind: 'random', rows: 10, dims: 16, p: 2 },
    { kind: 'random', rows: 1_000_000, dims: 1_000_000 },
  ])
    cases.push({
      what: `data ${JSON.stringify(v)}`,
      call: () =>
        unary((cb) =>
          jobs.submitJob({ spec: JSON.stringify({ ...base, data: v }), jobId: '' }, cb),
        ),
      code: S.INVALID_ARGUMENT,
      message: /^(spec\.data|\/nonexistent)/,
    });

  // Unknown fields at every level.
  for (const path of [
    'foo',
    'Name',
    'train.foo',
    'train.learning_rate',
    'evaluate.foo',
    'init.foo',
    'network.foo',
  ])
    badSpec(path, 1, path === 'network.foo' ? 'spec.network' : `spec.${path}`);

  // Required fields missing.
  for (const path of ['network', 'data']) badSpec(path, undefined);

  // Text that is not a spec.
  for (const text of ['', '   ', '\n\n'])
    submitText(`empty spec ${JSON.stringify(text)}`, text, S.INVALID_ARGUMENT, /^spec is empty/);
  submitText(
    'a field with no value',
    'name:\nepochs: 3',
    S.INVALID_ARGUMENT,
    /^spec\.name is null/,
  );
  for (const text of ['{', 'a: [', 'name: "open', ': :', 'a:\n\t- b'])
    submitText(
      `bad YAML ${JSON.stringify(text)}`,
      text,
      S.INVALID_ARGUMENT,
      /^spec (is not valid YAML|must be)/,
    );
  for (const text of ['[]', '3', '"text"', 'null', 'true', '[1, 2]'])
    submitText(`not an object: ${text}`, text, S.INVALID_ARGUMENT, /^spec must be an object/);
  submitText(
    'a huge spec',
    JSON.stringify({ ...base, name: 'x'.repeat(2 << 20) }),
    S.RESOURCE_EXHAUSTED,
    /^spec is \d+ characters, more than/,
  );

  // Job ids.
  for (const id of ['-lead', 'a b', 'x'.repeat(129), 'é', '../etc', 'a/b', '.hidden'])
    submitText(
      `job id ${JSON.stringify(id.slice(0, 20))}`,
      JSON.stringify(base),
      S.INVALID_ARGUMENT,
      /^job_id must be/,
      id,
    );

  // Unknown and empty job ids on every job and model call.
  const idCalls = jobIdCalls(jobs, models);
  for (const [name, call] of idCalls) {
    for (const id of ['no-such-job', 'job-zzzzzz-000000', 'x'])
      cases.push({
        what: `${name} '${id}'`,
        call: () => call(id),
        code: S.NOT_FOUND,
        message: new RegExp(`^job '${id}' not found`),
      });
    cases.push({
      what: `${name} with no id`,
      call: () => call(''),
      code: S.INVALID_ARGUMENT,
      message: /^job_id must not be empty/,
    });
  }

  // Pages.
  const list = (pageSize: number, pageToken: string, states: number[]) =>
    unary<ListJobsResponse>((cb) => jobs.listJobs({ pageSize, pageToken, states }, cb));
  for (const n of [1001, 5000, 2 ** 31])
    cases.push({
      what: `page_size ${n}`,
      call: () => list(n, '', []),
      code: S.INVALID_ARGUMENT,
      message: /^page_size must be at most 1000/,
    });
  for (const t of ['garbage', '9.x', '-1.', '1.'])
    cases.push({
      what: `page_token ${t}`,
      call: () => list(10, t, []),
      code: S.INVALID_ARGUMENT,
      message: /^page_token /,
    });
  for (const st of [0, 6, 99])
    cases.push({
      what: `state ${st}`,
      call: () => list(10, '', [st]),
      code: S.INVALID_ARGUMENT,
      message: /^states\[0\] must be one of/,
    });
  return cases;
}

describe('a corpus of malformed requests', () => {
  let server: CoordinatorServer;
  let jobs: JobServiceClient;
  let models: ModelServiceClient;
  let before: Job[];

  beforeAll(async () => {
    server = await coordinator();
    jobs = new JobServiceClient(server.address, grpc.credentials.createInsecure());
    models = new ModelServiceClient(server.address, grpc.credentials.createInsecure());
    // One real job, which must be untouched by everything that follows.
    await submit(jobs, base, 'the-one-job');
    before = (
      await unary<ListJobsResponse>((cb) =>
        jobs.listJobs({ pageSize: 100, pageToken: '', states: [] }, cb),
      )
    ).jobs;
  });
  afterAll(async () => {
    jobs.close();
    models.close();
    await server.close();
  });

  it('answers each with the right status and a message naming what is wrong', async () => {
    const cases = corpus(jobs, models);
    expect(cases.length).toBeGreaterThanOrEqual(200);
    const wrong: string[] = [];
    for (const c of cases) {
      try {
        await c.call();
        wrong.push(`${c.what}: succeeded`);
      } catch (e) {
        const err = e as grpc.ServiceError;
        if (err.code !== c.code || !c.message.test(err.details))
          wrong.push(
            `${c.what}: got ${S[err.code]} '${err.details}', expected ${S[c.code]} ${c.message}`,
          );
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps serving with nothing changed', async () => {
    expect(await healthOf(server.address, ServiceNames.jobs)).toBe(ServingStatus.SERVING);
    const after = (
      await unary<ListJobsResponse>((cb) =>
        jobs.listJobs({ pageSize: 100, pageToken: '', states: [] }, cb),
      )
    ).jobs;
    expect(after.map((j) => j.jobId)).toEqual(before.map((j) => j.jobId));
    expect(after[0]!.specJson).toBe(before[0]!.specJson);
    const job = await submit(jobs, { ...base, name: 'still-serving' });
    expect(job.name).toBe('still-serving');
  });
});
