// Vega-Lite spec -> SVG (vega, headless) -> PNG (resvg), and both written side by side.
//
// Why these: Vega-Lite says what a plot shows (marks, encodings, facets) and derives the axes,
// ticks, legends and layout from it, so every plot gets them without drawing code of ours; vega
// renders its scenegraph to SVG in Node with no DOM or canvas (renderer 'none', toSVG), and
// keeps text as <text>, searchable and sharp at any size. resvg (@resvg/resvg-js) rasterises the
// SVG with a prebuilt binary shipped as an npm package: no native build, no system Cairo, unlike
// node-canvas. It reads fonts from the files it is given, so text renders the same on every
// machine: DejaVu Sans from Debian's fonts-dejavu-core (scripts/setup.sh installs it), and no
// system font lookup. Without a canvas, vega would guess text widths (0.8 em a character, far
// wider than DejaVu Sans draws them) and lay out legends and titles around the guess; fontkit
// measures them from the same font files instead (vega's textMetrics.width hook, the one
// vl-convert uses).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { openSync, type Font } from 'fontkit';
import * as vega from 'vega';
import { View, Warn, logger, parse } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { PlotError } from './errors.js';

/** The family every spec of this package names (theme.ts); the files below provide it. */
export const FONT_FAMILY = 'DejaVu Sans';

/** fonts-dejavu-core's regular and bold faces (titles are bold), in that order. */
export const DEFAULT_FONT_FILES: readonly string[] = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
];

export interface RenderOptions {
  /** PNG pixels per SVG unit: 2 stays sharp on high-density screens. @defaultValue 2 */
  scale?: number;
  /**
   * TrueType files of the DejaVu Sans family: the regular face, then the bold one (text widths
   * are measured with these two). @defaultValue DEFAULT_FONT_FILES
   */
  fontFiles?: readonly string[];
}

export interface RenderedPlot {
  svg: string;
  png: Buffer;
  /** PNG size in pixels. */
  width: number;
  height: number;
  /** What vega-lite and vega warned about (a channel dropped, a field missing): a plot to fix. */
  warnings: string[];
}

interface TextItem {
  fontSize?: number;
  fontWeight?: string | number;
}

/** vega-scenegraph's text measure, which vega re-exports but its typings leave out. */
const textMetrics = (
  vega as unknown as { textMetrics: { width(item: TextItem, text: unknown): number } }
).textMetrics;

const fonts = new Map<string, Font>();

function font(path: string): Font {
  let f = fonts.get(path);
  if (!f) {
    const opened = openSync(path);
    if (!('layout' in opened))
      throw new PlotError(`font file ${path} is a collection: give a single face`);
    f = opened;
    fonts.set(path, f);
  }
  return f;
}

/** Text widths from the fonts resvg will draw with; vega's default size is 11 px. */
function measureWith(regular: Font, bold: Font): (item: TextItem, text: unknown) => number {
  return (item, text) => {
    const w = item.fontWeight;
    const f = w === 'bold' || (typeof w === 'number' && w >= 600) ? bold : regular;
    const s = Array.isArray(text) ? text.join(' ') : String(text ?? '');
    return (f.layout(s).advanceWidth * (item.fontSize ?? 11)) / f.unitsPerEm;
  };
}

/** Renders a Vega-Lite spec. @throws PlotError when a font file is missing */
export async function renderPlot(
  spec: TopLevelSpec,
  opts: RenderOptions = {},
): Promise<RenderedPlot> {
  const scale = opts.scale ?? 2;
  if (!(scale > 0 && scale <= 8))
    throw new PlotError(`render.scale must be in (0, 8], got ${scale}`);
  const fontFiles = [...(opts.fontFiles ?? DEFAULT_FONT_FILES)];
  if (fontFiles.length === 0) throw new PlotError('render.fontFiles must name at least one font');
  for (const f of fontFiles)
    if (!existsSync(f))
      throw new PlotError(
        `font file ${f} not found: install fonts-dejavu-core (scripts/setup.sh) or pass fontFiles`,
      );
  textMetrics.width = measureWith(font(fontFiles[0]!), font(fontFiles[1] ?? fontFiles[0]!));
  // Both libraries warn on the console by default; a library of ours does not log, so their
  // warnings are collected and returned instead.
  const warnings: string[] = [];
  const collect = logger(Warn, 'warn', (_method, _level, args) =>
    warnings.push(args.map(String).join(' ')),
  );
  const view = new View(parse(compile(spec, { logger: collect }).spec), {
    renderer: 'none',
    logger: collect,
  });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const image = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: false, fontFiles, defaultFontFamily: FONT_FAMILY },
  }).render();
  return { svg, png: image.asPng(), width: image.width, height: image.height, warnings };
}

/**
 * Renders a spec and writes the PNG to `pngPath` and the SVG beside it (`x.png` -> `x.svg`);
 * creates the folder. Returns both paths.
 */
export async function writePlot(
  pngPath: string,
  spec: TopLevelSpec,
  opts: RenderOptions = {},
): Promise<{ png: string; svg: string }> {
  if (!pngPath.toLowerCase().endsWith('.png'))
    throw new PlotError('the plot file must end in .png (the SVG is written beside it)');
  const r = await renderPlot(spec, opts);
  const svgPath = `${pngPath.slice(0, -4)}.svg`;
  mkdirSync(dirname(pngPath), { recursive: true });
  writeFileSync(pngPath, r.png);
  writeFileSync(svgPath, r.svg);
  return { png: pngPath, svg: svgPath };
}
