// ModelService over real gRPC: a Hopfield memory stored by the coordinator in one look, then
// Complete (the figure: 10 random 100-unit patterns, cues with 10% of the bits
// flipped, >= 99% of bits restored), Sample, Evaluate, GetModel in both formats; the errors
// and limits; the API token; server reflection.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import { parse as parseYaml } from 'yaml';
import {
  decodeModel,
  decodeNpy,
  decodeSequenceModel,
  randomPatterns,
  reverseFrames,
  wordFrames,
} from '@spinmesh/model';
import {
  JobState,
  ModelFormat,
  ModelServiceClient,
  ServiceNames,
  ServingStatus,
  tokenMetadata,
  type CompleteResponse,
  type EvaluateResponse,
  type GenerateResponse,
  type ModelChunk,
  type SampleResponse,
} from '@spinmesh/proto';
import type { CoordinatorServer } from '../src/server.js';
import {
  coordinator,
  failure,
  getJob,
  healthOf,
  jobClient,
  submit,
  unary,
  watch,
} from './helpers.js';

const hopfield = {
  name: 'memory',
  seed: 7,
  rule: 'hebbian',
  network: { hopfield: 100 },
  data: { kind: 'random', rows: 10, dims: 100 },
};

function chunks(c: ModelServiceClient, jobId: string, format: ModelFormat, chunkBytes = 0) {
  return new Promise<ModelChunk[]>((resolve, reject) => {
    const out: ModelChunk[] = [];
    const s = c.getModel({ jobId, format, chunkBytes });
    s.on('data', (m: ModelChunk) => out.push(m));
    s.on('error', reject);
    s.on('end', () => resolve(out));
  });
}

/** Submits a job and follows its WatchJob stream to its end (the job is final): completed. */
async function completed(server: CoordinatorServer, spec: unknown, id: string): Promise<void> {
  const jobs = jobClient(server.address);
  try {
    await submit(jobs, spec, id);
    const { error } = await watch(jobs, id);
    expect(error).toBeNull();
    const job = await getJob(jobs, id);
    expect(job.state, job.error).toBe(JobState.JOB_STATE_COMPLETED);
  } finally {
    jobs.close();
  }
}

