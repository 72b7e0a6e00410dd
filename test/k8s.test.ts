// The Kubernetes manifests (deploy/k8s), checked without a cluster: the example overlay rendered
// by kustomize (`kustomize build`, or `kubectl kustomize`; where neither is installed, by the
// small renderer below, which the test compares with kustomize's output where it is), every
// object validated against the Kubernetes API schema (kubernetes-models), every variable set on
// the coordinator and the workers one their config reads and accepts, and the parts wired to
// each other: probes, ports, selectors, network policies, the scrape configuration and the
// dashboards from deploy/grafana.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { COORDINATOR_ENV_VARS, configFromEnv as coordinatorConfig } from '@spinmesh/coordinator';
import { parseHostPort } from '@spinmesh/telemetry';
import { WORKER_ENV_VARS, configFromEnv as workerConfig } from '@spinmesh/worker';

import { loadDashboards } from './support/dashboards.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OVERLAY = join(ROOT, 'deploy/k8s/overlays/example');

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are untyped YAML */
type Obj = Record<string, any>;

/** Variables read by libraries under the services (see test/deploy.test.ts). */
const LIBRARY_VARIABLES = ['SPINMESH_DATA_DIR', 'SPINMESH_NATIVE_ADDON'];

/** `kustomize build` or `kubectl kustomize`, whichever is installed; null when neither is. */
function kustomize(dir: string): { tool: string; objects: Obj[] } | null {
  for (const [cmd, args] of [
    ['kustomize', ['build', dir]],
    ['kubectl', ['kustomize', dir]],
  ] as const) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
    if (r.error) continue;
    if (r.status !== 0) throw new Error(`${cmd} ${args[0]} failed: ${r.stderr.slice(0, 2000)}`);
    return { tool: `${cmd} ${args[0]}`, objects: docs(r.stdout) };
  }
  return null;
}

function docs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

/**
 * The subset of kustomize this repository's kustomizations use: resources (files and
 * directories), namespace, images, replicas, and configMapGenerator with files and labels
 * (without the name's content hash).
 */
function render(dir: string): Obj[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const out: Obj[] = [];
  for (const r of (k['resources'] ?? []) as string[]) {
    const path = join(dir, r);
    out.push(...(statSync(path).isDirectory() ? render(path) : docs(readFileSync(path, 'utf8'))));
  }
  for (const g of (k['configMapGenerator'] ?? []) as Obj[]) {
    const data: Record<string, string> = {};
    for (const f of g['files'] as string[]) data[basename(f)] = readFileSync(join(dir, f), 'utf8');
    out.push({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: g['name'], labels: g['options']?.['labels'] },
      data,
    });
  }
  for (const o of out) {
    if (k['namespace'] && o['kind'] !== 'Namespace') o['metadata']['namespace'] = k['namespace'];
    for (const c of o['spec']?.['template']?.['spec']?.['containers'] ?? [])
      for (const i of (k['images'] ?? []) as Obj[])
        if (c.image.split(':')[0] === i['name'])
          c.image = `${i['newName'] ?? i['name']}:${i['newTag'] ?? 'latest'}`;
    for (const r of (k['replicas'] ?? []) as Obj[])
      if (o['metadata']['name'] === r['name'] && o['spec']?.['replicas'] !== undefined)
        o['spec']['replicas'] = r['count'];
  }
  return out;
}

/** The generated ConfigMap of the dashboards (deploy/grafana/kustomization.yaml). */
const DASHBOARDS = (
  parse(readFileSync(join(ROOT, 'deploy/grafana/kustomization.yaml'), 'utf8')) as Obj
)['configMapGenerator'][0]['name'] as string;

/** kind/name of an object, the generated ConfigMap's content hash dropped. */
const id = (o: Obj): string => {
  const name = String(o['metadata']['name']);
  const plain = name.startsWith(`${DASHBOARDS}-`) ? DASHBOARDS : name;
  return `${o['kind']} ${o['metadata']['namespace'] ?? '-'}/${plain}`;
};

/** The kubernetes-models class for an object's apiVersion and kind. */
async function modelOf(o: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const api = String(o['apiVersion']);
  const modules: Record<string, () => Promise<unknown>> = {
    v1: () => import('kubernetes-models/v1'),
    'apps/v1': () => import('kubernetes-models/apps/v1'),
    'policy/v1': () => import('kubernetes-models/policy/v1'),
    'networking.k8s.io/v1': () => import('kubernetes-models/networking.k8s.io/v1'),
    'monitoring.coreos.com/v1': () =>
      import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'),
  };
  const load = modules[api];
  if (!load) throw new Error(`no schema module for apiVersion ${api}`);
  const model = ((await load()) as Record<string, unknown>)[o['kind']];
  if (typeof model !== 'function') throw new Error(`no schema for ${api} ${o['kind']}`);
  return model as new (data: Obj) => { validate(): void };
}

