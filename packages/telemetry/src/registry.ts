// A dedicated prom-client Registry per service (never the global one, so that several services
// or tests in one process do not mix their series), and the metric objects built from the
// definitions in names.ts.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { MetricDefinition } from './names.js';

export interface RegistryOptions {
  /**
   * Add prom-client's process and Node.js metrics (process_cpu_seconds_total,
   * process_resident_memory_bytes, nodejs_eventloop_lag_seconds, ...). A service process wants
   * them; a library user with several registries in one process wants them once at most.
   * @defaultValue true
   */
  processMetrics?: boolean;
}

/** A new registry, with the process metrics unless told otherwise. */
export function createRegistry(options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

function check(d: MetricDefinition, type: MetricDefinition['type']): void {
  if (d.type !== type) throw new Error(`metric ${d.name} is a ${d.type}, not a ${type}`);
}

export function counter(registry: Registry, d: MetricDefinition): Counter {
  check(d, 'counter');
  return new Counter({ name: d.name, help: d.help, labelNames: d.labels, registers: [registry] });
}

export function gauge(registry: Registry, d: MetricDefinition): Gauge {
  check(d, 'gauge');
  return new Gauge({ name: d.name, help: d.help, labelNames: d.labels, registers: [registry] });
}

export function histogram(registry: Registry, d: MetricDefinition): Histogram {
  check(d, 'histogram');
  return new Histogram({
    name: d.name,
    help: d.help,
    labelNames: d.labels,
    buckets: [...(d.buckets ?? [])],
    registers: [registry],
  });
}

/**
 * The names a registry exposes, as PromQL sees them: a histogram's _bucket, _sum and _count
 * series, the rest as named.
 */
export async function exposedNames(registry: Registry): Promise<Set<string>> {
  const out = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    // The typings say an enum; at run time the type is the exposition format's word.
    const type = String(m.type);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m.name + s);
    else if (type === 'summary') for (const s of ['', '_sum', '_count']) out.add(m.name + s);
    else out.add(m.name);
  }
  return out;
}
