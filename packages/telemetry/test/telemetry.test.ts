// The metrics of the services: names by Prometheus's conventions, registries that stay apart,
// counters fed by differences of cumulative figures (never backwards across runs), bounded
// per-job series, the gRPC interceptor on a real server, the /metrics endpoint and the health
// probe.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { register as globalRegistry, type Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HealthClient,
  ServingStatus,
  addHealthService,
  type HealthReporter,
} from '@spinmesh/proto';

import {
  CoordinatorMetricDefs,
  CoordinatorMetrics,
  RpcMetricDefs,
  WorkerMetricDefs,
  WorkerMetrics,
  checkHealth,
  exposedNames,
  ownServerRoots,
  parseHostPort,
  probeAddress,
  startMetricsServer,
  withRpcMetrics,
  type MetricDefinition,
  type ShardSample,
} from '../src/index.js';

/** The value of one series in a registry (undefined when absent). */
async function valueOf(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === base || x.name === name);
  const v = m?.values.find(
    (x) =>
      ((x as { metricName?: string }).metricName ?? m.name) === name &&
      Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want),
  );
  return v?.value;
}

function sample(over: Partial<ShardSample> = {}): ShardSample {
  return {
    jobId: 'job-a',
    shard: 1,
    step: 10,
    totalSteps: 100,
    checkpointStep: 0,
    checkpointAtMs: null,
    spinUpdates: 1000,
    sweeps: 20,
    weightUpdates: 10,
    computeSeconds: 1.5,
    waitSeconds: 0.25,
    staleness: [5, 2],
    peers: [
      {
        peer: 0,
        bytesSent: 100,
        bytesReceived: 90,
        messagesSent: 10,
        messagesReceived: 9,
        messagesResent: 0,
        reconnects: 0,
      },
    ],
    update: null,
    ...over,
  };
}