let objects: Obj[] = [];
let tool = '';
const find = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x['kind'] === kind && x['metadata']['name'] === name);
  if (!o) throw new Error(`no ${kind} ${name}`);
  return o;
};
const podSpec = (o: Obj): Obj => o['spec']['template']['spec'];
const container = (o: Obj): Obj => podSpec(o)['containers'][0];

/**
 * A container's environment as the kubelet gives it: secrets as `test-<key>`, the pod's name
 * and namespace, and `$(VAR)` expanded from the variables before it.
 */
function environment(c: Obj, pod: string, namespace: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c['env'] as Obj[]) {
    let v: string;
    if (e['valueFrom']?.['secretKeyRef']) v = `test-${e['valueFrom']['secretKeyRef']['key']}`;
    else if (e['valueFrom']?.['fieldRef']?.['fieldPath'] === 'metadata.name') v = pod;
    else if (e['valueFrom']?.['fieldRef']?.['fieldPath'] === 'metadata.namespace') v = namespace;
    else v = String(e['value']);
    env[e['name']] = v.replace(/\$\(([A-Z_]+)\)/g, (w, n: string) => env[n] ?? w);
  }
  return env;
}

/** Variables set only to be expanded into others (`$(POD_NAME)`). */
function expansionOnly(c: Obj): Set<string> {
  const used = new Set<string>();
  for (const e of c['env'] as Obj[])
    for (const m of String(e['value'] ?? '').matchAll(/\$\(([A-Z_]+)\)/g)) used.add(m[1]!);
  return used;
}

const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

beforeAll(() => {
  const built = kustomize(OVERLAY);
  if (built) {
    tool = built.tool;
    objects = built.objects;
  } else {
    tool = 'the test renderer (no kustomize or kubectl installed)';
    objects = render(OVERLAY);
  }
  console.log(`deploy/k8s/overlays/example rendered by ${tool}: ${objects.length} objects`);
});

