// The gRPC health-checking protocol over real gRPC on 127.0.0.1:0.
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';

import {
  addHealthService,
  HealthClient,
  type HealthCheckResponse,
  ServingStatus,
  type HealthReporter,
} from '../src/index.js';

let server: grpc.Server | null = null;
let client: HealthClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  const s = server;
  server = null;
  if (s !== null) await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
});

async function start(initial?: Record<string, ServingStatus>): Promise<HealthReporter> {
  server = new grpc.Server();
  const health = addHealthService(server, initial);
  const s = server;
  const port = await new Promise<number>((resolve, reject) =>
    s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return health;
}

function check(service: string): Promise<ServingStatus> {
  return new Promise((resolve, reject) =>
    client!.check({ service }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) =>
      err ? reject(err) : resolve(res.status),
    ),
  );
}

describe('health service', () => {
  it('answers SERVING for the server and the services it was told about', async () => {
    const health = await start({ 'spinmesh.v1.PeerService': ServingStatus.SERVING });
    expect(await check('')).toBe(ServingStatus.SERVING);
    expect(await check('spinmesh.v1.PeerService')).toBe(ServingStatus.SERVING);
    health.setStatus('spinmesh.v1.WorkerControl', ServingStatus.NOT_SERVING);
    expect(await check('spinmesh.v1.WorkerControl')).toBe(ServingStatus.NOT_SERVING);
    await expect(check('nope.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const list = await new Promise<Record<string, HealthCheckResponse>>((resolve, reject) =>
      client!.list({}, (err, res) => (err ? reject(err) : resolve(res.statuses))),
    );
    expect(Object.keys(list).sort()).toEqual(
      ['', 'spinmesh.v1.PeerService', 'spinmesh.v1.WorkerControl'].sort(),
    );
  });

  it('streams changes to watchers, and ends them on shutdown', async () => {
    const health = await start();
    const seen: ServingStatus[] = [];
    const call = client!.watch({ service: 'svc' });
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    const next = (): Promise<void> => new Promise((resolve) => call.once('data', () => resolve()));
    call.on('data', (r: HealthCheckResponse) => seen.push(r.status));
    await next();
    health.setStatus('svc', ServingStatus.SERVING);
    await next();
    health.setStatus('svc', ServingStatus.SERVING); // no change: no message
    health.setStatus('svc', ServingStatus.NOT_SERVING);
    await next();
    health.shutdown();
    const st = await ended;
    expect(st.code).toBe(grpc.status.OK);
    expect(seen).toEqual([
      ServingStatus.SERVICE_UNKNOWN,
      ServingStatus.SERVING,
      ServingStatus.NOT_SERVING,
    ]);
    expect(await check('')).toBe(ServingStatus.NOT_SERVING);
  });
});
