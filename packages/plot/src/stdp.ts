// The STDP window (Δw against Δt = t_post − t_pre, one panel per conduction delay) and the
// weights a DyBM learned against Δt: signed bars, red above zero, blue below, with dashed
// markers at the moments that explain them.
import type { TopLevelSpec } from 'vega-lite';
import { PlotError } from './errors.js';
import { NEGATIVE, NEUTRAL, POSITIVE, topLevel } from './theme.js';

/** One pairing experiment (the model package's StdpWindow has this shape). */
export interface StdpWindowData {
  /** Spike-time differences t_post − t_pre, in steps. */
  dt: readonly number[];
  /** Change of the synapse's efficacy after one pairing at each dt. */
  dw: readonly number[];
  /** Conduction delay of the synapse, in steps. */
  delay: number;
}

/** A dashed vertical line at x = at, named in the legend by `label`. */
interface Marker {
  at: number;
  label: string;
}

interface Panel {
  key: number;
  x: readonly number[];
  y: readonly number[];
  markers: readonly Marker[];
}

interface SignedBars {
  title: string;
  subtitle?: string | string[];
  xTitle: string;
  yTitle: string;
  /** Legend names of positive and negative bars. */
  positive: string;
  negative: string;
  /** Legend name of zero values (drawn as no bar). */
  zero: string;
  /** Facet header of each panel (an expression on datum.value, the panel key), if several. */
  panelLabel?: string;
  panels: readonly Panel[];
  width: number;
  height: number;
}

function signedBars(p: SignedBars): TopLevelSpec {
  const rows = signedBarRows(p);
  const layer = signedBarLayers(p, rows);
  const base = {
    title: { text: p.title, ...(p.subtitle ? { subtitle: p.subtitle } : {}) },
    data: { values: rows },
  };
  if (p.panels.length === 1) return topLevel({ ...base, width: p.width, height: p.height, layer });
  return topLevel({
    ...base,
    facet: {
      row: {
        field: 'panel',
        type: 'ordinal',
        title: null,
        header: {
          labelExpr: p.panelLabel ?? 'datum.value',
          labelOrient: 'top',
          labelAnchor: 'start',
          labelAngle: 0,
          labelFontWeight: 'bold',
        },
      },
    },
    spec: { width: p.width, height: p.height, layer },
    resolve: { axis: { x: 'independent' } },
  });
}

/** One row per bar, marker and panel (its zero line), each tagged with its layer. */
function signedBarRows(p: SignedBars): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const panel of p.panels) {
    if (panel.x.length !== panel.y.length || panel.x.length === 0)
      throw new PlotError(`panel ${panel.key}: needs as many y values as x values, at least one`);
    panel.x.forEach((x, i) => {
      const y = panel.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) return;
      rows.push({
        panel: panel.key,
        layer: 'bar',
        x0: x - 0.4,
        x1: x + 0.4,
        x,
        y,
        sign: y > 0 ? p.positive : y < 0 ? p.negative : p.zero,
      });
    });
    for (const m of panel.markers)
      rows.push({ panel: panel.key, layer: 'marker', x: m.at, marker: m.label });
    rows.push({ panel: panel.key, layer: 'zero' });
  }
  return rows;
}

