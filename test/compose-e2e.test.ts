// docker-compose.yml end to end on a real Docker engine (`npm run test:compose`, a step of
// `npm test` after the rest of the suite, so its builds do not starve the timed tests): the
// project's image built from deploy/Dockerfile, the services up and healthy, a job submitted
// from the host CLI with the API token completing on the container workers, every Prometheus
// target up and every dashboard query answered, a worker container killed mid-job without the
// job failing, and the jobs kept across `down`/`up`. Where no engine answers, a private one is
// started (scripts/containers/engine.sh), and where no registry answers, the base images are
// local stand-ins (scripts/containers/standins.sh); a service whose image cannot be had is left
// out and named. It ends with one JSON line that sums up what it saw, and asserts each part.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SpinmeshClient } from '@spinmesh/client';
import { JobState, type Job } from '@spinmesh/proto';

import { basJob } from './cluster-helpers.js';
import {
  loadDashboards,
  panelQueries,
  parseLabelValues,
  substitute,
  variables,
} from './support/dashboards.js';
import { instantQuery, promApi } from './support/prometheus-server.js';
import { freePort } from './support/server-process.js';
import { must, provideImages, run, startEngine, type Engine } from './support/engine.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = join(ROOT, 'apps/cli/dist/cli.js');
const MIN = 60_000;

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), {
  merge: true,
}) as { services: Record<string, { image: string; build?: unknown }> };
const IMAGE = compose.services['coordinator']!.image;
const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
const nodeVersion = /^ARG NODE_VERSION=(.+)$/m.exec(dockerfile)![1]!;
/** The registry images: the Dockerfile's bases and the compose services' own images. */
const BASE_IMAGES = [
  ...new Set([
    ...[...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) =>
      m[1]!.replace('${NODE_VERSION}', nodeVersion),
    ),
    ...Object.values(compose.services)
      .filter((s) => !s.build)
      .map((s) => s.image),
  ]),
];

/** What the run saw; printed as one JSON line at the end and asserted part by part. */
const summary = {
  imageBuilt: false,
  servicesHealthy: [] as string[],
  servicesLeftOut: [] as string[],
  standins: [] as string[],
  engine: '',
  jobCompletedOnContainerWorkers: false,
  targetsUp: '0/0',
  dashboardQueriesWithData: '0/0',
  workerKillSurvived: false,
  jobsKeptAcrossDownUp: false,
  redisUser: '',
  publishedOn: [] as string[],
  minutes: 0,
};

const secrets = {
  SPINMESH_REDIS_PASSWORD: `redis-${process.pid}-${Date.now()}`,
  SPINMESH_CLUSTER_SECRET: `cluster-${process.pid}-${Date.now()}`,
  GRAFANA_ADMIN_PASSWORD: `grafana-${process.pid}`,
  SPINMESH_API_TOKEN: `token-${process.pid}-${Date.now()}`,
};

