// The deployment, checked without a Docker engine: docker-compose.yml against the services'
// configuration readers (every variable it sets is one they read, and their config accepts it;
// ports, addresses and healthchecks agree), deploy/Dockerfile's shape, the Prometheus
// configuration through `promtool check config` and against the compose services, and the
// Grafana provisioning and dashboards against the metrics the services register.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { COORDINATOR_ENV_VARS, configFromEnv as coordinatorConfig } from '@spinmesh/coordinator';
import {
  CoordinatorMetricDefs,
  CoordinatorMetrics,
  RpcMetricDefs,
  WorkerMetricDefs,
  WorkerMetrics,
  exposedNames,
  parseHostPort,
} from '@spinmesh/telemetry';
import { WORKER_ENV_VARS, configFromEnv as workerConfig } from '@spinmesh/worker';

import {
  loadDashboards,
  metricNames,
  panelQueries,
  parseLabelValues,
  variables,
} from './support/dashboards.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

type Env = Record<string, string>;
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string[];
  command?: string[] | string;
  environment?: Env;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  deploy?: { replicas?: number; resources?: { limits?: { memory?: string } } };
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const services = compose.services;
const prometheusYml = parse(read('deploy/prometheus/prometheus.yml')) as {
  global: Record<string, string>;
  scrape_configs: {
    job_name: string;
    static_configs?: { targets: string[] }[];
    dns_sd_configs?: { names: string[]; type: string; port: number }[];
  }[];
};

/**
 * Variables read by the libraries under the services rather than by their config modules
 * (the Fashion-MNIST loader, the kernels' addon path): allowed if the code still reads them.
 */
const LIBRARY_VARIABLES = ['SPINMESH_DATA_DIR', 'SPINMESH_NATIVE_ADDON'];

/** The environment as the containers get it: `${X:?...}` and `${X:-d}` with test values. */
function resolved(env: Env): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env))
    out[k] = String(v).replace(/\$\{([A-Z_]+)(:[?-][^}]*)?\}/g, (_, name: string, rest?: string) =>
      rest?.startsWith(':-') ? rest.slice(2) : `test-${name.toLowerCase()}`,
    );
  return out;
}

