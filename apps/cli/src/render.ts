// Images of what a network does, as PNG grids of tiles (packages/model's imageGrid): samples,
// receptive fields, and completions (a row per cue: its columns side by side).
import { imageGrid, imageShape, type Image, type UnitName } from '@spinmesh/model';

export interface TileOptions {
  /** Each value drawn as scale x scale pixels. @defaultValue autoScale(tile size) */
  scale?: number;
  /** Tiles per row (samples, fields). @defaultValue ceil(sqrt(count)) */
  cols?: number;
}

/** Pixels between tiles. */
const PAD = 1;

/** A scale that makes a tile at least about 20 pixels on its longer side. */
export function autoScale(height: number, width: number): number {
  return Math.max(1, Math.ceil(20 / Math.max(height, width)));
}

/**
 * Values of a layer in [0, 1] for display: ising -1..1 as 0..1, bernoulli as they are; NaN (a
 * unit the cue leaves unknown) as 0.5, mid-grey.
 */
export function toUnitRange(values: ArrayLike<number>, units: UnitName): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out[i] = Number.isNaN(v) ? 0.5 : units === 'ising' ? (v + 1) / 2 : v;
  }
  return out;
}

/** The tile shape and scale of patterns of `dims` units. */
function layout(dims: number, opts: TileOptions): { h: number; w: number; scale: number } {
  const [h, w] = imageShape(dims);
  return { h, w, scale: opts.scale ?? autoScale(h, w) };
}

/**
 * `count` patterns of `dims` units (row-major, one after another) as a grid: probabilities and
 * binary states as grey levels, gaussian units stretched per tile.
 */
export function patternsImage(
  values: ArrayLike<number>,
  count: number,
  dims: number,
  units: UnitName,
  opts: TileOptions = {},
): Image {
  const { h, w, scale } = layout(dims, opts);
  return imageGrid(units === 'gaussian' ? values : toUnitRange(values, units), count, h, w, {
    scale,
    pad: PAD,
    normalize: units === 'gaussian' ? 'tile' : 'unit',
    ...(opts.cols !== undefined ? { cols: opts.cols } : {}),
  });
}

/**
 * Receptive fields (count x dims weights) as a grid, each tile normalised symmetrically: 0 is
 * mid-grey, the tile's largest |weight| black or white.
 */
export function fieldsImage(
  values: ArrayLike<number>,
  count: number,
  dims: number,
  opts: TileOptions = {},
): Image {
  const { h, w, scale } = layout(dims, opts);
  return imageGrid(values, count, h, w, {
    scale,
    pad: PAD,
    normalize: 'symmetric',
    ...(opts.cols !== undefined ? { cols: opts.cols } : {}),
  });
}

/**
 * Panels side by side, one row per pattern: `columns[c]` holds rows x dims values (the cue, the
 * completion, frames of the trajectory...), drawn as column c.
 */
export function panelsImage(
  columns: readonly ArrayLike<number>[],
  rows: number,
  dims: number,
  units: UnitName,
  opts: Omit<TileOptions, 'cols'> = {},
): Image {
  const cols = columns.length;
  const tiles = new Float32Array(rows * cols * dims);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const src = columns[c]!;
      const at = (r * cols + c) * dims;
      for (let j = 0; j < dims; j++) tiles[at + j] = src[r * dims + j]!;
    }
  return patternsImage(tiles, rows * cols, dims, units, { ...opts, cols });
}
