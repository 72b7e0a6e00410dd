// The cues of `complete`: rows of a CSV file with unknown units marked, or rows of a data set
// with a part hidden (half of each image) or a fraction of the units flipped.
import {
  FormatError,
  imageShape,
  mulberry32,
  readUserFile,
  type Dataset,
  type UnitName,
} from '@spinmesh/model';
import { UsageError } from './errors.js';

/** Which half of each pattern (as an image) a built-in cue hides. */
export type HideRegion = 'bottom' | 'top' | 'left' | 'right' | 'none';
export const HIDE_REGIONS: readonly HideRegion[] = ['bottom', 'top', 'left', 'right', 'none'];

export interface Cues {
  rows: number;
  dims: number;
  /** The cue values sent (rows x dims), in the layer's domain; unknown units hold a blank start. */
  values: Float32Array;
  /** Known (clamped) units: dims entries, rows x dims, or none (empty). */
  known: Uint8Array;
  /** The cue as drawn: NaN where a unit is unknown (mid-grey). */
  display: Float32Array;
  /** The patterns the cues come from (rows x dims, the layer's domain), when known. */
  original?: Float32Array;
  /** The units a completion should restore (hidden or flipped), rows x dims. */
  changed?: Uint8Array;
}

/** The blank start of an unknown unit. */
function blank(units: UnitName): number {
  return units === 'ising' ? -1 : 0;
}

/** A data value in [0, 1] as a unit value of the layer: binary units at the 0.5 threshold. */
function unitValue(v: number, units: UnitName): number {
  if (units === 'gaussian') return v;
  const on = v >= 0.5;
  return units === 'ising' ? (on ? 1 : -1) : on ? 1 : 0;
}

/**
 * Cues from a CSV file: one row per line, `dims` cells each, a number (0/1 for bernoulli,
 * -1/1 for ising units) or `?` / an empty cell for an unknown unit. Lines starting with '#'
 * are comments.
 */
export function cuesFromCsv(path: string, dims: number, units: UnitName): Cues {
  const text = readUserFile(path).toString('utf8');
  const lines = text.split(/\r?\n/);
  const values: number[] = [];
  const known: number[] = [];
  const display: number[] = [];
  let rows = 0;
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const cells = line.split(/[,;\t]/).map((c) => c.trim());
    if (cells.length !== dims)
      throw new FormatError(
        path,
        `line ${i + 1} has ${cells.length} cells; the layer has ${dims} units`,
      );
    for (const cell of cells) {
      if (cell === '' || cell === '?') {
        values.push(blank(units));
        known.push(0);
        display.push(NaN);
        continue;
      }
      const v = Number(cell);
      if (!Number.isFinite(v))
        throw new FormatError(path, `line ${i + 1}: '${cell}' is not a number, '?' or empty`);
      values.push(v);
      known.push(1);
      display.push(v);
    }
    rows++;
  });
  if (rows === 0) throw new FormatError(path, 'holds no cue rows');
  return {
    rows,
    dims,
    values: Float32Array.from(values),
    known: Uint8Array.from(known),
    display: Float32Array.from(display),
  };
}

/** Units of a `dims`-unit pattern in a region, as a mask (the pattern as imageShape draws it). */
export function regionMask(dims: number, region: HideRegion): Uint8Array {
  const mask = new Uint8Array(dims);
  if (region === 'none') return mask;
  const [h, w] = imageShape(dims);
  // A pattern drawn as one row has no top or bottom: its halves are left and right.
  const r = h === 1 ? (region === 'bottom' ? 'right' : region === 'top' ? 'left' : region) : region;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const hidden =
        r === 'bottom'
          ? y >= Math.floor(h / 2)
          : r === 'top'
            ? y < Math.ceil(h / 2)
            : r === 'right'
              ? x >= Math.floor(w / 2)
              : x < Math.ceil(w / 2);
      mask[y * w + x] = hidden ? 1 : 0;
    }
  return mask;
}

export interface DataCueOptions {
  /** First row of the data. @defaultValue 0 */
  offset?: number;
  /** Rows. */
  count: number;
  /** The half of each pattern to hide (unknown, free to settle). */
  hide: HideRegion;
  /** Fraction of the units to flip, in [0, 1]; with flips no unit is clamped. @defaultValue 0 */
  flip?: number;
  /** Seed of the flipped units. @defaultValue 0 */
  seed?: number;
}

/**
 * Cues from rows of a data set: the hidden half unknown (blank), a fraction of the other units
 * flipped. Without flips the shown units are clamped; with flips none is (the cue is noisy
 * everywhere, and the network cleans it up as a whole).
 */
export function cuesFromData(data: Dataset, units: UnitName, opts: DataCueOptions): Cues {
  const dims = data.dims;
  const offset = opts.offset ?? 0;
  const flip = opts.flip ?? 0;
  if (opts.count < 1 || offset + opts.count > data.rows)
    throw new UsageError(
      `the data have ${data.rows} rows: --offset ${offset} --count ${opts.count} asks for more`,
    );
  if (flip > 0 && units === 'gaussian')
    throw new UsageError('--flip flips binary units; this layer has gaussian units');
  const rows = opts.count;
  const hidden = regionMask(dims, opts.hide);
  const values = new Float32Array(rows * dims);
  const display = new Float32Array(rows * dims);
  const original = new Float32Array(rows * dims);
  const changed = new Uint8Array(rows * dims);
  const next = mulberry32(((opts.seed ?? 0) >>> 0) ^ 0x9e3779b9);
  const flips = Math.round(flip * dims);
  const order = new Uint32Array(dims);
  for (let r = 0; r < rows; r++) {
    const at = r * dims;
    for (let j = 0; j < dims; j++) {
      const v = data.x[(offset + r) * dims + j]!;
      original[at + j] = units === 'ising' ? 2 * v - 1 : v;
      values[at + j] = hidden[j] ? blank(units) : unitValue(v, units);
      display[at + j] = hidden[j] ? NaN : values[at + j]!;
      changed[at + j] = hidden[j]!;
    }
    // A seeded partial Fisher-Yates shuffle of the shown units picks those to flip.
    let shown = 0;
    for (let j = 0; j < dims; j++) if (!hidden[j]) order[shown++] = j;
    for (let i = 0; i < Math.min(flips, shown); i++) {
      const k = i + Math.floor(next() * (shown - i));
      const u = order[k]!;
      order[k] = order[i]!;
      order[i] = u;
      const v = values[at + u]!;
      values[at + u] = units === 'ising' ? -v : 1 - v;
      display[at + u] = values[at + u]!;
      changed[at + u] = 1;
    }
  }
  const known = flips > 0 ? new Uint8Array(0) : Uint8Array.from(hidden, (h) => (h ? 0 : 1));
  return { rows, dims, values, known, display, original, changed };
}

/**
 * Fraction of the `changed` units a completion restored: binary units equal to the original
 * at the 0.5 threshold. undefined for gaussian units or when nothing changed.
 */
export function restoredFraction(
  cues: Cues,
  completed: ArrayLike<number>,
  units: UnitName,
): { restored: number; units: number } | undefined {
  if (!cues.original || !cues.changed || units === 'gaussian') return undefined;
  let n = 0;
  let right = 0;
  for (let i = 0; i < cues.changed.length; i++) {
    if (!cues.changed[i]) continue;
    n++;
    const want =
      units === 'ising' ? (cues.original[i]! >= 0 ? 1 : -1) : cues.original[i]! >= 0.5 ? 1 : 0;
    if (completed[i] === want) right++;
  }
  return n === 0 ? undefined : { restored: right / n, units: n };
}