/** The variables `${X:?...}` the file requires from the environment or .env. */
function required(): Set<string> {
  return new Set([...read('docker-compose.yml').matchAll(/\$\{([A-Z_]+):\?/g)].map((m) => m[1]!));
}

/** A `ports` entry with the defaults of its variables: host address, host port, container port. */
function published(entry: string): { address: string; hostPort: number; port: number } {
  const parts = resolved({ p: entry })['p']!.split(':');
  expect(parts, entry).toHaveLength(3);
  return { address: parts[0]!, hostPort: Number(parts[1]), port: Number(parts[2]) };
}

function mountOf(s: Service, target: string): string | undefined {
  return s.volumes?.map((v) => v.split(':')).find((p) => p[1] === target)?.[0];
}

describe('docker-compose.yml', () => {
  it('runs Redis, the coordinator, scalable workers, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['coordinator', 'grafana', 'prometheus', 'redis', 'worker'].sort(),
    );
  });

  it('publishes ports on 127.0.0.1 unless SPINMESH_PUBLISH_ADDRESS opens them', () => {
    const ports = Object.values(services).flatMap((s) => s.ports ?? []);
    expect(ports.length).toBe(3);
    for (const p of ports) {
      expect(p).toMatch(/^\$\{SPINMESH_PUBLISH_ADDRESS:-127\.0\.0\.1\}:/);
      expect(published(p).address).toBe('127.0.0.1');
    }
  });

  it('pins every image, limits memory and health-checks every service', () => {
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toMatch(/^[a-z0-9./-]+:v?\d+\.\d+\.\d+(-[a-z0-9]+)?$/);
      expect(s.deploy?.resources?.limits?.memory, name).toMatch(/^\d+[mg]$/);
      expect(s.healthcheck?.test.length, name).toBeGreaterThan(1);
    }
  });

  it('gives Redis append-only persistence on a volume and a password from the environment', () => {
    const r = services['redis']!;
    // Arguments to the image's entry point, which drops root for the redis user only when the
    // command is redis-server itself (a shell wrapper kept it root).
    const args = [r.command].flat() as string[];
    expect(args[0]).toBe('redis-server');
    expect(r.entrypoint).toBeUndefined();
    const cmd = args.join(' ');
    expect(cmd).toMatch(/--appendonly yes/);
    expect(args[args.indexOf('--requirepass') + 1]).toMatch(/^\$\{SPINMESH_REDIS_PASSWORD:\?/);
    expect(r.environment?.['REDIS_PASSWORD']).toMatch(/^\$\{SPINMESH_REDIS_PASSWORD:\?/);
    expect(compose.volumes).toHaveProperty(mountOf(r, '/data')!);
    expect(r.healthcheck?.test.join(' ')).toContain('redis-cli ping');
    expect(required()).toEqual(
      new Set(['SPINMESH_REDIS_PASSWORD', 'SPINMESH_CLUSTER_SECRET', 'GRAFANA_ADMIN_PASSWORD']),
    );
  });

  const sources = readdirSync(join(ROOT, 'packages'))
    .filter((p) => existsSync(join(ROOT, 'packages', p, 'src')))
    .flatMap((p) =>
      readdirSync(join(ROOT, 'packages', p, 'src'), { recursive: true })
        .filter((f) => String(f).endsWith('.ts'))
        .map((f) => read(join('packages', p, 'src', String(f)))),
    )
    .join('\n');

  for (const [name, vars, main] of [
    ['coordinator', COORDINATOR_ENV_VARS, 'services/coordinator/dist/main.js'],
    ['worker', WORKER_ENV_VARS, 'services/worker/dist/main.js'],
  ] as const) {
    it(`sets only variables the ${name} reads, and its config accepts them`, () => {
      const s = services[name]!;
      expect(s.build).toEqual({ context: '.', dockerfile: 'deploy/Dockerfile' });
      expect(s.entrypoint).toEqual(['node', main]);
      expect(existsSync(join(ROOT, main.replace('/dist/', '/src/').replace(/\.js$/, '.ts')))).toBe(
        true,
      );
      const env = s.environment ?? {};
      const known = new Set<string>(vars);
      for (const v of Object.keys(env)) {
        if (known.has(v)) continue;
        expect(LIBRARY_VARIABLES, `${name} sets ${v}, which nothing reads`).toContain(v);
        expect(sources, `${v} is no longer read by the packages`).toContain(`'${v}'`);
      }
      // The healthcheck is the service's own probe, built from services/<name>/src/healthcheck.ts.
      expect(s.healthcheck?.test).toEqual(['CMD', 'node', `services/${name}/dist/healthcheck.js`]);
      expect(existsSync(join(ROOT, `services/${name}/src/healthcheck.ts`))).toBe(true);
      expect(s.depends_on?.['redis']?.condition).toBe('service_healthy');
    });
  }

  it('wires the coordinator: Redis with the password, its published port, metrics on 9464', () => {
    const s = services['coordinator']!;
    const c = coordinatorConfig(resolved(s.environment!));
    expect(c.redis?.url).toBe('redis://redis:6379');
    expect(c.redis?.password).toBe('test-spinmesh_redis_password');
    expect(c.clusterSecret).toBe('test-spinmesh_cluster_secret');
    expect(c.apiToken).toBeNull();
    const { port } = parseHostPort(c.listen);
    expect(s.ports?.map(published)).toEqual([{ address: '127.0.0.1', hostPort: port, port }]);
    expect(parseHostPort(c.metricsListen!)).toEqual({ host: '0.0.0.0', port: 9464 });
    const job = prometheusYml.scrape_configs.find((j) => j.job_name === 'coordinator')!;
    expect(job.static_configs).toEqual([{ targets: [`coordinator:${9464}`] }]);
  });

  it('wires the workers: Redis, no published port (they scale), metrics found by DNS', () => {
    const s = services['worker']!;
    const c = workerConfig(resolved(s.environment!));
    expect(c.bus).toEqual({
      kind: 'redis',
      options: { url: 'redis://redis:6379', password: 'test-spinmesh_redis_password' },
    });
    expect(c.clusterSecret).toBe(
      coordinatorConfig(resolved(services['coordinator']!.environment!)).clusterSecret,
    );
    expect(s.ports).toBeUndefined();
    expect(s.deploy?.replicas).toBeGreaterThanOrEqual(2);
    // A fixed port: the healthcheck probes it; the advertised address is the container's name.
    expect(parseHostPort(c.listen).port).not.toBe(0);
    expect(c.advertise).toBeNull();
    const metrics = parseHostPort(c.metricsListen!);
    expect(metrics.host).toBe('0.0.0.0');
    const job = prometheusYml.scrape_configs.find((j) => j.job_name === 'worker')!;
    expect(job.dns_sd_configs).toEqual([
      { names: ['worker'], type: 'A', port: metrics.port, refresh_interval: '15s' },
    ]);
  });

  it('provisions Prometheus and Grafana from deploy/', () => {
    const p = services['prometheus']!;
    const configFlag = [p.command].flat().find((a) => a?.startsWith('--config.file='))!;
    expect(mountOf(p, configFlag.slice('--config.file='.length))).toBe(
      './deploy/prometheus/prometheus.yml',
    );
    const g = services['grafana']!;
    expect(mountOf(g, '/etc/grafana/provisioning')).toBe('./deploy/grafana/provisioning');
    const provider = parse(read('deploy/grafana/provisioning/dashboards/spinmesh.yml')) as {
      providers: { options: { path: string } }[];
    };
    expect(mountOf(g, provider.providers[0]!.options.path)).toBe('./deploy/grafana/dashboards');
    const ds = parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string; url: string; type: string }[];
    };
    expect(ds.datasources).toHaveLength(1);
    expect(ds.datasources[0]!.url).toBe(`http://prometheus:${published(p.ports![0]!).port}`);
    for (const d of loadDashboards())
      for (const q of panelQueries(d))
        expect(q.datasourceUid, `${d.title}: ${q.panel}`).toBe(ds.datasources[0]!.uid);
    expect(g.environment?.['GF_SECURITY_ADMIN_PASSWORD']).toMatch(/^\$\{GRAFANA_ADMIN_PASSWORD:\?/);
  });
});

