// Sequence jobs (rule 'stdp'): the spec's checks name the field, the frames/words/csv data load,
// a gaussian job reports its one-step RMSE, the model file round-trips, and generation checks
// its cue.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FormatError,
  SpecError,
  decodeSequenceModel,
  encodeSequenceModel,
  generateFrom,
  noisySines,
  runSequenceJob,
  validateSequenceJob,
} from '../src/index.js';

const base = {
  name: 'seq',
  seed: 2,
  rule: 'stdp',
  network: { dybm: { units: 3, delaysPerPair: [1, 2], ltpDecays: [0.5], ltdDecays: [] } },
  train: { learningRate: 1 },
  data: {
    kind: 'frames',
    sequences: [
      [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
      ],
    ],
  },
  epochs: 200,
  evaluate: { every: 50, cue: 2, stopWhenRecalled: true },
};

describe('sequence jobs', () => {
  it('name the field at fault', () => {
    const bad = (
      patch: Record<string, unknown>,
      field: RegExp,
      kind: typeof SpecError | typeof FormatError = SpecError,
    ): void => {
      expect(() => validateSequenceJob({ ...base, ...patch })).toThrow(kind);
      expect(() => validateSequenceJob({ ...base, ...patch })).toThrow(field);
    };
    bad({ workers: 2 }, /^spec\.evaluate\.stopWhenRecalled needs the whole model/);
    bad({ staleness: 1 }, /^spec\.staleness must be an integer in \[0, 0\]/);
    bad(
      { workers: 2, evaluate: { cue: 2 }, network: { dybm: { units: 3, delays: 2 } } },
      /^spec\.workers must be 1 unless the DyBM has binary units and no LTD/,
    );
    // Delays 1 and 2: a spike may not be late at all.
    bad(
      { workers: 2, staleness: 1, evaluate: { cue: 2 } },
      /^spec\.staleness must be an integer in \[0, 0\]/,
    );
    bad({ epochs: 0 }, /^spec\.epochs/);
    bad({ foo: 1 }, /^spec\.foo is not a known field/);
    bad({ network: { rbm: {} } }, /^spec\.network must be \{ dybm/);
    bad({ network: { dybm: { units: 3, delays: 0 } } }, /^spec\.network\.dybm/);
    bad({ train: { learningRate: -1 } }, /^spec\.train\.learningRate/);
    bad({ train: { momentum: 1 } }, /^spec\.train\.momentum is not a known field/);
    bad(
      { data: { kind: 'frames', sequences: [[[1, 0]]] } },
      /has 2 values per frame but the DyBM has 3/,
    );
    bad({ data: { kind: 'words', words: ['s'] } }, /^spec\.data\.words\[0\] has 's'/);
    bad({ evaluate: { cue: 9 } }, /^spec\.evaluate\.cue is 9 frames, longer than sequence 0/);
  });

  it('learns a cycle, stops once it is recalled, and round-trips its model file', async () => {
    const { model, evaluations } = await runSequenceJob(base);
    const last = evaluations.at(-1)!;
    expect(last.recallExact).toBe(1);
    expect(last.epoch).toBeLessThan(200);
    const { file, model: back } = decodeSequenceModel(
      encodeSequenceModel(model, validateSequenceJob(base), last),
    );
    expect(file.evaluation).toEqual(last);
    const cue = [1, 0, 0, 0, 1, 0];
    expect([...generateFrom(back, cue, 2, 4)]).toEqual([...generateFrom(model, cue, 2, 4)]);
    expect([...generateFrom(model, cue, 2, 4)]).toEqual([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(() => generateFrom(model, [1, 0], 2, 4)).toThrow(
      /^cue has 2 values, expected 2 frames x 3/,
    );
    expect(() => generateFrom(model, [2, 0, 0], 1, 4)).toThrow(/^cue\[0\] is 2/);
    expect(() => decodeSequenceModel(Buffer.from('{"format":"x"}'))).toThrow(
      /not a sequence model/,
    );
  });

  it('reports the one-step RMSE of a gaussian series read from CSV', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spinmesh-seq-'));
    try {
      const series = noisySines(400, { seed: 3 });
      writeFileSync(join(dir, 's.csv'), `x\n${Array.from(series).join('\n')}\n`);
      const { evaluations } = await runSequenceJob({
        ...base,
        network: {
          dybm: { units: 1, kind: 'gaussian', delaysPerPair: [1, 2, 3, 4], ltdDecays: [] },
        },
        train: { optimizer: 'sgd', learningRate: 0.001 },
        data: { kind: 'csv', path: join(dir, 's.csv') },
        epochs: 5,
        evaluate: { every: 5, cue: 1 },
      });
      const e = evaluations.at(-1)!;
      expect(e.rmse).toBeGreaterThan(0);
      expect(e.rmse).toBeLessThan(1);
      expect(e.recallExact).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
