// The straggler benchmark (`npm run bench -- straggler`): with one worker at half speed, the wall
// time until the model reaches the target log-likelihood, by staleness, per training setup.
import type { TopLevelSpec } from 'vega-lite';
import { PlotError } from './errors.js';
import { topLevel } from './theme.js';

/** The part of bench/straggler.ts's JSON result the plot reads. */
export interface StragglerBenchResult {
  target_exact_ll?: number;
  modes: Record<
    string,
    {
      train?: { negative?: string; k?: number };
      repeats?: number;
      /** Median seconds by staleness ('0', '4', 'unbounded'); null: not reached. */
      time_to_target_s: Record<string, number | null>;
      lockstep_without_straggler_s?: number | null;
    }
  >;
}

const SETTINGS: { key: string; label: string; colour: string }[] = [
  { key: 'none', label: 'lockstep, no straggler', colour: '#9e9e9e' },
  { key: '0', label: 'lockstep (staleness 0)', colour: '#4c78a8' },
  { key: '4', label: 'staleness 4', colour: '#f58518' },
  { key: 'unbounded', label: 'staleness unbounded', colour: '#54a24b' },
];

function modeLabel(key: string, train?: { negative?: string; k?: number }): string {
  return train?.negative && train.k !== undefined
    ? `${train.negative.toUpperCase()}-${train.k}`
    : key;
}

/** One row per mode and staleness setting that has a time (null: the target was not reached). */
function stragglerRows(r: StragglerBenchResult, keys: string[]): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const key of keys) {
    const m = r.modes[key]!;
    const mode = modeLabel(key, m.train);
    for (const s of SETTINGS) {
      const v = s.key === 'none' ? m.lockstep_without_straggler_s : m.time_to_target_s?.[s.key];
      if (v === undefined) continue;
      rows.push({ mode, setting: s.label, seconds: v, missed: v === null ? 'not reached' : '' });
    }
  }
  return rows;
}

export function stragglerSpec(
  r: StragglerBenchResult,
  opts: { subtitle?: string | string[] } = {},
): TopLevelSpec {
  const keys = Object.keys(r.modes ?? {});
  if (keys.length === 0) throw new PlotError('straggler: the result has no modes');
  const rows = stragglerRows(r, keys);
  if (rows.length === 0) throw new PlotError('straggler: no mode has a time to target');
  const present = SETTINGS.filter((s) => rows.some((x) => x['setting'] === s.label));
  const target = r.target_exact_ll;
  const repeats = Object.values(r.modes)[0]?.repeats;
  const x = {
    field: 'setting',
    type: 'nominal' as const,
    title: null,
    sort: present.map((s) => s.label),
    // The legend names the bars; labels under each would repeat it.
    axis: { labels: false, ticks: false },
  };
  return topLevel({
    title: {
      text: 'One worker at half speed: time to target by staleness',
      ...(opts.subtitle ? { subtitle: opts.subtitle } : {}),
    },
    data: { values: rows },
    facet: {
      column: {
        field: 'mode',
        type: 'nominal',
        title: null,
        sort: keys.map((k) => modeLabel(k, r.modes[k]!.train)),
        header: { labelFontWeight: 'bold', labelExpr: "'training: ' + datum.value" },
      },
    },
    spec: {
      width: 300,
      height: 240,
      layer: [
        {
          mark: { type: 'bar' },
          encoding: {
            x,
            y: {
              field: 'seconds',
              type: 'quantitative',
              title:
                target !== undefined
                  ? `seconds to reach ${target.toFixed(1).replace('-', '−')} nats${repeats ? ` (median of ${repeats})` : ''}`
                  : 'seconds to the target',
            },
            color: {
              field: 'setting',
              type: 'nominal',
              title: null,
              scale: { domain: present.map((s) => s.label), range: present.map((s) => s.colour) },
              legend: { orient: 'bottom', direction: 'vertical' },
            },
          },
        },
        {
          mark: { type: 'text', dy: -6, fontSize: 10 },
          encoding: {
            x,
            y: { field: 'seconds', type: 'quantitative' },
            text: { field: 'seconds', type: 'quantitative', format: '.2f' },
          },
        },
        {
          transform: [{ filter: 'datum.seconds === null' }],
          mark: { type: 'text', angle: 270, align: 'left', dx: 4, fontSize: 11, color: '#333' },
          encoding: { x, y: { datum: 0 }, text: { field: 'missed' } },
        },
      ],
    },
  });
}