describe('deploy/Dockerfile', () => {
  const text = read('deploy/Dockerfile');
  const stages = text.split(/^FROM /m).slice(1);

  it('needs no front-end image from a registry (no `# syntax=` line): offline builds work', () => {
    expect(text).not.toMatch(/^#\s*syntax\s*=/im);
  });

  it('builds in one stage and runs in another, from pinned images', () => {
    expect(stages.length).toBe(2);
    const version = /^ARG NODE_VERSION=(\d+\.\d+\.\d+)$/m.exec(text)?.[1];
    expect(version).toBeDefined();
    for (const s of stages) expect(s).toMatch(/^node:\$\{NODE_VERSION\}-bookworm(-slim)? AS \w+/);
  });

  it('runs as a non-root user with OpenBLAS, the built services and their healthchecks', () => {
    const runtime = stages.at(-1)!;
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime).toMatch(/libopenblas0/);
    expect(runtime).toMatch(/COPY --from=build \/app\/services/);
    expect(runtime).toMatch(/COPY --from=build \/app\/apps/);
    expect(stages[0]).toMatch(/libopenblas-dev/);
    expect(stages[0]).toMatch(/npm ci/);
    expect(stages[0]).toMatch(/npm prune --omit=dev/);
  });

  it('runs the CLI by default, from a script the build compiles', () => {
    const entry = /^ENTRYPOINT \["node", "([^"]+)"\]$/m.exec(text)?.[1];
    expect(entry).toBeDefined();
    const source = entry!.replace('/dist/', '/src/').replace(/\.js$/, '.ts');
    expect(existsSync(join(ROOT, source)), `${source} is missing`).toBe(true);
  });

  it('builds and ships every workspace (npm ci wants each one, the services import them)', () => {
    const workspaces = (JSON.parse(read('package.json')) as { workspaces: string[] }).workspaces;
    const copied = (stage: string, from: RegExp): string[] =>
      [...stage.matchAll(from)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
    const built = copied(stages[0]!, /^COPY (?!--)(.+)$/gm).map((s) => s.replace(/^\.\//, ''));
    const shipped = copied(stages.at(-1)!, /^COPY --from=build (.+)$/gm).map((s) =>
      s.replace(/^\/app\//, ''),
    );
    const covers = (dirs: string[], ws: string): boolean =>
      dirs.some((d) => ws === d || ws.startsWith(`${d}/`));
    expect(workspaces).toContain('packages/cluster');
    for (const ws of workspaces) {
      expect(covers(built, ws), `the build stage copies ${ws}`).toBe(true);
      expect(covers(shipped, ws), `the runtime stage copies ${ws}`).toBe(true);
    }
  });
});

describe('deploy/prometheus/prometheus.yml', () => {
  it('passes promtool check config', () => {
    const r = spawnSync(
      'promtool',
      ['check', 'config', join(ROOT, 'deploy/prometheus/prometheus.yml')],
      {
        encoding: 'utf8',
      },
    );
    if (r.error)
      throw new Error(
        "promtool not found: install the Debian package 'prometheus' (scripts/setup.sh does)",
      );
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe('Grafana dashboards', () => {
  const dashboards = loadDashboards();

  it('are the cluster overview, a training job and the worker internals, with unique uids', () => {
    expect(dashboards.map((d) => d.file)).toEqual([
      'cluster-overview.json',
      'training-job.json',
      'worker-internals.json',
    ]);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
  });

  it('query only metrics the services register', async () => {
    const exposed = new Set([
      ...(await exposedNames(new WorkerMetrics().registry)),
      ...(await exposedNames(new CoordinatorMetrics().registry)),
    ]);
    const jobs = new Set(prometheusYml.scrape_configs.map((j) => j.job_name));
    const unknown: string[] = [];
    let count = 0;
    for (const d of dashboards) {
      for (const q of panelQueries(d)) {
        count++;
        const names = metricNames(q.expr);
        expect(names.length, `${q.panel}: ${q.expr}`).toBeGreaterThan(0);
        for (const n of names) if (!exposed.has(n)) unknown.push(`${d.title} / ${q.panel}: ${n}`);
        for (const m of q.expr.matchAll(/\bjob="([^"]+)"/g))
          expect(jobs, `${q.panel}: scrape job ${m[1]}`).toContain(m[1]);
      }
      for (const v of variables(d)) {
        const { selector } = parseLabelValues(v.query);
        for (const n of metricNames(selector))
          if (!exposed.has(n)) unknown.push(`${d.title} / $${v.name}: ${n}`);
      }
    }
    expect(unknown).toEqual([]);
    expect(count).toBeGreaterThan(30);
  });

  it('and deploy/README.md documents every metric', () => {
    const doc = read('deploy/README.md');
    const defs = [RpcMetricDefs, WorkerMetricDefs, CoordinatorMetricDefs].flatMap((d) =>
      Object.values(d),
    );
    expect(defs.filter((d) => !doc.includes(`\`${d.name}\``)).map((d) => d.name)).toEqual([]);
  });

  it('finds metric names in PromQL', () => {
    expect(
      metricNames(
        'histogram_quantile(0.9, sum by (le, job) (rate(a_bucket{job="w",x=~"$y"}[$__rate_interval]))) / 1e3 + b offset 5m',
      ),
    ).toEqual(['a_bucket', 'b']);
    expect(metricNames('1 - sum by (job) (rate(c_total{code="OK"}[1m])) / on(job) d')).toEqual([
      'c_total',
      'd',
    ]);
  });
});
