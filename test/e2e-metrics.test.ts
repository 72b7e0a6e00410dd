// Metrics end to end: a real redis-server, the coordinator and two workers as processes, and
// Debian's Prometheus scraping them with deploy/prometheus/prometheus.yml turned to loopback
// (static targets for the processes' metrics ports, 1 s scrapes). A bars-and-stripes job runs to
// completion over gRPC while a WatchJob watcher follows it; then every PromQL expression of
// every Grafana dashboard must return data from that Prometheus, and the figures must be the
// job's: the final exact log-likelihood is the one GetJob reports, the spin updates and sweeps
// are what the steps drew, the bytes one shard sent are the bytes the other received.
// Afterwards no process, port or directory is left.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SERVICE_MAINS, type LocalCluster } from '@spinmesh/coordinator';
import type { WatchJobResponse } from '@spinmesh/proto';

import { COMPLETED, Jobs, alive, basJob, listening, startCluster } from './cluster-helpers.js';
import {
  loadDashboards,
  panelQueries,
  parseLabelValues,
  substitute,
  variables,
} from './support/dashboards.js';
import {
  instantQuery,
  promApi,
  startPrometheus,
  type PrometheusServer,
} from './support/prometheus-server.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';

const PROMETHEUS_YML = fileURLToPath(
  new URL('../deploy/prometheus/prometheus.yml', import.meta.url),
);

/** 2 shards of a 16-16 RBM, staleness 2 (the staleness histogram has something to show). */
const EPOCHS = 2400;
const spec = basJob(EPOCHS, {
  name: 'e2e-metrics',
  workers: 2,
  staleness: 2,
  checkpointEverySteps: 400,
  evaluate: {
    every: 800,
    exact: true,
    ais: { runs: 20, steps: 500 },
    pseudo: true,
    recon: true,
  },
});

/** A string field of the first log line of a process with message `msg`. */
function logged(tail: string, msg: string, field: string): string | null {
  for (const line of tail.split('\n')) {
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o['msg'] === msg && typeof o[field] === 'string') return o[field];
    } catch {
      // not a log line
    }
  }
  return null;
}

