// --plot of train and watch: the learning curves of a job's evaluations, written as a PNG with an
// SVG beside it. @spinmesh/plot (vega, resvg) is loaded only when a plot is asked for.
import type { Evaluation } from '@spinmesh/model';
import type { Args } from './args.js';
import { UsageError } from './errors.js';
import type { Output } from './output.js';

/** --plot's file, checked before any work starts; undefined when not given. */
export function plotArg(args: Args): string | undefined {
  if (!args.has('plot')) return undefined;
  const path = args.str('plot');
  if (path === undefined || !/\.png$/i.test(path))
    throw new UsageError('--plot needs a file name ending in .png (the SVG is written beside it)');
  return path;
}

/**
 * Writes the learning curves of `evaluations`. @throws UsageError when they hold no figure to
 * plot (spec.evaluate asks for none) or the plot cannot be drawn (no font)
 */
export async function writeCurves(
  out: Output,
  path: string,
  evaluations: readonly Evaluation[],
  title: string,
): Promise<void> {
  const plot = await import('@spinmesh/plot');
  try {
    const written = await plot.writePlot(
      path,
      plot.learningCurveSpec(evaluations, { title: `Learning curves: ${title}` }),
    );
    out.say(`learning curves written to ${written.png} and ${written.svg}`);
    out.emit({ type: 'plot', png: written.png, svg: written.svg });
  } catch (err) {
    if (err instanceof plot.PlotError) throw new UsageError(`--plot: ${err.message}`);
    throw err;
  }
}
