// One-step-ahead prediction of a real-valued series by a one-unit gaussian DyBM, for comparison
// with the least-squares autoregression of ar.ts.
import { SpecError } from '../errors.js';
import type { DyBM } from './dybm.js';

function checkRange(model: DyBM, series: ArrayLike<number>, from: number, to: number): void {
  if (model.units !== 1 || model.spec.kind !== 'gaussian')
    throw new SpecError('model', 'must be a one-unit gaussian DyBM');
  if (
    !Number.isInteger(from) ||
    !Number.isInteger(to) ||
    from < 0 ||
    to > series.length ||
    to <= from
  )
    throw new SpecError(
      'range',
      `[${from}, ${to}) is not a non-empty range of the series (${series.length})`,
    );
}

/**
 * Learns series[from, to) online, `epochs` times, each time from a blank past. Returns the RMSE
 * of the last epoch's predictions, each made before its value was learned.
 */
export function learnSeries(
  model: DyBM,
  series: ArrayLike<number>,
  from: number,
  to: number,
  epochs: number,
): number {
  checkRange(model, series, from, to);
  if (!Number.isInteger(epochs) || epochs < 1)
    throw new SpecError('epochs', `must be a positive integer, got ${epochs}`);
  let se = 0;
  const x = new Float64Array(1);
  for (let e = 0; e < epochs; e++) {
    model.reset();
    se = 0;
    for (let t = from; t < to; t++) {
      x[0] = series[t]!;
      se += (model.learn(x)[0]! - x[0]) ** 2;
    }
  }
  return Math.sqrt(se / (to - from));
}

/**
 * One-step-ahead RMSE over targets t in [from, to) of a copy of the model (never learning) that
 * starts from a blank past at warmFrom and reads every value after predicting it.
 */
export function oneStepRmse(
  model: DyBM,
  series: ArrayLike<number>,
  warmFrom: number,
  from: number,
  to: number,
): number {
  checkRange(model, series, from, to);
  if (!Number.isInteger(warmFrom) || warmFrom < 0 || warmFrom > from)
    throw new SpecError('warmFrom', `must be an integer in [0, ${from}], got ${warmFrom}`);
  const m = model.clone();
  m.reset();
  const x = new Float64Array(1);
  let se = 0;
  for (let t = warmFrom; t < to; t++) {
    x[0] = series[t]!;
    if (t >= from) se += (m.predict()[0]! - x[0]) ** 2;
    m.advance(x);
  }
  return Math.sqrt(se / (to - from));
}