function get(address: string, path: string): Promise<{ status: number; body: string }> {
  const { host, port } = parseHostPort(address);
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('metric definitions', () => {
  const all: MetricDefinition[] = [
    ...Object.values(RpcMetricDefs),
    ...Object.values(WorkerMetricDefs),
    ...Object.values(CoordinatorMetricDefs),
  ];

  it('follow the naming conventions and never use the label Prometheus gives the scrape job', () => {
    const names = new Set<string>();
    for (const d of all) {
      expect(d.name, d.name).toMatch(/^spinmesh_[a-z0-9_]+$/);
      expect(names.has(d.name), `${d.name} defined twice`).toBe(false);
      names.add(d.name);
      if (d.type === 'counter') expect(d.name, d.name).toMatch(/_total$/);
      else expect(d.name, d.name).not.toMatch(/_total$/);
      if (d.type === 'histogram') expect(d.name, d.name).toMatch(/_(seconds|steps|bytes)$/);
      expect(d.labels).not.toContain('job');
      expect(d.labels).not.toContain('instance');
    }
  });

  it('register on their own registries, not the global one', async () => {
    const before = (await globalRegistry.getMetricsAsJSON()).length;
    const a = new WorkerMetrics();
    const b = new WorkerMetrics({ processMetrics: false });
    const c = new CoordinatorMetrics();
    expect((await globalRegistry.getMetricsAsJSON()).length).toBe(before);
    const names = await exposedNames(a.registry);
    expect(names.has('spinmesh_peer_staleness_steps_bucket')).toBe(true);
    expect(names.has('process_cpu_seconds_total')).toBe(true);
    expect((await exposedNames(b.registry)).has('process_cpu_seconds_total')).toBe(false);
    expect((await exposedNames(c.registry)).has('spinmesh_eval_log_likelihood_nats')).toBe(true);
  });
});

describe('WorkerMetrics', () => {
  it('advances counters by the difference, restarts a new run from zero, never goes back', async () => {
    const m = new WorkerMetrics({ processMetrics: false });
    const r = m.registry;
    const run1 = {};
    const l = { job_id: 'job-a', shard: '1' };
    m.observeShard(run1, sample());
    expect(await valueOf(r, 'spinmesh_spin_updates_total', l)).toBe(1000);
    expect(await valueOf(r, 'spinmesh_shard_compute_seconds_total', l)).toBe(1.5);
    expect(await valueOf(r, 'spinmesh_shard_wait_seconds_total', l)).toBe(0.25);
    m.observeShard(
      run1,
      sample({ spinUpdates: 1500, staleness: [6, 2, 1], computeSeconds: 2, waitSeconds: 0.5 }),
    );
    expect(await valueOf(r, 'spinmesh_spin_updates_total', l)).toBe(1500);
    expect(await valueOf(r, 'spinmesh_shard_compute_seconds_total', l)).toBe(2);
    expect(await valueOf(r, 'spinmesh_shard_wait_seconds_total', l)).toBe(0.5);
    expect(await valueOf(r, 'spinmesh_peer_staleness_steps_count', l)).toBe(9);
    expect(await valueOf(r, 'spinmesh_peer_staleness_steps_sum', l)).toBe(2 + 2);
    expect(await valueOf(r, 'spinmesh_peer_staleness_steps_bucket', { ...l, le: '0' })).toBe(6);
    expect(await valueOf(r, 'spinmesh_peer_staleness_steps_bucket', { ...l, le: '1' })).toBe(8);
    // A rollback: a new run of the same shard counts from zero again, adding to the counters.
    const run2 = {};
    m.observeShard(
      run2,
      sample({ spinUpdates: 200, step: 4, staleness: [1], computeSeconds: 0.5, waitSeconds: 0 }),
    );
    expect(await valueOf(r, 'spinmesh_spin_updates_total', l)).toBe(1700);
    expect(await valueOf(r, 'spinmesh_shard_compute_seconds_total', l)).toBe(2.5);
    expect(await valueOf(r, 'spinmesh_shard_wait_seconds_total', l)).toBe(0.5);
    expect(await valueOf(r, 'spinmesh_peer_staleness_steps_count', l)).toBe(10);
    expect(await valueOf(r, 'spinmesh_shard_step', l)).toBe(4);
    expect(await valueOf(r, 'spinmesh_peer_sent_bytes_total', { ...l, peer: '0' })).toBe(200);
  });

  it("keeps one shard's series: a new job replaces the last one's", async () => {
    const m = new WorkerMetrics({ processMetrics: false });
    m.observeShard({}, sample({ update: null }));
    m.observeShard(
      {},
      sample({
        jobId: 'job-b',
        shard: 0,
        checkpointAtMs: 1_700_000_000_000,
        update: { updateNorm: 0.5, learningRate: 0.1, dataCorrelation: 0.3, modelCorrelation: NaN },
      }),
    );
    const text = await m.registry.metrics();
    expect(text).not.toContain('job-a');
    expect(text).toContain('spinmesh_weight_update_norm{job_id="job-b",shard="0"} 0.5');
    expect(text).toContain('spinmesh_correlation_mean{job_id="job-b",shard="0",phase="data"} 0.3');
    // Not finite: not set.
    expect(text).not.toContain('phase="model"');
    expect(text).toContain(
      'spinmesh_shard_checkpoint_timestamp_seconds{job_id="job-b",shard="0"} 1700000000',
    );
    m.setState('running');
    expect(await valueOf(m.registry, 'spinmesh_worker_state', { state: 'running' })).toBe(1);
    expect(await valueOf(m.registry, 'spinmesh_worker_state', { state: 'idle' })).toBe(0);
  });
});

describe('CoordinatorMetrics', () => {
  it('sets evaluation gauges and keeps the series of the most recent jobs only', async () => {
    const m = new CoordinatorMetrics({ processMetrics: false, maxJobs: 2 });
    const r = m.registry;
    m.evaluation('j1', { epoch: 5, exactLogLikelihood: -3.6, reconstructionError: 0.2 }, 0.01);
    m.jobProgress('j2', { step: 3, totalSteps: 10, epoch: 1, generation: 1 });
    m.evaluation('j2', { epoch: 1, aisLogLikelihood: -4, pseudoLogLikelihood: -7 }, 0.02);
    expect(
      await valueOf(r, 'spinmesh_eval_log_likelihood_nats', { job_id: 'j1', method: 'exact' }),
    ).toBe(-3.6);
    expect(
      await valueOf(r, 'spinmesh_eval_log_likelihood_nats', { job_id: 'j2', method: 'ais' }),
    ).toBe(-4);
    expect(await valueOf(r, 'spinmesh_evaluation_seconds_count')).toBe(2);
    m.jobProgress('j3', { step: 1, totalSteps: 10, epoch: 0, generation: 1 });
    const text = await r.metrics();
    expect(text).not.toContain('job_id="j1"');
    expect(text).toContain('spinmesh_job_step{job_id="j2"} 3');
    expect(text).toContain('spinmesh_job_step{job_id="j3"} 1');
    m.setJobCounts({ running: 2, completed: 7 });
    expect(await valueOf(r, 'spinmesh_jobs', { state: 'completed' })).toBe(7);
    expect(await valueOf(r, 'spinmesh_jobs', { state: 'failed' })).toBe(0);
  });
});

describe('RPC metrics, /metrics and the health probe on real servers', () => {
  const metrics = new WorkerMetrics({ processMetrics: false });
  let server: grpc.Server;
  let health: HealthReporter;
  let address = '';

  beforeAll(async () => {
    server = new grpc.Server(withRpcMetrics(metrics.rpc, {}));
    health = addHealthService(server, { 'x.Serving': ServingStatus.SERVING });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
  });

  afterAll(async () => {
    health?.shutdown();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  it('counts calls by method and status code, and cancelled streams', async () => {
    expect(await checkHealth(address)).toEqual({ serving: true, detail: 'SERVING' });
    expect(await checkHealth(address, { service: 'x.Serving' })).toEqual({
      serving: true,
      detail: 'SERVING',
    });
    const missing = await checkHealth(address, { service: 'x.Missing' });
    expect(missing.serving).toBe(false);
    expect(missing.detail).toMatch(/^NOT_FOUND/);
    // A Watch stream the client cancels.
    const client = new HealthClient(address, grpc.credentials.createInsecure());
    await new Promise<void>((resolve) => {
      const call = client.watch({ service: '' });
      call.on('data', () => call.cancel());
      call.on('error', () => resolve());
    });
    client.close();
    const l = { grpc_service: 'grpc.health.v1.Health', grpc_method: 'Check', grpc_type: 'unary' };
    const r = metrics.registry;
    // The interceptor counts as the status leaves; give the event loop a turn for the last one.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await valueOf(r, 'spinmesh_grpc_server_started_total', l)).toBe(3);
    expect(await valueOf(r, 'spinmesh_grpc_server_handled_total', { ...l, grpc_code: 'OK' })).toBe(
      2,
    );
    expect(
      await valueOf(r, 'spinmesh_grpc_server_handled_total', { ...l, grpc_code: 'NOT_FOUND' }),
    ).toBe(1);
    expect(await valueOf(r, 'spinmesh_grpc_server_handling_seconds_count', l)).toBe(3);
    expect(
      await valueOf(r, 'spinmesh_grpc_server_handled_total', {
        grpc_method: 'Watch',
        grpc_type: 'server_stream',
        grpc_code: 'CANCELLED',
      }),
    ).toBe(1);
  });

  it('serves /metrics after refreshing, and /healthz; a failed refresh still serves', async () => {
    let refreshed = 0;
    let fail = false;
    const errors: unknown[] = [];
    const s = await startMetricsServer({
      registry: metrics.registry,
      listen: '127.0.0.1:0',
      beforeScrape: () => {
        refreshed++;
        if (fail) throw new Error('bus away');
      },
      onError: (e) => errors.push(e),
    });
    try {
      const ok = await get(s.address, '/metrics');
      expect(ok.status).toBe(200);
      expect(ok.body).toContain('# TYPE spinmesh_grpc_server_handled_total counter');
      expect(refreshed).toBe(1);
      fail = true;
      expect((await get(s.address, '/metrics')).status).toBe(200);
      expect(String(errors[0])).toContain('bus away');
      expect(await get(s.address, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
      expect((await get(s.address, '/nothing')).status).toBe(404);
    } finally {
      await s.close();
    }
    expect(await checkHealth(s.address, { timeoutMs: 500 })).toMatchObject({ serving: false });
  });

  it('probes the loopback address of a wildcard bind, and refuses port 0', () => {
    expect(probeAddress('0.0.0.0:7070')).toBe('127.0.0.1:7070');
    expect(probeAddress('[::]:7070')).toBe('[::1]:7070');
    expect(probeAddress('10.0.0.5:7071')).toBe('10.0.0.5:7071');
    expect(() => probeAddress('127.0.0.1:0')).toThrow(/port 0/);
  });
});

describe('the health probe of a TLS server', () => {
  it("trusts the server's own certificate, whatever name it was issued to", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spinmesh-telemetry-'));
    const server = new grpc.Server();
    try {
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      // A self-signed certificate for another name than the loopback address the probe dials.
      execFileSync(
        'openssl',
        [...'req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=elsewhere'.split(' ')].concat([
          '-keyout',
          key,
          '-out',
          cert,
        ]),
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      addHealthService(server);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(
          '127.0.0.1:0',
          grpc.ServerCredentials.createSsl(null, [
            { cert_chain: readFileSync(cert), private_key: readFileSync(key) },
          ]),
          (e, p) => (e ? reject(e) : resolve(p)),
        ),
      );
      const roots = ownServerRoots({ SPINMESH_TLS_CERT: cert, SPINMESH_TLS_KEY: key });
      expect(await checkHealth(`127.0.0.1:${port}`, { rootCerts: roots! })).toEqual({
        serving: true,
        detail: 'SERVING',
      });
      expect((await checkHealth(`127.0.0.1:${port}`, { timeoutMs: 1000 })).serving).toBe(false);
      expect(ownServerRoots({})).toBeUndefined();
      expect(() => ownServerRoots({ SPINMESH_TLS_CERT: '/nope', SPINMESH_TLS_KEY: key })).toThrow(
        /^SPINMESH_TLS_CERT: \/nope cannot be read/,
      );
    } finally {
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