describe('deploy/k8s', () => {
  it('renders the example overlay: Redis, coordinator, workers, policies, dashboards', () => {
    expect(objects.map(id).sort()).toEqual(
      [
        'ConfigMap spinmesh/spinmesh-grafana-dashboards',
        'Deployment spinmesh/spinmesh-coordinator',
        'Namespace -/spinmesh',
        'NetworkPolicy spinmesh/spinmesh-coordinator-api',
        'NetworkPolicy spinmesh/spinmesh-default-deny-ingress',
        'NetworkPolicy spinmesh/spinmesh-metrics',
        'NetworkPolicy spinmesh/spinmesh-redis',
        'NetworkPolicy spinmesh/spinmesh-worker-peers',
        'PodDisruptionBudget spinmesh/spinmesh-worker',
        'Service spinmesh/spinmesh-coordinator',
        'Service spinmesh/spinmesh-redis',
        'Service spinmesh/spinmesh-worker',
        'ServiceMonitor spinmesh/spinmesh',
        'StatefulSet spinmesh/spinmesh-redis',
        'StatefulSet spinmesh/spinmesh-worker',
      ].sort(),
    );
    expect(find('StatefulSet', 'spinmesh-worker')['spec']['replicas']).toBe(4);
    expect(container(find('Deployment', 'spinmesh-coordinator'))['image']).toBe(
      'registry.example.com/spinmesh:0.1.0',
    );
  });

  it('renders the same objects with the test renderer as with kustomize', () => {
    const ours = render(OVERLAY);
    expect(ours.map(id).sort()).toEqual(objects.map(id).sort());
    const images = (os: Obj[]): string[] =>
      os.flatMap((o) => (o['spec']?.['template'] ? [container(o)['image'] as string] : [])).sort();
    expect(images(ours)).toEqual(images(objects));
  });

  it('validates every object against the Kubernetes API schema (kubernetes-models)', async () => {
    const invalid: string[] = [];
    for (const o of objects) {
      const Model = await modelOf(o);
      try {
        new Model(o).validate();
      } catch (err) {
        invalid.push(`${id(o)}: ${(err as Error).message.slice(0, 500)}`);
      }
    }
    expect(invalid).toEqual([]);
    // The validation does reject what the API would.
    const Model = await modelOf(find('StatefulSet', 'spinmesh-worker'));
    const broken = structuredClone(find('StatefulSet', 'spinmesh-worker'));
    container(broken)['ports'][0]['containerPort'] = 'peer';
    expect(() => new Model(broken).validate()).toThrow(/containerPort/);
  });

  it('runs every container as non-root, read-only, without privilege escalation, with limits', () => {
    for (const o of objects.filter((x) => x['spec']?.['template'])) {
      const pod = podSpec(o);
      expect(pod['securityContext']['runAsNonRoot'], id(o)).toBe(true);
      expect(pod['securityContext']['runAsUser'], id(o)).toBeGreaterThan(0);
      for (const c of pod['containers'] as Obj[]) {
        expect(c['securityContext'], id(o)).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c['resources']['requests']['cpu'], id(o)).toBeDefined();
        expect(c['resources']['requests']['memory'], id(o)).toBeDefined();
        expect(c['resources']['limits']['memory'], id(o)).toBeDefined();
        expect(c['readinessProbe'], id(o)).toBeDefined();
        expect(c['livenessProbe'], id(o)).toBeDefined();
      }
    }
  });

  it('keeps Redis append-only on its volume, the password from the Secret, without a shell', () => {
    const r = find('StatefulSet', 'spinmesh-redis');
    const c = container(r);
    expect(c['command']).toBeUndefined();
    expect(c['args'][0]).toBe('redis-server');
    expect(c['args'].join(' ')).toMatch(/--appendonly yes/);
    expect(c['args'][c['args'].indexOf('--requirepass') + 1]).toBe('$(REDIS_PASSWORD)');
    expect(environment(c, 'spinmesh-redis-0', 'spinmesh')['REDIS_PASSWORD']).toBe(
      'test-redis-password',
    );
    const data = c['volumeMounts'].find((m: Obj) => m['mountPath'] === '/data');
    expect(r['spec']['volumeClaimTemplates'].map((v: Obj) => v['metadata']['name'])).toContain(
      data['name'],
    );
    expect(podSpec(r)['securityContext']['runAsUser']).toBe(999);
  });

  const services = [
    ['coordinator', 'Deployment', COORDINATOR_ENV_VARS, 'services/coordinator/dist/main.js'],
    ['worker', 'StatefulSet', WORKER_ENV_VARS, 'services/worker/dist/main.js'],
  ] as const;
  for (const [name, kind, vars, main] of services) {
    it(`sets only variables the ${name} reads, and its config accepts them`, () => {
      const o = find(kind, `spinmesh-${name}`);
      const c = container(o);
      expect(c['command']).toEqual(['node', main]);
      const known = new Set<string>([...vars, ...LIBRARY_VARIABLES, ...expansionOnly(c)]);
      expect(c['env'].map((e: Obj) => e['name']).filter((n: string) => !known.has(n))).toEqual([]);
      const env = environment(c, `spinmesh-${name}-0`, 'spinmesh');
      const config = name === 'coordinator' ? coordinatorConfig(env) : workerConfig(env);
      expect(config.clusterSecret).toBe('test-cluster-secret');
      // Probes: grpc.health.v1 on the port the service listens on; metrics where scraped.
      const { port } = parseHostPort(config.listen);
      expect(c['readinessProbe']['grpc']['port']).toBe(port);
      expect(c['livenessProbe']['grpc']['port']).toBe(port);
      expect(parseHostPort(config.metricsListen!)).toEqual({ host: '0.0.0.0', port: 9464 });
      const ports = Object.fromEntries(c['ports'].map((p: Obj) => [p['name'], p['containerPort']]));
      expect(ports['metrics']).toBe(9464);
      const annotations = o['spec']['template']['metadata']['annotations'];
      expect(annotations).toEqual({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9464',
        'prometheus.io/path': '/metrics',
      });
      // The Service selects these pods and names the ports the probes and scrapes use.
      const svc = find('Service', `spinmesh-${name}`);
      expect(matches(svc['spec']['selector'], o['spec']['template']['metadata']['labels'])).toBe(
        true,
      );
      for (const p of svc['spec']['ports'] as Obj[])
        expect(ports[p['targetPort']], `${name} ${p['name']}`).toBe(p['port']);
    });
  }

  it('wires the coordinator to Redis with the password, and its API token', () => {
    const c = container(find('Deployment', 'spinmesh-coordinator'));
    const config = coordinatorConfig(environment(c, 'spinmesh-coordinator-x', 'spinmesh'));
    expect(config.redis).toEqual({
      url: 'redis://spinmesh-redis:6379',
      password: 'test-redis-password',
    });
    expect(config.apiToken).toBe('test-api-token');
    expect(
      c['env'].find((e: Obj) => e['name'] === 'SPINMESH_API_TOKEN')['valueFrom']['secretKeyRef'][
        'optional'
      ],
    ).toBe(true);
    expect(parseHostPort(config.listen).port).toBe(
      find('Service', 'spinmesh-coordinator')['spec']['ports'][0]['port'],
    );
  });

  it('gives workers stable names: a headless Service, and each advertises its own', () => {
    const w = find('StatefulSet', 'spinmesh-worker');
    const svc = find('Service', 'spinmesh-worker');
    expect(w['spec']['serviceName']).toBe('spinmesh-worker');
    expect(svc['spec']['clusterIP']).toBe('None');
    const config = workerConfig(environment(container(w), 'spinmesh-worker-3', 'spinmesh'));
    expect(config.workerId).toBe('spinmesh-worker-3');
    expect(config.advertise).toBe('spinmesh-worker-3.spinmesh-worker.spinmesh.svc:7071');
    expect(config.bus).toEqual({
      kind: 'redis',
      options: { url: 'redis://spinmesh-redis:6379', password: 'test-redis-password' },
    });
    // The drain (8 s) fits in the grace period.
    expect(podSpec(w)['terminationGracePeriodSeconds']).toBeGreaterThan(config.drainMs / 1000);
    const pdb = find('PodDisruptionBudget', 'spinmesh-worker');
    expect(pdb['spec']['maxUnavailable']).toBe(1);
    expect(pdb['spec']['selector']['matchLabels']).toEqual(w['spec']['selector']['matchLabels']);
  });

  it('lets in only the API from outside, Redis from spinmesh pods, peers from workers, metrics from monitoring', () => {
    const policies = objects.filter((o) => o['kind'] === 'NetworkPolicy');
    const deny = find('NetworkPolicy', 'spinmesh-default-deny-ingress');
    expect(deny['spec']).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    const labelsOf = (name: string): Record<string, string> =>
      objects.find((o) => o['spec']?.['template'] && o['metadata']['name'] === `spinmesh-${name}`)![
        'spec'
      ]['template']['metadata']['labels'];
    /** Who may reach a pod's port: the `from` clauses of every policy that selects it. */
    const allowed = (pod: string, port: number): Obj[][] =>
      policies
        .filter((p) => matches(p['spec']['podSelector']['matchLabels'] ?? {}, labelsOf(pod)))
        .flatMap((p) => (p['spec']['ingress'] ?? []) as Obj[])
        .filter((r) => (r['ports'] as Obj[]).some((x) => x['port'] === port))
        .map((r) => (r['from'] ?? [{ anywhere: true }]) as Obj[]);
    expect(allowed('coordinator', 7070)).toEqual([[{ anywhere: true }]]);
    expect(allowed('redis', 6379)).toEqual([
      [{ podSelector: { matchLabels: { 'app.kubernetes.io/part-of': 'spinmesh' } } }],
    ]);
    const peers = allowed('worker', 7071).flat();
    expect(
      peers.map((f) => f['podSelector']['matchLabels']['app.kubernetes.io/component']),
    ).toEqual(['worker', 'coordinator']);
    for (const pod of ['coordinator', 'worker'])
      expect(allowed(pod, 9464)).toEqual([
        [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
      ]);
    // Nothing else is reachable from anywhere.
    const open = policies.flatMap((p) =>
      ((p['spec']['ingress'] ?? []) as Obj[]).filter((r) => !r['from']),
    );
    expect(open.flatMap((r) => r['ports'].map((x: Obj) => x['port']))).toEqual([7070]);
  });

  it('scrapes through a ServiceMonitor with the job names the dashboards use', () => {
    const sm = find('ServiceMonitor', 'spinmesh');
    const selected = objects.filter(
      (o) =>
        o['kind'] === 'Service' &&
        sm['spec']['selector']['matchExpressions'].every(
          (e: Obj) => e['operator'] === 'Exists' && e['key'] in (o['metadata']['labels'] ?? {}),
        ),
    );
    const prometheusYml = parse(
      readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8'),
    ) as { scrape_configs: { job_name: string }[] };
    expect(
      selected.map((s) => s['metadata']['labels'][sm['spec']['jobLabel']] as string).sort(),
    ).toEqual(prometheusYml.scrape_configs.map((j) => j.job_name).sort());
    for (const s of selected)
      expect(s['spec']['ports'].map((p: Obj) => p['name'])).toContain(
        sm['spec']['endpoints'][0]['port'],
      );
  });

  it('carries the Grafana dashboards from deploy/grafana, unchanged', () => {
    const cm = objects.find((o) => id(o) === 'ConfigMap spinmesh/spinmesh-grafana-dashboards')!;
    expect(cm['metadata']['labels']['grafana_dashboard']).toBe('1');
    const files = loadDashboards().map((d) => d.file);
    expect(Object.keys(cm['data']).sort()).toEqual(files);
    const dir = join(ROOT, 'deploy/grafana/dashboards');
    expect(
      readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .sort(),
    ).toEqual(files);
    for (const f of files) expect(cm['data'][f]).toBe(readFileSync(join(dir, f), 'utf8'));
  });
});
