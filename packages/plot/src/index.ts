// @spinmesh/plot: the project's plots as Vega-Lite specs, rendered to SVG and PNG. Kept apart
// from the numeric packages because of its dependencies (vega, vega-lite, resvg).
export { PlotError } from './errors.js';
export {
  DEFAULT_FONT_FILES,
  FONT_FAMILY,
  renderPlot,
  writePlot,
  type RenderOptions,
  type RenderedPlot,
} from './render.js';
export { kernelSpec, stdpWindowSpec, type KernelData, type StdpWindowData } from './stdp.js';
export { hasCurve, learningCurveSpec, type CurvePoint } from './curve.js';
export { clusterSpec, type ClusterBenchResult, type StepBreakdown } from './cluster.js';
export { stragglerSpec, type StragglerBenchResult } from './straggler.js';
