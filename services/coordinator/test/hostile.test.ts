// Hostile requests beside the malformed corpus: size bombs that pass the spec's rules (chains,
// generated data, work, a DyBM's synapses), a full queue, YAML aliases that form cycles or
// expand without end, integers past 2^53, invalid UTF-8 and input of 100,000 characters. Each
// gets INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a short message naming the field or the
// limit, and afterwards the server still answers and has lost nothing.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, NO_LIMITS, checkJobLimits, validateJobSpec } from '@spinmesh/model';
import {
  JobServiceClient,
  ModelServiceClient,
  ServiceNames,
  ServingStatus,
  type Job,
  type ListJobsResponse,
  type SampleResponse,
} from '@spinmesh/proto';
import type { CoordinatorServer } from '../src/server.js';
import {
  basSpec as base,
  cancel,
  coordinator,
  failure,
  healthOf,
  jobIdCalls,
  submit,
  unary,
  watch,
} from './helpers.js';

const S = grpc.status;

/** Longest message a refusal here may carry: it names a field and a limit, nothing more. */
const SHORT = 400;

// --- raw protobuf, for what the generated client will not send ----------------------------------

function varint(n: bigint): Buffer {
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return Buffer.from(out);
}

/** A varint field (wire type 0). */
const vField = (no: number, v: bigint): Buffer =>
  Buffer.concat([varint(BigInt(no << 3)), varint(v)]);

/** A length-delimited field (wire type 2). */
const lField = (no: number, bytes: Buffer): Buffer =>
  Buffer.concat([varint(BigInt((no << 3) | 2)), varint(BigInt(bytes.length)), bytes]);

/** A unary call with request bytes as they are. */
function rawCall(client: grpc.Client, path: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}

/** A bare-bones YAML spec with `extra` lines at the top level. */
const yamlSpec = (extra: string): string =>
  `${extra}\nnetwork: { rbm: { visible: 16, hidden: 8 } }\ndata: { kind: bas, size: 4 }\n`;

interface Case {
  what: string;
  call: () => Promise<unknown>;
  code: grpc.status;
  message: RegExp;
}