/** Runs a service's container healthcheck against a process listening at `listen`. */
function healthcheck(
  service: 'coordinator' | 'worker',
  listen: string,
): { code: number; out: string } {
  const variable =
    service === 'coordinator' ? 'SPINMESH_COORDINATOR_LISTEN' : 'SPINMESH_WORKER_LISTEN';
  const r = spawnSync(
    process.execPath,
    [SERVICE_MAINS[service].replace(/main\.js$/, 'healthcheck.js')],
    {
      env: { ...process.env, [variable]: listen },
      encoding: 'utf8',
      timeout: 10_000,
    },
  );
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

async function until<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('metrics end to end', () => {
  let redis: RedisServer;
  let cluster: LocalCluster;
  let prometheus: PrometheusServer;
  let jobs: Jobs;
  const pids = new Set<number>();
  const addresses = new Set<string>();
  let startedAt = 0;

  beforeAll(async () => {
    startedAt = Date.now();
    redis = await startRedisServer();
    cluster = await startCluster(2, {
      env: { REDIS_URL: redis.url, SPINMESH_METRICS_LISTEN: '127.0.0.1:0' },
    });
    for (const p of cluster.processes.values()) if (p.child.pid) pids.add(p.child.pid);
    addresses.add(cluster.address);
    const targets = await until('the metrics endpoints', async () => {
      const found = new Map<string, string>();
      for (const [name, p] of cluster.processes) {
        const a = logged(p.tail(), 'metrics listening', 'address');
        if (a === null) return null;
        found.set(name, a);
      }
      return found;
    });
    for (const a of targets.values()) addresses.add(a);
    // deploy/prometheus/prometheus.yml with the same jobs, scraping the processes on loopback.
    const config = parse(readFileSync(PROMETHEUS_YML, 'utf8')) as {
      global: Record<string, string>;
      scrape_configs: Record<string, unknown>[];
    };
    config.global = { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
    for (const job of config.scrape_configs) {
      const names = [...targets.keys()].filter((n) =>
        job['job_name'] === 'coordinator' ? n === 'coordinator' : n.startsWith('worker-'),
      );
      delete job['dns_sd_configs'];
      job['static_configs'] = [{ targets: names.map((n) => targets.get(n)!) }];
    }
    expect(config.scrape_configs.map((j) => j['job_name']).sort()).toEqual([
      'coordinator',
      'worker',
    ]);
    prometheus = await startPrometheus(config);
    pids.add(prometheus.pid);
    addresses.add(`127.0.0.1:${prometheus.port}`);
    await until('every target up', async () => {
      const t = await promApi<{ activeTargets: { health: string }[] }>(prometheus.url, 'targets', {
        state: 'active',
      });
      return t.activeTargets.length === 3 && t.activeTargets.every((x) => x.health === 'up')
        ? true
        : null;
    });
    jobs = new Jobs(cluster.address);
  });

  afterAll(async () => {
    jobs?.close();
    await prometheus?.stop();
    await cluster?.stop();
    await redis?.stop();
    if (redis) addresses.add(`127.0.0.1:${redis.port}`);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    for (const a of addresses) expect(await listening(a), a).toBe(false);
    if (cluster) expect(healthcheck('coordinator', cluster.address).code).toBe(1);
    console.log(`metrics end to end: ${((Date.now() - startedAt) / 1000).toFixed(1)} s in all`);
  });

  it('every dashboard query returns the figures of a job that ran', async () => {
    const submitted = await jobs.submit(spec);
    const jobId = submitted.jobId;
    const seen: WatchJobResponse[] = [];
    const { job, events } = await jobs.follow(jobId, (e) => seen.push(e));
    for (const e of events) for (const s of e.workers?.shards ?? []) addresses.add(s.address);
    expect(job.state, job.error).toBe(COMPLETED);
    expect(seen.length).toBe(events.length);
    // During training (from checkpoints, best effort) and at the end.
    expect(events.filter((e) => e.evaluation !== undefined).length).toBeGreaterThanOrEqual(2);
    expect(events.some((e) => e.progress !== undefined)).toBe(true);
    const totalSteps = job.progress!.totalSteps;
    expect(totalSteps).toBe(EPOCHS); // 30 patterns, batch 30: one step an epoch

    // Wait for the scrape that saw the end (the final evaluation, every shard's last figures).
    const q = (expr: string): Promise<number[]> =>
      instantQuery(prometheus.url, expr).then((r) => r.map((s) => Number(s.value[1])));
    await until('the final figures in Prometheus', async () => {
      const [epoch] = await q(`spinmesh_eval_epoch{job_id="${jobId}"}`);
      const steps = await q(`spinmesh_shard_step{job_id="${jobId}"}`);
      return epoch === EPOCHS && steps.length === 2 && steps.every((s) => s === totalSteps)
        ? true
        : null;
    });
    await new Promise((r) => setTimeout(r, 2500)); // two more scrapes: counters settle

    // The coordinator's gauges hold the final evaluation GetJob reports.
    expect(await q(`spinmesh_eval_log_likelihood_nats{job_id="${jobId}",method="exact"}`)).toEqual([
      job.evaluation!.exactLogLikelihood,
    ]);
    expect(await q(`spinmesh_eval_pseudo_log_likelihood_nats{job_id="${jobId}"}`)).toEqual([
      job.evaluation!.pseudoLogLikelihood,
    ]);
    expect(await q(`spinmesh_job_step{job_id="${jobId}"}`)).toEqual([totalSteps]);
    expect(await q(`spinmesh_job_epoch{job_id="${jobId}"}`)).toEqual([EPOCHS]);
    // Each shard owns 8 visible and 8 hidden units: a step draws its 8 hidden units for the 30
    // rows (exact positive phase) and one PCD sweep over 100 chains of its 16 units. (A
    // recovery, should a loaded machine cause one, redraws steps: the counters count them.)
    const counted = async (expr: string, want: number): Promise<void> => {
      const [got] = await q(`sum(${expr}{job_id="${jobId}"})`);
      if (job.generation === 1) expect(got, expr).toBe(want);
      else expect(got, expr).toBeGreaterThanOrEqual(want);
    };
    await counted('spinmesh_spin_updates_total', 2 * totalSteps * (30 * 8 + 100 * 16));
    await counted('spinmesh_sweeps_total', 2 * totalSteps * 2);
    await counted('spinmesh_weight_updates_total', 2 * totalSteps);
    const [sent] = await q(`sum(spinmesh_peer_sent_bytes_total{job_id="${jobId}"})`);
    expect(await q(`sum(spinmesh_peer_received_bytes_total{job_id="${jobId}"})`)).toEqual([sent]);
    expect(sent).toBeGreaterThan(0);
    expect(await q('spinmesh_workers_alive')).toEqual([2]);

    // The containers' healthchecks, against the real processes.
    expect(healthcheck('coordinator', cluster.address)).toEqual({
      code: 0,
      out: `${cluster.address}: SERVING\n`,
    });
    for (const [name, p] of cluster.processes) {
      if (name === 'coordinator') continue;
      const listen = logged(p.tail(), 'listening', 'listen')!;
      expect(healthcheck('worker', listen)).toEqual({ code: 0, out: `${listen}: SERVING\n` });
    }
    expect(await q('spinmesh_jobs{state="completed"}')).toEqual([1]);

    // Every panel of every dashboard, over a window that covers the whole run.
    const window = `${Math.ceil((Date.now() - startedAt) / 1000) + 5}s`;
    const values = {
      job_id: jobId,
      instance: '.*',
      __rate_interval: window,
      __range: window,
      __interval: '1s',
    };
    const empty: string[] = [];
    let queries = 0;
    for (const d of loadDashboards()) {
      for (const v of variables(d)) {
        const { selector, label } = parseLabelValues(v.query);
        const got = await promApi<string[]>(prometheus.url, `label/${label}/values`, {
          'match[]': selector,
        });
        if (v.name === 'job_id') expect(got).toContain(jobId);
        else expect(got.length, `${d.title} $${v.name}`).toBeGreaterThan(0);
      }
      for (const p of panelQueries(d)) {
        queries++;
        const expr = substitute(p.expr, values);
        const samples = await instantQuery(prometheus.url, expr);
        if (!samples.some((s) => Number.isFinite(Number(s.value[1]))))
          empty.push(`${d.title} / ${p.panel}: ${expr} -> ${JSON.stringify(samples)}`);
      }
    }
    expect(empty, 'panels without data').toEqual([]);
    expect(queries).toBeGreaterThan(30);
  });
});
