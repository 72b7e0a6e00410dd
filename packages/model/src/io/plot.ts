// Minimal plots on createImage: axes, a zero line, tick marks, vertical markers, and series drawn
// as points, bars or lines. No text; captions belong in the document that shows the image.
import { SpecError } from '../errors.js';
import { type Image, createImage } from './png.js';

export type Rgb = readonly [number, number, number];

export interface PlotSeries {
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** 'bars' rise from y = 0 (or the range's edge nearest 0). @defaultValue 'points' */
  style?: 'points' | 'bars' | 'line';
  /** @defaultValue [31, 119, 180] */
  color?: Rgb;
  /** Colour of bars and points below zero. @defaultValue color */
  negativeColor?: Rgb;
  /** Half-size of a point in pixels (a (2r+1)-pixel square). @defaultValue 2 */
  radius?: number;
}

export interface PlotOptions {
  /** @defaultValue 640 */
  width?: number;
  /** @defaultValue 360 */
  height?: number;
  /** Pixels between the image edge and the plot area. @defaultValue 20 */
  margin?: number;
  /** @defaultValue the data's range, padded by 5% */
  xRange?: readonly [number, number];
  /** @defaultValue the data's range with 0 included, padded by 5% */
  yRange?: readonly [number, number];
  /** @defaultValue white */
  background?: Rgb;
  /** Axes, ticks and the zero line. @defaultValue black */
  axisColor?: Rgb;
  /** Draw the line y = 0 across the plot. @defaultValue true */
  zeroLine?: boolean;
  /** x positions of tick marks below the plot area. @defaultValue none */
  xTicks?: readonly number[];
  /** y positions of tick marks left of the plot area. @defaultValue none */
  yTicks?: readonly number[];
  /** Dashed vertical lines. @defaultValue none */
  markers?: readonly { x: number; color?: Rgb }[];
}

/** The pixel geometry of a plot: data coordinates to pixels. */
export interface PlotFrame {
  left: number;
  right: number;
  top: number;
  bottom: number;
  xRange: [number, number];
  yRange: [number, number];
  px(x: number): number;
  py(y: number): number;
}

function range(values: number[], include0: boolean): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (include0) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (!(hi >= lo)) return [0, 1];
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
  return [lo - pad, hi + pad];
}

function setPixel(img: Image, x: number, y: number, c: Rgb): void {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  const at = (y * img.width + x) * img.channels;
  if (img.channels === 1) img.data[at] = Math.round((c[0] + c[1] + c[2]) / 3);
  else {
    img.data[at] = c[0];
    img.data[at + 1] = c[1];
    img.data[at + 2] = c[2];
  }
}

