// Numeric CSV: one row per line, every cell a finite decimal number, except an optional header
// row and an optional integer label column. Cells may be wrapped in double quotes; quoted
// delimiters and embedded newlines are not supported (numeric data never needs them).
import { FormatError, readUserFile } from '../errors.js';
import type { Dataset } from './dataset.js';

export type CsvDelimiter = ',' | ';' | '\t';

export interface CsvOptions {
  /**
   * 'auto': the first row is a header when any of its cells is not a number.
   * @defaultValue 'auto'
   */
  header?: boolean | 'auto';
  /**
   * The label column: a header name, or a 0-based column index (negative counts from the end,
   * -1 = last). Its cells must be integers; it is left out of x.
   * @defaultValue no label column
   */
  label?: string | number;
  /**
   * @defaultValue detected from the first line: the most frequent of tab, semicolon, comma
   */
  delimiter?: CsvDelimiter;
  /** Dataset name. @defaultValue the file name */
  name?: string;
}

/** A parsed CSV: the dataset plus the header names of its x columns, when there was a header. */
export interface CsvDataset extends Dataset {
  columns?: string[];
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function unquote(cell: string): string {
  const t = cell.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"')
    ? t.slice(1, -1).replace(/""/g, '"').trim()
    : t;
}

function detectDelimiter(line: string): CsvDelimiter {
  let best: CsvDelimiter = ',';
  let bestCount = 0;
  for (const d of ['\t', ';', ','] as const) {
    const c = line.split(d).length - 1;
    if (c > bestCount) {
      best = d;
      bestCount = c;
    }
  }
  return best;
}

/**
 * Parses numeric CSV text. `file` names the source in errors, which give the line and column of
 * what is wrong but never quote the file (it may not be the CSV file the caller meant).
 * @throws FormatError
 */
export function parseCsv(text: string, opts: CsvOptions = {}, file = '<text>'): CsvDataset {
  // Long by design (exempt in test/shape.test.ts): a decoder, one check per malformed case.
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = src.split(/\r?\n/);
  // Line numbers in messages are 1-based physical lines, so blank lines are skipped but counted.
  const rowsIn: { line: number; cells: string[] }[] = [];
  let delimiter = opts.delimiter;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '') continue;
    delimiter ??= detectDelimiter(l);
    rowsIn.push({ line: i + 1, cells: l.split(delimiter).map(unquote) });
  }
  if (rowsIn.length === 0) throw new FormatError(file, 'is empty: no rows');
  const first = rowsIn[0]!;
  const ncols = first.cells.length;
  let header: boolean;
  if (opts.header === undefined || opts.header === 'auto') {
    header = first.cells.some((c) => !NUMBER.test(c));
  } else {
    header = opts.header;
  }
  const names = header ? first.cells : undefined;
  let labelCol = -1;
  if (opts.label !== undefined) {
    if (typeof opts.label === 'string') {
      if (!names) {
        throw new FormatError(
          file,
          'the label column is given by name but the file has no header row',
        );
      }
      labelCol = names.indexOf(opts.label);
      if (labelCol < 0) {
        throw new FormatError(
          file,
          `line ${first.line}: the header has no column of the label column's name`,
        );
      }
    } else {
      const idx = opts.label;
      labelCol = idx < 0 ? ncols + idx : idx;
      if (!Number.isInteger(idx) || labelCol < 0 || labelCol >= ncols) {
        throw new FormatError(file, `label column index ${idx} is outside the ${ncols} columns`);
      }
    }
  }
  const dims = ncols - (labelCol >= 0 ? 1 : 0);
  if (dims === 0) throw new FormatError(file, 'has no data columns besides the label');
  const body = header ? rowsIn.slice(1) : rowsIn;
  const rows = body.length;
  if (rows === 0) throw new FormatError(file, 'has a header row but no data rows');
  const x = new Float32Array(rows * dims);
  const labels = labelCol >= 0 ? new Int32Array(rows) : undefined;
  for (let r = 0; r < rows; r++) {
    const { line, cells } = body[r]!;
    if (cells.length !== ncols) {
      throw new FormatError(
        file,
        `line ${line} has ${cells.length} fields, expected ${ncols} (as on line ${first.line})`,
      );
    }
    let k = r * dims;
    for (let c = 0; c < ncols; c++) {
      const cell = cells[c]!;
      const where = `line ${line}, column ${c + 1}`;
      if (!NUMBER.test(cell)) {
        throw new FormatError(file, `${where}: ${cell === '' ? 'empty cell' : 'not a number'}`);
      }
      const v = Number(cell);
      if (!Number.isFinite(v)) throw new FormatError(file, `${where}: number out of range`);
      if (c === labelCol) {
        if (!Number.isInteger(v) || Math.abs(v) > 2 ** 31 - 1) {
          throw new FormatError(file, `${where}: the label is not a 32-bit integer`);
        }
        labels![r] = v;
      } else {
        x[k++] = v;
      }
    }
  }
  const out: CsvDataset = { x, rows, dims, name: opts.name ?? file.replace(/^.*[\\/]/, '') };
  if (labels) out.labels = labels;
  if (names) out.columns = names.filter((_, c) => c !== labelCol);
  return out;
}

/** Reads a numeric CSV file. @throws FormatError naming the file, line and column at fault. */
export function readCsv(path: string, opts: CsvOptions = {}): CsvDataset {
  return parseCsv(readUserFile(path).toString('utf8'), opts, path);
}
