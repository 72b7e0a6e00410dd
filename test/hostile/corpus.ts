// The hostile-input corpus: requests of every class issue 14 names (path escapes, leaks through
// messages, internal services without the secret, size bombs, cyclic YAML, out-of-range
// integers, invalid UTF-8, over-long input), each with the status codes a right answer may
// carry. Sent raw (wire.ts), as a third-party client would.
import * as grpc from '@grpc/grpc-js';
import { Pb, healthStatus, streamRaw, unaryRaw, type Outcome } from './wire.js';

const S = grpc.status;

/** Everything the corpus needs to know about the servers under test. */
export interface Target {
  /** The coordinator with a token, a cluster secret and a data root, and a worker. */
  coordinator: string;
  /** A coordinator in its default set-up: in-process bus, no cluster secret configured. */
  defaultCoordinator: string;
  worker: string;
  token: string;
  /** A wrong cluster secret (the right one is never sent by the corpus). */
  wrongSecret: string;
  /** The data root (realpath) and a directory beside it, outside it. */
  root: string;
  outside: string;
  /** A completed job the model operations may be asked about. */
  modelJob: string;
}

export type Class =
  'path escape' | 'leak' | 'internal' | 'size bomb' | 'yaml' | 'integer' | 'utf8' | 'overlong';

export interface Case {
  cls: Class;
  what: string;
  /** Sends it; a case may send several requests and returns each one's outcome. */
  send: () => Promise<Outcome[]>;
  /** Codes a right answer may carry (for a case of several requests: the last one's). */
  expect: grpc.status[];
  /** Health must keep answering while this case's request is in flight. */
  healthDuring?: boolean;
}

/** A small job every server can run: 4x4 bars and stripes on a 16-8 RBM. */
export function baseSpec(): Record<string, unknown> {
  return {
    name: 'hostile-base',
    seed: 1,
    network: { rbm: { visible: 16, hidden: 8 } },
    data: { kind: 'bas', size: 4 },
    epochs: 2,
    train: { batchSize: 10, learningRate: 0.05, k: 1, negative: 'pcd', chains: 10 },
    evaluate: { every: 1, exact: true },
    workers: 1,
    staleness: 0,
    checkpointEverySteps: 10,
  };
}

const DEADLINE_MS = 30_000;

