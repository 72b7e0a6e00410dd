// Learning curves of a job: the log-likelihoods (exact, AIS with its interval, pseudo) in one
// panel, nats per example, and the reconstruction error in another, against the epoch.
import type { TopLevelSpec } from 'vega-lite';
import { PlotError } from './errors.js';
import { topLevel } from './theme.js';

/** One evaluation of a job (the model package's Evaluation, and the API's, have this shape). */
export interface CurvePoint {
  epoch: number;
  exactLogLikelihood?: number;
  aisLogLikelihood?: number;
  aisLow?: number;
  aisHigh?: number;
  pseudoLogLikelihood?: number;
  reconstructionError?: number;
  /** The best possible average log-likelihood, where known (bars-and-stripes). */
  optimum?: number;
}

const EXACT = 'exact LL';
const AIS = 'AIS LL (bar: its interval)';
const PSEUDO = 'pseudo-LL';
const SERIES = [EXACT, AIS, PSEUDO];
const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c'];

/** Whether the evaluations hold anything learningCurveSpec can draw. */
export function hasCurve(points: readonly CurvePoint[]): boolean {
  return points.some(
    (p) =>
      p.exactLogLikelihood !== undefined ||
      p.aisLogLikelihood !== undefined ||
      p.pseudoLogLikelihood !== undefined ||
      p.reconstructionError !== undefined,
  );
}

/**
 * The learning curves of the evaluations given, panels and series only for the figures they
 * hold. @throws PlotError when they hold none
 */
export function learningCurveSpec(
  points: readonly CurvePoint[],
  opts: { title?: string; subtitle?: string | string[] } = {},
): TopLevelSpec {
  if (!hasCurve(points))
    throw new PlotError(
      'learning curve: no evaluation has a log-likelihood or a reconstruction error to plot',
    );
  const { ll, recon, optimum } = curveRows(points);
  const epochAxis = { field: 'epoch', type: 'quantitative' as const, title: 'epoch' };
  const panels: Record<string, unknown>[] = [];
  if (ll.length > 0) panels.push(logLikelihoodPanel(ll, optimum, epochAxis));
  if (recon.length > 0)
    panels.push({
      title: { text: 'Reconstruction error', fontSize: 13 },
      data: { values: recon },
      width: 560,
      height: 180,
      mark: { type: 'line', color: '#9467bd', point: { color: '#9467bd' } },
      encoding: {
        x: epochAxis,
        y: {
          field: 'value',
          type: 'quantitative',
          title: 'Σᵢ (vᵢ − rᵢ)² per example',
          scale: { zero: false },
        },
      },
    });
  return topLevel({
    title: {
      text: opts.title ?? 'Learning curves',
      ...(opts.subtitle ? { subtitle: opts.subtitle } : {}),
    },
    vconcat: panels,
    resolve: { scale: { color: 'independent' } },
  });
}

type Row = Record<string, unknown>;

/** The plotted rows by epoch: log-likelihoods by series, reconstruction errors, the optimum. */
function curveRows(points: readonly CurvePoint[]): {
  ll: Row[];
  recon: Row[];
  optimum: number | undefined;
} {
  const ll: Row[] = [];
  const recon: Row[] = [];
  let optimum: number | undefined;
  for (const p of [...points].sort((a, b) => a.epoch - b.epoch)) {
    const add = (
      series: string,
      v: number | undefined,
      extra: Record<string, number> = {},
    ): void => {
      if (v !== undefined && Number.isFinite(v))
        ll.push({ epoch: p.epoch, series, value: v, ...extra });
    };
    add(EXACT, p.exactLogLikelihood);
    add(
      AIS,
      p.aisLogLikelihood,
      p.aisLow !== undefined && p.aisHigh !== undefined ? { low: p.aisLow, high: p.aisHigh } : {},
    );
    add(PSEUDO, p.pseudoLogLikelihood);
    if (p.reconstructionError !== undefined && Number.isFinite(p.reconstructionError))
      recon.push({ epoch: p.epoch, value: p.reconstructionError });
    if (p.optimum !== undefined) optimum = p.optimum;
  }
  return { ll, recon, optimum };
}

/** The log-likelihood series, AIS bounds where given, and the optimum's line where known. */
function logLikelihoodPanel(ll: Row[], optimum: number | undefined, epochAxis: object): Row {
  const present = SERIES.filter((s) => ll.some((r) => r['series'] === s));
  const colour = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: present, range: present.map((s) => COLOURS[SERIES.indexOf(s)]!) },
    legend: { orient: 'bottom' as const, direction: 'horizontal' as const },
  };
  const y = {
    field: 'value',
    type: 'quantitative' as const,
    title: 'log-likelihood (nats per example)',
    scale: { zero: false },
  };
  const layer: Record<string, unknown>[] = [
    { mark: { type: 'line', point: true }, encoding: { x: epochAxis, y, color: colour } },
  ];
  if (ll.some((r) => r['low'] !== undefined))
    layer.push({
      transform: [{ filter: 'isValid(datum.low)' }],
      mark: { type: 'rule', strokeWidth: 1.5 },
      encoding: {
        x: epochAxis,
        y: { field: 'low', type: 'quantitative' },
        y2: { field: 'high' },
        color: colour,
      },
    });
  if (optimum !== undefined)
    layer.push(
      // One mark each, not one per row of the panel's data.
      {
        data: { values: [{}] },
        mark: { type: 'rule', strokeDash: [6, 3], color: '#555' },
        encoding: { y: { datum: optimum } },
      },
      {
        data: { values: [{}] },
        mark: { type: 'text', align: 'right', baseline: 'bottom', dy: -3, color: '#333' },
        encoding: {
          x: { value: 'width' },
          y: { datum: optimum },
          text: { value: `optimum ${optimum.toFixed(3).replace('-', '−')}` },
        },
      },
    );
  return {
    title: { text: 'Log-likelihood of the training data', fontSize: 13 },
    data: { values: ll },
    width: 560,
    height: 240,
    layer,
  };
}