describe('docker compose on a real engine', () => {
  const startedAt = Date.now();
  const project = `spinmesh-e2e-${process.pid}`;
  let dir = '';
  let engine: Engine | undefined;
  let composeUp = false;
  let services: string[] = [];
  let coordinatorPort = 0;
  let prometheusPort = 0;
  let client: SpinmeshClient | undefined;
  const jobs: string[] = [];

  const dc = (args: string[], timeoutMs = 5 * MIN): Promise<string> =>
    must(
      'docker',
      [
        'compose',
        '-p',
        project,
        '-f',
        'docker-compose.yml',
        '-f',
        join(dir, 'override.yml'),
        '--env-file',
        join(dir, '.env'),
        ...args,
      ],
      { ...engine!.env, DOCKER_BUILDKIT: '0' },
      timeoutMs,
      ROOT,
    );
  const cli = (args: string[]): Promise<string> =>
    must(
      process.execPath,
      [
        CLI,
        ...args,
        '--address',
        `127.0.0.1:${coordinatorPort}`,
        '--token',
        secrets.SPINMESH_API_TOKEN,
      ],
      process.env,
      2 * MIN,
    );
  const prometheus = (): string => `http://127.0.0.1:${prometheusPort}`;
  const upAndHealthy = async (): Promise<void> => {
    await dc(['up', '-d', '--no-build', '--wait', '--wait-timeout', '300', ...services], 7 * MIN);
    composeUp = true;
    client?.close();
    client = new SpinmeshClient({
      address: `127.0.0.1:${coordinatorPort}`,
      token: secrets.SPINMESH_API_TOKEN,
    });
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spinmesh-compose-'));
    coordinatorPort = await freePort();
    prometheusPort = await freePort();
    const env = {
      ...secrets,
      SPINMESH_COORDINATOR_PORT: String(coordinatorPort),
      SPINMESH_PROMETHEUS_PORT: String(prometheusPort),
      SPINMESH_GRAFANA_PORT: String(await freePort()),
    };
    writeFileSync(
      join(dir, '.env'),
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
      { mode: 0o600 },
    );
    // The engine's bridges have no NAT on these machines: the build reaches apt and npm through
    // the host's network. Nothing else differs from the file a user runs.
    // Prometheus scrapes every 2 s instead of 15 (the deploy file otherwise unchanged), so that
    // the metrics job spans several scrapes however fast the machine runs it: a rate over its
    // window needs two different samples, or a ratio of rates is 0/0 and a quantile NaN.
    const promDir = join(dir, 'prometheus');
    mkdirSync(promDir);
    chmodSync(dir, 0o755); // the container's user reads the file through it; .env stays 0600
    const promConfig = readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8');
    if (!/^ {2}scrape_interval: 15s$/m.test(promConfig))
      throw new Error(
        'deploy/prometheus/prometheus.yml: no global scrape_interval of 15s to shorten',
      );
    writeFileSync(
      join(promDir, 'prometheus.yml'),
      promConfig
        .replace(/^ {2}scrape_interval: 15s$/m, '  scrape_interval: 2s')
        .replace(/^ {2}scrape_timeout: \d+s$/m, '  scrape_timeout: 2s'),
      { mode: 0o644 },
    );
    writeFileSync(
      join(dir, 'override.yml'),
      'services:\n  coordinator:\n    build:\n      network: host\n' +
        '  worker:\n    build:\n      network: host\n' +
        '  prometheus:\n    volumes:\n' +
        `      - ${join(promDir, 'prometheus.yml')}:/etc/prometheus/prometheus.yml:ro\n`,
    );
    engine = await startEngine();
    summary.engine = engine.kind;
    const images = await provideImages(engine, BASE_IMAGES);
    summary.standins = images.standins;
    summary.servicesLeftOut = Object.entries(compose.services)
      .filter(([, s]) => images.unavailable.includes(s.image))
      .map(([name]) => name);
    const baseMissing = images.unavailable.filter((i) => i.startsWith('node:'));
    if (baseMissing.length > 0) throw new Error(`no base image for the build: ${baseMissing}`);
    services = Object.keys(compose.services).filter((s) => !summary.servicesLeftOut.includes(s));
    console.log(
      `compose e2e: engine ${engine.kind}; stand-ins ${images.standins.join(', ') || 'none'}; ` +
        `left out: ${summary.servicesLeftOut.join(', ') || 'none'}`,
    );
  }, 45 * MIN);

  afterAll(async () => {
    client?.close();
    const errors: string[] = [];
    if (composeUp)
      await dc(['down', '--volumes', '--remove-orphans', '--timeout', '15'], 3 * MIN).catch(
        (e: Error) => errors.push(e.message),
      );
    await engine?.stop().catch((e: Error) => errors.push(e.message));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`clean-up: ${errors.join('; ')}`);
  }, 5 * MIN);

  it(
    'builds the image: non-root',
    async () => {
      await dc(['build', 'coordinator'], 30 * MIN);
      const user = await must(
        'docker',
        ['image', 'inspect', '--format', '{{.Config.User}}', IMAGE],
        engine!.env,
        MIN,
      );
      expect(user.trim()).toBe('node');
      summary.imageBuilt = true;
    },
    35 * MIN,
  );

  it(
    'brings every service up healthy, Redis as non-root, ports on loopback only',
    async () => {
      await upAndHealthy();
      await dc(['up', '-d', '--no-build', '--wait', '--scale', 'worker=3', 'worker'], 5 * MIN);
      const ps = await dc(['ps', '--format', 'json']);
      const rows = ps
        .trim()
        .split('\n')
        .flatMap((l) => (l.startsWith('[') ? (JSON.parse(l) as unknown[]) : [JSON.parse(l)]))
        .map((r) => r as { Service: string; Health: string; State: string });
      for (const r of rows)
        expect(`${r.Service}: ${r.State} ${r.Health}`).toMatch(/running healthy$/);
      summary.servicesHealthy = [...new Set(rows.map((r) => r.Service))].sort();
      expect(summary.servicesHealthy).toEqual([...services].sort());
      expect(rows.filter((r) => r.Service === 'worker')).toHaveLength(3);

      // Redis's entry point must have dropped root before starting the server (PID 1).
      const uid = await dc([
        'exec',
        '-T',
        'redis',
        'awk',
        '/^Uid:/ { print $2 }',
        '/proc/1/status',
      ]);
      const name = await dc(['exec', '-T', 'redis', 'id', '-un', uid.trim()]);
      summary.redisUser = name.trim();
      expect(summary.redisUser).toBe('redis');

      for (const [service, port] of [
        ['coordinator', 7070],
        ['prometheus', 9090],
      ] as const) {
        const published = (await dc(['port', service, String(port)])).trim();
        summary.publishedOn.push(published);
        expect(published).toMatch(/^127\.0\.0\.1:\d+$/);
      }
    },
    15 * MIN,
  );

  it(
    'runs a job from the host CLI on the container workers; every target and panel answers',
    async () => {
      // Long enough for several of the test's 2 s scrapes while it runs (see the override in
      // beforeAll). Staleness 2 fills the staleness histogram; every evaluation the dashboards
      // show.
      const spec = basJob(36000, {
        name: 'compose-e2e-metrics',
        workers: 2,
        staleness: 2,
        checkpointEverySteps: 4000,
        evaluate: {
          every: 12000,
          exact: true,
          ais: { runs: 20, steps: 500 },
          pseudo: true,
          recon: true,
        },
      });
      writeFileSync(join(dir, 'metrics.json'), JSON.stringify(spec));
      // Without the token the coordinator refuses the call.
      const anonymous = await run(
        process.execPath,
        [CLI, 'list', '--address', `127.0.0.1:${coordinatorPort}`],
        process.env,
        MIN,
      );
      expect(anonymous.code).not.toBe(0);

      const jobId = (await cli(['submit', join(dir, 'metrics.json')])).trim().split('\n')[0]!;
      jobs.push(jobId);
      const workers = new Set<string>();
      const containers = (await dc(['ps', '-q', 'worker'])).trim().split('\n');
      await client!.watchJob(jobId, (e) => {
        for (const s of e.workers?.shards ?? []) workers.add(s.address.split(':')[0]!);
      });
      const job = await client!.getJob(jobId);
      expect(job.state, job.error).toBe(JobState.JOB_STATE_COMPLETED);
      // The shards ran in the worker containers: their advertised host names are container ids.
      expect(workers.size).toBe(2);
      for (const w of workers)
        expect(
          containers.some((c) => c.startsWith(w)),
          w,
        ).toBe(true);
      summary.jobCompletedOnContainerWorkers = true;

      // Prometheus: every target up once it has scraped the finished job's figures a few times.
      const deadline = Date.now() + 5 * MIN;
      let targets: { health: string; labels: Record<string, string> }[] = [];
      for (;;) {
        targets = (
          await promApi<{ activeTargets: typeof targets }>(prometheus(), 'targets', {
            state: 'active',
          })
        ).activeTargets;
        const scraped = await instantQuery(
          prometheus(),
          `count_over_time(spinmesh_shard_step{job_id="${jobId}"}[10m])`,
        );
        const up = targets.filter((t) => t.health === 'up').length;
        if (up === 4 && scraped.length === 2 && scraped.every((s) => Number(s.value[1]) >= 4))
          break;
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 5000));
      }
      const up = targets.filter((t) => t.health === 'up').length;
      summary.targetsUp = `${up}/${targets.length}`;
      expect(targets.map((t) => `${t.labels['job']} ${t.health}`).sort()).toEqual([
        'coordinator up',
        'worker up',
        'worker up',
        'worker up',
      ]);

      const window = `${Math.ceil((Date.now() - job.createdAtMs) / 1000) + 30}s`;
      const values = {
        job_id: jobId,
        instance: '.*',
        __rate_interval: window,
        __range: window,
        __interval: '2s',
      };
      const empty: string[] = [];
      let queries = 0;
      for (const d of loadDashboards()) {
        for (const v of variables(d)) {
          const { selector, label } = parseLabelValues(v.query);
          const got = await promApi<string[]>(prometheus(), `label/${label}/values`, {
            'match[]': selector,
          });
          if (v.name === 'job_id') expect(got).toContain(jobId);
          else expect(got.length, `${d.title} $${v.name}`).toBeGreaterThan(0);
        }
        for (const p of panelQueries(d)) {
          queries++;
          const samples = await instantQuery(prometheus(), substitute(p.expr, values));
          if (!samples.some((s) => Number.isFinite(Number(s.value[1]))))
            empty.push(`${d.title} / ${p.panel}`);
        }
      }
      summary.dashboardQueriesWithData = `${queries - empty.length}/${queries}`;
      expect(empty, 'panels without data').toEqual([]);
    },
    15 * MIN,
  );

  it(
    'completes a job whose worker container is killed mid-job',
    async () => {
      // Long enough that the steps left after the kill is asked for outlast `docker kill` (a
      // 16-16 network takes well under a millisecond a step on two workers).
      const spec = basJob(30000, {
        name: 'compose-e2e-kill',
        workers: 2,
        staleness: 0,
        checkpointEverySteps: 300,
      });
      writeFileSync(join(dir, 'kill.json'), JSON.stringify(spec));
      const jobId = (await cli(['submit', join(dir, 'kill.json')])).trim().split('\n')[0]!;
      jobs.push(jobId);
      let victim: string | undefined;
      let killed: Promise<string> | undefined;
      let lost = false;
      const generations = new Set<number>();
      await client!.watchJob(jobId, (e) => {
        if (e.workers?.kind === 'assigned') {
          generations.add(e.workers.generation);
          victim ??= e.workers.shards[0]!.address.split(':')[0]!;
        }
        if (e.workers?.kind === 'worker-lost') lost = true;
        // After two checkpoints: the shard moves to the spare and resumes from the newest.
        if (!killed && victim && (e.progress?.step ?? 0) >= 900)
          // Settled here, so that a failed kill is reported below, not as an unhandled rejection.
          killed = must('docker', ['kill', victim], engine!.env, MIN).catch(
            (err: Error) => `kill failed: ${err.message}`,
          );
      });
      expect(killed, 'the job ended before a worker could be killed').toBeDefined();
      expect((await killed)!.trim()).toMatch(/^[0-9a-f]+$/);
      const job = await client!.getJob(jobId);
      expect(job.state, job.error).toBe(JobState.JOB_STATE_COMPLETED);
      expect(lost).toBe(true);
      expect(generations.size).toBeGreaterThan(1);
      summary.workerKillSurvived = true;
    },
    15 * MIN,
  );

  it(
    'keeps the jobs across down and up (Redis append-only file on its volume)',
    async () => {
      await dc(['down', '--timeout', '15'], 3 * MIN);
      composeUp = false;
      await upAndHealthy();
      const kept: Job[] = [];
      for await (const j of client!.allJobs()) kept.push(j);
      expect(kept.map((j) => [j.jobId, j.state])).toEqual(
        jobs.map((id) => [id, JobState.JOB_STATE_COMPLETED]),
      );
      // And the CLI lists them too, with the token.
      const listed = await cli(['list']);
      for (const id of jobs) expect(listed).toContain(id);
      summary.jobsKeptAcrossDownUp = true;
    },
    15 * MIN,
  );

  it('sums it up', () => {
    summary.minutes = Math.round(((Date.now() - startedAt) / MIN) * 10) / 10;
    console.log(`COMPOSE_E2E_SUMMARY ${JSON.stringify(summary)}`);
    expect(summary.imageBuilt).toBe(true);
    expect(summary.servicesHealthy.length).toBeGreaterThanOrEqual(4);
    expect(summary.jobCompletedOnContainerWorkers).toBe(true);
    expect(summary.targetsUp).toBe('4/4');
    const [withData, total] = summary.dashboardQueriesWithData.split('/').map(Number);
    expect(total).toBeGreaterThan(30);
    expect(withData).toBe(total);
    expect(summary.workerKillSurvived).toBe(true);
    expect(summary.jobsKeptAcrossDownUp).toBe(true);
  });
});