function line(img: Image, x0: number, y0: number, x1: number, y1: number, c: Rgb): void {
  // Bresenham
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    setPixel(img, x0, y0, c);
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/**
 * Draws series on a new RGB image. @throws SpecError for mismatched x/y lengths, an empty or
 * inverted range, or a size too small for the margins
 */
export function plot(series: readonly PlotSeries[], opts: PlotOptions = {}): Image {
  const width = opts.width ?? 640;
  const height = opts.height ?? 360;
  const margin = opts.margin ?? 20;
  if (!Number.isInteger(margin) || margin < 0)
    throw new SpecError('plot.margin', `must be a non-negative integer, got ${margin}`);
  if (width - 2 * margin < 2 || height - 2 * margin < 2)
    throw new SpecError('plot', `size ${width}x${height} leaves no room inside margins ${margin}`);
  series.forEach((s, i) => {
    if (s.x.length !== s.y.length)
      throw new SpecError(`series[${i}]`, `has ${s.x.length} x values and ${s.y.length} y values`);
  });
  const xs = series.flatMap((s) => Array.from(s.x));
  const ys = series.flatMap((s) => Array.from(s.y));
  const xRange: [number, number] = opts.xRange ? [...opts.xRange] : range(xs, false);
  const yRange: [number, number] = opts.yRange ? [...opts.yRange] : range(ys, true);
  for (const [name, r] of [
    ['plot.xRange', xRange],
    ['plot.yRange', yRange],
  ] as const)
    if (!(r[1] > r[0]))
      throw new SpecError(name, `must be [lo, hi] with lo < hi, got [${r.join(', ')}]`);
  const img = createImage(width, height, 3, opts.background ?? [255, 255, 255]);
  const axis = opts.axisColor ?? [0, 0, 0];
  const f = plotFrame(width, height, margin, xRange, yRange);
  const clampY = (p: number): number => Math.max(f.top, Math.min(f.bottom, p));
  for (const m of opts.markers ?? []) {
    const x = f.px(m.x);
    if (x < f.left || x > f.right) continue;
    for (let y = f.top; y <= f.bottom; y++)
      if ((y - f.top) % 6 < 3) setPixel(img, x, y, m.color ?? [160, 160, 160]);
  }
  const zeroY = clampY(f.py(0));
  for (const s of series) {
    const c = s.color ?? [31, 119, 180];
    const neg = s.negativeColor ?? c;
    const style = s.style ?? 'points';
    const r = s.radius ?? 2;
    const n = s.x.length;
    const barHalf = Math.max(0, Math.floor(((f.right - f.left) / Math.max(1, n)) * 0.3));
    let prev: [number, number] | null = null;
    for (let i = 0; i < n; i++) {
      const x = s.x[i]!;
      const y = s.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        prev = null;
        continue;
      }
      const px = f.px(x);
      const py = clampY(f.py(y));
      const col = y < 0 ? neg : c;
      if (style === 'bars') {
        const [a, b] = py < zeroY ? [py, zeroY] : [zeroY, py];
        for (let yy = a; yy <= b; yy++)
          for (let xx = px - barHalf; xx <= px + barHalf; xx++)
            if (xx >= f.left && xx <= f.right) setPixel(img, xx, yy, col);
      } else if (style === 'points') {
        for (let yy = py - r; yy <= py + r; yy++)
          for (let xx = px - r; xx <= px + r; xx++) setPixel(img, xx, yy, col);
      } else {
        if (prev) line(img, prev[0], prev[1], px, py, c);
        prev = [px, py];
      }
    }
  }
  if (opts.zeroLine ?? true) line(img, f.left, zeroY, f.right, zeroY, axis);
  line(img, f.left, f.top, f.left, f.bottom, axis);
  line(img, f.left, f.bottom, f.right, f.bottom, axis);
  for (const x of opts.xTicks ?? []) {
    const px = f.px(x);
    if (px >= f.left && px <= f.right) line(img, px, f.bottom, px, f.bottom + 4, axis);
  }
  for (const y of opts.yTicks ?? []) {
    const py = f.py(y);
    if (py >= f.top && py <= f.bottom) line(img, f.left - 4, py, f.left, py, axis);
  }
  return img;
}

/** The mapping plot() uses, for callers that want to know where a value lands. */
export function plotFrame(
  width: number,
  height: number,
  margin: number,
  xRange: readonly [number, number],
  yRange: readonly [number, number],
): PlotFrame {
  const left = margin;
  const right = width - 1 - margin;
  const top = margin;
  const bottom = height - 1 - margin;
  return {
    left,
    right,
    top,
    bottom,
    xRange: [xRange[0], xRange[1]],
    yRange: [yRange[0], yRange[1]],
    px: (x) => Math.round(left + ((x - xRange[0]) / (xRange[1] - xRange[0])) * (right - left)),
    py: (y) => Math.round(bottom - ((y - yRange[0]) / (yRange[1] - yRange[0])) * (bottom - top)),
  };
}

/** Images of equal width stacked top to bottom, `gap` pixels apart. */
export function stackImages(
  images: readonly Image[],
  gap = 0,
  background: Rgb = [255, 255, 255],
): Image {
  if (images.length === 0) throw new SpecError('images', 'must not be empty');
  const width = images[0]!.width;
  for (const [i, im] of images.entries())
    if (im.width !== width || im.channels !== 3)
      throw new SpecError(`images[${i}]`, `must be RGB and ${width} pixels wide`);
  const height = images.reduce((h, im) => h + im.height, 0) + gap * (images.length - 1);
  const out = createImage(width, height, 3, background);
  let y = 0;
  for (const im of images) {
    out.data.set(im.data, y * width * 3);
    y += im.height + gap;
  }
  return out;
}