describe('ModelService', () => {
  let server: CoordinatorServer;
  let models: ModelServiceClient;

  beforeAll(async () => {
    server = await coordinator({ modelOpsMax: 2 });
    models = new ModelServiceClient(server.address, grpc.credentials.createInsecure());
    await completed(server, hopfield, 'memory');
  });
  afterAll(async () => {
    models.close();
    await server.close();
  });

  it('completes the stored patterns from cues with 10% of the bits flipped', async () => {
    const data = randomPatterns(10, 100, 0.5, 7);
    const cues = Array.from(data.x, (v) => (v > 0 ? 1 : -1));
    // 10 distinct units of each row, a different set per row.
    for (let r = 0; r < 10; r++)
      for (let t = 0; t < 10; t++) cues[r * 100 + ((t * 7 + r * 13) % 100)]! *= -1;
    const res = await unary<CompleteResponse>((cb) =>
      models.complete(
        {
          jobId: 'memory',
          cues: { rows: 10, dims: 100, values: cues },
          known: Buffer.alloc(0),
          sweeps: 0,
          seed: 0,
          trajectory: true,
          layer: '',
        },
        cb,
      ),
    );
    let right = 0;
    res.values!.values.forEach((v, i) => {
      if (v === (data.x[i]! > 0 ? 1 : -1)) right++;
    });
    expect(right / 1000).toBeGreaterThanOrEqual(0.99);
    expect(res.converged).toBe(true);
    expect(res.trajectory.length).toBe(res.sweepsRun);
    expect(res.trajectory[0]!.values.length).toBe(1000);
  });

  it('samples, evaluates and serves the model file and its arrays', async () => {
    const s = await unary<SampleResponse>((cb) =>
      models.sample(
        { jobId: 'memory', count: 4, sweeps: 10, temperature: 0, seed: 1, layer: '' },
        cb,
      ),
    );
    expect([s.states!.rows, s.states!.dims, s.layer]).toEqual([4, 100, 'x']);
    expect(s.states!.values.every((v) => v === 1 || v === -1)).toBe(true);

    const ev = await unary<EvaluateResponse>((cb) =>
      models.evaluate(
        {
          jobId: 'memory',
          data: '',
          exact: false,
          aisRuns: 0,
          aisSteps: 0,
          pseudo: false,
          recon: false,
          probe: false,
          recallFlip: 0.1,
          limit: 0,
          seed: 0,
        },
        cb,
      ),
    );
    expect(ev.rows).toBe(10);
    expect(ev.evaluation!.recallAccuracy).toBeGreaterThanOrEqual(0.99);

    const smm = await chunks(models, 'memory', ModelFormat.MODEL_FORMAT_SMM, 4096);
    expect(smm.length).toBeGreaterThan(1);
    expect(new Set(smm.map((c) => c.file))).toEqual(new Set(['memory.smm']));
    const bytes = Buffer.concat(smm.map((c) => c.data));
    expect(bytes.length).toBe(smm[0]!.fileBytes);
    const { network } = decodeModel(bytes, new PortableKernels());
    expect(network.laterals[0]![1]).toBeCloseTo(
      Array.from({ length: 10 }, (_, r) => r).reduce((a, r) => {
        const d = randomPatterns(10, 100, 0.5, 7).x;
        return a + (2 * d[r * 100]! - 1) * (2 * d[r * 100 + 1]! - 1);
      }, 0) / 100,
      6,
    );
    const npy = await chunks(models, 'memory', ModelFormat.MODEL_FORMAT_NPY);
    const files = [...new Set(npy.map((c) => c.file))];
    expect(files).toContain('manifest.json');
    const lateral = files.find((f) => f.includes('lateral'))!;
    const arr = decodeNpy(Buffer.concat(npy.filter((c) => c.file === lateral).map((c) => c.data)));
    expect(arr.shape).toEqual([100, 100]);
  });

  it('answers bad requests with the right status and a message naming the field', async () => {
    const code = async (p: Promise<unknown>): Promise<[number, string]> => {
      const e = await failure(p);
      return [e.code, e.details];
    };
    const sample = (req: Partial<Parameters<ModelServiceClient['sample']>[0]>) =>
      unary<SampleResponse>((cb) =>
        models.sample(
          { jobId: 'memory', count: 1, sweeps: 1, temperature: 0, seed: 0, layer: '', ...req },
          cb,
        ),
      );
    expect(await code(sample({ jobId: 'nope' }))).toEqual([
      grpc.status.NOT_FOUND,
      "job 'nope' not found",
    ]);
    expect((await code(sample({ count: 0 })))[0]).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await code(sample({ count: 0 })))[1]).toMatch(
      /^count must be an integer in \[1, 10000\]/,
    );
    expect((await code(sample({ layer: 'h' })))[1]).toMatch(
      /^layer must name a layer of the network \(x\)/,
    );
    expect((await code(sample({ temperature: -1 })))[1]).toMatch(/^temperature must be/);
    const big = await code(sample({ count: 10_000, sweeps: 100_000 }));
    expect(big[0]).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(big[1]).toMatch(/SPINMESH_MAX_UNIT_UPDATES/);
    // A queued job has no model yet (no worker will ever take it here).
    await submit(
      jobClient(server.address),
      { ...hopfield, rule: 'boltzmann', network: { rbm: { visible: 100, hidden: 4 } } },
      'waiting',
    );
    const pre = await code(sample({ jobId: 'waiting' }));
    expect(pre[0]).toBe(grpc.status.FAILED_PRECONDITION);
    expect(pre[1]).toMatch(/is queued: it has a model once it is completed/);
    const complete = (
      cues: { rows: number; dims: number; values: number[] },
      known = Buffer.alloc(0),
    ) =>
      unary<CompleteResponse>((cb) =>
        models.complete(
          { jobId: 'memory', cues, known, sweeps: 0, seed: 0, trajectory: false, layer: '' },
          cb,
        ),
      );
    expect((await code(complete({ rows: 1, dims: 99, values: [] })))[1]).toMatch(
      /^cues.dims must be 100/,
    );
    expect((await code(complete({ rows: 1, dims: 100, values: [1] })))[1]).toMatch(
      /^cues.values must hold/,
    );
    expect(
      (await code(complete({ rows: 1, dims: 100, values: new Array(100).fill(2) })))[1],
    ).toMatch(/complete.values\[0\] is 2/);
    expect(
      (
        await code(
          complete({ rows: 1, dims: 100, values: new Array(100).fill(1) }, Buffer.alloc(3)),
        )
      )[1],
    ).toMatch(/^known must hold/);
    const ev = await code(
      unary((cb) =>
        models.evaluate(
          {
            jobId: 'memory',
            data: '{kind: bas, size: 4}',
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
    );
    expect(ev[0]).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('stops work whose deadline passes', async () => {
    const started = Date.now();
    const e = await failure(
      unary((cb) =>
        models.sample(
          { jobId: 'memory', count: 10_000, sweeps: 10_000, temperature: 1, seed: 0, layer: '' },
          new grpc.Metadata(),
          { deadline: Date.now() + 300 },
          cb,
        ),
      ),
    );
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The work runs off this process's event loop (the server is in-process): the client's
    // deadline fires instead of waiting for 1e10 unit updates, however loaded the machine.
    expect(Date.now() - started).toBeLessThan(30_000);
    // The server goes on serving.
    const s = await unary<SampleResponse>((cb) =>
      models.sample(
        { jobId: 'memory', count: 1, sweeps: 1, temperature: 0, seed: 0, layer: '' },
        cb,
      ),
    );
    expect(s.states!.rows).toBe(1);
  });
});

describe('the API token', () => {
  let server: CoordinatorServer;
  beforeAll(async () => {
    server = await coordinator({ apiToken: 's3cret' });
  });
  afterAll(() => server.close());

  it('refuses calls without it, serves calls with it, and leaves health open', async () => {
    const jobs = jobClient(server.address);
    const none = await failure(unary((cb) => jobs.getJob({ jobId: 'x' }, cb)));
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(none.details).toMatch(/needs a token/);
    const wrong = await failure(
      unary((cb) => jobs.getJob({ jobId: 'x' }, tokenMetadata('nope'), cb)),
    );
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrong.details).toMatch(/not valid/);
    const right = await failure(
      unary((cb) => jobs.getJob({ jobId: 'x' }, tokenMetadata('s3cret'), cb)),
    );
    expect(right.code).toBe(grpc.status.NOT_FOUND);
    expect(await healthOf(server.address, ServiceNames.jobs)).toBe(ServingStatus.SERVING);
    jobs.close();
  });
});

describe('server reflection', () => {
  it('lists the services and describes their messages without the .proto files', async () => {
    const server = await coordinator();
    try {
      const require = createRequire(import.meta.url);
      const protoPath = require
        .resolve('@grpc/reflection')
        .replace(/build\/src\/index\.js$/, 'build/proto/grpc/reflection/v1/reflection.proto');
      const def = grpc.loadPackageDefinition(loadSync(protoPath, { keepCase: true }));
      interface Reply {
        list_services_response?: { service: { name: string }[] };
        file_descriptor_response?: { file_descriptor_proto: Buffer[] };
      }
      type Stream = grpc.ClientDuplexStream<object, Reply>;
      const Reflection = (
        def as unknown as {
          grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
        }
      ).grpc.reflection.v1.ServerReflection;
      const client = new Reflection(server.address, grpc.credentials.createInsecure());
      const ask = (req: object): Promise<Reply> =>
        new Promise((resolve, reject) => {
          const s = (
            client as unknown as { ServerReflectionInfo(): Stream }
          ).ServerReflectionInfo();
          s.on('data', (m: Reply) => {
            resolve(m);
            s.end();
          });
          s.on('error', reject);
          s.write(req);
        });
      const list = await ask({ list_services: '*' });
      const names = list.list_services_response!.service.map((x: { name: string }) => x.name);
      expect(names).toEqual(
        expect.arrayContaining([ServiceNames.jobs, ServiceNames.models, ServiceNames.health]),
      );
      const file = await ask({ file_containing_symbol: 'spinmesh.v1.CompleteRequest' });
      const protos = file.file_descriptor_response!.file_descriptor_proto;
      expect(protos.length).toBeGreaterThan(0);
      expect(Buffer.concat(protos).toString('latin1')).toContain('CompleteRequest');
      client.close();
    } finally {
      await server.close();
    }
  });
});

describe('a sequence job (rule stdp): the SCIENCE task over the API', () => {
  let server: CoordinatorServer;
  let models: ModelServiceClient;
  const spec = parseYaml(
    readFileSync(fileURLToPath(new URL('../../../examples/science.yaml', import.meta.url)), 'utf8'),
  ) as Record<string, unknown>;

  beforeAll(async () => {
    server = await coordinator();
    models = new ModelServiceClient(server.address, grpc.credentials.createInsecure());
    await completed(server, spec, 'science');
    await completed(server, hopfield, 'memory');
  }, 60_000);
  afterAll(async () => {
    models.close();
    await server.close();
  });

  it('trains on a coordinator thread until both sequences are recalled, then continues cues', async () => {
    const job = await getJob(jobClient(server.address), 'science');
    expect(job.evaluation?.recallExact).toBe(1);
    expect(job.progress?.step).toBeLessThan(500);
    const word = wordFrames('SCIENCE');
    for (const seq of [word, reverseFrames(word)]) {
      const cue = Array.from(seq.data.subarray(0, 12 * 7));
      const res = await unary<GenerateResponse>((cb) =>
        models.generate(
          {
            jobId: 'science',
            cue: { rows: 12, dims: 7, values: cue },
            steps: seq.steps - 12,
            sample: false,
            seed: 0,
          },
          cb,
        ),
      );
      expect(res.frames!.rows).toBe(seq.steps - 12);
      expect(res.frames!.values).toEqual(Array.from(seq.data.subarray(12 * 7)));
    }
    const file = Buffer.concat(
      (await chunks(models, 'science', ModelFormat.MODEL_FORMAT_SMM)).map((c) => c.data),
    );
    expect(decodeSequenceModel(file).file.spec.name).toBe('science');
  });

  it('tells a sequence model from a Boltzmann one', async () => {
    const s = await failure(
      unary((cb) =>
        models.sample(
          { jobId: 'science', count: 1, sweeps: 1, temperature: 0, seed: 0, layer: '' },
          cb,
        ),
      ),
    );
    expect(s.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(s.details).toMatch(/sequence model .* use Generate/);
    const g = await failure(
      unary((cb) => models.generate({ jobId: 'memory', steps: 3, sample: false, seed: 0 }, cb)),
    );
    expect(g.code).toBe(grpc.status.FAILED_PRECONDITION);
    const bad = await failure(
      unary((cb) =>
        models.generate(
          {
            jobId: 'science',
            cue: { rows: 1, dims: 6, values: [0, 0, 0, 0, 0, 0] },
            steps: 3,
            sample: false,
            seed: 0,
          },
          cb,
        ),
      ),
    );
    expect(bad.details).toMatch(/^cue.dims must be 7/);
    const rejected = await failure(submit(jobClient(server.address), { ...spec, workers: 2 }));
    expect(rejected.details).toMatch(/^spec.workers must be 1/);
  });
});