export function corpus(t: Target): Case[] {
  const auth = { authorization: `Bearer ${t.token}` };
  const cases: Case[] = [];
  const one =
    (f: () => Promise<Outcome>): (() => Promise<Outcome[]>) =>
    async () => [await f()];
  const call = (
    path: string,
    body: Pb | Buffer,
    headers: Record<string, string> = auth,
    address = t.coordinator,
  ) => unaryRaw(address, path, body instanceof Pb ? body.build() : body, headers, DEADLINE_MS);
  const submitText = (spec: string | Uint8Array, id = '') =>
    call('/spinmesh.v1.JobService/SubmitJob', new Pb().bytes(1, spec).bytes(2, id));
  const submit = (spec: Record<string, unknown>) => submitText(JSON.stringify(spec));
  const withData = (data: unknown, extra: Record<string, unknown> = {}) => ({
    ...baseSpec(),
    network: { rbm: { visible: 4, hidden: 4 } },
    data,
    evaluate: { every: 1, recon: true },
    ...extra,
  });
  const evaluate = (data: string) =>
    call(
      '/spinmesh.v1.ModelService/Evaluate',
      new Pb().bytes(1, t.modelJob).bytes(2, data).uint(7, 1),
    );
  const add = (
    cls: Class,
    what: string,
    expect: grpc.status[],
    f: () => Promise<Outcome>,
    healthDuring = false,
  ) => cases.push({ cls, what, expect, send: one(f), healthDuring });

  // --- path escapes: every data kind that names a path, in training and in evaluation ----------
  const escapes: [string, string, boolean][] = [
    ['.. out of the root', '../outside/secret.csv', false],
    ['absolute path outside', `${t.outside}/secret.csv`, false],
    ['symlink leaving the root', 'link-out.csv', false],
    ['/proc/self/environ', '/proc/self/environ', false],
    ['/proc/self/maps', '/proc/self/maps', false],
    ['/proc/self/fd/1 (its own log)', '/proc/self/fd/1', false],
    ['/etc/passwd', '/etc/passwd', false],
    ['/dev/zero', '/dev/zero', true],
    ['/dev/urandom', '/dev/urandom', true],
    ['a FIFO in the root', 'fifo.csv', true],
    ['a directory', '.', false],
    ['a file over the size limit', 'big.csv', true],
  ];
  const tooBig = [S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED];
  for (const [what, path, special] of escapes) {
    const codes = what.includes('size limit') ? tooBig : [S.INVALID_ARGUMENT];
    add(
      'path escape',
      `csv: ${what}`,
      codes,
      () => submit(withData({ kind: 'csv', path })),
      special,
    );
    add('path escape', `idx: ${what}`, codes, () =>
      submit(withData({ kind: 'idx', images: path })),
    );
    add(
      'path escape',
      `evaluate.test: ${what}`,
      codes,
      () =>
        submit(withData({ kind: 'bas', size: 2 }, { evaluate: { test: { kind: 'csv', path } } })),
      special,
    );
    add('path escape', `Evaluate: ${what}`, codes, () =>
      evaluate(JSON.stringify({ kind: 'csv', path })),
    );
  }
  for (const dir of ['/proc/self', t.outside, '../outside', '/dev'])
    add('path escape', `fashion-mnist dir ${dir}`, [S.INVALID_ARGUMENT], () =>
      submit(withData({ kind: 'fashion-mnist', dir, limit: 10 })),
    );
  add('path escape', 'sequence csv: /proc/self/environ', [S.INVALID_ARGUMENT], () =>
    submit({
      name: 'seq',
      rule: 'stdp',
      network: { dybm: { units: 4, delay: 2 } },
      data: { kind: 'csv', path: '/proc/self/environ' },
      epochs: 1,
    }),
  );

  // --- leaks: files inside the root whose bytes an error could quote ---------------------------
  for (const [what, data] of [
    ['csv with a secret header and a bad cell', { kind: 'csv', path: 'leaky.csv' }],
    ['csv with a secret label column', { kind: 'csv', path: 'leaky.csv', label: 'nope' }],
    ['idx with secret bytes', { kind: 'idx', images: 'leaky.idx' }],
    ['idx labels with secret bytes', { kind: 'idx', images: 'good.idx', labels: 'leaky.idx' }],
  ] as const) {
    add('leak', `SubmitJob: ${what}`, [S.INVALID_ARGUMENT], () => submit(withData(data)));
    add('leak', `Evaluate: ${what}`, [S.INVALID_ARGUMENT], () => evaluate(JSON.stringify(data)));
  }

  // --- internal services without the cluster secret -------------------------------------------
  const busCall = (method: string, args: unknown[]) =>
    new Pb().bytes(1, method).bytes(2, JSON.stringify(args));
  const refused = [S.UNAUTHENTICATED, S.PERMISSION_DENIED];
  const forged = {
    id: 'forged',
    name: 'forged',
    spec: { nonsense: true },
    workers: 1,
    layout: [],
    rows: 1,
    stepsPerEpoch: 1,
    totalSteps: 1,
  };
  const asWho: [string, Record<string, string>][] = [
    ['anonymous', {}],
    ['token holder', auth],
    ['token and a wrong secret', { ...auth, 'spinmesh-cluster-secret': t.wrongSecret }],
  ];
  for (const [who, headers] of asWho) {
    for (const [coordinator, address] of [
      ['configured', t.coordinator],
      ['default', t.defaultCoordinator],
    ] as const) {
      for (const [method, args] of [
        ['deleteJob', [t.modelJob]],
        ['createJob', [forged]],
        ['listJobs', [{}]],
        ['getJob', [t.modelJob]],
        ['registerWorker', [{ id: 'intruder', address: '127.0.0.1:1' }]],
      ] as const)
        add(
          'internal',
          `BusService ${method} on the ${coordinator} coordinator, ${who}`,
          refused,
          () => call('/spinmesh.v1.BusService/Call', busCall(method, [...args]), headers, address),
        );
    }
    for (const method of ['Status', 'Stop', 'Assign', 'CheckpointAt'])
      add('internal', `WorkerControl ${method}, ${who}`, refused, () =>
        call(`/spinmesh.v1.WorkerControl/${method}`, Buffer.alloc(0), headers, t.worker),
      );
    add('internal', `PeerService StreamEndpoint, ${who}`, refused, () =>
      call('/spinmesh.v1.PeerService/StreamEndpoint', Buffer.alloc(0), headers, t.worker),
    );
    add('internal', `PeerService Exchange, ${who}`, refused, async () =>
      streamRaw(
        t.worker,
        '/spinmesh.v1.PeerService/Exchange',
        [new Pb().bytes(1, 'intruder').build()],
        headers,
        DEADLINE_MS,
        'bidi',
      ),
    );
  }

  // --- size bombs ------------------------------------------------------------------------------
  const bombs: [string, Record<string, unknown>][] = [
    ['train.chains 50000000', { ...baseSpec(), train: { ...trainOf(), chains: 50_000_000 } }],
    ['random data 16384 x 16384', withData({ kind: 'random', rows: 16384, dims: 16384 })],
    [
      'a hidden layer of 10^8 units',
      { ...baseSpec(), network: { rbm: { visible: 16, hidden: 1e8 } } },
    ],
    ['10^9 epochs', { ...baseSpec(), epochs: 1e9 }],
    ['AIS with 10^9 runs', { ...baseSpec(), evaluate: { ais: { runs: 1e9, steps: 1e9 } } }],
    ['batch of 10^9 rows', { ...baseSpec(), train: { ...trainOf(), batchSize: 1e9 } }],
    ['65535 workers', { ...baseSpec(), workers: 65535 }],
  ];
  for (const [what, spec] of bombs)
    add('size bomb', `SubmitJob: ${what}`, [S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED], () =>
      submit(spec),
    );
  add('size bomb', 'a 6 MiB spec (over the message limit)', [S.RESOURCE_EXHAUSTED], () =>
    submitText(`# ${'x'.repeat(6 << 20)}\n${JSON.stringify(baseSpec())}`),
  );
  add('size bomb', 'Sample: 2^32-1 patterns', [S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED], () =>
    call(
      '/spinmesh.v1.ModelService/Sample',
      new Pb().bytes(1, t.modelJob).uint(2, 0xffffffff).uint(3, 10),
    ),
  );
  add('size bomb', 'Sample: 2^32-1 sweeps', [S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED], () =>
    call(
      '/spinmesh.v1.ModelService/Sample',
      new Pb().bytes(1, t.modelJob).uint(2, 10).uint(3, 0xffffffff),
    ),
  );
  add(
    'size bomb',
    'Evaluate: AIS with 2^32-1 runs',
    [S.INVALID_ARGUMENT, S.RESOURCE_EXHAUSTED],
    () =>
      call(
        '/spinmesh.v1.ModelService/Evaluate',
        new Pb().bytes(1, t.modelJob).uint(4, 0xffffffff).uint(5, 0xffffffff),
      ),
  );
  cases.push({
    cls: 'size bomb',
    what: 'a flood of queued jobs of 16 MiB of data each',
    expect: [S.RESOURCE_EXHAUSTED],
    send: async () => {
      // They wait for two workers the cluster does not have; the coordinator must stop taking
      // them before their data exhaust it. Cancelled afterwards, so the queue moves again.
      const out: Outcome[] = [];
      const accepted: string[] = [];
      for (let i = 0; i < 400; i++) {
        const id = `flood-${i}`;
        const o = await submitText(
          JSON.stringify({
            ...withData({ kind: 'random', rows: 8192, dims: 512 }),
            network: { rbm: { visible: 512, hidden: 16 } },
            workers: 2,
          }),
          id,
        );
        out.push(o);
        if (o.code === S.OK) accepted.push(id);
        else break;
      }
      for (const id of accepted)
        await call('/spinmesh.v1.JobService/CancelJob', new Pb().bytes(1, id));
      return out;
    },
  });

  // --- YAML ------------------------------------------------------------------------------------
  add('yaml', 'cyclic anchor', [S.INVALID_ARGUMENT], () => submitText('name: &x [*x]\n'));
  add('yaml', 'cyclic anchor in a mapping', [S.INVALID_ARGUMENT], () =>
    submitText('a: &a {b: *a}\nname: x\n'),
  );
  add('yaml', 'billion laughs', [S.INVALID_ARGUMENT], () => {
    let doc = 'a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i < 10; i++)
      doc += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]\n`;
    return submitText(`${doc}name: *a9\n`);
  });
  add('yaml', 'nesting 100000 deep', [S.INVALID_ARGUMENT], () =>
    submitText(`name: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`),
  );
  add('yaml', 'JSON nesting 100000 deep', [S.INVALID_ARGUMENT], () =>
    submitText(`{"name": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`),
  );

  // --- integers out of range -------------------------------------------------------------------
  for (const [what, seed] of [
    ['2^53 + 1', (1n << 53n) + 1n],
    ['2^64 - 1', (1n << 64n) - 1n],
  ] as const) {
    add('integer', `Sample: seed ${what}`, [S.INVALID_ARGUMENT], () =>
      call(
        '/spinmesh.v1.ModelService/Sample',
        new Pb().bytes(1, t.modelJob).uint(2, 2).uint(3, 2).uint(5, seed),
      ),
    );
    add('integer', `Evaluate: seed ${what}`, [S.INVALID_ARGUMENT], () =>
      call(
        '/spinmesh.v1.ModelService/Evaluate',
        new Pb().bytes(1, t.modelJob).uint(7, 1).uint(11, seed),
      ),
    );
    add('integer', `Complete: seed ${what}`, [S.INVALID_ARGUMENT], () =>
      call('/spinmesh.v1.ModelService/Complete', new Pb().bytes(1, t.modelJob).uint(6, seed)),
    );
  }
  add('integer', 'ListJobs: page size 2^32-1', [S.INVALID_ARGUMENT], () =>
    call('/spinmesh.v1.JobService/ListJobs', new Pb().uint(1, 0xffffffff)),
  );
  for (const [what, v] of [
    ['spec seed 1e300', { seed: 1e300 }],
    ['spec seed 9007199254740993', { seed: '9007199254740993' }],
    ['spec seed -1', { seed: -1 }],
    ['epochs 1.5', { epochs: 1.5 }],
    ['epochs -1', { epochs: -1 }],
    ['learning rate NaN', { train: { ...trainOf(), learningRate: '.nan' } }],
  ] as const)
    add('integer', what, [S.INVALID_ARGUMENT], () =>
      submitText(JSON.stringify({ ...baseSpec(), ...v }).replace('".nan"', '.nan')),
    );
  add('integer', 'spec seed 9007199254740993 as a YAML integer', [S.INVALID_ARGUMENT], () =>
    submitText(JSON.stringify(baseSpec()).replace('"seed":1', '"seed":9007199254740993')),
  );

  // --- invalid UTF-8 ---------------------------------------------------------------------------
  const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28]);
  const spec = Buffer.from(JSON.stringify(baseSpec()));
  const at = spec.indexOf('hostile-base');
  add('utf8', 'spec with invalid UTF-8 in the name', [S.INVALID_ARGUMENT], () =>
    submitText(Buffer.concat([spec.subarray(0, at), bad, spec.subarray(at)])),
  );
  add('utf8', 'job id with invalid UTF-8', [S.INVALID_ARGUMENT], () =>
    call(
      '/spinmesh.v1.JobService/SubmitJob',
      new Pb()
        .bytes(1, JSON.stringify(baseSpec()))
        .bytes(2, Buffer.concat([Buffer.from('j'), bad])),
    ),
  );
  add('utf8', 'GetJob id with invalid UTF-8', [S.INVALID_ARGUMENT, S.NOT_FOUND], () =>
    call('/spinmesh.v1.JobService/GetJob', new Pb().bytes(1, bad)),
  );
  add('utf8', 'Evaluate data with invalid UTF-8', [S.INVALID_ARGUMENT], () =>
    call(
      '/spinmesh.v1.ModelService/Evaluate',
      new Pb()
        .bytes(1, t.modelJob)
        .bytes(2, Buffer.concat([Buffer.from('{kind: '), bad, Buffer.from('}')])),
    ),
  );

  // --- over-long input: the real status must come back, with a short message -------------------
  const long = 'a'.repeat(100_000);
  add('overlong', 'a 100000-character csv path', [S.INVALID_ARGUMENT], () =>
    submit(withData({ kind: 'csv', path: long })),
  );
  add('overlong', 'a 100000-character job id', [S.INVALID_ARGUMENT], () =>
    submitText(JSON.stringify(baseSpec()), long),
  );
  add('overlong', 'a 100000-character name', [S.INVALID_ARGUMENT], () =>
    submit({ ...baseSpec(), name: long }),
  );
  add('overlong', 'a 100000-character unknown field', [S.INVALID_ARGUMENT], () =>
    submit({ ...baseSpec(), [long]: 1 }),
  );
  add('overlong', 'a 100000-character unit type', [S.INVALID_ARGUMENT], () =>
    submit({ ...baseSpec(), network: { rbm: { visible: 16, hidden: 8, units: long } } }),
  );
  add('overlong', 'GetJob: a 100000-character id', [S.INVALID_ARGUMENT], () =>
    call('/spinmesh.v1.JobService/GetJob', new Pb().bytes(1, long)),
  );
  add('overlong', 'Sample: a 100000-character layer', [S.INVALID_ARGUMENT], () =>
    call(
      '/spinmesh.v1.ModelService/Sample',
      new Pb().bytes(1, t.modelJob).uint(2, 2).uint(3, 2).bytes(6, long),
    ),
  );
  add('overlong', 'Evaluate: a 100000-character data spec', [S.INVALID_ARGUMENT], () =>
    evaluate(`{kind: ${long}}`),
  );
  return cases;
}

function trainOf(): Record<string, unknown> {
  return baseSpec()['train'] as Record<string, unknown>;
}

/** Runs a case; when it asks, checks health while its request is in flight. */
export async function runCase(
  c: Case,
  address: string,
): Promise<{ outcomes: Outcome[]; healthDuring: number | null }> {
  if (!c.healthDuring) return { outcomes: await c.send(), healthDuring: null };
  const sending = c.send();
  // Give the request time to reach the server's data read before asking for health.
  await new Promise((r) => setTimeout(r, 200));
  const health = await healthStatus(address, 10_000);
  return { outcomes: await sending, healthDuring: health };
}
