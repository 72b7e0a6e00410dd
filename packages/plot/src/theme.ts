// What every plot shares: the font (render.ts loads it), sizes that read at the PNG's scale, a
// white background, and the colours that mean the same thing in every plot.
import type { Config, TopLevelSpec } from 'vega-lite';
import { FONT_FAMILY } from './render.js';

export const CONFIG: Config = {
  font: FONT_FAMILY,
  background: 'white',
  padding: 12,
  title: { fontSize: 16, subtitleFontSize: 12, subtitleColor: '#444', anchor: 'start', offset: 10 },
  // vega estimates text widths (0.8 em a character, no canvas here), wider than DejaVu Sans
  // draws them: limits high enough that no label is cut short.
  axis: {
    labelFontSize: 11,
    titleFontSize: 12,
    titleFontWeight: 'normal',
    grid: true,
    labelLimit: 400,
  },
  legend: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', labelLimit: 600 },
  header: { labelFontSize: 12, titleFontSize: 12, titleFontWeight: 'normal' },
  view: { stroke: '#bbb' },
};

/** Potentiation / excitation, and depression / inhibition. */
export const POSITIVE = '#c0392b';
export const NEGATIVE = '#2c5aa0';
export const NEUTRAL = '#999999';

/**
 * A spec assembled from parts chosen at run time (panels and layers only for the data present),
 * which vega-lite's types cannot follow; compile() checks it, and the tests render every kind
 * and fail on any warning.
 */
export function topLevel(spec: Record<string, unknown>): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: CONFIG,
    ...spec,
  } as TopLevelSpec;
}
