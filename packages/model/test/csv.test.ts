import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FormatError } from '../src/errors.js';
import { parseCsv, readCsv } from '../src/data/csv.js';

const dir = mkdtempSync(join(tmpdir(), 'spinmesh-csv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function csvError(text: string, opts: Parameters<typeof parseCsv>[1] = {}): string {
  try {
    parseCsv(text, opts, 'data.csv');
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    expect((e as FormatError).file).toBe('data.csv');
    return (e as Error).message;
  }
  throw new Error('expected a FormatError');
}

describe('CSV', () => {
  it('reads plain numbers without a header', () => {
    const ds = parseCsv('1,2,3\n4,5.5,-6e-1\n', {}, 'x.csv');
    expect(ds.rows).toBe(2);
    expect(ds.dims).toBe(3);
    expect(Array.from(ds.x)).toEqual([1, 2, 3, 4, 5.5, -0.6].map(Math.fround));
    expect(ds.labels).toBeUndefined();
    expect(ds.columns).toBeUndefined();
    expect(ds.name).toBe('x.csv');
  });

  it('detects a header row, and takes a label column by name', () => {
    const ds = parseCsv('a,label,b\n0.5,3,1\n0.25,7,0\n', { label: 'label' });
    expect(ds.dims).toBe(2);
    expect(ds.columns).toEqual(['a', 'b']);
    expect(Array.from(ds.x)).toEqual([0.5, 1, 0.25, 0]);
    expect(Array.from(ds.labels!)).toEqual([3, 7]);
  });

  it('takes a label column by index, negative from the end', () => {
    const ds = parseCsv('1,2,9\n3,4,8\n', { label: -1 });
    expect(Array.from(ds.x)).toEqual([1, 2, 3, 4]);
    expect(Array.from(ds.labels!)).toEqual([9, 8]);
    const ds0 = parseCsv('1,2,9\n3,4,8\n', { label: 0 });
    expect(Array.from(ds0.labels!)).toEqual([1, 3]);
  });

  it('forces a header or its absence', () => {
    const ds = parseCsv('1,2\n3,4\n', { header: true });
    expect(ds.rows).toBe(1);
    expect(ds.columns).toEqual(['1', '2']);
    expect(csvError('a,b\n1,2\n', { header: false })).toContain('line 1, column 1: not a number');
  });

  it('detects semicolons and tabs, handles CRLF, blank lines, quotes and a BOM', () => {
    expect(Array.from(parseCsv('1;2\r\n3;4\r\n').x)).toEqual([1, 2, 3, 4]);
    expect(Array.from(parseCsv('\n1\t2\n\n3\t4\n\n').x)).toEqual([1, 2, 3, 4]);
    const q = parseCsv('\ufeff"x","y"\n"1", 2 \n');
    expect(q.columns).toEqual(['x', 'y']);
    expect(Array.from(q.x)).toEqual([1, 2]);
    // An explicit delimiter overrides detection.
    expect(csvError('1;2\n', { delimiter: ',', header: false })).toBe(
      'data.csv: line 1, column 1: not a number',
    );
  });

  it('names the line and column of a non-numeric cell', () => {
    const msg = csvError('a,b,c\n1,2,3\n4,x5,6\n');
    expect(msg).toBe('data.csv: line 3, column 2: not a number');
    expect(csvError('1,2\n3,\n')).toBe('data.csv: line 2, column 2: empty cell');
    expect(csvError('1,2\n3,NaN\n')).toContain('line 2, column 2: not a number');
    expect(csvError('1,2\n3,1e999\n')).toContain('line 2, column 2: number out of range');
  });

  it('names ragged rows, counting blank lines', () => {
    expect(csvError('1,2,3\n\n4,5\n')).toBe(
      'data.csv: line 3 has 2 fields, expected 3 (as on line 1)',
    );
    expect(csvError('1,2\n4,5,6\n')).toContain('line 2 has 3 fields, expected 2');
  });

  it('rejects bad label columns', () => {
    expect(csvError('1,2.5\n', { label: 1 })).toContain(
      'line 1, column 2: the label is not a 32-bit integer',
    );
    expect(csvError('1,2\n', { label: 'y' })).toContain('no header row');
    expect(csvError('a,b\n1,2\n', { label: 'y' })).toContain(
      'the header has no column of the label column',
    );
    expect(csvError('1,2\n', { label: 5 })).toContain('outside the 2 columns');
    expect(csvError('')).toContain('is empty');
  });

  it('reads files and names them in errors', () => {
    const p = join(dir, 'd.csv');
    writeFileSync(p, 'x;y;class\n0;1;2\n1;0;1\n');
    const ds = readCsv(p, { label: 'class' });
    expect(ds.name).toBe('d.csv');
    expect(Array.from(ds.labels!)).toEqual([2, 1]);
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, '1,2\n3,oops\n');
    expect(() => readCsv(bad)).toThrow(`${bad}: line 2, column 2: not a number`);
    expect(() => readCsv(join(dir, 'missing.csv'))).toThrow(
      /missing\.csv: cannot be read \(ENOENT\)/,
    );
  });
});