function corpus(jobs: JobServiceClient, models: ModelServiceClient, raw: grpc.Client): Case[] {
  const cases: Case[] = [];
  const submitText = (what: string, text: string, code: grpc.status, message: RegExp): void => {
    cases.push({
      what,
      call: () => unary((cb) => jobs.submitJob({ spec: text, jobId: '' }, cb)),
      code,
      message,
    });
  };
  const submitSpec = (what: string, spec: unknown, code: grpc.status, message: RegExp): void =>
    submitText(what, JSON.stringify(spec), code, message);

  // Size bombs that pass the spec's own rules.
  submitSpec(
    'train.chains 50,000,000 on a 4-4 RBM',
    {
      network: { rbm: { visible: 4, hidden: 4 } },
      data: { kind: 'random', rows: 10, dims: 4 },
      train: { negative: 'pcd', chains: 50_000_000 },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.train\.chains needs .* of sampler state .* maxStateBytes .*\(SPINMESH_MAX_STATE_BYTES\)$/,
  );
  submitSpec(
    'batchSize 10,000,000 on a 1000-1000 RBM',
    { ...base, network: { rbm: { visible: 1000, hidden: 1000 } }, train: { batchSize: 1e7 } },
    S.RESOURCE_EXHAUSTED,
    /^spec\.train\.batchSize needs .* of sampler state .*SPINMESH_MAX_STATE_BYTES/,
  );
  submitSpec(
    'random data of 16384 x 16384',
    {
      network: { rbm: { visible: 16384, hidden: 1 } },
      data: { kind: 'random', rows: 16384, dims: 16384 },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.data holds 1 GiB of data, more than the limit maxDataBytes = 256 MiB \(SPINMESH_MAX_DATA_BYTES\)$/,
  );
  submitSpec(
    'random test data of 16384 x 16384',
    {
      ...base,
      network: { rbm: { visible: 16384, hidden: 1 } },
      data: { kind: 'random', rows: 10, dims: 16384 },
      evaluate: { test: { kind: 'random', rows: 16384, dims: 16384 } },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.data holds .* of data, .*SPINMESH_MAX_DATA_BYTES/,
  );
  submitSpec(
    'epochs x steps: a million epochs of 100,000 single-row steps',
    {
      ...base,
      network: { rbm: { visible: 16, hidden: 1000 } },
      data: { kind: 'random', rows: 100_000, dims: 16 },
      epochs: 1_000_000,
      train: { batchSize: 1 },
      evaluate: { every: 1_000_000, exact: false },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.epochs implies .* weight visits .* maxWork .*\(SPINMESH_MAX_WORK\)$/,
  );
  submitSpec(
    'AIS of 10,000 runs x 10,000,000 temperatures every epoch',
    {
      ...base,
      network: { rbm: { visible: 16, hidden: 1000 } },
      evaluate: { ais: { runs: 10_000, steps: 10_000_000 } },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.evaluate implies .* weight visits .*SPINMESH_MAX_WORK/,
  );
  submitSpec(
    'a 2^20 + 1 unit network',
    { ...base, network: { rbm: { visible: 16, hidden: 2 ** 20 - 15 } } },
    S.RESOURCE_EXHAUSTED,
    /^spec\.network\.layers has 1048577 units, more than the limit maxUnits = 1048576 \(SPINMESH_MAX_UNITS\)$/,
  );
  submitSpec(
    'a Hopfield network of 16,000 units (1 GB of weights)',
    {
      rule: 'hebbian',
      network: { hopfield: 16_000 },
      data: { kind: 'random', rows: 2, dims: 16_000 },
    },
    S.RESOURCE_EXHAUSTED,
    /^spec\.network needs .* of parameters, more than the limit maxWeightBytes/,
  );
  submitSpec(
    'a DyBM of 100,000 fully connected units',
    {
      rule: 'stdp',
      network: { dybm: { units: 100_000, delays: 1 } },
      data: { kind: 'words', words: ['SCIENCE'] },
    },
    S.INVALID_ARGUMENT,
    /^spec\.network\.dybm\.units give 100000 x 100000 synapses/,
  );
  submitSpec(
    'a DyBM of 4096 units with 1000 delays per pair',
    {
      rule: 'stdp',
      network: {
        dybm: { units: 4096, delaysPerPair: Array.from({ length: 1000 }, (_, i) => i + 1) },
      },
      data: { kind: 'words', words: ['SCIENCE'] },
    },
    S.INVALID_ARGUMENT,
    /^spec\.network\.dybm\.delaysPerPair gives/,
  );

  // YAML aliases: cycles, expansion.
  for (const text of [
    'name: &x [*x]',
    yamlSpec('train: &t { k: 1, more: *t }'),
    'a: &a { b: *a }',
    yamlSpec('evaluate: &e [1, [2, [3, *e]]]'),
  ])
    submitText(
      `cyclic anchors ${JSON.stringify(text.split('\n')[0])}`,
      text,
      S.INVALID_ARGUMENT,
      /^spec holds a YAML alias inside its own anchor/,
    );
  let laughs = 'a: &a [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 0; i < 9; i++)
    laughs += `b${i}: &b${i} [${Array(10)
      .fill(i === 0 ? '*a' : `*b${i - 1}`)
      .join(', ')}]\n`;
  submitText(
    'billion laughs',
    laughs,
    S.INVALID_ARGUMENT,
    /^spec is not valid YAML or JSON: Excessive alias count/,
  );
  submitText(
    '99 aliases of a list of 50,000 values',
    `a: &a [${Array(50_000).fill(0).join(',')}]\nb: [${Array(99).fill('*a').join(',')}]\n`,
    S.INVALID_ARGUMENT,
    /^spec holds more than \d+ values once its YAML aliases are expanded$/,
  );
  submitText(
    'lists nested 1000 deep',
    `${'['.repeat(1000)}${']'.repeat(1000)}`,
    S.INVALID_ARGUMENT,
    /^spec (nests lists and maps deeper|is not valid YAML)/,
  );

  // Input of 100,000 characters, wherever a string goes: the message stays short.
  const long = 'x'.repeat(100_000);
  for (const [what, spec, message] of [
    [
      'a data path',
      { ...base, data: { kind: 'csv', path: `/data/${long}.csv` } },
      /^spec\.data\.path must be at most 4096 characters/,
    ],
    [
      'an IDX path',
      { ...base, data: { kind: 'idx', images: long } },
      /^spec\.data\.images must be at most/,
    ],
    ['a name', { ...base, name: long }, /^spec\.name must be at most 256 characters/],
    [
      'an unknown field',
      { ...base, [long]: 1 },
      /^spec\.x{60}…\(100000 chars\) is not a known field/,
    ],
    [
      'an unknown train field',
      { ...base, train: { [long]: 1 } },
      /^spec\.train\.x{60}…\(100000 chars\) is not a known field/,
    ],
    [
      'a layer name',
      { ...base, network: { layers: [{ name: long, size: 16 }], connections: [] } },
      /^spec\.network\.layers\[0\]\.name must be an identifier/,
    ],
    [
      'a visible layer',
      { ...base, train: { visible: [long] } },
      /^spec\.train\.visible\[0\] must name a layer \(one of v, h\)$/,
    ],
    [
      'a DyBM delay',
      {
        rule: 'stdp',
        network: { dybm: { units: 2, delays: long } },
        data: { kind: 'words', words: ['SCIENCE'] },
      },
      /^spec\.network\.dybm\.delays must be a number/,
    ],
    [
      'a DyBM sigma',
      {
        rule: 'stdp',
        network: { dybm: { units: 7, delays: 1, kind: 'gaussian', sigma: long } },
        data: { kind: 'words', words: ['SCIENCE'] },
      },
      /^spec\.network\.dybm\.sigma must be a finite number > 0, got x{60}…\(100000 chars\)$/,
    ],
    [
      'a sequence CSV path',
      {
        rule: 'stdp',
        network: { dybm: { units: 2, delays: 1 } },
        data: { kind: 'csv', path: long },
      },
      /^spec\.data\.path must be at most 4096/,
    ],
  ] as [string, unknown, RegExp][])
    submitSpec(`100,000 characters in ${what}`, spec, S.INVALID_ARGUMENT, message);
  submitText(
    '100,000 characters in unterminated YAML',
    `name: "${long}`,
    S.INVALID_ARGUMENT,
    /^spec is not valid YAML or JSON/,
  );
  const idCalls = jobIdCalls(jobs, models).filter(([name]) =>
    ['GetJob', 'CancelJob', 'WatchJob', 'Sample', 'GetModel'].includes(name),
  );
  for (const [name, call] of idCalls)
    cases.push({
      what: `${name} with a job id of 100,000 characters`,
      call: () => call(long),
      code: S.INVALID_ARGUMENT,
      message: /^job_id must be at most 128 characters \(got 100000\)$/,
    });
  for (const token of [long, `0.${long}`])
    cases.push({
      what: `ListJobs with a page token of ${token.length} characters`,
      call: () => unary((cb) => jobs.listJobs({ pageSize: 10, pageToken: token, states: [] }, cb)),
      code: S.INVALID_ARGUMENT,
      message: /^(page_token|pageToken) is not a token/,
    });
  cases.push({
    what: 'WatchJob after an event id of 100,000 characters',
    call: () =>
      new Promise((resolve, reject) => {
        const s = jobs.watchJob({ jobId: 'the-one-job', afterEventId: long });
        s.on('data', () => undefined);
        s.on('error', reject);
        s.on('end', resolve);
      }),
    code: S.INVALID_ARGUMENT,
    message: /^after must be an event id/,
  });
  cases.push({
    what: 'SubmitJob with a job id of 100,000 characters',
    call: () => unary((cb) => jobs.submitJob({ spec: JSON.stringify(base), jobId: long }, cb)),
    code: S.INVALID_ARGUMENT,
    message: /^job_id must be 1-128 characters .*\(got 'x{40}…\(100000 chars\)'\)$/,
  });
  cases.push({
    what: 'Evaluate with data naming a path of 100,000 characters',
    call: () =>
      unary((cb) =>
        models.evaluate(
          {
            jobId: 'the-one-job',
            data: JSON.stringify({ kind: 'csv', path: long }),
            exact: true,
            aisRuns: 0,
            aisSteps: 0,
            pseudo: false,
            recon: false,
            probe: false,
            recallFlip: 0,
            limit: 0,
            seed: 0,
          },
          cb,
        ),
      ),
    code: S.INVALID_ARGUMENT,
    message: /^data\.path must be at most 4096 characters/,
  });

  // Integers past 2^53 - 1 and bytes that are not protobuf, sent as they are.
  const jobIdField = lField(1, Buffer.from('the-one-job'));
  for (const [method, seedField] of [
    ['Sample', 5],
    ['Complete', 6],
    ['Evaluate', 11],
    ['Generate', 5],
  ] as const)
    for (const seed of [2n ** 53n, 2n ** 64n - 1n])
      cases.push({
        what: `${method} with seed ${seed}`,
        call: () =>
          rawCall(
            raw,
            `/spinmesh.v1.ModelService/${method}`,
            Buffer.concat([jobIdField, vField(seedField, seed)]),
          ),
        code: S.INVALID_ARGUMENT,
        message: /^seed must be at most 2\^53 - 1 = 9007199254740991 in magnitude$/,
      });
  for (const [what, body] of [
    ['a truncated field', Buffer.from([0x0a, 0x50, 0x41])],
    ['a wire type that does not exist', Buffer.from([0x0f, 0x01])],
    ['a varint that never ends', Buffer.alloc(16, 0xff)],
  ] as const)
    cases.push({
      what: `SubmitJob with ${what}`,
      call: () => rawCall(raw, '/spinmesh.v1.JobService/SubmitJob', body),
      code: S.INVALID_ARGUMENT,
      message: /^(the request is not a valid message|spec is not valid UTF-8)$/,
    });

  // Invalid UTF-8 in every string a request carries.
  const bad = Buffer.concat([Buffer.from(yamlSpec('name: ')), Buffer.from([0xff, 0xfe, 0xc3])]);
  cases.push({
    what: 'SubmitJob with a spec that is not UTF-8',
    call: () => rawCall(raw, '/spinmesh.v1.JobService/SubmitJob', lField(1, bad)),
    code: S.INVALID_ARGUMENT,
    message: /^spec is not valid UTF-8$/,
  });
  cases.push({
    what: 'SubmitJob with a job id that is not UTF-8',
    call: () =>
      rawCall(
        raw,
        '/spinmesh.v1.JobService/SubmitJob',
        Buffer.concat([
          lField(1, Buffer.from(JSON.stringify(base))),
          lField(2, Buffer.from([0xc0, 0x80])),
        ]),
      ),
    code: S.INVALID_ARGUMENT,
    message: /^job_id is not valid UTF-8$/,
  });
  cases.push({
    what: 'GetJob with a job id that is not UTF-8',
    call: () =>
      rawCall(raw, '/spinmesh.v1.JobService/GetJob', lField(1, Buffer.from([0xed, 0xa0, 0x80]))),
    code: S.INVALID_ARGUMENT,
    message: /^job_id is not valid UTF-8$/,
  });
  cases.push({
    what: 'Evaluate with data that is not UTF-8',
    call: () =>
      rawCall(
        raw,
        '/spinmesh.v1.ModelService/Evaluate',
        Buffer.concat([jobIdField, lField(2, Buffer.from([0x7b, 0xff, 0x7d]))]),
      ),
    code: S.INVALID_ARGUMENT,
    message: /^data is not valid UTF-8$/,
  });
  return cases;
}

describe('hostile requests', () => {
  let server: CoordinatorServer;
  let jobs: JobServiceClient;
  let models: ModelServiceClient;
  let raw: grpc.Client;
  let before: Job[];

  beforeAll(async () => {
    server = await coordinator();
    jobs = new JobServiceClient(server.address, grpc.credentials.createInsecure());
    models = new ModelServiceClient(server.address, grpc.credentials.createInsecure());
    raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
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
    raw.close();
    await server.close();
  });

  it('refuses each with the right status and a short message naming the field or limit', async () => {
    const cases = corpus(jobs, models, raw);
    const wrong: string[] = [];
    for (const c of cases) {
      try {
        await c.call();
        wrong.push(`${c.what}: succeeded`);
      } catch (e) {
        const err = e as grpc.ServiceError;
        if (err.code !== c.code || !c.message.test(err.details) || err.details.length > SHORT)
          wrong.push(
            `${c.what}: got ${S[err.code]} '${err.details.slice(0, 300)}' (${err.details.length} chars), expected ${S[c.code]} ${c.message}`,
          );
      }
    }
    expect(wrong).toEqual([]);
  });

  it('accepts a seed of 2^53 - 1, the largest it can hold', async () => {
    const err = await failure(
      rawCall(
        raw,
        '/spinmesh.v1.ModelService/Sample',
        Buffer.concat([
          lField(1, Buffer.from('no-such-job')),
          vField(2, 1n),
          vField(5, 2n ** 53n - 1n),
        ]),
      ),
    );
    expect([S[err.code], err.details]).toEqual(['NOT_FOUND', "job 'no-such-job' not found"]);
  });

  it('keeps serving with nothing changed', async () => {
    expect(await healthOf(server.address, ServiceNames.jobs)).toBe(ServingStatus.SERVING);
    expect(await healthOf(server.address, ServiceNames.models)).toBe(ServingStatus.SERVING);
    const after = (
      await unary<ListJobsResponse>((cb) =>
        jobs.listJobs({ pageSize: 100, pageToken: '', states: [] }, cb),
      )
    ).jobs;
    expect(after.map((j) => j.jobId)).toEqual(before.map((j) => j.jobId));
    expect(after[0]!.specJson).toBe(before[0]!.specJson);
    const job = await submit(jobs, { ...base, name: 'still-serving' });
    expect(job.name).toBe('still-serving');
    await cancel(jobs, job.jobId);
  });
});

describe('the queue and model requests within configured limits', () => {
  // Room for two jobs of `base` (none starts: there are no workers), and little chain state.
  const one = checkJobLimits(validateJobSpec(base), NO_LIMITS, { train: 32, test: 32 }).bytes;
  const limits = {
    ...DEFAULT_LIMITS,
    maxQueuedJobs: 3,
    maxQueuedBytes: Math.floor(2.5 * one),
    maxStateBytes: 100_000,
  };
  let server: CoordinatorServer;
  let jobs: JobServiceClient;
  let models: ModelServiceClient;

  beforeAll(async () => {
    server = await coordinator({ limits });
    jobs = new JobServiceClient(server.address, grpc.credentials.createInsecure());
    models = new ModelServiceClient(server.address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    jobs.close();
    models.close();
    await server.close();
  });

  it('refuses a job that would pass the queued bytes, then admits one once the queue shrinks', async () => {
    const a = await submit(jobs, base, 'queued-a');
    await submit(jobs, base, 'queued-b');
    const err = await failure(submit(jobs, base, 'queued-c'));
    expect(S[err.code]).toBe('RESOURCE_EXHAUSTED');
    expect(err.details).toMatch(
      /^queue holds jobs estimated at .* would pass the limit maxQueuedBytes = .*\(SPINMESH_MAX_QUEUED_BYTES\)$/,
    );
    await cancel(jobs, a.jobId);
    expect((await submit(jobs, base, 'queued-c')).jobId).toBe('queued-c');
  });

  it('refuses more queued jobs than maxQueuedJobs, submitted at once', async () => {
    const small = {
      ...base,
      data: { kind: 'bas', size: 2 },
      network: { rbm: { visible: 4, hidden: 2 } },
      train: { batchSize: 2 },
    };
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, (_, i) => submit(jobs, small, `small-${i}`)),
    );
    // Two of `base` are queued: one more fits.
    const refused = results.filter((r) => r.status === 'rejected');
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of refused) {
      const e = (r as PromiseRejectedResult).reason as grpc.ServiceError;
      expect(S[e.code]).toBe('RESOURCE_EXHAUSTED');
      expect(e.details).toMatch(
        /^queue holds \d jobs, the limit maxQueuedJobs.*\(SPINMESH_MAX_QUEUED_JOBS\)$/,
      );
    }
    const queued = (
      await unary<ListJobsResponse>((cb) =>
        jobs.listJobs({ pageSize: 100, pageToken: '', states: [1] }, cb),
      )
    ).jobs;
    expect(queued).toHaveLength(3);
    for (const j of queued) await cancel(jobs, j.jobId);
  });

  it('refuses a Sample whose chains pass maxStateBytes', async () => {
    const hop = await submit(jobs, {
      name: 'memory',
      rule: 'hebbian',
      network: { hopfield: 20 },
      data: { kind: 'random', rows: 5, dims: 20 },
    });
    const { error } = await watch(jobs, hop.jobId);
    expect(error).toBeNull();
    const sample = (count: number): Promise<SampleResponse> =>
      unary<SampleResponse>((cb) =>
        models.sample(
          { jobId: hop.jobId, count, sweeps: 1, temperature: 0, seed: 0, layer: '' },
          cb,
        ),
      );
    expect((await sample(10)).states!.rows).toBe(10);
    const err = await failure(sample(10_000));
    expect(S[err.code]).toBe('RESOURCE_EXHAUSTED');
    expect(err.details).toMatch(
      /^Sample: it needs 800000 bytes of chain state, more than the limit maxStateBytes = 100000 \(SPINMESH_MAX_STATE_BYTES\)/,
    );
    expect(await healthOf(server.address, ServiceNames.models)).toBe(ServingStatus.SERVING);
  });
});