/** The bars coloured by sign, the markers' dashed rules and the zero line. */
function signedBarLayers(p: SignedBars, rows: Record<string, unknown>[]): object[] {
  const signs = [p.positive, p.negative, p.zero].filter((s) => rows.some((r) => r['sign'] === s));
  const colours = { [p.positive]: POSITIVE, [p.negative]: NEGATIVE, [p.zero]: NEUTRAL };
  const xs = rows.filter((r) => r['layer'] !== 'zero').map((r) => r['x'] as number);
  // Whole steps either side, not the next "nice" tick, which can leave a third of the axis empty.
  const xDomain = [Math.floor(Math.min(...xs)) - 1, Math.ceil(Math.max(...xs)) + 1];
  const markerNames = [...new Set(p.panels.flatMap((x) => x.markers.map((m) => m.label)))];
  return [
    {
      transform: [{ filter: "datum.layer === 'bar'" }],
      mark: { type: 'bar' as const },
      encoding: {
        x: {
          field: 'x0',
          type: 'quantitative' as const,
          title: p.xTitle,
          scale: { domain: xDomain, nice: false },
          axis: { tickMinStep: 1 },
        },
        x2: { field: 'x1' },
        y: { field: 'y', type: 'quantitative' as const, title: p.yTitle },
        y2: { datum: 0 },
        color: {
          field: 'sign',
          type: 'nominal' as const,
          title: null,
          scale: { domain: signs, range: signs.map((s) => colours[s]!) },
          legend: { orient: 'bottom' as const, direction: 'vertical' as const },
        },
        tooltip: [{ field: 'x' }, { field: 'y' }],
      },
    },
    {
      transform: [{ filter: "datum.layer === 'marker'" }],
      mark: { type: 'rule' as const, color: '#333', strokeWidth: 1.2 },
      encoding: {
        x: { field: 'x', type: 'quantitative' as const },
        strokeDash: {
          field: 'marker',
          type: 'nominal' as const,
          title: null,
          scale: {
            domain: markerNames,
            range: [
              [6, 3],
              [2, 2],
              [8, 2, 2, 2],
            ],
          },
          legend: { orient: 'bottom' as const, direction: 'vertical' as const, symbolSize: 300 },
        },
      },
    },
    {
      // The axis y = 0, drawn once per panel.
      transform: [{ filter: "datum.layer === 'zero'" }],
      mark: { type: 'rule' as const, color: '#333', strokeWidth: 1 },
      encoding: { y: { datum: 0 } },
    },
  ];
}

/**
 * The STDP window: one panel per delay, Δw against Δt with potentiation and depression coloured
 * and named, dashed lines at Δt = 0 and at Δt = d (the pre spike arrives as the post one fires).
 */
export function stdpWindowSpec(
  windows: readonly StdpWindowData[],
  opts: { subtitle?: string | string[] } = {},
): TopLevelSpec {
  if (windows.length === 0) throw new PlotError('stdp window: no window to plot');
  return signedBars({
    title: 'STDP window of the DyBM: weight change after one spike pairing',
    ...(opts.subtitle ? { subtitle: opts.subtitle } : {}),
    xTitle: 'Δt = t_post − t_pre (steps)',
    yTitle: 'Δw (log-odds)',
    positive: 'LTP: potentiation (Δw > 0)',
    negative: 'LTD: depression (Δw < 0)',
    zero: 'no change (Δw = 0)',
    panelLabel: "'delay d = ' + datum.value + (datum.value === 1 ? ' step' : ' steps')",
    panels: windows.map((w) => ({
      key: w.delay,
      x: w.dt,
      y: w.dw,
      markers: [
        { at: 0, label: 'Δt = 0' },
        { at: w.delay, label: 'Δt = d (pre spike arrives)' },
      ],
    })),
    width: 560,
    height: windows.length > 1 ? 150 : 260,
  });
}

/** Learned weights of a DyBM as a function of Δt, with its conduction delays marked. */
export interface KernelData {
  dt: readonly number[];
  /** The learned weight at each dt (e.g. averaged over pairs of units), in log-odds. */
  weight: readonly number[];
  /** The network's conduction delays, in steps. */
  delays: readonly number[];
}

export function kernelSpec(
  k: KernelData,
  opts: { title?: string; subtitle?: string | string[]; yTitle?: string } = {},
): TopLevelSpec {
  return signedBars({
    title: opts.title ?? 'Weights a DyBM learned, against the spike-time difference',
    ...(opts.subtitle ? { subtitle: opts.subtitle } : {}),
    xTitle: 'Δt = t_post − t_pre (steps)',
    yTitle: opts.yTitle ?? 'learned weight (log-odds)',
    positive: 'excitatory (w > 0)',
    negative: 'inhibitory (w < 0)',
    zero: 'zero (w = 0)',
    panels: [
      {
        key: 0,
        x: k.dt,
        y: k.weight,
        markers: [
          { at: 0, label: 'Δt = 0' },
          ...k.delays.map((d) => ({ at: d, label: 'a conduction delay' })),
        ],
      },
    ],
    width: 560,
    height: 260,
  });
}
