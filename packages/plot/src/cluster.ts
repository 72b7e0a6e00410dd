// The cluster benchmark (`npm run bench -- cluster`): where a step's wall time goes with 1 and 2
// workers, per network, and what 2 workers gain against 1 and against what they could.
import type { TopLevelSpec } from 'vega-lite';
import { PlotError } from './errors.js';
import { topLevel } from './theme.js';

/** A step's milliseconds in one run; the parts are missing where a run did not record them. */
export interface StepBreakdown {
  wall: number;
  compute?: number;
  waiting?: number;
  other?: number;
}

/** The part of bench/cluster.ts's JSON result the plot reads. */
export interface ClusterBenchResult {
  networks: Record<
    string,
    {
      /** By worker count ('1', '2', '4'): a run, or why it was skipped. */
      by_workers: Record<string, { ms_per_step?: StepBreakdown | null; skipped?: string }>;
      speedup_2_workers?: number | null;
      compute_only?: { bound_speedup_2_workers?: number | null };
      two_workers_vs_single_process_2_threads?: number | null;
    }
  >;
}

/** Short names of the benchmark's networks; other keys are shown as they are. */
const NETWORK_LABELS: Record<string, string> = {
  dense: 'dense 2048+2048, PCD-1',
  fmnist: '784-500, PCD-1',
  fmnist_pcd10: '784-500, PCD-10',
};

const PARTS = [
  'computing',
  'waiting for peers',
  'the rest (messages, RPCs)',
  'a step, not broken down (not recorded)',
];
const PART_COLOURS = ['#4c78a8', '#e45756', '#f2a93b', '#bbbbbb'];
const RATIOS = [
  '2 workers / 1 worker, measured',
  '2 shards / 1, compute only (the bound)',
  '2 workers / 1 process on 2 threads',
];

export function clusterSpec(
  r: ClusterBenchResult,
  opts: { subtitle?: string | string[] } = {},
): TopLevelSpec {
  const keys = Object.keys(r.networks ?? {});
  if (keys.length === 0) throw new PlotError('cluster: the result has no networks');
  const { steps, ratios } = clusterRows(r, keys);
  if (steps.length === 0 && ratios.length === 0)
    throw new PlotError('cluster: no network has a step breakdown or a speedup');
  const panels: Record<string, unknown>[] = [];
  if (steps.length > 0) panels.push(stepsPanel(steps, keys));
  if (ratios.length > 0) panels.push(ratiosPanel(ratios, keys));
  return topLevel({
    title: {
      text: 'What distribution costs: the cluster benchmark',
      ...(opts.subtitle ? { subtitle: opts.subtitle } : {}),
    },
    vconcat: panels,
    resolve: { scale: { color: 'independent' } },
  });
}

type Row = Record<string, unknown>;

/** The plotted rows: each run's step parts, and each network's throughput ratios. */
function clusterRows(r: ClusterBenchResult, keys: string[]): { steps: Row[]; ratios: Row[] } {
  const steps: Row[] = [];
  const ratios: Row[] = [];
  const round = (x: number): number => Number(x.toFixed(3));
  for (const key of keys) {
    const n = r.networks[key]!;
    const network = NETWORK_LABELS[key] ?? key;
    for (const [k, run] of Object.entries(n.by_workers ?? {})) {
      const m = run.ms_per_step;
      if (!m || !Number.isFinite(m.wall)) continue;
      const workers = `${k} worker${k === '1' ? '' : 's'}`;
      const parts =
        m.compute !== undefined && m.waiting !== undefined
          ? [m.compute, m.waiting, m.other ?? m.wall - m.compute - m.waiting]
          : null;
      if (parts)
        parts.forEach((ms, i) =>
          steps.push({ network, workers, part: PARTS[i], order: i, ms: round(Math.max(0, ms)) }),
        );
      else steps.push({ network, workers, part: PARTS[3], order: 3, ms: round(m.wall) });
    }
    const values = [
      n.speedup_2_workers,
      n.compute_only?.bound_speedup_2_workers,
      n.two_workers_vs_single_process_2_threads,
    ];
    values.forEach((v, i) => {
      if (typeof v === 'number') ratios.push({ network, ratio: RATIOS[i], order: i, value: v });
    });
  }
  return { steps, ratios };
}

/** Stacked bars of a step's parts, one row of bars per network. */
function stepsPanel(steps: Row[], keys: string[]): Row {
  const parts = PARTS.filter((p) => steps.some((s) => s['part'] === p));
  return {
    title: { text: "Where a step's wall time goes (mean over the workers)", fontSize: 13 },
    data: { values: steps },
    facet: {
      row: {
        field: 'network',
        type: 'nominal',
        title: null,
        sort: keys.map((k) => NETWORK_LABELS[k] ?? k),
        header: { labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold' },
      },
    },
    spec: {
      width: 520,
      height: { step: 26 },
      mark: { type: 'bar' },
      encoding: {
        y: { field: 'workers', type: 'nominal', title: null },
        x: { field: 'ms', type: 'quantitative', title: 'ms per step', stack: 'zero' },
        color: {
          field: 'part',
          type: 'nominal',
          title: null,
          scale: { domain: parts, range: parts.map((p) => PART_COLOURS[PARTS.indexOf(p)]!) },
          legend: { orient: 'bottom', direction: 'horizontal', columns: 2 },
        },
        order: { field: 'order', type: 'ordinal' },
      },
    },
    resolve: { scale: { x: 'independent' } },
  };
}

/** Grouped bars of the ratios per network, with the no-gain line at 1. */
function ratiosPanel(ratios: Row[], keys: string[]): Row {
  const present = RATIOS.filter((x) => ratios.some((s) => s['ratio'] === x));
  return {
    title: { text: 'What 2 workers gain: ratios of spin updates per second', fontSize: 13 },
    data: { values: ratios },
    width: 520,
    height: 220,
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: {
            field: 'network',
            type: 'nominal',
            title: null,
            sort: keys.map((k) => NETWORK_LABELS[k] ?? k),
            axis: { labelAngle: 0 },
          },
          xOffset: { field: 'ratio', sort: present },
          y: { field: 'value', type: 'quantitative', title: 'ratio of throughputs (×)' },
          color: {
            field: 'ratio',
            type: 'nominal',
            title: null,
            scale: { domain: present, range: ['#4c78a8', '#9ecae9', '#72b7b2'] },
            legend: { orient: 'bottom', direction: 'vertical' },
          },
        },
      },
      {
        mark: { type: 'text', dy: -6, fontSize: 10 },
        encoding: {
          x: {
            field: 'network',
            type: 'nominal',
            sort: keys.map((k) => NETWORK_LABELS[k] ?? k),
          },
          xOffset: { field: 'ratio', sort: present },
          y: { field: 'value', type: 'quantitative' },
          text: { field: 'value', type: 'quantitative', format: '.2f' },
        },
      },
      // One mark each, not one per row of the panel's data.
      {
        data: { values: [{}] },
        mark: { type: 'rule', strokeDash: [6, 3], color: '#333' },
        encoding: { y: { datum: 1 } },
      },
      {
        data: { values: [{}] },
        mark: {
          type: 'text',
          align: 'right',
          baseline: 'bottom',
          dy: -3,
          fontSize: 10,
          color: '#333',
        },
        encoding: { x: { value: 'width' }, y: { datum: 1 }, text: { value: '1 = no gain' } },
      },
    ],
  };
}
